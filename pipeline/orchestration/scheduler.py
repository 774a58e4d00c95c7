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
  by a scheduler or worker that died before their process began go back to the queue (a worker on
  another host is judged by its heartbeat, ``liveness.py``);
* ``materialise``: keep the upcoming runs of every active deployment made;
* ``step``: reap ended children, honour cancel requests, make the runs other deployments' completions
  trigger (``triggers.py``), apply the catch-up policy after a
  downtime and skip slots past their maximum lateness (``catchup.py``), claim and start due runs up
  to each work queue's concurrency limit (not with ``--no-execute``: then only workers claim), mark
  what is still waiting LATE with the reason, and start a notifications round (failures, lateness,
  data checks, promotions) in a thread of its own, at most every 5 s (``notify``).

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
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import schedule

from ..config import Settings
from ..errors import HistoryDamaged, HistoryLost, HistoryUnreachable
from ..store import DeploymentRow, RunRow, Store, from_db
from ..store.interfaces import ServiceHistory
from . import catchup, triggers
from .clock import SYSTEM_CLOCK, Clock
from .deployments import ensure_default, materialise, spec_of
from .executor import Executor, ProcessExecutor
from .liveness import identity_alive, judge, new_identity, visible_pid, worker_alive
from .lock import HistoryWatch, LockWatch, exclusive, lease_refused
from .notify import Notifier
from .states import State
from .supervisor import ProcessOptions, Supervisor, sentence, stop_on_signals

logger = logging.getLogger("pipeline.orchestration.scheduler")
UNLIMITED = 1_000


@dataclass(frozen=True)
class SchedulerOptions(ProcessOptions):
    """Intervals and thresholds, in seconds (small values make the process tests fast)."""

    late_after: float = 15.0
    materialise_every: float = 30.0


class Scheduler(Supervisor):
    """Claims, starts, watches and stops flow runs of one history.

    With ``execute=False`` (``scheduler --no-execute``) it makes, times, sweeps and judges runs but never
    claims one: only workers run flows.
    """

    def __init__(self, store: ServiceHistory, settings: Settings, *, options: SchedulerOptions = SchedulerOptions(),
                 clock: Clock = SYSTEM_CLOCK, executor: Executor | None = None,
                 watch: HistoryWatch | LockWatch | None = None, execute: bool = True, holds_lock: bool = False):
        super().__init__(store, settings, options=options, clock=clock,
                         executor=executor or ProcessExecutor(settings, await_data=options.await_data,
                                                              heartbeat_every=options.run_heartbeat))
        self.watch = watch
        self.execute = execute
        self.holds_lock = holds_lock  # it holds the history's session lock (PostgreSQL): any earlier holder is gone
        self.identity = new_identity(uuid.uuid4().hex[:6])
        self.jobs = schedule.Scheduler()
        self.last_alive: dt.datetime | None = None  # when the previous scheduler was last known to run
        self.started_at: dt.datetime | None = None
        self.caught_up: dict[int, dt.datetime] = {}  # deployment id -> when its catch-up last succeeded
        self.failing: dict[int, dict[str, str]] = {}  # deployment id -> job -> error, while it fails
        self._last_step: dt.datetime | None = None
        self.back_at: dt.datetime | None = None  # when the history answered again after an outage
        self.ready = False
        self.notifier = Notifier(store, settings, clock=clock)  # tells of events in a thread of its own

    # -- loop ---------------------------------------------------------------------------
    def start(self) -> None:
        """Take the history's lease, note since when no scheduler ran, register the jobs' cadence."""
        self.store.check_damage()
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
        if self.holds_lock:
            return True
        if visible_pid(owner) == os.getpid():
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
        with stop_on_signals(self.request_stop):
            if self.execute:
                self.executor.warm_up()
            self.loop()

    def _for_deployment(self, row: DeploymentRow, job: str, work: Callable[[], Any]) -> None:
        """Run one deployment's part of a job in its own guard; mark the deployment while it fails."""
        failing = self.failing.setdefault(row["id"], {})
        try:
            work()
        except (HistoryLost, HistoryDamaged, HistoryUnreachable):
            raise
        except Exception as error:  # noqa: BLE001 - this deployment is marked; the others go on
            message = f"{job}: {sentence(error)}"
            if failing.get(job) != message:
                logger.warning("The deployment %s is skipped by the scheduler's %s: %s", row["name"], job,
                               sentence(error))
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
        for part in (self.reap, self.cancel, self.follow, self.catch_up, self.expire, self.dispatch, self.mark_late,
                     self.notifier.poke):
            self._guarded(part)()

    def record_error(self, message: str, now: dt.datetime) -> None:
        self.store.scheduler_error(message, now)

    def stopped(self, now: dt.datetime) -> None:
        self.notifier.finish()  # the messages on the wire are recorded, not sent again by the next scheduler
        self.store.scheduler_stopped(now, owner=self.identity)

    def heartbeat(self) -> None:
        """Renew the lease (or stop: HistoryLost), and kill own children whose run heartbeat went stale."""
        now = self.clock.now()
        if self.watch is not None:
            self.watch.check()
        if not self.store.scheduler_heartbeat(now, owner=self.identity):
            holder = self.store.scheduler_status() or {}
            raise HistoryLost(f"Another scheduler ({holder.get('owner') or 'unknown'}) took over {self.store.path}; "
                              "this one stops so that only one serves the history.")
        self.kill_hung()

    def sweep(self) -> None:
        """Runs this scheduler did not start and whose process is gone: requeue or end them. Right after an
        outage of the history nobody could stamp a heartbeat: each process gets a stale time to beat again."""
        own, now = self.executor.running(), self.clock.now()
        if self.back_at is not None and (now - self.back_at).total_seconds() <= self.options.stale_after:
            return
        runs = [run for run in self.store.active_runs() if run["id"] not in own]
        workers = self.store.claimers(run["claimed_by"] for run in runs)
        for run in runs:
            verdict = judge(run, now=now, identity=self.identity, stale_after=self.options.stale_after,
                            workers=workers)
            if verdict is None:
                continue
            if verdict.action == "requeue":
                self._requeue(run, verdict.reason, now)
            else:
                self._end_dead(run, verdict.reason, now)

    def reconnect(self) -> None:
        """Reach the history again, and take its lock again (PostgreSQL: it went with the session)."""
        super().reconnect()
        if isinstance(self.watch, LockWatch):
            self.watch.reacquire(self.store)

    def back(self, now: dt.datetime) -> None:
        """The history answers again: this scheduler ran all along, so the slots that fell due meanwhile are
        due runs, not a downtime for the catch-up policies (deployments whose catch-up fails stay as they are)."""
        self.back_at = now
        for deployment in self.caught_up:
            if "catch-up" not in self.failing.get(deployment, {}):
                self.caught_up[deployment] = now

    def materialise_all(self) -> None:
        now = self.clock.now()
        for row in self.store.deployments():
            if row["active"]:
                self._for_deployment(row, "materialise", lambda row=row: materialise(self.store, self.settings, row, now))

    # -- step parts ---------------------------------------------------------------------
    def follow(self) -> None:
        """Make the runs that other deployments' completed runs trigger (``triggers.py``), each deployment guarded."""
        now = self.clock.now()
        for row in self.store.deployments():
            if row["active"] and row.get("after_deployment"):
                self._for_deployment(row, "trigger", lambda row=row: triggers.follow(self.store, self.settings, row, now))

    def catch_up(self) -> None:
        """After a downtime, apply each deployment's catch-up policy to the slots it missed.

        Each deployment's "served until" moves only after its catch-up succeeded, so a failing
        deployment never turns a ``latest`` or ``none`` policy into ``all``. An outage of the history
        is no downtime (``back``); a machine that slept is.
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
        spec_of(row)  # a row that cannot be used is marked with its sentence, like any failing deployment
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
        if self.stopping.is_set() or not self.execute:
            return
        held = tuple(self.held())
        for queue in self.store.work_queues():
            limit = queue["concurrency_limit"]
            free = UNLIMITED if limit is None else limit - queue["running"]
            while not queue["paused"] and free > 0 and not self.stopping.is_set():
                run = self.store.claim_due_run(now=self.clock.now(), work_queue=queue["name"], claimer=self.identity,
                                               skip_deployments=held, within_limit=True)
                if run is None:
                    break
                self._start(run)
                free -= 1

    def mark_late(self) -> None:
        """Say why each run still waits ``late_after`` past its time.

        LATE means the scheduler could have started it and did not (it is stopping, the run's queue
        does not exist, its deployment's catch-up cannot be applied yet). A run waiting for a free
        slot in its queue, or held by a paused queue or deployment, stays SCHEDULED with that reason.
        Without local execution, a run whose queue no live worker serves is LATE too.
        """
        now = self.clock.now()
        queues = {q["name"]: q for q in self.store.work_queues()}
        if not self.execute:
            served = self._served_by_workers(now)
            queues = {name: {**q, "unserved": served is not None and name not in served} for name, q in queues.items()}
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
        if queue.get("unserved"):
            return True, f"no live worker serves its work queue '{queue['name']}'"
        place = in_line[queue["name"]] = in_line.get(queue["name"], 0) + 1
        return False, (f"waiting for a free slot: {_ordinal(place)} in line in '{queue['name']}' "
                       f"({queue['running']} of {queue['concurrency_limit']} running)")

    def _served_by_workers(self, now: dt.datetime) -> set[str] | None:
        """The queues that live workers serve (None: every queue, a worker serves them all)."""
        served: set[str] = set()
        for worker in self.store.workers(live_only=True):
            if worker_alive(worker, now=now):
                if not worker["queues"]:
                    return None
                served.update(worker["queues"])
        return served


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def serve(settings: Settings, options: SchedulerOptions, *, clock: Clock = SYSTEM_CLOCK, execute: bool = True) -> None:
    """``python -m pipeline scheduler``: lock the history, ship the default deployment, loop.

    Raises SchedulerLocked if another scheduler serves the history, HistoryLost if the history
    is deleted or replaced while it runs.
    """
    settings.ensure_dirs()
    store = Store(settings.history)
    try:
        with exclusive(settings, store) as lock:
            ensure_default(store, clock.now(), settings=settings)
            watch = HistoryWatch(settings.history) if lock is None else LockWatch(lock, settings.history_label)
            Scheduler(store, settings, options=options, clock=clock, watch=watch, execute=execute,
                      holds_lock=lock is not None).run_forever()
    finally:
        store.close()
