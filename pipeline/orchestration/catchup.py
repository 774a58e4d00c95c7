"""Catch-up and lateness: what happens to scheduled slots that could not start on time.

Pure functions of a store and ``now``, called by the scheduler's step (``scheduler.py``):

* ``catch_up``: after a downtime (no scheduler for longer than ``stale_after``), apply each active
  deployment's catch-up policy to the slots that passed meanwhile: ``all`` runs them, ``latest``
  only the most recent, ``none`` none; the others are CANCELLED with a sentence saying why;
* ``expire``: a scheduled slot that could not start within its deployment's maximum lateness is
  CANCELLED, whatever the policy (a run that started once and awaits data follows its retry policy).
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from ..config import Settings
from .deployments import materialise
from ..formatting import seconds_words, utc_text as _when
from .states import State
from ..store import Store, from_db

if TYPE_CHECKING:
    from .scheduler import SchedulerOptions

logger = logging.getLogger("pipeline.orchestration.scheduler")


def catch_up(store: Store, settings: Settings, options: "SchedulerOptions", *, since: dt.datetime | None,
             now: dt.datetime) -> int:
    """Apply the catch-up policies if no scheduler ran from ``since`` to ``now``; returns the slots missed.

    ``since`` is when a scheduler was last known to run (None: never). A gap up to
    ``options.stale_after`` is no downtime; slots less than ``options.late_after`` old are not missed.
    """
    if since is not None and (now - since).total_seconds() <= options.stale_after:
        return 0
    until, count = now - dt.timedelta(seconds=options.late_after), 0
    for row in store.deployments():
        if row["active"]:
            materialise(store, settings, row, now)
            missed = store.missed_runs(row["id"], after=since, until=until)
            apply_policy(store, row, missed, since=since, now=now)
            count += len(missed)
    if count:
        logger.warning("%d slot(s) passed while no scheduler ran; applied the catch-up policies.", count)
    return count


def apply_policy(store: Store, row: dict[str, Any], missed: list[dict[str, Any]], *, since: dt.datetime | None,
                 now: dt.datetime) -> None:
    """Cancel the missed runs the deployment's policy drops; mark the ones it keeps LATE, saying why."""
    keep = {"all": missed, "latest": missed[-1:], "none": []}[row["catchup"]]
    kept = {run["id"] for run in keep}
    down = f"from {_when(since)} to {_when(now)}" if since else f"before {_when(now)}"
    for run in missed:
        if run["id"] not in kept:
            message = (f"Skipped by the catch-up policy '{row['catchup']}' of {row['name']}: its slot "
                       f"{_when(run['scheduled_time'])} passed while no scheduler was running ({down}).")
            store.transition(run["id"], State.CANCELLED, now=now, message=message)
        elif run["state"] == State.SCHEDULED:
            store.mark_late(run["id"], f"no scheduler was running when it was due ({down})", now)


def expire(store: Store, now: dt.datetime) -> int:
    """Cancel the scheduled slots due by ``now`` that are past their deployment's maximum lateness."""
    expired = 0
    for run in store.due_runs(due_by=now):
        limit, slot = run["max_lateness"], from_db(run["scheduled_time"])
        if run["trigger"] != "schedule" or not limit or run["attempts"]:
            continue  # a run that started once (awaiting data) follows its retry policy instead
        if (now - slot).total_seconds() > limit:
            message = (f"Skipped: it could not start within the maximum lateness of "
                       f"{seconds_words(limit)} of {run['deployment']} (slot {_when(slot)}).")
            store.transition(run["id"], State.CANCELLED, now=now, message=message)
            expired += 1
    return expired
