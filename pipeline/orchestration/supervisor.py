"""What the scheduler and the workers share: the flow processes they start, and the loop over their services.

A ``Supervisor`` is a list of services (``services/``), each run at its interval and in a guard, and starts
claimed runs in its executor, reaps ended processes and records what a
process left unrecorded (CRASHED, or CANCELLED if it was stopped on purpose), honours cancel
requests (SIGTERM, then SIGKILL after ``cancel_grace``), kills its own flows whose run heartbeat went
stale, and on stop gives running flows ``shutdown_grace`` seconds before cancelling them. Every service
runs in a guard: an exception is logged and recorded, never raised out of the loop, and the other services
go on; a HistoryLost stops the process.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import threading
from typing import Any, Callable

import schedule

from ..config import Settings
from ..errors import HistoryDamaged, HistoryLost, HistoryUnreachable
from ..formatting import duration_text, seconds_words
from ..formatting import utc_text as _when
from ..store import RunRow, from_db
from ..store.interfaces import ServiceHistory
from .clock import Clock
from .executor import EXIT_DAMAGED, EXIT_UNREACHABLE, Executor, Exit
from .liveness import ending_message
from .loss import HistoryLoss, unrecorded
from .outage import Outage
from .runtime import new_run_name
from .services.base import Service, Step
from .states import ACTIVE_STATES, State

logger = logging.getLogger("pipeline.orchestration.scheduler")


class Supervisor(HistoryLoss):
    """Starts, watches and stops the flow processes of the runs this process claimed."""

    role = "scheduler"  # how its log lines name it
    identity = ""  # who it claims runs as (host:pid:tag:pid-namespace)
    watch: Any = None  # notices the history file deleted or replaced (``lock.HistoryWatch``)
    heartbeat: Service  # the subclass's: stamps its lease or its worker row (also while stopping)

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
        self.jobs = schedule.Scheduler()  # sets the cadence of the services, once started
        self.step = Step(options.tick, (), self.run)  # the services run every tick, and when a run falls due
        self.services: list[Service] = [self.step]  # the subclass's, in the order a tick runs them
        self.ready = False

    # -- the loop ------------------------------------------------------------------------
    def start(self) -> None:
        """Begin (the subclass: take the lease, register the worker), then register the services' cadence."""
        self.begin()
        for service in self.services:
            self.jobs.every(service.interval).seconds.do(self.guarded(service))
        self.ready = True

    def begin(self) -> None:
        """What the process does before its services run (the subclass's)."""
        raise NotImplementedError

    def tick(self) -> None:
        """Run every service once, in order (the first call starts the process)."""
        if not self.ready:
            self.start()
        for service in self.services:
            self.run(service)

    def loop(self) -> None:
        """Tick once, then run each service when it falls due and a step as soon as a run falls due
        (so that it starts on time, not at the next tick), until asked to stop; then shut down."""
        try:
            self.tick()
            while not self.stopping.is_set():
                if self.outage.active:
                    self._ride_out()
                else:
                    self.jobs.run_pending()
                    if not self.stopping.is_set() and self._run_due():
                        self.run(self.step)
                self.clock.sleep(self._idle())
        finally:
            self.shutdown()
        if self.fatal is not None:
            raise self.fatal

    def _run_due(self) -> bool:
        """Whether a run fell due since the last step."""
        if self.step.last is None:
            return False
        due = self._next_due(after=self.step.last)
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

    def run(self, service: Service) -> bool:
        """One round of a service at the clock's ``now``, in the guard; False if the history went out of reach."""
        return self.guard(service.name, service.run_once, self.clock.now())

    def guarded(self, service: Service) -> Callable[[], None]:
        """``run(service)`` for the ``schedule`` library (the job named for the service)."""
        def job() -> None:
            self.run(service)
        job.__name__ = service.name
        return job

    def guard(self, name: str, job: Callable[..., Any], *args: Any) -> bool:
        """Call ``job`` so that its exception is logged and recorded, never raised: the other jobs go on.
        False if the history was lost, damaged or out of reach (then nothing more should run on it now)."""
        try:
            job(*args)
        except (HistoryLost, HistoryDamaged) as error:
            self._lose_history(error)
            return False
        except HistoryUnreachable as error:
            self.outage.begin(error, self.clock.now())
            return False
        except Exception as error:  # noqa: BLE001 - one failing job must not stop the loop
            self._record_failure(name, error)
        return True

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
                self.signal_flow(run_id, signal.SIGKILL, "ended elsewhere", now)
            elif run_id in active and self._stale(run, now):
                self.signal_flow(run_id, signal.SIGKILL, "hung", now)

    def start_flow(self, run: RunRow) -> None:
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

    def end_dead(self, run: RunRow, message: str, now: dt.datetime) -> None:
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
            self.signal_flow(run_id, signal.SIGTERM, why, now)
        elif (now - signalled[1]).total_seconds() > self.options.cancel_grace and "killed" not in signalled[0]:
            self.signal_flow(run_id, signal.SIGKILL, f"{signalled[0]}, killed", now)

    def signal_flow(self, run_id: str, signum: int, why: str, now: dt.datetime) -> None:
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
                self.requeue(run, "its flow process did not start it within the stale time of "
                                   f"{seconds_words(self.options.stale_after)} (a slow start); back in the queue", now)
                return
            if exit_.exitcode == EXIT_UNREACHABLE and not run["started_at"]:
                self.requeue(run, "its flow process could not reach the history to start it; back in the queue", now)
                return
            message = ending_message(why, exit_.pid, exit_.how, cancel_grace=self.options.cancel_grace,
                                     stale_after=self.options.stale_after, role=self.role)
            if why in ("", "hung"):
                self.end_dead(run, message, now)
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

    def requeue(self, run: RunRow, reason: str, now: dt.datetime) -> None:
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
            self.signal_flow(run_id, signal.SIGTERM, "stop", now)
        self._wait_for_children(self.options.cancel_grace)
        for run_id in self.executor.running():
            self.signal_flow(run_id, signal.SIGKILL, "stop, killed", self.clock.now())
        self._wait_for_children(5.0)
        if self.fatal is None:
            self.guard("_record_stop", self.stopped, self.clock.now())
        self.executor.close()

    def _wait_for_children(self, seconds: float, use_hurry: bool = False) -> None:
        deadline = self.clock.now() + dt.timedelta(seconds=seconds)
        while True:
            self.guard("reap", self.reap)
            if not self.executor.running() or self.clock.now() >= deadline or (use_hurry and self.hurry.is_set()):
                return
            self.guard("cancel", self.cancel)
            if self.fatal is None:
                self.run(self.heartbeat)
            self.clock.sleep(min(self.options.tick, 0.1))


def _log_end(run: dict[str, Any], now: dt.datetime) -> None:
    """'Run NAME (ID) ended STATE after 3.2 s: error', its process having ended at ``now``."""
    started, ended = from_db(run["started_at"]), from_db(run["ended_at"]) or now
    took = f"after {duration_text((ended - started).total_seconds())}" if started else "before its flow started"
    detail = f": {run['error']}" if run["error"] else ""
    level = logging.INFO if run["state"] in ("COMPLETED", "AWAITING_RETRY") else logging.WARNING
    logger.log(level, "Run %s (%s) ended %s %s%s", run["name"], run["id"][:8], run["state"], took, detail)
