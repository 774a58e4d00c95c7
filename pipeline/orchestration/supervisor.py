"""What the scheduler and the workers share: the flow processes they start, and their guarded jobs.

A ``Supervisor`` starts claimed runs in its executor, reaps ended processes and records what a
process left unrecorded (CRASHED, or CANCELLED if it was stopped on purpose), honours cancel
requests (SIGTERM, then SIGKILL after ``cancel_grace``), kills its own flows whose run heartbeat went
stale, and on stop gives running flows ``shutdown_grace`` seconds before cancelling them. Every job
runs in a guard: an exception is logged and recorded, never raised out of the loop; a HistoryLost
stops the process.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..config import Settings
from ..errors import ConfigError, HistoryDamaged, HistoryLost, HistoryUnreachable, PipelineError
from ..formatting import duration_text, seconds_words
from ..formatting import utc_text as _when
from ..store import RunRow, from_db
from ..store.interfaces import ServiceHistory
from .clock import Clock
from .executor import EXIT_DAMAGED, EXIT_UNREACHABLE, AwaitData, Executor, Exit
from .liveness import ending_message
from .loss import HistoryLoss, unrecorded
from .outage import Outage
from .runtime import new_run_name
from .states import ACTIVE_STATES, State

logger = logging.getLogger("pipeline.orchestration.scheduler")


SHORTEST = 0.01  # seconds: the shortest interval a scheduler's or worker's loop is given


@dataclass(frozen=True)
class ProcessOptions:
    """Intervals and thresholds of a process that runs flows, in seconds (small values make tests fast)."""

    tick: float = 1.0
    heartbeat: float = 5.0
    stale_after: float = 60.0
    cancel_grace: float = 10.0
    shutdown_grace: float = 30.0
    retry_every: float = 6 * 3600.0
    give_up_after: float = 10 * 86400.0

    def __post_init__(self) -> None:
        kind = type(self).__name__.removesuffix("Options").lower() or "process"
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"The {kind} option {name}={value!r} must be a positive number of seconds.")
            if value < SHORTEST:
                raise ConfigError(f"The {kind} option {name}={value:g} s is shorter than the {SHORTEST:g} s its loop "
                                  "can honour (each pass reads the history; its jobs count whole microseconds).")
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


class Supervisor(HistoryLoss):
    """Starts, watches and stops the flow processes of the runs this process claimed."""

    role = "scheduler"  # how its log lines name it
    identity = ""  # who it claims runs as (host:pid:tag:pid-namespace)
    watch: Any = None  # notices the history file deleted or replaced (``lock.HistoryWatch``)

    def __init__(self, store: ServiceHistory, settings: Settings, *, options: Any, clock: Clock, executor: Executor):
        self.store, self.settings, self.options, self.clock = store, settings, options, clock
        self.executor = executor
        self.stopping = threading.Event()
        self.hurry = threading.Event()
        self.started: dict[str, dt.datetime] = {}  # run id -> when this process started its flow
        self.ending: dict[str, tuple[str, dt.datetime]] = {}  # run id -> (why we signalled it, when)
        self.failures = 0
        self.fatal: HistoryLost | HistoryDamaged | None = None
        self.unsettled: list[Exit] = []  # flow processes that ended while the history could not record it
        self.outage = Outage(self.role)

    # -- the loop ------------------------------------------------------------------------
    def loop(self) -> None:
        """Tick once, then run each job when it falls due and a step as soon as a run falls due
        (so that it starts on time, not at the next tick), until asked to stop; then shut down.
        The subclass gives ``tick``, ``step``, ``jobs`` (a ``schedule.Scheduler``) and ``_last_step``."""
        try:
            self.tick()
            while not self.stopping.is_set():
                if self.outage.active:
                    self._ride_out()
                else:
                    self.jobs.run_pending()
                    if not self.stopping.is_set() and self._run_due():
                        self._guarded(self.step)()
                self.clock.sleep(self._idle())
        finally:
            self.shutdown()
        if self.fatal is not None:
            raise self.fatal

    def _run_due(self) -> bool:
        """Whether a run fell due since the last step."""
        if self._last_step is None:
            return False
        due = self._next_due(after=self._last_step)
        return due is not None and due <= self.clock.now()

    def _idle(self) -> float:
        """Until the next job, or the next run falling due, at most a tick."""
        if self.outage.active:
            return min(self.options.tick, self.outage.wait(self.clock.now()))
        idle = self.jobs.idle_seconds
        wait = self.options.tick if idle is None else idle
        due = self._next_due(after=self.clock.now())
        if due is not None:
            wait = min(wait, (due - self.clock.now()).total_seconds())
        return max(0.0, min(self.options.tick, wait))

    def _next_due(self, *, after: dt.datetime) -> dt.datetime | None:
        try:
            return self.store.next_due_time(after=after)
        except HistoryUnreachable as error:
            self.outage.begin(error, self.clock.now())
            return None

    # -- a database outage ----------------------------------------------------------------
    def _ride_out(self) -> None:
        """While the history is out of reach: no job runs; try to reach it again, with backoff."""
        now = self.clock.now()
        self.while_unreachable(now)
        if not self.outage.due(now):
            return
        try:
            self.reconnect()
        except (HistoryLost, HistoryDamaged) as error:
            self._lose_history(error)
            return
        except Exception:  # noqa: BLE001 - still away (or half back): the next attempt, later
            self.outage.failed(now)
            return
        self.outage.end(now)
        self.back(now)

    def reconnect(self) -> None:
        """Reach the history again (HistoryUnreachable while it is still away)."""
        self.store.ping()

    def while_unreachable(self, now: dt.datetime) -> None:
        """What to do each tick while the history is out of reach (a worker kills flows past its stale time)."""

    def back(self, now: dt.datetime) -> None:
        """The history answers again after an outage that began at ``self.outage.since``."""

    # -- guards -------------------------------------------------------------------------
    def request_stop(self) -> None:
        if self.stopping.is_set():
            self.hurry.set()
        self.stopping.set()

    def _guarded(self, job: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except (HistoryLost, HistoryDamaged) as error:
                self._lose_history(error)
            except HistoryUnreachable as error:
                self.outage.begin(error, self.clock.now())
            except Exception as error:  # noqa: BLE001 - one failing job must not stop the loop
                self._record_failure(job.__name__, error)
        run.__name__ = job.__name__
        return run

    def _record_failure(self, name: str, error: Exception) -> None:
        self.failures += 1
        logger.exception("The %s job %s failed: %s", self.role, name, error)
        with contextlib.suppress(Exception):
            self.record_error(f"{name}: {type(error).__name__}: {error}", self.clock.now())

    def record_error(self, message: str, now: dt.datetime) -> None:
        """Where a failing job is recorded (the scheduler's row, a worker's row)."""
        raise NotImplementedError

    def stopped(self, now: dt.datetime) -> None:
        """Record that this process stopped cleanly."""
        raise NotImplementedError

    # -- own flow processes -------------------------------------------------------------
    def reap(self) -> None:
        if unrecorded(self.fatal):
            return  # its flows end unrecorded (``shutdown``)
        ended, self.unsettled = self.unsettled + self.executor.poll(), []
        for index, exit_ in enumerate(ended):
            try:
                self._settle(exit_, self.clock.now())
            except Exception:
                self.unsettled = ended[index:]  # the history out of reach: settled at a later reap, not forgotten
                raise

    def cancel(self) -> None:
        """SIGTERM the flows whose cancellation was asked; SIGKILL them after the grace."""
        own, now = self.executor.running(), self.clock.now()
        for run in self.store.active_runs():
            if run["cancel_requested"] and run["id"] in own:
                self._escalate(run["id"], "cancel", now)

    def kill_hung(self) -> None:
        """SIGKILL own flows whose run heartbeat went stale (a hung process), and own flows whose run the
        scheduler ended as CRASHED or handed back to the queue meanwhile (this host was cut off for longer
        than the stale time): that run is not theirs any more."""
        own, now = self.executor.running(), self.clock.now()
        if not own:
            return
        active = {run["id"]: run for run in self.store.active_runs()}
        for run_id in own:
            if run_id in self.ending:
                continue
            run = active.get(run_id) or self.store.get_run(run_id)
            if run["state"] == State.CRASHED or run["claimed_by"] != self.identity:
                self._signal(run_id, signal.SIGKILL, "ended elsewhere", now)
            elif run_id in active and self._stale(run, now):
                self._signal(run_id, signal.SIGKILL, "hung", now)

    def _start(self, run: RunRow) -> None:
        now = self.clock.now()
        if run["id"] in self.executor.running():  # claimed again while the flow of an earlier claim of it lives
            self.executor.signal(run["id"], signal.SIGKILL)
        try:
            pid = self.executor.start(run)
        except Exception as error:  # noqa: BLE001 - recorded on the run; the loop goes on
            message = f"The flow process could not be started: {type(error).__name__}: {error}"
            self.store.transition(run["id"], State.CRASHED, now=now, message=message, error=message,
                                  expect=(State.PENDING,))
            return
        self.started[run["id"]] = self.clock.now()  # the start may wait for the forkserver's imports
        logger.info("Started run %s (%s) in process %d.", run["name"], run["id"][:8], pid)

    def _end_dead(self, run: RunRow, message: str, now: dt.datetime) -> None:
        """End a run whose process is gone (CANCELLED if asked, else CRASHED, retried if its deployment says so)."""
        ended, retry = self.store.end_dead_run(run["id"], message=message, now=now,
                                               retries=run.get("deployment_retries") or 0, name=new_run_name())
        if ended is None:
            return
        logger.warning("Run %s (%s) ended %s: %s", run["name"], run["id"][:8], ended["state"], ended["error"])
        if retry:
            logger.info("Run %s (%s) will run again as %s (retry %d).", run["name"], run["id"][:8], retry[:8],
                        ended["retry_number"] + 1)

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
        if exit_.exitcode == EXIT_DAMAGED:
            self._damaged(exit_)
        run = self.store.run_for_sweep(exit_.run_id)
        self.started.pop(exit_.run_id, None)
        why = self.ending.pop(exit_.run_id, ("", now))[0]
        state = State(run["state"])
        if state in ACTIVE_STATES and run["claimed_by"] != self.identity:
            logger.warning("Run %s (%s) was handed back to the queue and claimed by %s before its process here "
                           "started it; this process ended without running it.", run["name"], run["id"][:8],
                           run["claimed_by"])
            return
        if state is State.AWAITING_RETRY:
            self.store.set_late_reason(run["id"], f"awaiting data: {run['error']} Next attempt at "
                                                  f"{_when(run['next_attempt_at'])}.")
        elif state in ACTIVE_STATES:
            if why == "hung" and not run["started_at"]:
                self._requeue(run, "its flow process did not start it within the stale time of "
                                   f"{seconds_words(self.options.stale_after)} (a slow start); back in the queue", now)
                return
            if exit_.exitcode == EXIT_UNREACHABLE and not run["started_at"]:
                self._requeue(run, "its flow process could not reach the history to start it; back in the queue", now)
                return
            message = ending_message(why, exit_.pid, exit_.how, cancel_grace=self.options.cancel_grace,
                                     stale_after=self.options.stale_after, role=self.role)
            if why in ("", "hung"):
                self._end_dead(run, message, now)
            else:
                self.store.transition(run["id"], State.CANCELLED, now=now, message=message, error=message,
                                      expect=ACTIVE_STATES)
        elif why.startswith("stop"):
            self._stopped_by_us(run, now)
        _log_end(self.store.get_run(run["id"]), now)

    def _stopped_by_us(self, run: RunRow, now: dt.datetime) -> None:
        """A flow this process stopped on its way out recorded itself CANCELLED "on request": say who stopped it."""
        self.store.add_log(run["id"], level="WARNING", ts=now,
                           message=f"The {self.role} stopped while this run was running, so it was cancelled.")
        self.store.reword_cancel(run["id"], f"Cancelled because the {self.role} stopped before the run finished.")

    def _requeue(self, run: RunRow, reason: str, now: dt.datetime) -> None:
        """Back to the queue, or CANCELLED if its cancel was asked while it was claimed."""
        why = reason.removesuffix("; back in the queue")
        back = self.store.requeue_unstarted(run["id"], reason=reason, now=now,
                                            cancelled=f"Cancelled on request before it started; it was {why}.")
        if back is not None:
            logger.warning("Run %s (%s): %s", run["name"], run["id"][:8],
                           back["state_message"] if back["state"] == State.CANCELLED else f"{reason}.")

    def _stale(self, run: RunRow, now: dt.datetime) -> bool:
        beat = max(filter(None, (from_db(run["heartbeat_at"]), self.started.get(run["id"]))), default=None)
        return beat is not None and (now - beat).total_seconds() > self.options.stale_after

    # -- stopping -----------------------------------------------------------------------
    def shutdown(self) -> None:
        """Let running flows finish within the grace, then cancel them; hand waiting runs back."""
        self.stopping.set()
        if unrecorded(self.fatal):
            self._drop_flowsunrecorded()
            return
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
        if self.fatal is None:
            self._guarded(self._record_stop)()
        self.executor.close()

    def _record_stop(self) -> None:
        self.stopped(self.clock.now())

    def _wait_for_children(self, seconds: float, use_hurry: bool = False) -> None:
        deadline = self.clock.now() + dt.timedelta(seconds=seconds)
        while True:
            self._guarded(self.reap)()
            if not self.executor.running() or self.clock.now() >= deadline or (use_hurry and self.hurry.is_set()):
                return
            self._guarded(self.cancel)()
            if self.fatal is None:
                self._guarded(self.heartbeat)()
            self.clock.sleep(min(self.options.tick, 0.1))

    def heartbeat(self) -> None:
        raise NotImplementedError


def sentence(error: BaseException) -> str:
    text = str(error)
    return text if isinstance(error, PipelineError) and text else f"{type(error).__name__}: {text}"


def _log_end(run: dict[str, Any], now: dt.datetime) -> None:
    """'Run NAME (ID) ended STATE after 3.2 s: error', its process having ended at ``now``."""
    started, ended = from_db(run["started_at"]), from_db(run["ended_at"]) or now
    took = f"after {duration_text((ended - started).total_seconds())}" if started else "before its flow started"
    detail = f": {run['error']}" if run["error"] else ""
    level = logging.INFO if run["state"] in ("COMPLETED", "AWAITING_RETRY") else logging.WARNING
    logger.log(level, "Run %s (%s) ended %s %s%s", run["name"], run["id"][:8], run["state"], took, detail)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
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
