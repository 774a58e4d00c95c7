"""The sweep: runs whose process is gone end, or go back to the queue (``liveness.judge`` decides which).

Runs this scheduler did not start and whose process is gone end CRASHED (or CANCELLED if their cancel was
asked; a crashed run of a deployment with ``retries`` runs again); runs claimed by a scheduler or worker that
died before their process began go back to the queue (a worker on another host is judged by its heartbeat).
Right after an outage of the history nobody could stamp a heartbeat: each process gets a stale time to beat
again (``after_outage``).
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ..liveness import judge

if TYPE_CHECKING:
    from ..supervisor import Supervisor


class Sweep:
    """End or requeue the runs of processes that are gone; returns how many it judged."""

    name = "sweep"

    def __init__(self, flows: "Supervisor", interval: float):
        self.flows, self.interval = flows, interval
        self.back_at: dt.datetime | None = None  # when the history answered again after an outage

    def after_outage(self, now: dt.datetime) -> None:
        self.back_at = now

    def run_once(self, now: dt.datetime) -> int:
        flows, stale_after = self.flows, self.flows.options.stale_after
        if self.back_at is not None and (now - self.back_at).total_seconds() <= stale_after:
            return 0
        own = flows.executor.running()
        runs = [run for run in flows.store.active_runs() if run["id"] not in own]
        workers = flows.store.claimers(run["claimed_by"] for run in runs)
        judged = 0
        for run in runs:
            verdict = judge(run, now=now, identity=flows.identity, stale_after=stale_after, workers=workers)
            if verdict is None:
                continue
            judged += 1
            if verdict.action == "requeue":
                flows.requeue(run, verdict.reason, now)
            else:
                flows.end_dead(run, verdict.reason, now)
        return judged
