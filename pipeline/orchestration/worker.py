"""``python -m pipeline worker``: on any host, claim due runs of some queues and run each in its own process.

A worker registers in the history's ``workers`` table and stamps its heartbeat there; every step it
reaps its ended flows, honours cancel requests, and claims due runs of its queues (all queues when
none is named) while it has fewer than ``concurrency`` flows running, with the same one-statement
claim as the scheduler, so a queue's concurrency limit holds across every worker together. While no
scheduler runs it leaves scheduled slots alone (the catch-up policy decides them once one runs),
and it holds the runs of a deployment whose catch-up fails, as the scheduler does. Each run
executes in a child of the worker's forkserver, which stamps the run's heartbeat itself.

Liveness: the scheduler's sweep judges a worker's runs. On the worker's host a process id answers at
once; elsewhere a worker whose heartbeat is older than its ``stale_after`` (kill -9, a host down, a cut
network) is gone: its claimed runs that had not started go back to the queue, and its running runs end
CRASHED once their own heartbeat is that old. A worker cut off from the history for longer than its
stale time kills its flows (the scheduler has ended them by then) and claims nothing until it is back.

Stopping (SIGTERM, SIGINT): no new claims; running flows get ``shutdown_grace`` seconds to finish, then
they are cancelled, as with the scheduler. The worker's row is marked stopped.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Iterable

from ..config import Settings
from ..errors import ConfigError
from ..store import Store
from ..store.interfaces import ServiceHistory
from .clock import SYSTEM_CLOCK, Clock
from .executor import Executor, ProcessExecutor
from .liveness import new_identity
from .lock import HistoryWatch
from .process import ProcessOptions, stop_on_signals
from .services.flows import OwnFlows
from .services.workers import Claim, WorkerHeartbeat
from .supervisor import Supervisor

logger = logging.getLogger("pipeline.orchestration.worker")


@dataclass(frozen=True)
class WorkerOptions(ProcessOptions):
    """A worker's intervals and thresholds, in seconds."""


class Worker(Supervisor):
    """Claims due runs of its queues and runs at most ``concurrency`` flows at once: a list of services."""

    role = "worker"

    def __init__(self, store: ServiceHistory, settings: Settings, *, queues: Iterable[str] = (), concurrency: int = 1,
                 options: WorkerOptions = WorkerOptions(), clock: Clock = SYSTEM_CLOCK,
                 executor: Executor | None = None, watch: HistoryWatch | None = None):
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"The worker concurrency {concurrency!r} must be a whole number of at least 1.")
        super().__init__(store, settings, options=options, clock=clock,
                         executor=executor or ProcessExecutor(settings, await_data=options.await_data,
                                                              heartbeat_every=options.run_heartbeat))
        self.watch = watch  # the SQLite history file deleted or replaced: the worker stops
        self.queues = tuple(dict.fromkeys(queues))
        self.concurrency = concurrency
        self.identity = new_identity(f"w{uuid.uuid4().hex[:6]}")
        self.heartbeat = WorkerHeartbeat(self, options.heartbeat)
        self.step.parts = [OwnFlows(self, "reap", options.tick), OwnFlows(self, "cancel", options.tick),
                           Claim(self, self.heartbeat, options.tick)]
        self.services = [self.heartbeat, self.step]

    # -- loop ---------------------------------------------------------------------------
    def check_queues(self) -> None:
        """ConfigError naming the first queue of this worker that the history does not have."""
        known = {queue["name"] for queue in self.store.work_queues()}
        missing = [name for name in self.queues if name not in known]
        if missing:
            raise ConfigError(f"There is no work queue named {missing[0]!r} in the history; create it with: "
                              f"python -m pipeline work-queue create {missing[0]}.")

    def begin(self) -> None:
        """Check the queues, register this worker."""
        self.check_queues()
        self.store.check_damage()
        now = self.clock.now()
        self.store.register_worker(identity=self.identity, hostname=socket.gethostname(), pid=os.getpid(),
                                   queues=self.queues, concurrency=self.concurrency,
                                   stale_after=self.options.stale_after, now=now)
        self.heartbeat.last_beat = now

    def start(self) -> None:
        super().start()
        queues = ", ".join(self.queues) if self.queues else "every queue"
        logger.info("Worker %s started: %s, up to %d flow(s) at once.", self.identity, queues, self.concurrency)

    def run_forever(self) -> None:
        """Run the services at their cadence until SIGTERM/SIGINT (or ``request_stop``), then stop cleanly."""
        with stop_on_signals(self.request_stop):
            self.check_queues()  # a typo is told at once, before the imports
            self.executor.warm_up(wait=True)  # before registering: a worker busy importing would look silent
            if not self.ready:
                self.start()
            self.loop()

    def _next_due(self, *, after: dt.datetime) -> dt.datetime | None:
        """When the next waiting run falls due; None while the history cannot be read (the loop goes on:
        its guarded heartbeat logs the fault, and kills the flows past the stale time)."""
        try:
            return self.store.next_due_time(after=after)
        except Exception:  # noqa: BLE001 - a history out of reach must not end the worker
            return None

    def record_error(self, message: str, now: dt.datetime) -> None:
        self.store.worker_error(self.identity, message, now)

    def stopped(self, now: dt.datetime) -> None:
        self.store.worker_stopped(self.identity, now)

    def while_unreachable(self, now: dt.datetime) -> None:
        self.heartbeat.while_unreachable(now)

    def serving(self) -> tuple[str, ...]:
        """The queues to claim from: the ones named, else every queue of the history."""
        return self.queues or tuple(queue["name"] for queue in self.store.work_queues())


def serve(settings: Settings, options: WorkerOptions, *, queues: Iterable[str] = (), concurrency: int = 1,
          clock: Clock = SYSTEM_CLOCK) -> None:
    """``python -m pipeline worker``: register, claim and run until stopped."""
    settings.ensure_dirs()
    store = Store(settings.history)
    try:
        Worker(store, settings, queues=queues, concurrency=concurrency, options=options, clock=clock,
               watch=HistoryWatch(settings.history, role="worker")).run_forever()
    finally:
        store.close()
