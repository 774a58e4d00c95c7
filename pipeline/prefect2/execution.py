"""A user's Prefect 2 flow as a flow of this orchestrator: its registration and how a run executes.

A user's flow is named by its file and function, ``prefect2:/abs/path/homework.py:main``. While a
deployment file loads, the live flow registers with its exact parameters; elsewhere (the scheduler,
a worker) the name resolves to an entry without importing the user's code. A worker runs the flow
in its own process with the deployment file's folder as working directory, inside the ``prefect``
scope; ``print`` in the flow or its tasks goes to the run's logs.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import runpy
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..config import Settings
from ..errors import ConfigError, package_of
from ..orchestration.clock import SYSTEM_CLOCK, Clock
from ..orchestration.registry import FlowEntry, register_flow
from ..orchestration.runtime import AwaitPolicy, Flow, FlowResult, run_flow
from ..store import Store
from . import api
from .adaptations import adapted_libraries
from .deployments import find_flows
from .hooks import PREFIX
from .scope import prefect_scope

PYTHON = "?python="
printed = logging.getLogger("pipeline.prefect2.print")
logger = logging.getLogger("pipeline.prefect2")


def flow_name(path: str | Path, function: str, python: str | None = None) -> str:
    """``prefect2:/abs/homework.py:main``, with ``?python=/env/bin/python`` when its runs use that interpreter."""
    return f"{PREFIX}{Path(path).resolve()}:{function}" + (f"{PYTHON}{python}" if python else "")


def parse_name(name: str) -> tuple[Path, str, str | None]:
    """(file, function, interpreter or None) of a user's flow name."""
    base, _, python = name[len(PREFIX):].partition(PYTHON)
    path, _, function = base.rpartition(":")
    return Path(path), function, python or None


def run_fields(parameters: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """What a run of a user's flow records before it starts: its ``date`` parameter, if it is a date."""
    try:
        run_date = dt.date.fromisoformat(str(parameters.get("date")))
    except ValueError:
        run_date = None
    return {"run_date": run_date.isoformat() if run_date else None}


def _entry(name: str, parameters: tuple[str, ...] | None) -> FlowEntry:
    return FlowEntry(name=name, execute="pipeline.prefect2.execution:execute", run_fields=run_fields,
                     parameters=parameters, deployment_date=True)


def register_user_flow(flow: api.PrefectFlow) -> FlowEntry:
    """Register a live flow (run in this interpreter) with the parameters its function takes."""
    return register_flow(_entry(flow_name(flow.path, flow.fn.__name__), flow.parameters))


def register_described(described: Mapping[str, Any]) -> FlowEntry:
    """Register the flow of a described spec (``deployments.describe``), with its interpreter."""
    takes = described["takes"]
    name = flow_name(described["path"], described["function"], described["python"])
    return register_flow(_entry(name, None if takes is None else tuple(takes)))


def resolve(name: str) -> FlowEntry:
    """A user's flow known by name only (its file is imported when a run executes)."""
    path, function, _ = parse_name(name)
    if not function or not path.is_absolute():
        raise ConfigError(f"The flow name {name!r} is not a Prefect 2 flow name like prefect2:/path/file.py:main.")
    return _entry(name, None)



def load_flow(path: Path, function: str) -> api.PrefectFlow:
    """The flow ``function`` of the file ``path`` (loaded inside the prefect scope)."""
    if not path.is_file():
        raise ConfigError(f"The flow file {path} does not exist any more.")
    found = [f for f in find_flows(runpy.run_path(str(path), run_name="__prefect2_flow__"))
             if f.fn.__name__ == function]
    if not found:
        raise ConfigError(f"The flow file {path} has no @flow function named {function!r} any more.")
    return found[0]


def execute(store: Store, settings: Settings, run_id: str, *, clock: Clock = SYSTEM_CLOCK,
            await_policy: AwaitPolicy | None = None, heartbeat_every: float = 5.0) -> FlowResult:
    """Run an existing PENDING run of a user's flow to its end, here or in the interpreter its deployment names."""
    python = parse_name(store.get_run(run_id)["flow"])[2]
    if python is not None:
        from .elsewhere import run_elsewhere

        return run_elsewhere(store, run_id, python, heartbeat_every=heartbeat_every)
    return execute_here(store, settings, run_id, clock=clock, heartbeat_every=heartbeat_every)


def execute_here(store: Store, settings: Settings | None, run_id: str, *, clock: Clock = SYSTEM_CLOCK,
                 heartbeat_every: float = 5.0) -> FlowResult:
    """Run an existing PENDING run of a user's flow in this interpreter, in its deployment file's folder."""
    run = store.run_with_deployment(run_id)
    path, function, _ = parse_name(run["flow"])
    with contextlib.chdir(_workdir(store, run, path)), prefect_scope(path.parent, mode="run"), adapted_libraries():
        made, parameters = _prepare(path, function, run["parameters"], asked=run.get("trigger") != "schedule")
        with prints_to_log():
            return run_flow(store, made, run_id, parameters, clock=clock, heartbeat_every=heartbeat_every)


def _prepare(path: Path, function: str, parameters: dict[str, Any], *,
             asked: bool = True) -> tuple[Flow, dict[str, Any]]:
    """The flow to run and its parameters; a file that no longer loads makes a run that fails saying why.

    ``asked``: the run was asked for by hand (a trigger, a backfill), not made for a slot, whose date every run
    carries whether its flow takes it or not."""
    try:
        user_flow = load_flow(path, function)
    except Exception as error:  # noqa: BLE001 - recorded as the run's failure, in one sentence
        return Flow(_raiser(_load_error(path, error)), function), {}
    accepted = user_flow.accepted(parameters)
    dropped = {k: v for k, v in parameters.items() if k not in accepted and (asked or k != "date")}
    return Flow(_saying_dropped(user_flow, dropped), user_flow.name), accepted


_DATE_NOTE = " (get_run_context().flow_run.expected_start_time carries it)"


def _saying_dropped(user_flow: api.PrefectFlow, dropped: dict[str, Any]) -> Callable[..., Any]:
    """The flow's body, which first says in the run's log which of the run's parameters its function does not take
    (``trigger --date`` for ``def main()``): the run carries them, the flow never sees them."""
    def body(**parameters: Any) -> Any:
        for name, value in dropped.items():
            logger.warning("The flow %s takes no parameter %r, so this run's %s=%r is not passed to it%s.",
                           user_flow.fn.__name__, name, name, value, _DATE_NOTE if name == "date" else "")
        return user_flow.body(**parameters)
    return body


def _load_error(path: Path, error: BaseException) -> ConfigError:
    if isinstance(error, ConfigError):
        return error
    if isinstance(error, ModuleNotFoundError) and error.name:
        return ConfigError(f"The flow file {path} imports the package {error.name!r}, which is not installed here "
                           f"(pip install {package_of(error.name)}).")
    return ConfigError(f"The flow file {path} failed to load: {type(error).__name__}: {error}")


def _raiser(error: BaseException) -> Callable[..., Any]:
    def fail(**_: Any) -> Any:
        raise error
    return fail


def _workdir(store: Store, run: dict[str, Any], path: Path) -> Path:
    """The deployment file's folder (where its relative paths point), else the flow file's."""
    if run.get("deployment"):
        source = store.get_deployment(run["deployment"]).get("source_file")
        if source and Path(source).parent.is_dir():
            return Path(source).parent
    return path.parent


class _LogWriter(io.TextIOBase):
    """``print`` output, a line at a time, into the run's logs."""

    def __init__(self) -> None:
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            printed.info("%s", line)
        return len(text)

    def flush(self) -> None:
        if self.pending:
            printed.info("%s", self.pending)
            self.pending = ""


@contextlib.contextmanager
def prints_to_log() -> Iterator[None]:
    writer = _LogWriter()
    with contextlib.redirect_stdout(writer):
        try:
            yield
        finally:
            writer.flush()
