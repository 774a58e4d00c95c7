"""Prefect 2.0 beta's ``@flow``, ``@task``, futures and ``get_run_logger``, on this product's runtime.

Inside a run (the scheduler's worker, or ``python -m pipeline run``-like script runs), each task
call is recorded as task runs by ``pipeline.orchestration.runtime`` (attempts, retries, errors,
logs) and returns a ``PrefectFuture``; ``.result()`` gives the value or raises the task's error, and
a future passed into another task is resolved first. As in Prefect 2.0, a flow whose task failed
fails, even if the flow never asked for that task's result.

Tasks run one after the other: ``ConcurrentTaskRunner()`` is accepted and behaves like
``SequentialTaskRunner()`` (the runs of this job are dominated by one task at a time).
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError
from ..orchestration.runtime import Retry, Task, run_context
from .adaptations import say_once
from .parameters import cast_parameters

logger = logging.getLogger("pipeline.prefect2")

# Why a file is being run: "load" (deployment create, here), "inspect" (deployment create, in the user's own
# interpreter), "run" (a worker loads it to run one of its flows): a top-level ``main(...)`` does nothing;
# "script" (the file runs as a script): the flow runs now and is recorded.
MODE: contextvars.ContextVar[str] = contextvars.ContextVar("prefect2_mode", default="script")
_FUTURES: contextvars.ContextVar[list | None] = contextvars.ContextVar("prefect2_futures", default=None)


class PrefectFuture:
    """The outcome of a task call: ``.result()`` returns its value or raises its error."""

    def __init__(self, task_name: str, value: Any = None, error: BaseException | None = None):
        self.task_name, self._value, self.error = task_name, value, error
        self.asked = False

    def result(self, raise_on_failure: bool = True) -> Any:
        self.asked = True
        if self.error is not None and raise_on_failure:
            raise self.error
        return self.error if self.error is not None else self._value

    def wait(self, timeout: float | None = None) -> "PrefectFuture":
        return self

    def get_state(self) -> "State":
        return State.of(self._value, self.error)

    def __repr__(self) -> str:
        return f"PrefectFuture({self.task_name!r}, {'failed' if self.error else 'completed'})"


@dataclass
class State:
    """What calling a flow returns in a script, as in Prefect 2.0 beta: ``.result()``, ``is_completed()``."""

    name: str
    value: Any = None
    error: BaseException | None = None

    @classmethod
    def of(cls, value: Any, error: BaseException | None) -> "State":
        return cls("Failed" if error else "Completed", value, error)

    def result(self, raise_on_failure: bool = True) -> Any:
        """The value; for a failed state its error, raised (or returned with ``raise_on_failure=False``)."""
        if self.error is not None and raise_on_failure:
            raise self.error
        return self.error if self.error is not None else self.value

    def is_completed(self) -> bool:
        return self.error is None

    def is_failed(self) -> bool:
        return self.error is not None

    @property
    def message(self) -> str | None:
        return str(self.error) if self.error else None

    def __repr__(self) -> str:  # as Prefect 2.0 beta printed a state: Completed(message=None, type=COMPLETED, ...)
        result = self.error if self.error is not None else self.value
        return f"{self.name}(message={self.message!r}, type={self.name.upper()}, result={result!r})"


def _resolve(value: Any) -> Any:
    """A future passed into a task is its value (its error, if it failed, is raised)."""
    if isinstance(value, PrefectFuture):
        return value.result()
    if isinstance(value, (list, tuple, set)) and any(isinstance(v, PrefectFuture) for v in value):
        return type(value)(_resolve(v) for v in value)
    if isinstance(value, dict) and any(isinstance(v, PrefectFuture) for v in value.values()):
        return {k: _resolve(v) for k, v in value.items()}
    return value


class PrefectTask:
    """A ``@task``: calling it runs it now (recorded inside a run) and returns a future."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, retries: int = 0,
                 retry_delay_seconds: float = 0, timeout_seconds: float | None = None, description: str | None = None,
                 tags: Any = None, version: str | None = None, cache_key_fn: Any = None, cache_expiration: Any = None,
                 **unsupported: Any):
        _refuse(unsupported, f"@task on {fn.__name__}")
        _refuse_async(fn, "@task")
        functools.update_wrapper(self, fn)
        self.fn, self.name = fn, name or fn.__name__
        self.runtime_task = Task(absolute_paths(fn), self.name, Retry(int(retries), float(retry_delay_seconds)),
                                 timeout_seconds)
        self.cached = cache_key_fn is not None

    def __call__(self, *args: Any, wait_for: Any = None, **kwargs: Any) -> PrefectFuture:
        """Run the task now; ``wait_for=[futures]`` (Prefect 2.0 beta) runs it only if those completed."""
        if self.cached:
            say_once(f"cache of {self.name}", f"The task {self.name} sets cache_key_fn: here it runs every time "
                                              "(task results are not cached).")
        try:
            _resolve(list(wait_for or ()))
            value = self.runtime_task(*[_resolve(a) for a in args], **{k: _resolve(v) for k, v in kwargs.items()})
            future = PrefectFuture(self.name, value)
        except Exception as error:  # noqa: BLE001 - kept in the future, as Prefect does
            setattr(error, "task_name", getattr(error, "task_name", None) or self.name)
            future = PrefectFuture(self.name, error=error)
        futures = _FUTURES.get()
        if futures is not None:
            futures.append(future)
        return future

    def submit(self, *args: Any, **kwargs: Any) -> PrefectFuture:
        return self(*args, **kwargs)


def task(fn: Callable | None = None, **options: Any) -> Any:
    """``@task`` or ``@task(name=..., retries=..., retry_delay_seconds=...)``."""
    if fn is None:
        return lambda f: PrefectTask(f, **options)
    return PrefectTask(fn, **options)


class PrefectFlow:
    """A ``@flow``. Calling it in a script runs it (recorded in the history); while its file is being
    loaded for ``deployment create`` or by a worker, a call does nothing."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, task_runner: Any = None,
                 description: str | None = None, version: str | None = None, validate_parameters: bool = True,
                 timeout_seconds: float | None = None, **unsupported: Any):
        _refuse(unsupported, f"@flow on {fn.__name__}")
        _refuse_async(fn, "@flow")
        runner = task_runner if isinstance(task_runner, type) else type(task_runner)  # Prefect took the class too
        if runner.__name__ not in ("NoneType", "SequentialTaskRunner", "ConcurrentTaskRunner"):
            raise ConfigError(f"@flow on {fn.__name__} uses task_runner={runner.__name__}(), which is not "
                              "supported here; use SequentialTaskRunner() or ConcurrentTaskRunner().")
        functools.update_wrapper(self, fn)
        self.fn, self.validate, self.timeout = fn, validate_parameters, timeout_seconds
        self.name = name or fn.__name__.replace("_", "-")
        self.path = inspect.getsourcefile(fn)

    @property
    def parameters(self) -> tuple[str, ...] | None:
        """The parameters the function takes (None: any, it takes ``**kwargs``)."""
        found = inspect.signature(self.fn).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in found):
            return None
        return tuple(p.name for p in found if p.kind is not inspect.Parameter.VAR_POSITIONAL)

    def accepted(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """The run's parameters this function takes (a slot's ``date`` is dropped if it has none)."""
        names = self.parameters
        return dict(parameters) if names is None else {k: v for k, v in parameters.items() if k in names}

    def body(self, **parameters: Any) -> Any:
        """Run the function for a run; what it returns is the run's metrics if it is a dict of numbers and words."""
        return scalars(self.run(**parameters))

    def run(self, **parameters: Any) -> Any:
        """Run the function and return what it returns; a task that failed fails the flow, as in Prefect 2.0."""
        futures: list[PrefectFuture] = []
        if self.timeout:
            say_once(f"timeout of {self.name}", f"The flow {self.fn.__name__} sets timeout_seconds={self.timeout:g}: "
                                                "here a flow has no time limit (its tasks' timeout_seconds are kept).")
        if self.validate:  # cast to the type hints, as Prefect 2.0 beta's pydantic did
            parameters = cast_parameters(self.fn, self.name, parameters)
        token = _FUTURES.set(futures)
        try:
            value = absolute_paths(self.fn)(**parameters)
        finally:
            _FUTURES.reset(token)
        failed = [f for f in futures if f.error is not None]
        if failed:
            raise failed[0].error
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if run_context() is not None:  # a flow called inside another flow: run it as part of this run
            return self._subflow(_bind(self.fn, args, kwargs))
        if MODE.get() != "script":
            logger.info("Not running %s(...) while its file is loaded; it runs on its schedule or by hand.",
                        self.fn.__name__)
            return None
        from .scripts import run_as_script

        return run_as_script(self, _bind(self.fn, args, kwargs))

    def _subflow(self, parameters: dict[str, Any]) -> State:
        """As in Prefect 2.0 beta, a subflow's call returns its state; one that failed fails the calling flow too."""
        try:
            return State.of(self.run(**parameters), None)
        except Exception as error:  # noqa: BLE001 - kept in its state, as Prefect does
            futures = _FUTURES.get()
            if futures is not None:
                futures.append(PrefectFuture(self.name, error=error))
            return State.of(None, error)


def flow(fn: Callable | None = None, **options: Any) -> Any:
    """``@flow`` or ``@flow(name=..., task_runner=...)``."""
    if fn is None:
        return lambda f: PrefectFlow(f, **options)
    return PrefectFlow(fn, **options)


_OPTIONS = {"@task": "name, retries, retry_delay_seconds, timeout_seconds, description, tags, version, cache_key_fn "
                    "and cache_expiration",
            "@flow": "name, task_runner, description, version, validate_parameters and timeout_seconds"}


def _refuse(unsupported: dict[str, Any], what: str) -> None:
    if unsupported:
        kind = what.split()[0]
        raise ConfigError(f"{what}: the option {', '.join(sorted(unsupported))} is not supported here; a Prefect 2.0 "
                          f"beta {kind[1:]} may set {_OPTIONS[kind]}.")


def absolute_paths(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, whose missing file given by a relative path is named by its absolute path (where the run looked:
    relative paths start at the run's working directory, the deployment file's folder)."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as error:
            _made_absolute(error)
            raise
    return run


def _made_absolute(error: FileNotFoundError) -> None:
    named = error.filename if error.errno is not None else (error.args[0] if len(error.args) == 1 else None)
    if not isinstance(named, str) or os.path.isabs(named) or any(c.isspace() for c in named):
        return  # no path, a path already absolute, or a message (pyarrow raises FileNotFoundError(path))
    if error.errno is not None:
        error.filename = os.path.abspath(named)
    else:
        error.args = (os.path.abspath(named),)


def _refuse_async(fn: Callable[..., Any], what: str) -> None:
    """Flows and tasks run synchronously here: an ``async def`` would be called and never awaited."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigError(f"{what} on {fn.__name__}: async functions are not supported here; write it as a plain "
                          "def (and call its tasks without await).")


def _bind(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = inspect.signature(fn).bind(*args, **kwargs)
    return dict(bound.arguments)


def scalars(value: Any) -> Any:
    """What a flow returns is recorded as its metrics only when it is a dict of plain numbers and words."""
    if isinstance(value, dict) and all(isinstance(v, (int, float, str, bool)) or v is None for v in value.values()):
        return value
    return None


def get_run_logger(context: Any = None, **kwargs: Any) -> logging.LoggerAdapter:
    """The logger whose lines go into the run's logs (and to the terminal in a script).

    As in Prefect 2.0 beta, ``context`` (a run context) and extra keyword fields are accepted; the
    lines go to the run this process runs either way.
    """
    current = run_context()
    name = current.flow.name if current else "script"
    reserved = vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
    extra = {k if k not in reserved else f"extra_{k}": v for k, v in kwargs.items()}
    return logging.LoggerAdapter(logging.getLogger(f"pipeline.prefect2.run.{name}"), extra)


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str:
    """``prefect.tasks.task_input_hash``: accepted as a cache key function (tasks are not cached here)."""
    return repr(sorted(arguments.items(), key=lambda item: item[0]))


def get_logger(name: str | None = None) -> logging.Logger:
    """``prefect.logging.get_logger(name)``: a logger whose lines go into the run's logs while a flow runs."""
    return logging.getLogger(f"pipeline.prefect2.user{'.' + name if name else ''}")


def raise_failed_state(state: Any) -> None:
    """``prefect.engine.raise_failed_state``: raise the error of a failed state (or future)."""
    if hasattr(state, "result"):
        state.result(raise_on_failure=True)


def get_result(state: Any, raise_failures: bool = True) -> Any:
    """``prefect.engine.get_result``: the value of a state or future (its error raised if it failed)."""
    return state.result(raise_on_failure=raise_failures)


class SequentialTaskRunner:
    """Accepted: tasks run one after the other."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass


class ConcurrentTaskRunner(SequentialTaskRunner):
    """Accepted: here too tasks run one after the other (see the module's note)."""


class SubprocessFlowRunner:
    """Every run has its own process here; ``virtualenv=`` or ``condaenv=`` name the Python environment it
    runs in (see ``environment.py``); ``stream_output`` is accepted (the run's output is always in its logs)."""

    def __init__(self, virtualenv: Any = None, condaenv: Any = None, stream_output: bool = True, env: Any = None,
                 **unsupported: Any):
        if env or unsupported:
            what = ", ".join(f"{k}=..." for k in ({"env": env} if env else {}) | unsupported)
            raise ConfigError(f"SubprocessFlowRunner({what}) is not supported here; runs get the environment "
                              "variables of the scheduler or worker that starts them.")
        self.virtualenv, self.condaenv = virtualenv, condaenv
