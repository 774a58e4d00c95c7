"""Where flow runs execute: one child process per run, or in this process for fast tests.

``ProcessExecutor`` forks each run from a multiprocessing *forkserver* that has imported ``pipeline.flow``
(pyarrow) and ``pipeline.model`` (scikit-learn) once, so a run does not pay those imports again. CPython
3.11 does not give the forkserver this process's ``sys.path`` and skips a preload it cannot import, so it
starts with ``pipeline``'s folder on PYTHONPATH, whatever the cwd. The child opens its own Store and calls
``flow.execute``; it asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``), so a scheduler
killed with -9 leaves no orphan flows: the forkserver exits when the scheduler's end of its pipe closes,
and its children follow.

``FakeExecutor`` honours the same contract (tests/test_scheduler.py runs one suite on both):
``start(run)`` for a claimed run, ``poll()`` -> the runs whose process ended, ``running()``,
``signal(run_id, signum)`` (SIGTERM: the runtime records CANCELLED; SIGKILL: nothing is recorded).
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import fcntl
import functools
import itertools
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil

from ..config import Settings
from .deployments import TRAINING_FLOW
from ..errors import ConfigError, DataError, NotPublishedError, SchedulerLocked
from ..training.months import months_for, parse_date
from .runtime import SYSTEM_CLOCK, flow, run_flow, task
from ..formatting import seconds_words, utc_text
from .states import State
from ..store import Store, from_db

logger = logging.getLogger("pipeline.orchestration.executor")
PR_SET_PDEATHSIG = 1
PRELOAD = ("pipeline.training.flow", "pipeline.training.model")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the ``pipeline`` package


@dataclass(frozen=True)
class AwaitData:
    """A month not published yet: try again every ``every`` seconds, give up ``give_up_after`` past the slot.

    Only for runs made by the schedule or a backfill; a manual run fails at once.
    """

    every: float = 6 * 3600.0
    give_up_after: float = 10 * 86400.0
    triggers: tuple[str, ...] = ("schedule", "backfill")

    def __post_init__(self) -> None:
        if self.every <= 0 or self.give_up_after <= 0:
            raise ConfigError(f"The retry interval {self.every!r} s and give-up time {self.give_up_after!r} s "
                              "for unpublished months must both be positive.")

    def policy_for(self, run: dict[str, Any]) -> Callable[[BaseException, dt.datetime], dt.datetime | None] | None:
        """The ``await_policy`` to give ``flow.execute`` for this run, or None."""
        if run.get("trigger") not in self.triggers:
            return None
        slot = from_db(run.get("scheduled_time")) or from_db(run["created_at"])
        return functools.partial(self.next_attempt, slot)

    def next_attempt(self, slot: dt.datetime, error: BaseException, now: dt.datetime) -> dt.datetime | None:
        if not isinstance(error, NotPublishedError):
            return None
        deadline = slot + dt.timedelta(seconds=self.give_up_after)
        if now >= deadline:
            return None
        return min(now + dt.timedelta(seconds=self.every), deadline)


@dataclass(frozen=True)
class Exit:
    """A run's process has ended (``exitcode`` < 0: killed by that signal)."""

    run_id: str
    pid: int | None
    exitcode: int | None

    @property
    def how(self) -> str:
        if self.exitcode is not None and self.exitcode < 0:
            return f"was killed by {signal.Signals(-self.exitcode).name}"
        return f"ended with exit code {self.exitcode}"


@dataclass(frozen=True)
class ChildJob:
    """Everything a child process needs, pickled to it."""

    db_path: Path
    settings: Settings
    run_id: str
    await_data: AwaitData
    heartbeat_every: float
    scheduler_pid: int


class ProcessExecutor:
    """Each run in a child forked from a forkserver that preloaded the flow and the model (scikit-learn)."""

    def __init__(self, settings: Settings, *, await_data: AwaitData = AwaitData(), heartbeat_every: float = 5.0,
                 preload: tuple[str, ...] = PRELOAD):
        self.settings = settings
        self.await_data = await_data
        self.heartbeat_every = heartbeat_every
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(list(preload))
        self.processes: dict[str, Any] = {}

    def warm_up(self) -> None:
        """Start the forkserver now (if it is not running), so that the first run does not wait for its imports."""
        from multiprocessing import forkserver

        with _package_importable():
            forkserver.ensure_running()

    def start(self, run: dict[str, Any]) -> int:
        self.warm_up()  # (re)starts a forkserver that can import the preload, whatever the working directory
        job = ChildJob(self.settings.db_path, self.settings, run["id"], self.await_data, self.heartbeat_every,
                       os.getpid())
        process = self.context.Process(target=child_main, args=(job,), name=f"flow-{run['name']}", daemon=True)
        process.start()
        self.processes[run["id"]] = process
        return process.pid

    def running(self) -> dict[str, int]:
        """Run id -> pid of every child not yet reported by ``poll``."""
        return {run_id: p.pid for run_id, p in self.processes.items()}

    def poll(self) -> list[Exit]:
        ended = [run_id for run_id, p in self.processes.items() if not p.is_alive()]
        return [self._reap(run_id) for run_id in ended]

    def _reap(self, run_id: str) -> Exit:
        process = self.processes.pop(run_id)
        process.join(0)
        exit_ = Exit(run_id, process.pid, process.exitcode)
        process.close()
        return exit_

    def signal(self, run_id: str, signum: int) -> bool:
        process = self.processes.get(run_id)
        if process is None or not process.is_alive():
            return False
        try:
            os.kill(process.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        for run_id in list(self.processes):
            self.signal(run_id, signal.SIGKILL)
            self.processes[run_id].join(5)
        self.poll()


@contextlib.contextmanager
def _package_importable() -> Iterator[None]:
    """PYTHONPATH starts with the folder holding ``pipeline`` while a forkserver may be started."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(PACKAGE_ROOT), before)))
    try:
        yield
    finally:
        os.environ.pop("PYTHONPATH")
        if before is not None:
            os.environ["PYTHONPATH"] = before


def child_main(job: ChildJob) -> None:
    """The child: die with the parent, ignore Ctrl-C (the scheduler decides), run the flow."""
    _let_the_forkserver_go()
    _die_with_parent(job.scheduler_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warn_unless_preloaded()
    from ..training import flow as training

    store = Store(job.db_path, migrate=False)
    try:
        policy = job.await_data.policy_for(store.get_run(job.run_id))
        training.execute(store, job.settings, job.run_id, await_policy=policy, heartbeat_every=job.heartbeat_every)
    finally:
        store.close()


def warn_unless_preloaded() -> bool:
    """Log a warning if the forkserver did not preload the model, so this run pays the import itself."""
    if "pipeline.training.model" in sys.modules:
        return True
    logger.warning("The forkserver did not preload pipeline.training.model (scikit-learn), so this flow process (pid %d) "
                   "imports it itself, about a second per run; check that %s is importable.",
                   os.getpid(), PACKAGE_ROOT / "pipeline")
    return False


def _let_the_forkserver_go() -> None:
    """Close the inherited write end of the pipe that keeps the forkserver alive.

    multiprocessing hands it to every forkserver child (so that it could fork more); while any child
    holds it, the forkserver would outlive a killed scheduler, and so would the flows. Without it,
    the forkserver exits when the scheduler dies, and PR_SET_PDEATHSIG kills this process.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None


def _die_with_parent(scheduler_pid: int) -> None:
    """Linux: SIGKILL this process when its parent (the forkserver) dies; exit if it is gone already."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d): this flow may outlive its scheduler.",
                       ctypes.get_errno())
    if os.getppid() != parent or not psutil.pid_exists(scheduler_pid):
        os._exit(1)


class FakeExecutor:
    """Runs in this process, at once, through the real runtime with a stand-in flow; for fast tests.

    ``behaviour(run)`` says what the "process" does: ``complete``, ``fail`` or ``not_published``
    (the stand-in flow runs to its end in ``start``), ``hang`` (RUNNING until signalled), ``stubborn``
    (like hang, but ignores SIGTERM) or ``crash`` (RUNNING, then exit code 1 with nothing recorded).
    Fake pids do not exist on the machine.
    """

    PIDS = 4_000_000  # above Linux's pid_max, so no real process has them

    def __init__(self, store: Store, *, clock: Any = SYSTEM_CLOCK, await_data: AwaitData = AwaitData(),
                 behaviour: Callable[[dict[str, Any]], str] = lambda run: "complete"):
        self.store, self.clock, self.await_data, self.behaviour = store, clock, await_data, behaviour
        self.processes: dict[str, dict[str, Any]] = {}
        self.started: list[str] = []
        self._pids = itertools.count(self.PIDS)

    def start(self, run: dict[str, Any]) -> int:
        pid, kind = next(self._pids), self.behaviour(run)
        self.processes[run["id"]] = {"pid": pid, "kind": kind, "exitcode": None}
        self.started.append(run["id"])
        if kind in ("hang", "stubborn", "crash"):
            self.store.start_run(run["id"], now=self.clock.now(), pid=pid)
            self.processes[run["id"]]["task"] = self.store.create_task_run(
                run["id"], "read_data", position=0, attempt=1, state=State.RUNNING, now=self.clock.now())
            self.processes[run["id"]]["exitcode"] = 1 if kind == "crash" else None
        else:
            policy = self.await_data.policy_for(self.store.get_run(run["id"]))
            run_flow(self.store, _stand_in(kind), run["id"], dict(run["parameters"]), clock=self.clock,
                     heartbeat_every=3600, await_policy=policy)
            self.processes[run["id"]]["exitcode"] = 0
        return pid

    def running(self) -> dict[str, int]:
        return {run_id: p["pid"] for run_id, p in self.processes.items()}

    def poll(self) -> list[Exit]:
        ended = [run_id for run_id, p in self.processes.items() if p["exitcode"] is not None]
        return [Exit(run_id, self.processes[run_id]["pid"], self.processes.pop(run_id)["exitcode"]) for run_id in ended]

    def signal(self, run_id: str, signum: int) -> bool:
        process = self.processes.get(run_id)
        if process is None or process["exitcode"] is not None:
            return False
        if signum == signal.SIGKILL:
            process["exitcode"] = -signal.SIGKILL
        elif signum == signal.SIGTERM and process["kind"] != "stubborn":
            self.store.finish_task_run(process["task"], State.CANCELLED, now=self.clock.now(), error="Cancelled.")
            self.store.transition(run_id, State.CANCELLED, now=self.clock.now(), message="Cancelled on request.",
                                  error="Cancelled on request.")
            process["exitcode"] = 0
        return True

    def close(self) -> None:
        for run_id in list(self.processes):
            self.signal(run_id, signal.SIGKILL)
        self.poll()


def _stand_in(kind: str) -> Any:
    """A one-task flow that behaves like the training flow would with such data."""
    @task(name="read_data")
    def read_data(train_month: str, val_month: str) -> int:
        if kind == "not_published":
            raise NotPublishedError(train_month)
        if kind == "fail":
            raise DataError(f"fhv_tripdata_{train_month} is not a readable parquet file (a stand-in failure).")
        return 0

    @flow(TRAINING_FLOW, tasks=("read_data",))
    def stand_in(*, date: str, **_: Any) -> dict[str, Any]:
        read_data(*months_for(parse_date(date)))
        return {"run_date": date, "stand_in": True}

    return stand_in


# -- liveness and the one-scheduler lock ---------------------------------------------------

def process_alive(pid: int, started_at: dt.datetime | None) -> bool:
    """True if ``pid`` runs and is not a zombie nor a newer process that reused the number."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        born = dt.datetime.fromtimestamp(process.create_time(), dt.timezone.utc)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return started_at is None or born <= started_at + dt.timedelta(seconds=2)


def orphan_reason(run: dict[str, Any], *, now: dt.datetime, identity: str, stale_after: float) -> str | None:
    """Why a run that this scheduler did not start has no live process, or None if it may still run."""
    if run["state"] == State.PENDING and run["claimed_by"] and run["claimed_by"] != identity:
        return f"It was claimed by the scheduler {run['claimed_by']}, which stopped before starting it."
    if run["pid"] and run["hostname"] == socket.gethostname():
        if process_alive(run["pid"], from_db(run["started_at"])):
            return None
        return (f"Its flow process (pid {run['pid']}) is gone: the scheduler or command that ran it "
                "stopped or was killed before the run ended.")
    last = from_db(run["heartbeat_at"] or run["started_at"] or run["created_at"])
    if (now - last).total_seconds() > stale_after:
        host = f" on {run['hostname']}" if run["hostname"] else ""
        return f"No heartbeat since {utc_text(last)}: its process{host} is presumed gone."
    return None


def ending_message(why: str, exit_: Exit, *, cancel_grace: float, stale_after: float) -> str:
    """What to record for a run whose process ended without a final state; ``why`` we signalled it."""
    process = f"The flow process (pid {exit_.pid}) {exit_.how}"
    if why.startswith("cancel"):
        late = f" after not stopping within {seconds_words(cancel_grace)} of SIGTERM" if "killed" in why else ""
        return f"Cancelled on request{late}. {process}."
    if why.startswith("stop"):
        return f"Cancelled because the scheduler stopped before the run finished. {process}."
    if why == "hung":
        return f"No heartbeat for more than {seconds_words(stale_after)}, so the flow process was killed."
    return f"{process} before recording a final state."


@contextlib.contextmanager
def exclusive(settings: Settings, store: Store) -> Iterator[None]:
    """Hold the history's scheduler lock (flock: the OS releases it even on kill -9)."""
    settings.lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd, store)
        os.close(fd)
        raise SchedulerLocked(f"Another scheduler {holder} already runs on {settings.db_path}; "
                              "stop it first, or use another FHV_HOME.") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield
    finally:
        os.close(fd)


def _holder(fd: int, store: Store) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").split()
    for _ in range(20):  # the holder writes its pid just after taking the lock
        if text:
            break
        time.sleep(0.05)
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
    pid = text[0] if text else "?"
    row = store.scheduler_status() or {}
    beat = f", last heartbeat {row.get('heartbeat_at') or '-'}" if str(row.get("pid")) == pid else ""
    return f"(pid {pid}{' on ' + text[1] if len(text) > 1 else ''}{beat})"
