"""A worker's own services: its heartbeat in the ``workers`` table, and its claims.

A worker cut off from the history for longer than its stale time kills its flows (the scheduler's sweep has
ended them by then) and claims nothing until it is back. While no scheduler runs, scheduled slots wait: after
its downtime the scheduler's catch-up policy decides which of them run; manual runs, backfills and retries are
claimed regardless.
"""
from __future__ import annotations

import datetime as dt
import logging
import signal
from typing import TYPE_CHECKING

from ...errors import HistoryLost
from ..liveness import scheduler_alive
from .dispatch import claim_and_start

if TYPE_CHECKING:
    from ..worker import Worker

logger = logging.getLogger("pipeline.orchestration.worker")


class WorkerHeartbeat:
    """Stamp the worker's heartbeat; kill own flows that hung or were ended while this host was cut off."""

    name = "heartbeat"

    def __init__(self, worker: "Worker", interval: float):
        self.worker, self.interval = worker, interval
        self.last_beat: dt.datetime | None = None  # the last heartbeat the history took
        self.unreachable = False

    def run_once(self, now: dt.datetime) -> None:
        worker = self.worker
        if worker.watch is not None:
            worker.watch.check()
        try:
            alive = worker.store.worker_heartbeat(worker.identity, now)
        except Exception:
            self.while_unreachable(now)
            raise
        if not alive:
            raise HistoryLost(f"The worker {worker.identity} is marked stopped in the history; it stops.")
        self.last_beat, self.unreachable = now, False
        worker.kill_hung()

    def cut_off(self, now: dt.datetime) -> bool:
        """Whether the last heartbeat is older than the stale time (claims would race the sweep)."""
        return self.last_beat is not None and (now - self.last_beat).total_seconds() > self.worker.options.stale_after

    def while_unreachable(self, now: dt.datetime) -> None:
        """The history cannot be reached: past the stale time, this worker's flows are presumed CRASHED."""
        self.unreachable = True
        silent = (now - self.last_beat).total_seconds() if self.last_beat else 0.0
        if silent <= self.worker.options.stale_after:
            return
        for run_id in self.worker.executor.running():
            if run_id not in self.worker.ending:
                logger.warning("Killing the flow of run %s: the history has been out of reach for %.0f s, "
                               "longer than the stale time, so the run is ended as CRASHED.", run_id[:8], silent)
                self.worker.signal_flow(run_id, signal.SIGKILL, "cut off", now)


class Claim:
    """Claim due runs of the worker's queues while fewer than ``concurrency`` flows run, and start them;
    returns how many it started."""

    name = "claim"

    def __init__(self, worker: "Worker", beat: WorkerHeartbeat, interval: float):
        self.worker, self.beat, self.interval = worker, beat, interval

    def run_once(self, now: dt.datetime) -> int:
        worker = self.worker
        if worker.stopping.is_set() or self.beat.cut_off(now):
            return 0
        free = worker.concurrency - len(worker.executor.running())
        if free <= 0:
            return 0
        slots = scheduler_alive(worker.store.scheduler_status(), now=now)
        started = 0
        for queue in worker.serving():
            started += claim_and_start(worker, queue, free - started, slots=slots)
        return started
