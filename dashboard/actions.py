"""The only writes the dashboard makes: small requests, through the pipeline's functions.

Trigger a run, enqueue a backfill, cancel a run, pause or resume a deployment, promote or roll
back a model. Each opens a writable ``Store`` for the one request and closes it. Training and
scheduling happen in the scheduler process, never here. Bad input raises
``pipeline.errors.ConfigError`` with a sentence.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any, Iterator

from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.orchestration import control, enqueue
from pipeline.store import Store
from pipeline.training import acceptance, champion


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@contextlib.contextmanager
def writable(settings: Settings) -> Iterator[Store]:
    """A writable store for one request, closed right after it."""
    history = Store(settings.history)
    try:
        yield history
    finally:
        history.close()


def trigger(settings: Settings, *, date: dt.date | str | None, deployment: str | None,
            data_url: str | None = None) -> dict[str, Any]:
    """Enqueue one run for ``date`` (a SCHEDULED run due now); returns the run row.

    ``data_url`` (``demo``, ``tlc``, a mirror's template or a folder) is the run's own data source,
    checked by its flow; None keeps the deployment's (FHV_DATA_URL).
    """
    parameters = {"data_url": data_url} if data_url else None
    with writable(settings) as history:
        return control.trigger(history, settings, deployment=deployment, date=parse_date(date), now=now(),
                               parameters=parameters)


def plan_backfill(settings: Settings, *, start: dt.date, end: dt.date, deployment: str | None,
                  force: bool = False) -> enqueue.BackfillPlan:
    """The dates a backfill would run and those it skips: a dry run that enqueues nothing.

    The store is writable only because a history without deployments gets the default one.
    """
    with writable(settings) as history:
        return control.plan_backfill(history, settings, deployment=deployment, start=start, end=end,
                                     now=now(), force=force)


def enqueue_backfill(settings: Settings, plan: enqueue.BackfillPlan) -> enqueue.Enqueued:
    with writable(settings) as history:
        return control.backfill(history, settings, plan, now=now())


def cancel(settings: Settings, run_id: str) -> dict[str, Any]:
    """Cancel a waiting run at once, or ask the scheduler to stop a running one."""
    with writable(settings) as history:
        return control.cancel(history, run_id, now=now())


def cancel_many(settings: Settings, run_ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Cancel each run; returns the rows cancelled and a sentence per run that could not be."""
    done, refused = [], []
    with writable(settings) as history:
        for run_id in run_ids:
            try:
                done.append(control.cancel(history, run_id, now=now()))
            except PipelineError as error:
                refused.append(str(error))
    return done, refused


def set_active(settings: Settings, deployment: str, active: bool) -> None:
    """Pause (``active=False``) or resume a deployment's schedule (its upcoming runs made at once, as the CLI does)."""
    with writable(settings) as history:
        if active:
            control.resume(history, settings, deployment, now=now())
        else:
            control.pause(history, deployment, now=now())


def promote(settings: Settings, run_id: str, *, actor: str, confirmed: bool = False) -> dict[str, Any]:
    """Make a model version the champion (and copy it to models/current/); returns the event. A version
    trained on older months than the champion's needs ``confirmed``."""
    with writable(settings) as history:
        return champion.promote(history, settings, run_id, actor=actor, now=now(), confirmed=confirmed)


def accept(settings: Settings, run_id: str, *, actor: str, reason: str) -> dict[str, Any]:
    """Accept a blocked run's data and enqueue a run of its date past the gate; returns the acceptance."""
    with writable(settings) as history:
        return acceptance.accept(history, settings, run_id, actor=actor, reason=reason, now=now())


def repair_current(settings: Settings) -> dict[str, Any]:
    """Write models/current/ again from the history when it does not hold the champion; the folder's state."""
    with writable(settings) as history:
        found = champion.current(history, settings, repair=True)
    if found is None:
        raise PipelineError("There is no champion yet, so there is no stable copy to write.")
    return found["folder"]


def rollback(settings: Settings, *, actor: str) -> dict[str, Any]:
    """Make the previous champion the champion again; returns the event."""
    with writable(settings) as history:
        return champion.rollback(history, settings, actor=actor, now=now())


def parse_date(date: dt.date | str | None) -> dt.date | None:
    return dt.date.fromisoformat(date) if isinstance(date, str) else date
