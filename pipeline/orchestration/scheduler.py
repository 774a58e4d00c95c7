"""The headless scheduler: decides when runs happen and keeps their processes honest.

A loop on a ``schedule.Scheduler`` instance whose jobs read the injected clock (``ClockScheduler``).
Every job is guarded: an exception is logged and recorded in the ``schedulers`` row, never raised
out of ``run_pending``. The jobs:

* ``step`` (every tick): reap ended children, honour cancel requests, apply the catch-up policy
  after a downtime and skip slots past their deployment's maximum lateness (both in ``catchup.py``),
  claim and start due runs up to each work queue's concurrency limit, mark what is still waiting
  LATE with the reason;
* ``heartbeat``: stamp the scheduler's row, kill own children whose run heartbeat went stale;
* ``sweep``: runs not started by this scheduler whose process is gone become CRASHED;
* ``materialise``: keep the upcoming runs of every active deployment made.

Stopping (SIGTERM, SIGINT): no new claims; running flows get ``shutdown_grace`` seconds to finish,
then SIGTERM (the runtime records CANCELLED), then SIGKILL after ``cancel_grace``. Waiting runs
stay SCHEDULED/LATE/AWAITING_RETRY: they are handed back to the next scheduler. A second signal
skips the grace.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import schedule

from . import catchup
from ..formatting import duration_text, seconds_words
from ..formatting import utc_text as _when
from ..config import Settings
from .deployments import ensure_default, materialise
from ..errors import ConfigError
from .executor import AwaitData, Exit, ProcessExecutor, ending_message, exclusive, orphan_reason
from .runtime import SYSTEM_CLOCK
from .states import ACTIVE_STATES, State
from ..store import Store, from_db

logger = logging.getLogger("pipeline.orchestration.scheduler")
UNLIMITED = 1_000


@dataclass(frozen=True)
class SchedulerOptions:
    """Intervals and thresholds, in seconds (small values make the process tests fast)."""

    tick: float = 1.0
    heartbeat: float = 5.0
    stale_after: float = 60.0
    late_after: float = 15.0
    materialise_every: float = 30.0
    cancel_grace: float = 10.0
    shutdown_grace: float = 30.0
    retry_every: float = 6 * 3600.0
    give_up_after: float = 10 * 86400.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"The scheduler option {name}={value!r} must be a positive number of seconds.")
        if self.stale_after <= self.heartbeat:
            raise ConfigError(f"stale_after={self.stale_after:g} s must be longer than the heartbeat "
                              f"of {self.heartbeat:g} s, or live processes would look dead.")

    @property
    def run_heartbeat(self) -> float:
        """How often a flow process stamps its run: well inside ``stale_after``."""
        return min(5.0, self.stale_after / 4)

    @property
    def await_data(self) -> AwaitData:
        return AwaitData(self.retry_every, self.give_up_after)


class _ClockJob(schedule.Job):
    """A ``schedule.Job`` that reads the injected clock, never ``datetime.now()``; due at once when added."""

    def __init__(self, interval: float, scheduler: schedule.Scheduler, clock: Any):
        super().__init__(interval, scheduler)  # type: ignore[arg-type]
        self.clock = clock

    @property
    def should_run(self) -> bool:
        return self.clock.now() >= self.next_run

    def _schedule_next_run(self) -> None:
        now = self.clock.now()
        self.next_run = now if self.next_run is None else now + dt.timedelta(seconds=self.interval)


class ClockScheduler(schedule.Scheduler):
    """``schedule.Scheduler`` on an injected clock, so tests move time instead of sleeping."""

    def __init__(self, clock: Any):
        super().__init__()
        self.clock = clock

    def every(self, interval: float = 1) -> _ClockJob:  # type: ignore[override]
        return _ClockJob(interval, self, self.clock)

    @property
    def idle_seconds(self) -> float | None:  # type: ignore[override]
        return (self.next_run - self.clock.now()).total_seconds() if self.jobs else None


class Scheduler:
    """Claims, starts, watches and stops flow runs of one history."""

    def __init__(self, store: Store, settings: Settings, *, options: SchedulerOptions = SchedulerOptions(),
                 clock: Any = SYSTEM_CLOCK, executor: Any = None):
        self.store, self.settings, self.options, self.clock = store, settings, options, clock
        self.executor = executor or ProcessExecutor(settings, await_data=options.await_data,
                                                    heartbeat_every=options.run_heartbeat)
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.jobs = ClockScheduler(clock)
        self.stopping = threading.Event()
        self.hurry = threading.Event()
        self.last_alive: dt.datetime | None = None  # when a scheduler was last known to run (catch-up)
        self.started: dict[str, dt.datetime] = {}  # run id -> when this scheduler started its process
        self.ending: dict[str, tuple[str, dt.datetime]] = {}  # run id -> (why we signalled it, when)
        self.failures = 0
        self.ready = False

    # -- loop ---------------------------------------------------------------------------
    def start(self) -> None:
        """Record this scheduler, note since when none ran, crash orphans, register the jobs."""
        now = self.clock.now()
        previous = self.store.scheduler_started(pid=os.getpid(), hostname=socket.gethostname(), now=now,
                                                stale_after=self.options.stale_after)
        self.last_alive = from_db(previous["heartbeat_at"]) if previous else None
        for seconds, job in ((self.options.heartbeat, self.heartbeat), (self.options.heartbeat, self.sweep),
                             (self.options.materialise_every, self.materialise_all)):
            self.jobs.every(seconds).seconds.do(self._guarded(job))
        self.step_job = self.jobs.every(self.options.tick).seconds.do(self._guarded(self.step))
        self.ready = True
        logger.info("Scheduler %s started on %s.", self.identity, self.store.path)

    def tick(self) -> None:
        """Run the jobs that are due (all of them on the first tick)."""
        if not self.ready:
            self.start()
        self.jobs.run_pending()
        self._guarded(self.wake_for_due_runs)()

    def wake_for_due_runs(self) -> None:
        """Bring the next step forward to the moment the next run falls due, so it starts on time."""
        due = self.store.next_due_time(after=self.clock.now())
        if due is not None and due < self.step_job.next_run:
            self.step_job.next_run = due

    def run_forever(self) -> None:
        """Tick until SIGTERM/SIGINT (or ``request_stop``), then stop cleanly."""
        with _stop_on_signals(self.request_stop):
            if hasattr(self.executor, "warm_up"):
                self.executor.warm_up()
            try:
                while not self.stopping.is_set():
                    self.tick()
                    self.clock.sleep(self._idle())
            finally:
                self.shutdown()

    def _idle(self) -> float:
        idle = self.jobs.idle_seconds
        return max(0.0, min(self.options.tick, idle if idle is not None else self.options.tick))

    def request_stop(self) -> None:
        if self.stopping.is_set():
            self.hurry.set()
        self.stopping.set()

    def _guarded(self, job: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except Exception as error:  # noqa: BLE001 - one failing job must not stop the loop
                self._record_failure(job.__name__, error)
        run.__name__ = job.__name__
        return run

    def _record_failure(self, name: str, error: Exception) -> None:
        self.failures += 1
        logger.exception("The scheduler job %s failed: %s", name, error)
        with contextlib.suppress(Exception):
            self.store.scheduler_error(f"{name}: {type(error).__name__}: {error}", self.clock.now())

    # -- jobs ---------------------------------------------------------------------------
    def step(self) -> None:
        for part in (self.reap, self.cancel, self.catch_up, self.expire, self.dispatch, self.mark_late):
            self._guarded(part)()

    def heartbeat(self) -> None:
        now = self.clock.now()
        self.store.scheduler_heartbeat(now)
        own = self.executor.running()
        for run in self.store.active_runs():
            if run["id"] in own and run["id"] not in self.ending and self._stale(run, now):
                self._signal(run["id"], signal.SIGKILL, "hung", now)

    def sweep(self) -> None:
        """Runs this scheduler did not start whose process is gone become CRASHED."""
        own, now = self.executor.running(), self.clock.now()
        for run in self.store.active_runs():
            reason = None if run["id"] in own else orphan_reason(run, now=now, identity=self.identity,
                                                                 stale_after=self.options.stale_after)
            if reason:
                logger.warning("Run %s (%s) crashed: %s", run["name"], run["id"][:8], reason)
                self.store.transition(run["id"], State.CRASHED, now=now, message=reason, error=reason)

    def materialise_all(self) -> None:
        now = self.clock.now()
        for row in self.store.deployments():
            if row["active"]:
                materialise(self.store, self.settings, row, now)

    # -- step parts ---------------------------------------------------------------------
    def reap(self) -> None:
        for exit_ in self.executor.poll():
            self._settle(exit_, self.clock.now())

    def cancel(self) -> None:
        """SIGTERM the flows whose cancellation was asked; SIGKILL them after the grace."""
        own, now = self.executor.running(), self.clock.now()
        for run in self.store.active_runs():
            if run["cancel_requested"] and run["id"] in own:
                self._escalate(run["id"], "cancel", now)

    def catch_up(self) -> None:
        """After a downtime, apply each deployment's catch-up policy to the slots it missed."""
        now, since = self.clock.now(), self.last_alive
        self.last_alive = now
        catchup.catch_up(self.store, self.settings, self.options, since=since, now=now)

    def expire(self) -> None:
        """Scheduled slots that could not start within their deployment's maximum lateness are skipped."""
        catchup.expire(self.store, self.clock.now())

    def dispatch(self) -> None:
        """Claim due runs, queue by queue, up to each queue's concurrency limit, and start them."""
        if self.stopping.is_set():
            return
        for queue in self.store.work_queues():
            limit = queue["concurrency_limit"]
            free = UNLIMITED if limit is None else limit - queue["running"]
            while not queue["paused"] and free > 0:
                run = self.store.claim_due_run(now=self.clock.now(), work_queue=queue["name"], claimer=self.identity)
                if run is None:
                    break
                self._start(run)
                free -= 1

    def mark_late(self) -> None:
        """Runs still waiting ``late_after`` past their time become LATE, with the reason."""
        now = self.clock.now()
        queues = {q["name"]: q for q in self.store.work_queues()}
        for run in self.store.due_runs(due_by=now - dt.timedelta(seconds=self.options.late_after)):
            if run["state"] != State.LATE:
                self.store.mark_late(run["id"], self._late_reason(queues.get(run["work_queue"])), now)

    def _late_reason(self, queue: dict[str, Any] | None) -> str:
        if self.stopping.is_set():
            return "the scheduler is stopping"
        if queue is None:
            return "it has no work queue this scheduler serves"
        if queue["paused"]:
            return f"its work queue '{queue['name']}' is paused"
        return f"its work queue '{queue['name']}' is full ({queue['running']} of {queue['concurrency_limit']} running)"

    # -- processes ----------------------------------------------------------------------
    def _start(self, run: dict[str, Any]) -> None:
        now = self.clock.now()
        try:
            pid = self.executor.start(run)
        except Exception as error:  # noqa: BLE001 - recorded on the run; the loop goes on
            message = f"The flow process could not be started: {type(error).__name__}: {error}"
            self.store.transition(run["id"], State.CRASHED, now=now, message=message, error=message)
            return
        self.started[run["id"]] = now
        logger.info("Started run %s (%s) in process %d.", run["name"], run["id"][:8], pid)

    def _escalate(self, run_id: str, why: str, now: dt.datetime) -> None:
        """SIGTERM first; SIGKILL once ``cancel_grace`` has passed since."""
        signalled = self.ending.get(run_id)
        if signalled is None:
            self._signal(run_id, signal.SIGTERM, why, now)
        elif (now - signalled[1]).total_seconds() > self.options.cancel_grace and "killed" not in signalled[0]:
            self._signal(run_id, signal.SIGKILL, f"{signalled[0]}, killed", now)

    def _signal(self, run_id: str, signum: int, why: str, now: dt.datetime) -> None:
        self.ending[run_id] = (why, now)
        self.executor.signal(run_id, signum)

    def _settle(self, exit_: Exit, now: dt.datetime) -> None:
        """Record what a child left unrecorded: CANCELLED if we stopped it, else CRASHED."""
        self.started.pop(exit_.run_id, None)
        why = self.ending.pop(exit_.run_id, ("", now))[0]
        run = self.store.get_run(exit_.run_id)
        state = State(run["state"])
        if state is State.AWAITING_RETRY:
            self.store.set_late_reason(run["id"], f"awaiting data: {run['error']} Next attempt at "
                                                  f"{_when(run['next_attempt_at'])}.")
        elif state in ACTIVE_STATES:
            message = ending_message(why, exit_, cancel_grace=self.options.cancel_grace,
                                     stale_after=self.options.stale_after)
            final = State.CRASHED if why in ("", "hung") else State.CANCELLED
            self.store.transition(run["id"], final, now=now, message=message, error=message)
        elif why.startswith("stop"):
            self.store.add_log(run["id"], level="WARNING", ts=now,
                               message="The scheduler stopped while this run was running, so it was cancelled.")
        _log_end(self.store.get_run(run["id"]), now)

    def _stale(self, run: dict[str, Any], now: dt.datetime) -> bool:
        beat = max(filter(None, (from_db(run["heartbeat_at"]), self.started.get(run["id"]))), default=None)
        return beat is not None and (now - beat).total_seconds() > self.options.stale_after

    # -- stopping -----------------------------------------------------------------------
    def shutdown(self) -> None:
        """Let running flows finish within the grace, then cancel them; hand waiting runs back."""
        self.stopping.set()
        if self.executor.running():
            logger.info("Stopping: %d running flow(s) get %s to finish (signal again to stop them now).",
                        len(self.executor.running()), seconds_words(self.options.shutdown_grace))
        self._wait_for_children(self.options.shutdown_grace, use_hurry=True)
        now = self.clock.now()
        for run_id in self.executor.running():
            self._signal(run_id, signal.SIGTERM, "stop", now)
        self._wait_for_children(self.options.cancel_grace)
        for run_id in self.executor.running():
            self._signal(run_id, signal.SIGKILL, "stop, killed", self.clock.now())
        self._wait_for_children(5.0)
        self.store.scheduler_stopped(self.clock.now())
        self.executor.close()

    def _wait_for_children(self, seconds: float, use_hurry: bool = False) -> None:
        deadline = self.clock.now() + dt.timedelta(seconds=seconds)
        while True:
            self.reap()
            if not self.executor.running() or self.clock.now() >= deadline or (use_hurry and self.hurry.is_set()):
                return
            self.cancel()
            self.heartbeat()
            self.clock.sleep(min(self.options.tick, 0.1))


def _log_end(run: dict[str, Any], now: dt.datetime) -> None:
    """'Run NAME (ID) ended STATE after 3.2 s: error', its process having ended at ``now``."""
    started, ended = from_db(run["started_at"]), from_db(run["ended_at"]) or now
    took = f"after {duration_text((ended - started).total_seconds())}" if started else "before its flow started"
    detail = f": {run['error']}" if run["error"] else ""
    level = logging.INFO if run["state"] in ("COMPLETED", "AWAITING_RETRY") else logging.WARNING
    logger.log(level, "Run %s (%s) ended %s %s%s", run["name"], run["id"][:8], run["state"], took, detail)


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(settings: Settings, options: SchedulerOptions, *, clock: Any = SYSTEM_CLOCK) -> None:
    """``python -m pipeline scheduler``: lock the history, ship the default deployment, loop."""
    settings.ensure_dirs()
    store = Store(settings.db_path)
    try:
        with exclusive(settings, store):
            ensure_default(store, clock.now(), settings=settings)
            Scheduler(store, settings, options=options, clock=clock).run_forever()
    finally:
        store.close()
