"""Where flow runs execute: one child process per run.

``Executor`` is the seam the scheduler drives (a fake honouring the same contract lives with the
tests): ``start(run)`` for a claimed run, ``poll()`` -> the runs whose process ended, ``running()``,
``signal(run_id, signum)`` (SIGTERM: the runtime records CANCELLED; SIGKILL: nothing is recorded).

``ProcessExecutor`` forks each run from a multiprocessing *forkserver* that has imported the registered
flows' heavy modules (pyarrow, scikit-learn) once, so a run does not pay those imports again. CPython
3.11 does not give the forkserver this process's ``sys.path`` and skips a preload it cannot import, so it
starts with ``pipeline``'s folder on PYTHONPATH, whatever the cwd. The child opens its own Store and calls
its flow's registered ``execute``; it asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``), so a scheduler
killed with -9 leaves no orphan flows: the forkserver exits when the scheduler's end of its pipe closes,
and its children follow.
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import functools
import logging
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import psutil

from ..config import Settings
from ..errors import ConfigError, HistoryUnreachable
from ..flows import flow_list, load_flows
from ..store import RunRow, Store, from_db
from .clock import SYSTEM_CLOCK
from .registry import Execute, flow_entry, preload_modules
from .states import State

logger = logging.getLogger("pipeline.orchestration.executor")
PR_SET_PDEATHSIG = 1
EXIT_DAMAGED = 86  # a flow process that found its history damaged ends with this code, recording nothing
EXIT_UNREACHABLE = 87  # a flow process that could not reach its history (an outage) ends with this code
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

    def policy_for(self, run: RunRow) -> Callable[[BaseException, dt.datetime], dt.datetime | None] | None:
        """The ``await_policy`` to give the flow's ``execute`` for this run, or None."""
        if run.get("trigger") not in self.triggers:
            return None
        waits_for = flow_entry(run["flow"]).await_errors
        if not waits_for:
            return None
        slot = from_db(run.get("scheduled_time")) or from_db(run["created_at"])
        return functools.partial(self.next_attempt, slot, waits_for)

    def next_attempt(self, slot: dt.datetime, waits_for: tuple[type[BaseException], ...], error: BaseException,
                     now: dt.datetime) -> dt.datetime | None:
        if not isinstance(error, waits_for):
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


class Executor(Protocol):
    """Where the scheduler's runs execute."""

    def start(self, run: RunRow) -> int:
        """Start the claimed (PENDING) run; returns its process id."""

    def running(self) -> dict[str, int]:
        """Run id -> pid of every run started and not yet reported by ``poll``."""

    def poll(self) -> list[Exit]:
        """The runs whose process ended since the last call."""

    def signal(self, run_id: str, signum: int) -> bool:
        """Send ``signum`` to the run's process; False if it is not running."""

    def warm_up(self, wait: bool = False) -> None:
        """Get ready to start runs quickly (may do nothing); ``wait``: until ready (a worker, before it registers)."""

    def close(self) -> None:
        """Kill what still runs and release the executor's resources."""


@dataclass(frozen=True)
class ChildJob:
    """Everything a child process needs, pickled to it."""

    db_path: Path | str  # the history: a SQLite file or a PostgreSQL URL (Settings.history)
    settings: Settings
    run_id: str
    await_data: AwaitData
    heartbeat_every: float
    scheduler_pid: int
    claimer: str | None = None  # who claimed the run: only that claim may start it
    flows: tuple[str, ...] = ()  # the flows the child registers: its parent's (``pipeline/flows.py``)


class ProcessExecutor:
    """Each run in a child forked from a forkserver that preloaded the flow and the model (scikit-learn)."""

    def __init__(self, settings: Settings, *, await_data: AwaitData = AwaitData(), heartbeat_every: float = 5.0,
                 preload: tuple[str, ...] | None = None):
        self.settings = settings
        self.await_data = await_data
        self.heartbeat_every = heartbeat_every
        self.context = multiprocessing.get_context("forkserver")
        self.flows = flow_list()  # registered here, and by each child: a scheduler made without the CLI too
        load_flows(self.flows)
        modules = list(preload_modules() if preload is None else preload)
        modules.append("pipeline.store.dialects")  # a child compiles what the cache lacks: import SQLAlchemy once
        if getattr(settings, "database_url", None):  # each child connects to PostgreSQL: import psycopg once
            modules.append("pipeline.store.postgres")
        self.context.set_forkserver_preload(modules)
        self.processes: dict[str, Any] = {}

    def warm_up(self, wait: bool = False) -> None:
        """Start the forkserver now (if it is not running), so that the first run does not wait for its imports.

        With ``wait``, return once it has imported them: one empty child is forked and joined.
        """
        from multiprocessing import forkserver

        with _package_importable():
            forkserver.ensure_running()
        if wait:
            probe = self.context.Process(target=_nothing, name="forkserver-ready", daemon=True)
            probe.start()
            probe.join()
            probe.close()

    def start(self, run: RunRow) -> int:
        self.warm_up()  # (re)starts a forkserver that can import the preload, whatever the working directory
        job = ChildJob(self.settings.history, self.settings, run["id"], self.await_data, self.heartbeat_every,
                       os.getpid(), run.get("claimed_by"), self.flows)
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


def _nothing() -> None:
    """The child that shows the forkserver is ready."""


def child_main(job: ChildJob) -> None:
    """The child: die with the parent, ignore Ctrl-C (the scheduler decides), run the flow."""
    _let_the_forkserver_go()
    _die_with_parent(job.scheduler_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = Store(job.db_path, migrate=False)
    store.on_damage = _end_damaged
    store.claimer = job.claimer
    try:
        run = store.get_run(job.run_id)
        execute = _loaded(store, job, run)
        if execute is not None:
            execute(store, job.settings, job.run_id, clock=SYSTEM_CLOCK, await_policy=job.await_data.policy_for(run),
                    heartbeat_every=job.heartbeat_every)
    except HistoryUnreachable as error:  # one line, not a traceback: its supervisor judges the run once back
        logger.error("The flow of run %s stops: %s", job.run_id[:8], error)
        sys.exit(EXIT_UNREACHABLE)
    finally:
        store.close()


def _loaded(store: Store, job: ChildJob, run: RunRow) -> Execute | None:
    """The run's flow's ``execute``; None if the flows or it cannot be loaded: then the run ends FAILED, the
    sentence saying why as its error (a missing module or function is the flow's to fix, not a crash)."""
    try:
        load_flows(job.flows or None)
        entry = flow_entry(run["flow"])
        warn_unless_preloaded(entry.preload)
        return entry.load()
    except ConfigError as error:
        logger.error("Run %s cannot start: %s", job.run_id[:8], error)
        now = SYSTEM_CLOCK.now()
        if store.start_run(job.run_id, now=now, pid=os.getpid()) is not None:
            store.transition(job.run_id, State.FAILED, now=now, expect=(State.RUNNING,), message=str(error),
                             error=str(error))
        return None


def _end_damaged(error: Exception) -> None:
    """The history is damaged: end this flow process at once, writing nothing more (its supervisor, seeing
    ``EXIT_DAMAGED``, looks at the file itself and stops with the sentence)."""
    os._exit(EXIT_DAMAGED)


def warn_unless_preloaded(modules: tuple[str, ...]) -> bool:
    """Log a warning if the forkserver did not preload a flow's modules, so this run pays the imports itself."""
    missing = [name for name in modules if name not in sys.modules]
    if not missing:
        return True
    logger.warning("The forkserver did not preload %s, so this flow process (pid %d) imports it itself, about a "
                   "second per run; check that %s is importable.", ", ".join(missing), os.getpid(),
                   PACKAGE_ROOT / "pipeline")
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
