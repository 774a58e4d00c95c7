"""The headless scheduler: decides when runs happen and keeps their processes honest.

The ``schedule`` library sets the cadence of the housekeeping jobs (a ``schedule.Scheduler``
instance, public API only); every decision inside a job (what is due, late, stale, expired, dead)
is a function of the injected clock's ``now``. ``tick()`` runs every job once, in order: it is what
the fake-clock tests drive, months of schedule in milliseconds. Every job is guarded: an exception
is logged and recorded in the ``schedulers`` row, never raised out of the loop; inside a job each
deployment (or run) has its own guard, and a deployment whose job fails is marked with the error.

* ``heartbeat``: renew this scheduler's lease (stop if another took it or the history file was
  deleted or replaced), kill own children whose run heartbeat went stale;
* ``sweep``: runs not started by this scheduler whose process is gone end CRASHED (or CANCELLED if
  their cancel was asked; a crashed run of a deployment with ``retries`` runs again); runs claimed
  by a scheduler that died before their process began go back to the queue;
* ``materialise``: keep the upcoming runs of every active deployment made;
* ``step``: reap ended children, honour cancel requests, apply the catch-up policy after a
  downtime and skip slots past their maximum lateness (``catchup.py``), claim and start due runs up
  to each work queue's concurrency limit, mark what is still waiting LATE with the reason.

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

from ..config import Settings
from ..errors import ConfigError, HistoryLost, PipelineError
from ..formatting import duration_text, seconds_words
from ..formatting import utc_text as _when
from ..store import DeploymentRow, RunRow, Store, from_db
from . import catchup
from .clock import SYSTEM_CLOCK, Clock
from .deployments import ensure_default, materialise
from .executor import AwaitData, Executor, Exit, ProcessExecutor
from .liveness import ending_message, identity_alive, judge
from .lock import HistoryWatch, exclusive, lease_refused
from .runtime import new_run_name
from .states import ACTIVE_STATES, State

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


class Scheduler:
    """Claims, starts, watches and stops flow runs of one history."""

    def __init__(self, store: Store, settings: Settings, *, options: SchedulerOptions = SchedulerOptions(),
                 clock: Clock = SYSTEM_CLOCK, executor: Executor | None = None, watch: HistoryWatch | None = None):
        self.store, self.settings, self.options, self.clock = store, settings, options, clock
        self.executor: Executor = executor or ProcessExecutor(settings, await_data=options.await_data,
                                                              heartbeat_every=options.run_heartbeat)
        self.watch = watch
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.jobs = schedule.Scheduler()
        self.stopping = threading.Event()
        self.hurry = threading.Event()
        self.last_alive: dt.datetime | None = None  # when the previous scheduler was last known to run
        self.started_at: dt.datetime | None = None
        self.caught_up: dict[int, dt.datetime] = {}  # deployment id -> when its catch-up last succeeded
        self.failing: dict[int, dict[str, str]] = {}  # deployment id -> job -> error, while it fails
        self.started: dict[str, dt.datetime] = {}  # run id -> when this scheduler started its process
        self.ending: dict[str, tuple[str, dt.datetime]] = {}  # run id -> (why we signalled it, when)
        self.failures = 0
        self.fatal: HistoryLost | None = None
        self._last_step: dt.datetime | None = None
        self.ready = False

    # -- loop ---------------------------------------------------------------------------
    def start(self) -> None:
        """Take the history's lease, note since when no scheduler ran, register the jobs' cadence."""
        now = self.clock.now()
        won, previous = self.store.take_scheduler_lease(
            owner=self.identity, pid=os.getpid(), hostname=socket.gethostname(), now=now,
            stale_after=self.options.stale_after, holder_gone=lambda row: self._holder_gone(row, now))
        if not won:
            raise lease_refused(self.store.path, previous or {})
        self.last_alive = from_db(previous["heartbeat_at"]) if previous else None
        self.started_at = now
        for seconds, job in ((self.options.heartbeat, self.heartbeat), (self.options.heartbeat, self.sweep),
                             (self.options.materialise_every, self.materialise_all), (self.options.tick, self.step)):
            self.jobs.every(seconds).seconds.do(self._guarded(job))
        self.ready = True
        logger.info("Scheduler %s started on %s.", self.identity, self.store.path)

    def _holder_gone(self, row: dict[str, Any], now: dt.datetime) -> bool:
        """Whether the scheduler holding the lease is gone: its process (this host) or its heartbeat (elsewhere)."""
        owner = row.get("owner") or ""
        if owner.split(":")[:2] == self.identity.split(":")[:2]:
            return True  # this very process: an earlier Scheduler object of it (one process runs one scheduler)
        alive = identity_alive(owner, since=from_db(row.get("started_at")))
        if alive is not None:
            return not alive
        beat = from_db(row.get("heartbeat_at"))
        return beat is None or (now - beat).total_seconds() > (row.get("stale_after") or self.options.stale_after)

    def tick(self) -> None:
        """Run every job once, in order (the first call takes the lease)."""
        if not self.ready:
            self.start()
        for job in (self.heartbeat, self.sweep, self.materialise_all, self.step):
            self._guarded(job)()

    def run_forever(self) -> None:
        """Run the jobs at their cadence until SIGTERM/SIGINT (or ``request_stop``), then stop cleanly.

        A run falling due between two steps gets a step at its time, so it starts on time.
        Raises HistoryLost (after stopping) if the history was deleted or replaced, or the lease taken.
        """
        with _stop_on_signals(self.request_stop):
            self.executor.warm_up()
            try:
                self.tick()
                while not self.stopping.is_set():
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
        due = self.store.next_due_time(after=self._last_step)
        return due is not None and due <= self.clock.now()

    def _idle(self) -> float:
        idle = self.jobs.idle_seconds
        wait = self.options.tick if idle is None else idle
        due = self.store.next_due_time(after=self.clock.now())
        if due is not None:
            wait = min(wait, (due - self.clock.now()).total_seconds())
        return max(0.0, min(self.options.tick, wait))

    def request_stop(self) -> None:
        if self.stopping.is_set():
            self.hurry.set()
        self.stopping.set()

    def _guarded(self, job: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except HistoryLost as error:
                self._lose_history(error)
            except Exception as error:  # noqa: BLE001 - one failing job must not stop the loop
                self._record_failure(job.__name__, error)
        run.__name__ = job.__name__
        return run

    def _lose_history(self, error: HistoryLost) -> None:
        if self.fatal is None:
            logger.error("%s", error)
        self.fatal = error
        self.stopping.set()
        self.hurry.set()

    def _record_failure(self, name: str, error: Exception) -> None:
        self.failures += 1
        logger.exception("The scheduler job %s failed: %s", name, error)
        with contextlib.suppress(Exception):
            self.store.scheduler_error(f"{name}: {type(error).__name__}: {error}", self.clock.now())

    def _for_deployment(self, row: DeploymentRow, job: str, work: Callable[[], Any]) -> None:
        """Run one deployment's part of a job in its own guard; mark the deployment while it fails."""
        failing = self.failing.setdefault(row["id"], {})
        try:
            work()
        except HistoryLost:
            raise
        except Exception as error:  # noqa: BLE001 - this deployment is marked; the others go on
            message = f"{job}: {_sentence(error)}"
            if failing.get(job) != message:
                logger.warning("The deployment %s is skipped by the scheduler's %s: %s", row["name"], job,
                               _sentence(error))
                self.store.set_deployment_error(row["id"], message, self.clock.now())
            failing[job] = message
            return
        if failing.pop(job, None) is not None or (not failing and row.get("last_error")):
            if not failing:
                self.store.clear_deployment_error(row["id"])
                row["last_error"] = None

    # -- jobs ---------------------------------------------------------------------------
    def step(self) -> None:
        self._last_step = self.clock.now()
        for part in (self.reap, self.cancel, self.catch_up, self.expire, self.dispatch, self.mark_late):
            self._guarded(part)()

    def heartbeat(self) -> None:
        """Renew the lease (or stop: HistoryLost), and kill own children whose run heartbeat went stale."""
        now = self.clock.now()
        if self.watch is not None:
            self.watch.check()
        if not self.store.scheduler_heartbeat(now, owner=self.identity):
            holder = self.store.scheduler_status() or {}
            raise HistoryLost(f"Another scheduler ({holder.get('owner') or 'unknown'}) took over {self.store.path}; "
                              "this one stops so that only one serves the history.")
        own = self.executor.running()
        for run in self.store.active_runs():
            if run["id"] in own and run["id"] not in self.ending and self._stale(run, now):
                self._signal(run["id"], signal.SIGKILL, "hung", now)

    def sweep(self) -> None:
        """Runs this scheduler did not start and whose process is gone: requeue or end them."""
        own, now = self.executor.running(), self.clock.now()
        for run in self.store.active_runs():
            if run["id"] in own:
                continue
            verdict = judge(run, now=now, identity=self.identity, stale_after=self.options.stale_after)
            if verdict is None:
                continue
            if verdict.action == "requeue":
                if self.store.requeue_unstarted(run["id"], reason=verdict.reason, now=now):
                    logger.warning("Run %s (%s) was %s.", run["name"], run["id"][:8], verdict.reason)
            else:
                self._end_dead(run, verdict.reason, now)

    def materialise_all(self) -> None:
        now = self.clock.now()
        for row in self.store.deployments():
            if row["active"]:
                self._for_deployment(row, "materialise", lambda row=row: materialise(self.store, self.settings, row, now))

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
        """After a downtime, apply each deployment's catch-up policy to the slots it missed.

        Each deployment's "served until" moves only after its catch-up succeeded, so a failing
        deployment never turns a ``latest`` or ``none`` policy into ``all``.
        """
        now = self.clock.now()
        for row in self.store.deployments():
            if not row["active"]:
                continue
            since = self.caught_up.get(row["id"], self._served_since(row))
            self._for_deployment(row, "catch-up", lambda row=row, since=since: self._catch_up_one(row, since, now))

    def _served_since(self, row: DeploymentRow) -> dt.datetime | None:
        """A deployment created while this scheduler runs has missed nothing; others since the last scheduler."""
        created = from_db(row.get("created_at"))
        if self.started_at is not None and created is not None and created >= self.started_at:
            return created
        return self.last_alive

    def _catch_up_one(self, row: DeploymentRow, since: dt.datetime | None, now: dt.datetime) -> None:
        catchup.catch_up_deployment(self.store, self.settings, self.options, row, since=since, now=now)
        self.caught_up[row["id"]] = now

    def expire(self) -> None:
        """Scheduled slots that could not start within their deployment's maximum lateness are skipped."""
        now = self.clock.now()
        names = {row["name"]: row for row in self.store.deployments()}
        for run in catchup.expiring(self.store, now):
            row = names.get(run["deployment"]) or {"id": run["deployment_id"], "name": run["deployment"]}
            self._for_deployment(row, "expiry", lambda run=run: catchup.expire_run(self.store, run, now))

    def held(self) -> dict[int, str]:
        """Deployments whose runs wait: their catch-up failed, so nobody knows yet which missed slots may run."""
        return {dep: jobs["catch-up"] for dep, jobs in self.failing.items() if "catch-up" in jobs}

    def dispatch(self) -> None:
        """Claim due runs, queue by queue, up to each queue's concurrency limit, and start them."""
        if self.stopping.is_set():
            return
        held = tuple(self.held())
        for queue in self.store.work_queues():
            limit = queue["concurrency_limit"]
            free = UNLIMITED if limit is None else limit - queue["running"]
            while not queue["paused"] and free > 0 and not self.stopping.is_set():
                run = self.store.claim_due_run(now=self.clock.now(), work_queue=queue["name"], claimer=self.identity,
                                               skip_deployments=held)
                if run is None:
                    break
                self._start(run)
                free -= 1

    def mark_late(self) -> None:
        """Say why each run still waits ``late_after`` past its time.

        LATE means the scheduler could have started it and did not (it is stopping, the run's queue
        does not exist, its deployment's catch-up cannot be applied yet). A run waiting for a free
        slot in its queue, or held by a paused queue or deployment, stays SCHEDULED with that reason.
        """
        now = self.clock.now()
        queues = {q["name"]: q for q in self.store.work_queues()}
        in_line: dict[str, int] = {}
        for run in self.store.due_runs(due_by=now - dt.timedelta(seconds=self.options.late_after)):
            late, reason = self._why_waiting(run, queues.get(run["work_queue"]), in_line)
            if late and run["state"] == State.SCHEDULED:
                self.store.mark_late(run["id"], reason, now)
            elif reason != run["late_reason"] and run["state"] != State.AWAITING_RETRY:
                self.store.set_late_reason(run["id"], reason)

    def _why_waiting(self, run: RunRow, queue: dict[str, Any] | None, in_line: dict[str, int]) -> tuple[bool, str]:
        """(is it late, why it waits) for a due run that was not claimed."""
        held = self.held()
        if self.stopping.is_set():
            return True, "the scheduler is stopping"
        if run["deployment_id"] in held:
            return True, f"its deployment {run['deployment']} waits until its catch-up can be applied " \
                         f"({held[run['deployment_id']]})"
        if not run.get("deployment_active", 1):
            return False, f"held: its deployment {run['deployment']} is paused"
        if queue is None:
            return True, f"its work queue '{run['work_queue']}' does not exist"
        if queue["paused"]:
            return False, f"held: its work queue '{queue['name']}' is paused"
        place = in_line[queue["name"]] = in_line.get(queue["name"], 0) + 1
        return False, (f"waiting for a free slot: {_ordinal(place)} in line in '{queue['name']}' "
                       f"({queue['running']} of {queue['concurrency_limit']} running)")

    # -- processes ----------------------------------------------------------------------
    def _start(self, run: RunRow) -> None:
        now = self.clock.now()
        try:
            pid = self.executor.start(run)
        except Exception as error:  # noqa: BLE001 - recorded on the run; the loop goes on
            message = f"The flow process could not be started: {type(error).__name__}: {error}"
            self.store.transition(run["id"], State.CRASHED, now=now, message=message, error=message,
                                  expect=(State.PENDING,))
            return
        self.started[run["id"]] = now
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
        self.started.pop(exit_.run_id, None)
        why = self.ending.pop(exit_.run_id, ("", now))[0]
        run = self.store.run_for_sweep(exit_.run_id)
        state = State(run["state"])
        if state is State.AWAITING_RETRY:
            self.store.set_late_reason(run["id"], f"awaiting data: {run['error']} Next attempt at "
                                                  f"{_when(run['next_attempt_at'])}.")
        elif state in ACTIVE_STATES:
            message = ending_message(why, exit_.pid, exit_.how, cancel_grace=self.options.cancel_grace,
                                     stale_after=self.options.stale_after)
            if why in ("", "hung"):
                self._end_dead(run, message, now)
            else:
                self.store.transition(run["id"], State.CANCELLED, now=now, message=message, error=message,
                                      expect=ACTIVE_STATES)
        elif why.startswith("stop"):
            self.store.add_log(run["id"], level="WARNING", ts=now,
                               message="The scheduler stopped while this run was running, so it was cancelled.")
        _log_end(self.store.get_run(run["id"]), now)

    def _stale(self, run: RunRow, now: dt.datetime) -> bool:
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
        if self.fatal is None:
            self.store.scheduler_stopped(self.clock.now(), owner=self.identity)
        self.executor.close()

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


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _sentence(error: BaseException) -> str:
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


def serve(settings: Settings, options: SchedulerOptions, *, clock: Clock = SYSTEM_CLOCK) -> None:
    """``python -m pipeline scheduler``: lock the history, ship the default deployment, loop.

    Raises SchedulerLocked if another scheduler serves the history, HistoryLost if the history
    is deleted or replaced while it runs.
    """
    settings.ensure_dirs()
    store = Store(settings.db_path)
    try:
        with exclusive(settings, store):
            ensure_default(store, clock.now(), settings=settings)
            Scheduler(store, settings, options=options, clock=clock, watch=HistoryWatch(settings.db_path)).run_forever()
    finally:
        store.close()
