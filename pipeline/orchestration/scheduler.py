"""The headless scheduler: decides when runs happen and keeps their processes honest.

The scheduler is its lease on the history (``services/lease.py``) and a list of small services
(``services/``), each with an interval and ``run_once(now)``. The ``schedule`` library sets their cadence
(a ``schedule.Scheduler`` instance, public API only); every decision inside a service (what is due, late,
stale, expired, dead) is a function of the injected clock's ``now``. ``tick()`` runs every service once, in
order: it is what the fake-clock tests drive, months of schedule in milliseconds. Every service is guarded:
an exception is logged and recorded in the ``schedulers`` row, never raised out of the loop, and the others
go on; inside a service each deployment (or run) has its own guard, and a deployment whose part fails is
marked with the error (``services/guard.py``).

* ``heartbeat`` (``lease.py``): renew the lease (stop if another took it or the history file was deleted or
  replaced), kill own children whose run heartbeat went stale;
* ``sweep`` (``sweep.py``): runs not started by this scheduler whose process is gone end CRASHED (or
  CANCELLED, or run again), runs claimed by a process that died before they began go back to the queue;
* ``materialise_all`` (``slots.py``): keep the upcoming runs of every active deployment made;
* ``step``, every tick and as soon as a run falls due: ``reap`` ended children and ``cancel`` the runs asked
  to (``flows.py``), ``follow`` the completions that trigger runs, ``catch_up`` after a downtime and
  ``expire`` slots past their maximum lateness (``slots.py``), ``dispatch`` due runs up to each work queue's
  concurrency limit (``dispatch.py``; not with ``--no-execute``: then only workers claim), ``mark_late``
  what still waits, with the reason (``waiting.py``), and ``notify`` (failures, lateness, data checks,
  promotions) in a thread of its own, at most every 5 s.

Starting, reaping, cancelling and stopping its own flow processes is shared with the workers
(``supervisor.py``).

Stopping (SIGTERM, SIGINT): no new claims; running flows get ``shutdown_grace`` seconds to finish,
then SIGTERM (the runtime records CANCELLED), then SIGKILL after ``cancel_grace``. Waiting runs
stay SCHEDULED/LATE/AWAITING_RETRY: they are handed back to the next scheduler. A second signal
skips the grace.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from ..config import Settings
from ..store import Store
from ..store.interfaces import ServiceHistory
from .clock import SYSTEM_CLOCK, Clock
from .deployments import ensure_defaults
from .executor import Executor, ProcessExecutor
from .liveness import new_identity
from .lock import HistoryWatch, LockWatch, exclusive
from .notify import Notifier
from .process import ProcessOptions, stop_on_signals
from .services.base import Service
from .services.dispatch import Dispatch
from .services.flows import Notify, OwnFlows
from .services.guard import FailingDeployments
from .services.lease import Heartbeat, Lease
from .services.slots import CatchUp, Expire, Follow, Materialise
from .services.sweep import Sweep
from .services.waiting import MarkLate
from .supervisor import Supervisor

logger = logging.getLogger("pipeline.orchestration.scheduler")


@dataclass(frozen=True)
class SchedulerOptions(ProcessOptions):
    """Intervals and thresholds, in seconds (small values make the process tests fast)."""

    late_after: float = 15.0
    materialise_every: float = 30.0


class Scheduler(Supervisor):
    """Claims, starts, watches and stops flow runs of one history: its lease and its services.

    With ``execute=False`` (``scheduler --no-execute``) it makes, times, sweeps and judges runs but never
    claims one (it has no ``dispatch``): only workers run flows.
    """

    def __init__(self, store: ServiceHistory, settings: Settings, *, options: SchedulerOptions = SchedulerOptions(),
                 clock: Clock = SYSTEM_CLOCK, executor: Executor | None = None,
                 watch: HistoryWatch | LockWatch | None = None, execute: bool = True, holds_lock: bool = False):
        super().__init__(store, settings, options=options, clock=clock,
                         executor=executor or ProcessExecutor(settings, await_data=options.await_data,
                                                              heartbeat_every=options.run_heartbeat))
        self.watch = watch
        self.execute = execute
        self.identity = new_identity(uuid.uuid4().hex[:6])
        self.lease = Lease(store, self.identity, stale_after=options.stale_after, watch=watch, holds_lock=holds_lock)
        self.failing = FailingDeployments(store)
        self.notifier = Notifier(store, settings, clock=clock)  # tells of events in a thread of its own
        self.heartbeat = Heartbeat(self.lease, self, options.heartbeat)
        self.sweep = Sweep(self, options.heartbeat)
        self.catch_up = CatchUp(store, settings, options, self.failing, self.lease)
        self.step.parts = self._step_parts()
        self.services = [self.heartbeat, self.sweep, Materialise(store, settings, self.failing,
                                                                 options.materialise_every), self.step]

    def _step_parts(self) -> list[Service]:
        """What runs every tick, in this order (no ``dispatch`` without local execution)."""
        tick, store, failing = self.options.tick, self.store, self.failing
        dispatch = [Dispatch(self, failing, tick)] if self.execute else []
        return [OwnFlows(self, "reap", tick), OwnFlows(self, "cancel", tick), Follow(store, self.settings, failing, tick), self.catch_up,
                Expire(store, failing, tick), *dispatch,
                MarkLate(self, failing, late_after=self.options.late_after, execute=self.execute, interval=tick),
                Notify(self.notifier, tick)]

    def begin(self) -> None:
        """Take the history's lease (noting since when no scheduler ran)."""
        self.store.check_damage()
        self.lease.take(self.clock.now())

    def start(self) -> None:
        super().start()
        logger.info("Scheduler %s started on %s.", self.identity, self.store.path)

    def run_forever(self) -> None:
        """Run the services at their cadence until SIGTERM/SIGINT (or ``request_stop``), then stop cleanly.

        A run falling due between two steps gets a step at its time, so it starts on time.
        Raises HistoryLost (after stopping) if the history was deleted or replaced, or the lease taken.
        """
        with stop_on_signals(self.request_stop):
            if self.execute:
                self.executor.warm_up()
            self.loop()

    def record_error(self, message: str, now: dt.datetime) -> None:
        self.store.scheduler_error(message, now)

    def stopped(self, now: dt.datetime) -> None:
        self.notifier.finish()  # the messages on the wire are recorded, not sent again by the next scheduler
        self.lease.release(now)

    def reconnect(self) -> None:
        """Reach the history again, and take its lock again (PostgreSQL: it went with the session)."""
        super().reconnect()
        self.lease.reacquire()

    def back(self, now: dt.datetime) -> None:
        """The history answers again: this scheduler ran all along, so the slots that fell due meanwhile are
        due runs, not a downtime for the catch-up policies; the sweep gives each process a stale time to beat."""
        self.sweep.after_outage(now)
        self.catch_up.back(now)


def serve(settings: Settings, options: SchedulerOptions, *, clock: Clock = SYSTEM_CLOCK, execute: bool = True) -> None:
    """``python -m pipeline scheduler``: lock the history, ship the flows' default deployments, loop.

    Raises SchedulerLocked if another scheduler serves the history, HistoryLost if the history
    is deleted or replaced while it runs.
    """
    settings.ensure_dirs()
    store = Store(settings.history)
    try:
        with exclusive(settings, store) as lock:
            ensure_defaults(store, clock.now(), settings=settings)
            watch = HistoryWatch(settings.history) if lock is None else LockWatch(lock, settings.history_label)
            Scheduler(store, settings, options=options, clock=clock, watch=watch, execute=execute,
                      holds_lock=lock is not None).run_forever()
    finally:
        store.close()
