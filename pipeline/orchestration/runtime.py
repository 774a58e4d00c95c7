"""A small flow/task runtime in the spirit of Prefect's ``@flow`` and ``@task``.

Every task attempt is its own task-run record with state, times and error; log lines of the
``pipeline`` loggers go into the history while a flow runs. Unexpected errors are caught at
exactly one boundary (``run_flow``), logged with their traceback and recorded as FAILED.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..errors import Cancelled, ConfigError, PipelineError, TaskTimeout
from ..store.interfaces import Recorder
from .clock import SYSTEM_CLOCK, Clock, SystemClock  # noqa: F401  (re-exported)
from .states import State
from .heartbeat import heartbeats
from .runlog import HistoryHandler, capture_logs
from .watchdog import Expired, Timer, Watchdog

logger = logging.getLogger("pipeline.orchestration.runtime")
UTC = dt.timezone.utc


@dataclass(frozen=True)
class Retry:
    """How often and after what delay a task is tried again, and on which errors."""

    retries: int = 0
    delay: float = 0.0
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries={self.retries!r} must be a whole number of at least 0.")
        if self.delay < 0:
            raise ConfigError(f"retry delay={self.delay!r} must not be negative.")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        return attempt <= self.retries and isinstance(error, self.on)


@dataclass(frozen=True)
class Task:
    fn: Callable[..., Any]
    name: str
    retry: Retry = Retry()
    timeout: float | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        context = _context.get(None)
        if context is None:
            return self.fn(*args, **kwargs)
        return context.run_task(self, args, kwargs)


def task(fn: Callable | None = None, *, name: str | None = None, retries: int = 0,
         retry_delay: float = 0.0, retry_on: tuple[type[BaseException], ...] = (Exception,),
         timeout: float | None = None) -> Any:
    """Declare a task; inside a running flow each call is recorded as task runs."""
    def wrap(f: Callable) -> Task:
        return Task(f, name or f.__name__, Retry(retries, retry_delay, retry_on), timeout)
    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True)
class Flow:
    fn: Callable[..., Any]
    name: str
    tasks: tuple[str, ...] = ()  # the tasks it runs, in order, so that tasks never run show as NOT_RUN

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def flow(name: str, *, tasks: tuple[str, ...] = ()) -> Callable[[Callable], Flow]:
    return lambda fn: Flow(fn, name, tuple(tasks))


@dataclass
class FlowResult:
    run_id: str
    state: State
    result: Any = None
    error: str | None = None
    error_task: str | None = None
    exception: BaseException | None = None
    next_attempt_at: dt.datetime | None = None


@dataclass
class RunContext:
    """What a running flow knows: where to record, which run, which clock."""

    store: Recorder
    run_id: str
    flow: Flow
    clock: Clock = SYSTEM_CLOCK
    task_run_id: int | None = None
    attempt_base: int = 0  # task attempts recorded by earlier executions of this run (a run awaiting data)
    started: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    last_task_run_id: int | None = None
    watchdog: Watchdog | None = None  # in the main thread: the tasks' timers and the cancel's grace
    open_task_runs: list[int] = field(default_factory=list)  # task runs started and not yet recorded as ended
    timed_out: TaskTimeout | None = None  # a task's timeout, even if the flow's code caught it

    def position(self, task_name: str) -> int:
        if task_name in self.flow.tasks:
            return self.flow.tasks.index(task_name)
        return len(self.flow.tasks) + self.started.index(task_name)

    def run_task(self, made: Task, args: tuple, kwargs: dict) -> Any:
        """Run one call of a task; a task called again in the same run is recorded as ``name-2``, ``name-3``."""
        calls = self.calls[made.name] = self.calls.get(made.name, 0) + 1
        if calls > 1:
            made = dataclasses.replace(made, name=f"{made.name}-{calls}")
        if made.name not in self.started:
            self.started.append(made.name)
        attempt = 1
        while True:
            try:
                return self._attempt(made, attempt, args, kwargs)
            except Exception as error:  # noqa: BLE001 - decided by the retry policy
                if not made.retry.should_retry(error, attempt):
                    setattr(error, "task_name", made.name)
                    self._log_in_task(error)
                    raise
                logger.warning("%s failed (attempt %d of %d): %s; retrying in %g s.", made.name,
                               attempt, made.retry.retries + 1, error, made.retry.delay)
                self.clock.sleep(made.retry.delay)
                attempt += 1

    def _attempt(self, made: Task, attempt: int, args: tuple, kwargs: dict) -> Any:
        try:
            return self._record_attempt(made, attempt, args, kwargs)
        except TaskTimeout as error:  # not an Exception: never retried; the run fails even if the flow catches it
            if not getattr(error, "task_name", None):
                setattr(error, "task_name", made.name)
            self.timed_out = self.timed_out or error
            self._log_in_task(error)
            raise

    def _log_in_task(self, error: BaseException) -> None:
        """Log a task's final error under that task's run, so the logs show where it happened."""
        self.task_run_id = self.last_task_run_id
        try:
            if isinstance(error, PipelineError):
                logger.error("%s", error)
            else:
                logger.error("%s", _describe(error), exc_info=(type(error), error, error.__traceback__))
        finally:
            self.task_run_id = None
        setattr(error, "logged", True)

    def _record_attempt(self, made: Task, attempt: int, args: tuple, kwargs: dict) -> Any:
        task_run_id = self.store.create_task_run(self.run_id, made.name, position=self.position(made.name),
                                                 attempt=self.attempt_base + attempt, state=State.RUNNING,
                                                 now=self.clock.now())
        self.task_run_id = self.last_task_run_id = task_run_id
        self.open_task_runs.append(task_run_id)
        try:
            with self._timer(made, task_run_id) as timer:
                result = made.fn(*args, **kwargs)
            if timer is not None and timer.fired:  # it caught its TaskTimeout and went on: it still timed out
                raise timer.error()
        except (Cancelled, KeyboardInterrupt):
            self.store.finish_task_run(task_run_id, State.CANCELLED, now=self.clock.now(), error="Cancelled.")
            raise
        except BaseException as error:
            self.store.finish_task_run(task_run_id, State.FAILED, now=self.clock.now(), error=_describe(error))
            if not getattr(error, "task_name", None):
                setattr(error, "task_name", made.name)
            raise
        finally:
            self.task_run_id = None
            self.open_task_runs.remove(task_run_id)
        self.store.finish_task_run(task_run_id, State.COMPLETED, now=self.clock.now())
        return result

    def _timer(self, made: Task, task_run_id: int) -> contextlib.AbstractContextManager[Timer | None]:
        """The task's own timer (in the main thread only: SIGALRM), or nothing."""
        if not made.timeout or self.watchdog is None:
            return contextlib.nullcontext()
        return self.watchdog.timing(made.name, made.timeout, task_run_id)

    def record_artifact(self, *, name: str, path: str, sha256: str, size: int, kind: str | None = None) -> None:
        """Record the artifact with its bytes: the history keeps them, so any host can read them."""
        self.store.add_artifact(self.run_id, name=name, path=path, sha256=sha256, size=size,
                                now=self.clock.now(), kind=kind, data=Path(path).read_bytes())


_context: contextvars.ContextVar[RunContext] = contextvars.ContextVar("fhv_run_context")


def run_context() -> RunContext | None:
    """The context of the flow running in this thread, if any."""
    return _context.get(None)


AwaitPolicy = Callable[[BaseException, dt.datetime], "dt.datetime | None"]


def run_flow(store: Recorder, made: Flow, run_id: str, parameters: dict[str, Any], *,
             clock: Clock = SYSTEM_CLOCK, heartbeat_every: float = 5.0,
             await_policy: AwaitPolicy | None = None, cancel_grace: float = 10.0) -> FlowResult:
    """Run a PENDING flow run to a final state and record everything on the way.

    This is the one boundary that catches unexpected errors. ``await_policy(error, now)`` may
    turn a failure into AWAITING_RETRY by returning the time of the next attempt (used by the
    scheduler for months that are not published yet). A run that is no longer PENDING when its
    process starts (cancelled, or handed back to the queue meanwhile) is left as it is. In the main
    thread, a task past its timeout or a flow asked to cancel that does not stop within its grace
    (``cancel_grace`` for a cancel) is recorded so and its process ended (``watchdog.py``).
    """
    earlier = max((t["attempt"] for t in store.task_runs(run_id)), default=0)
    context = RunContext(store, run_id, made, clock, attempt_base=earlier)
    started = store.start_run(run_id, now=clock.now(), pid=os.getpid())
    if started is None:
        state = State(store.get_run(run_id)["state"])
        logger.warning("Run %s did not start: it is %s, no longer PENDING.", run_id[:8], state.value)
        return FlowResult(run_id, state, error=f"The run was {state.value} when its process started.")
    token = _context.set(context)
    try:
        with capture_logs(context), _watched(context, cancel_grace) as watchdog, \
                _heartbeat(store, run_id, clock, heartbeat_every, watchdog):
            outcome = _overruled(_execute(made, run_id, parameters), context)
    finally:
        _context.reset(token)
    _record_not_run(context)
    if outcome.exception is not None and await_policy is not None:
        outcome.next_attempt_at = await_policy(outcome.exception, clock.now())
        if outcome.next_attempt_at is not None:
            outcome.state = State.AWAITING_RETRY
    _finish(store, outcome, clock)
    return outcome


def _execute(made: Flow, run_id: str, parameters: dict[str, Any]) -> FlowResult:
    try:
        result = made.fn(**parameters)
    except (Cancelled, KeyboardInterrupt):
        logger.warning("The run was cancelled.")
        return FlowResult(run_id, State.CANCELLED, error="Cancelled on request.")
    except TaskTimeout as error:
        where = getattr(error, "task_name", None)
        if not getattr(error, "logged", False):
            logger.error("%s", error)
        return FlowResult(run_id, State.FAILED, error=str(error), error_task=where, exception=error)
    except PipelineError as error:
        if not getattr(error, "logged", False):
            logger.error("%s", error)
        return FlowResult(run_id, State.FAILED, error=str(error), error_task=getattr(error, "task_name", None),
                          exception=error)
    except BaseException as error:  # noqa: BLE001 - the one boundary for unexpected errors (sys.exit() too)
        where = getattr(error, "task_name", None)
        if not getattr(error, "logged", False):
            logger.error("Unexpected error%s: %s", f" in {where}" if where else "", _describe(error), exc_info=True)
        return FlowResult(run_id, State.FAILED, error=f"Unexpected error{f' in {where}' if where else ''}: "
                                                      f"{_describe(error)}", error_task=where, exception=error)
    return FlowResult(run_id, State.COMPLETED, result=result)


def _overruled(outcome: FlowResult, context: RunContext) -> FlowResult:
    """A flow that caught its cancel or a task's timeout and went on still ends CANCELLED or FAILED."""
    if context.watchdog is not None and context.watchdog.cancelled and outcome.state is not State.CANCELLED:
        return FlowResult(context.run_id, State.CANCELLED, error="Cancelled on request (the flow went on after it "
                                                                 "was asked to stop).")
    timed_out = context.timed_out
    if timed_out is not None and outcome.state is State.COMPLETED:
        return FlowResult(context.run_id, State.FAILED, error=str(timed_out),
                          error_task=getattr(timed_out, "task_name", None), exception=timed_out)
    return outcome


@contextlib.contextmanager
def _watched(context: RunContext, cancel_grace: float) -> Iterator[Watchdog | None]:
    """The run's watchdog, in the main thread (signals); elsewhere none, and SIGTERM keeps its meaning."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    context.watchdog = Watchdog(lambda expired: _end_process(context, expired), cancel_grace=cancel_grace)
    try:
        with context.watchdog.running():
            yield context.watchdog
    finally:
        context.watchdog = None


def _end_process(context: RunContext, expired: Expired) -> None:
    """The watchdog's last word on a flow that ignored its timeout or its cancel: record it, end the process."""
    state, message = _ending(expired)
    try:
        logger.error("%s", message)
        if not _logged_to_a_console():
            sys.stderr.write(f"error: {message}\n")
        now = context.clock.now()
        for task_run_id in list(context.open_task_runs):
            context.store.finish_task_run(task_run_id, state, now=now, error=message)
        _record_not_run(context)
        context.store.transition(context.run_id, state, now=now, message=message, expect=(State.RUNNING,),
                                 error=message, error_task=expired.timer.name if expired.timer else None)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(1)


def _logged_to_a_console() -> bool:
    """Whether the pipeline's log lines go anywhere besides the history (the CLI's console)."""
    handlers = logging.getLogger("pipeline").handlers + logging.getLogger().handlers
    return any(not isinstance(h, HistoryHandler) for h in handlers)


def _ending(expired: Expired) -> tuple[State, str]:
    if expired.timer is None:
        return State.CANCELLED, (f"Cancelled on request; the flow did not stop within {expired.grace:g} s of being "
                                 "asked, so its process was ended.")
    return State.FAILED, (f"{expired.timer.error()} It did not stop within {expired.grace:g} s more, so its "
                          "process was ended.")


def _finish(store: Recorder, outcome: FlowResult, clock: Clock) -> None:
    metrics = outcome.result if isinstance(outcome.result, dict) else None
    extra = {"next_attempt_at": outcome.next_attempt_at} if outcome.next_attempt_at else {}
    ended = store.transition(outcome.run_id, outcome.state, now=clock.now(), message=outcome.error,
                             expect=(State.RUNNING,), metrics=metrics, error=outcome.error,
                             error_task=outcome.error_task, **extra)
    if ended is None:
        logger.warning("Run %s ended %s, but the history already had it as %s; left as it is.",
                       outcome.run_id[:8], outcome.state.value, store.get_run(outcome.run_id)["state"])


def _record_not_run(context: RunContext) -> None:
    """Tasks of the flow that never started get a NOT_RUN record, so the UI shows them."""
    for name in context.flow.tasks:
        if name not in context.started:
            task_run_id = context.store.create_task_run(context.run_id, name, position=context.position(name),
                                                        attempt=context.attempt_base + 1, state=State.NOT_RUN, now=None)
            context.store.finish_task_run(task_run_id, State.NOT_RUN, now=context.clock.now(),
                                          error="Not run: an earlier task did not complete.")


def _describe(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, PipelineError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextlib.contextmanager
def _heartbeat(store: Recorder, run_id: str, clock: Clock, every: float, watchdog: Watchdog | None) -> Iterator[None]:
    """The run's heartbeat, stamped by the process's heartbeat thread so crash detection can tell it lives.

    When the history says the run's cancellation was asked for (``runs cancel``, the dashboard),
    it sends this process SIGTERM, which stops the flow where it is: a run in the foreground
    (``python -m pipeline run``) is cancelled as promptly as one the scheduler started, and, as
    the scheduler does, ended after a grace if it ignores that (the watchdog).
    """
    def cancel() -> None:
        if watchdog is not None and not watchdog.cancelled:
            logger.warning("Cancellation was requested; stopping the run.")
            watchdog.cancel_asked()
            os.kill(os.getpid(), signal.SIGTERM)

    with heartbeats().beating(store, run_id, clock, every, cancel):
        yield


def new_run_name() -> str:
    """A memorable run name like Prefect's (``perky-eel``)."""
    import coolname

    return coolname.generate_slug(2)
