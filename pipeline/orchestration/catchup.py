"""Catch-up and lateness: what happens to scheduled slots that could not start on time.

Pure functions of a store, a deployment and ``now``, called by the scheduler's step, one
deployment at a time (each in its own guard, so one broken deployment never starves the rest):

* ``catch_up_deployment``: after a downtime (no scheduler for longer than ``stale_after``), apply
  the deployment's catch-up policy to the slots that passed meanwhile: ``all`` runs them,
  ``latest`` only the most recent, ``none`` none; the others are CANCELLED with a sentence saying
  why. ``catch_up`` does it for every active deployment (the tests use it);
* ``expire``: a scheduled slot that could not start within its deployment's maximum lateness is
  CANCELLED, whatever the policy (a run that started once and awaits data follows its retry policy).

Every change is a conditional UPDATE: a run claimed or cancelled meanwhile is left as it is.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..formatting import seconds_words
from ..formatting import utc_text as _when
from ..store import DeploymentRow, RunRow, Store, from_db
from .deployments import materialise
from .states import State

if TYPE_CHECKING:
    from .scheduler import SchedulerOptions

logger = logging.getLogger("pipeline.orchestration.scheduler")


def catch_up(store: Store, settings: Settings, options: "SchedulerOptions", *, since: dt.datetime | None,
             now: dt.datetime) -> int:
    """Apply every active deployment's policy if no scheduler ran from ``since`` to ``now``; returns the slots missed."""
    return sum(catch_up_deployment(store, settings, options, row, since=since, now=now)
               for row in store.deployments() if row["active"])


def catch_up_deployment(store: Store, settings: Settings, options: "SchedulerOptions", row: DeploymentRow, *,
                        since: dt.datetime | None, now: dt.datetime) -> int:
    """Apply the deployment's catch-up policy if no scheduler served it from ``since`` to ``now``.

    ``since`` is when it was last known to be served (None: never). A gap up to
    ``options.stale_after`` is no downtime; slots less than ``options.late_after`` old are not missed.
    """
    if since is not None and (now - since).total_seconds() <= options.stale_after:
        return 0
    materialise(store, settings, row, now)
    missed = store.missed_runs(row["id"], after=since, until=now - dt.timedelta(seconds=options.late_after))
    apply_policy(store, row, missed, since=since, now=now)
    if missed:
        logger.warning("%d slot(s) of %s passed while no scheduler ran; applied its catch-up policy '%s'.",
                       len(missed), row["name"], row["catchup"])
    return len(missed)


def apply_policy(store: Store, row: DeploymentRow, missed: list[RunRow], *, since: dt.datetime | None,
                 now: dt.datetime, why: str = "while no scheduler was running") -> None:
    """Cancel the missed runs the deployment's policy drops; mark the ones it keeps LATE, saying why."""
    keep = {"all": missed, "latest": missed[-1:], "none": []}[row["catchup"]]
    kept = {run["id"] for run in keep}
    down = f"from {_when(since)} to {_when(now)}" if since else f"before {_when(now)}"
    for run in missed:
        if run["id"] not in kept:
            message = (f"Skipped by the catch-up policy '{row['catchup']}' of {row['name']}: its slot "
                       f"{_when(run['scheduled_time'])} passed {why} ({down}).")
            store.transition(run["id"], State.CANCELLED, now=now, message=message,
                             expect=(State.SCHEDULED, State.LATE))
        elif run["state"] == State.SCHEDULED:
            store.mark_late(run["id"], f"its slot passed {why} ({down})" if "paused" in why else
                            f"no scheduler was running when it was due ({down})", now)


def expiring(store: Store, now: dt.datetime) -> list[RunRow]:
    """Scheduled slots due by ``now`` that are past their deployment's maximum lateness."""
    return [run for run in store.due_runs(due_by=now) if _past_lateness(run, now)]


def _past_lateness(run: dict[str, Any], now: dt.datetime) -> bool:
    limit = run["max_lateness"]
    if run["trigger"] != "schedule" or not limit or run["attempts"]:
        return False  # a run that started once (awaiting data) follows its retry policy instead
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        return False  # a row changed by hand: its deployment is marked with the sentence (deployments.spec_of)
    return (now - from_db(run["scheduled_time"])).total_seconds() > limit


def expire_run(store: Store, run: RunRow, now: dt.datetime) -> bool:
    """Cancel one slot past its maximum lateness; False if it was claimed or cancelled meanwhile."""
    slot = from_db(run["scheduled_time"])
    message = (f"Skipped: it could not start within the maximum lateness of "
               f"{seconds_words(run['max_lateness'])} of {run['deployment']} (slot {_when(slot)}).")
    return store.transition(run["id"], State.CANCELLED, now=now, message=message,
                            expect=(State.SCHEDULED, State.LATE)) is not None


def expire(store: Store, now: dt.datetime) -> int:
    """Cancel the scheduled slots due by ``now`` that are past their deployment's maximum lateness."""
    return sum(expire_run(store, run, now) for run in expiring(store, now))
