"""Catch-up and lateness: what happens to scheduled slots that could not start on time.

Pure functions of a store, a deployment and ``now``, called by the scheduler's step, one
deployment at a time (each in its own guard, so one broken deployment never starves the rest):

* ``catch_up_deployment``: after a downtime (no scheduler for longer than ``stale_after``), apply
  the deployment's catch-up policy to the slots that passed meanwhile: ``all`` runs them,
  ``latest`` only the most recent, ``none`` none; the others are CANCELLED with a sentence saying
  why. ``catch_up`` does it for every active deployment (the tests use it);
* ``expire``: a scheduled slot that could not start within its deployment's maximum lateness is
  CANCELLED, whatever the policy (a run that started once and awaits data follows its retry policy);
* ``fail_unmakeable``: a deployment whose runs cannot be made (their fields cannot be computed: its data
  folder is gone, a parameter is bad) loses no slot and holds none: after a downtime its policy judges the
  missed slots as usual, and each slot it would have run -- and each slot that falls due while a scheduler
  serves -- is a run FAILED with one sentence naming the deployment, the slot and the bad value. A fault of
  the history is no bad input: it is raised, and the catch-up is tried again.

Every change is a conditional UPDATE: a run claimed or cancelled meanwhile is left as it is.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import HistoryLost, StorageError
from ..formatting import seconds_words
from ..formatting import utc_text as _when
from ..store import DeploymentRow, RunRow, Store, from_db
from .deployments import (bare_slot_run, clause, make_runs, materialise, run_columns, run_parameters, slot_start,
                          spec_of)
from .services.guard import sentence
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
    downtime = since is None or (now - since).total_seconds() > options.stale_after
    problem = unmakeable(settings, row, now)
    if problem is not None:  # without a downtime no slot is the policy's to judge
        return fail_unmakeable(store, row, problem, since=since if downtime else now, now=now,
                               late_after=options.late_after)
    if not downtime:
        return 0
    materialise(store, settings, row, now)
    missed = store.missed_runs(row["id"], after=since, until=now - dt.timedelta(seconds=options.late_after))
    apply_policy(store, row, missed, since=since, now=now)
    if missed:
        logger.warning("%d slot(s) of %s passed while no scheduler ran; applied its catch-up policy '%s'.",
                       len(missed), row["name"], row["catchup"])
    return len(missed)


def unmakeable(settings: Settings, row: DeploymentRow, now: dt.datetime) -> str | None:
    """Why the runs of the deployment cannot be made (their fields cannot be computed), or None; a fault of the
    history is raised, never taken for a bad input."""
    try:
        run_columns(row["flow"], run_parameters(row, now.date()), settings)
    except (StorageError, HistoryLost):
        raise
    except Exception as error:  # noqa: BLE001 - the flow's own code computes the fields: any error is the input's
        return sentence(error)
    return None


def fail_unmakeable(store: Store, row: DeploymentRow, problem: str, *, since: dt.datetime | None,
                    now: dt.datetime, late_after: float) -> int:
    """Make the due slots of a deployment whose runs cannot be made, in one transaction: its policy judges those
    missed in (``since``, ``now`` - ``late_after``] (the ones it keeps FAIL with ``problem``), and every other slot
    made now FAILS (it fell due while a scheduler served). Each slot is one run (the history's unique slot key),
    and each change a conditional UPDATE, so a second round or a second scheduler changes nothing."""
    schedule = spec_of(row).schedule
    if schedule is None:
        return 0
    with store.atomic():
        start = slot_start(store, row, schedule.fingerprint(), now)
        make_runs(store, row, schedule, now, lambda slot, mark: _bare_run(row, slot, mark), ahead=False)
        missed = store.missed_runs(row["id"], after=since, until=now - dt.timedelta(seconds=late_after))
        apply_policy(store, row, missed, since=since, now=now, problem=problem)
        served = store.missed_runs(row["id"], after=start, until=now)
        failed = sum(fail_run(store, row, run, problem, now) for run in served)
    if missed or failed:
        logger.warning("%d slot(s) of %s could not run: %s", len(missed) + failed, row["name"], problem)
    return len(missed)


def _bare_run(row: DeploymentRow, slot: dt.datetime, fingerprint: str) -> dict[str, Any]:
    run = bare_slot_run(row, slot, fingerprint)
    return run | {"run_date": run["parameters"].get("date")}


def fail_run(store: Store, row: DeploymentRow, run: RunRow, problem: str, now: dt.datetime) -> bool:
    """FAIL one waiting slot whose run cannot be made, with the sentence (skip it if it is past the maximum
    lateness, as any slot); False if it moved on meanwhile."""
    run = {**run, "deployment": row["name"], "max_lateness": row.get("max_lateness")}
    if _past_lateness(run, now):
        return expire_run(store, run, now)
    message = (f"The run of {row['name']} for its slot {_when(run['scheduled_time'])} could not be made: "
               f"{clause(problem, row['name'])}")
    return store.transition(run["id"], State.FAILED, now=now, message=message, error=message,
                            expect=(State.SCHEDULED, State.LATE)) is not None


def apply_policy(store: Store, row: DeploymentRow, missed: list[RunRow], *, since: dt.datetime | None,
                 now: dt.datetime, why: str = "while no scheduler was running", problem: str | None = None) -> None:
    """Cancel the missed runs the deployment's policy drops; mark the ones it keeps LATE, saying why (or FAIL
    them with ``problem``: their runs cannot be made)."""
    keep = {"all": missed, "latest": missed[-1:], "none": []}[row["catchup"]]
    kept = {run["id"] for run in keep}
    down = f"from {_when(since)} to {_when(now)}" if since else f"before {_when(now)}"
    for run in missed:
        if run["id"] not in kept:
            message = (f"Skipped by the catch-up policy '{row['catchup']}' of {row['name']}: its slot "
                       f"{_when(run['scheduled_time'])} passed {why} ({down}).")
            store.transition(run["id"], State.CANCELLED, now=now, message=message,
                             expect=(State.SCHEDULED, State.LATE))
        elif problem is not None:
            fail_run(store, row, run, problem, now)
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
