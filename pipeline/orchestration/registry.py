"""The flows the orchestrator can run, by name: the one place it learns about a flow.

A flow registers a ``FlowEntry``: how to execute a run of it, which parameters a deployment may
set, which columns a run records before it starts (its business fields, such as the months it
covers), which errors mean "the data is not there yet" and which modules a worker process should
import once. The scheduler, the executor and the deployments only ever look entries up here, so
a second flow is a registration, not an edit of the orchestrator.
"""
from __future__ import annotations

import datetime as dt
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Mapping, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Store
    from .runtime import AwaitPolicy, FlowResult
    from .clock import Clock


class Execute(Protocol):
    """Run an existing PENDING run of a flow to its final state and record it."""

    def __call__(self, store: "Store", settings: "Settings", run_id: str, *, clock: "Clock",
                 await_policy: "AwaitPolicy | None", heartbeat_every: float) -> "FlowResult":
        ...


RunFields = Callable[[Mapping[str, Any], "Settings"], dict[str, Any]]
_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")  # module:function
FAILURE_KINDS = ("not_published", "gate", "failed")  # what a flow's classify_failure may answer


@dataclass(frozen=True)
class Field:
    """A flow-specific field of its runs (kept in the run's ``fields``, not as a column of the core's tables).

    ``kind`` says how the generic pages show a value: ``text``, ``month`` (YYYY-MM), ``url`` (a data
    source: shown shortened), ``flag`` (a yes/no a page counts, e.g. generated demo data: ``label`` names
    what a yes means). ``indexed``: the store keeps an index on it (runs are looked up by it).
    ``listed``: the runs list shows it as a column.
    """

    name: str
    label: str
    kind: str = "text"
    indexed: bool = False
    listed: bool = True
    help: str = ""  # a sentence pages show beside a value (a flag: what a yes means for the run's numbers)


@dataclass(frozen=True)
class Metric:
    """A number a completed run of the flow reports in its metrics (``metrics[key]``)."""

    key: str
    label: str
    format: str = ".3f"  # a format spec for the value
    better: str | None = "lower"  # "lower", "higher" or None (no direction: a count, a size)


@dataclass(frozen=True)
class Trend:
    """What the Trends page draws for a flow: ``metric`` over the completed runs, one point per value of
    the field ``by`` (its latest completed run, e.g. one per validation month), or per run when ``by`` is None."""

    metric: str
    by: str | None = None
    also: tuple[str, ...] = ()  # other metrics drawn beside it, in the same units (e.g. the training error)


@dataclass(frozen=True)
class FlowEntry:
    """A flow as the orchestrator knows it.

    ``execute`` is ``"module:function"``, imported only where a run executes (a worker process),
    so that listing deployments never imports scikit-learn. ``run_fields(parameters, settings)``
    gives the flow_runs columns a run carries before it starts; it raises ConfigError for bad
    parameters. ``parameters`` are the names a deployment may set besides ``date`` (None: any).
    ``deployment_date``: a deployment may set ``date`` itself, and its scheduled runs keep it
    (a trigger or a backfill still passes the date asked for).
    """

    name: str
    execute: str
    run_fields: RunFields
    parameters: tuple[str, ...] | None = ()
    deployment_date: bool = False
    await_errors: tuple[type[BaseException], ...] = ()
    preload: tuple[str, ...] = ()
    normalize: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    check_date: Callable[[dt.date, dt.date], None] | None = None  # (run date, today): refuse a date with a sentence
    # What the generic layers (store, CLI, dashboard, notifications) need to show and tell a run of this flow:
    title: str = ""  # a human name ("Monthly training"); the name when empty
    fields: tuple[Field, ...] = ()  # the fields run_fields gives besides run_date, and how to show them
    metrics: tuple[Metric, ...] = ()  # the numbers a completed run reports; the first is the headline
    trend: Trend | None = None  # what the Trends page draws (None: the first metric, per run)
    # (run row) -> one of FAILURE_KINDS: the data is not published yet, a gate stopped it, anything else
    classify_failure: Callable[[Mapping[str, Any]], str] | None = None
    spec_options: tuple[str, ...] = ()  # keywords a DeploymentSpec of this flow takes, passed as those parameters
    summary: str | None = None  # "module:function", (run row) -> [(label, text)]: a run's results, for CLI and page

    @property
    def display_name(self) -> str:
        return self.title or self.name

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def metric(self, key: str) -> Metric | None:
        return next((m for m in self.metrics if m.key == key), None)

    def failure_kind(self, run: Mapping[str, Any]) -> str:
        """How a FAILED run of this flow failed (``failed`` when the flow does not classify)."""
        kind = self.classify_failure(run) if self.classify_failure else "failed"
        return kind if kind in FAILURE_KINDS else "failed"

    def present(self, run: Mapping[str, Any]) -> list[tuple[str, str]]:
        """A run's results as (label, text) lines: the flow's presenter, else its declared metrics."""
        if self.summary:
            module, _, attribute = self.summary.partition(":")
            return getattr(importlib.import_module(module), attribute)(run)
        values = run.get("metrics") or {}
        return [(m.label, format(values[m.key], m.format)) for m in self.metrics
                if isinstance(values.get(m.key), (int, float))]

    def load(self) -> Execute:
        """The flow's ``execute``; ConfigError with one sentence if its module does not import or lacks it."""
        module, _, attribute = self.execute.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except Exception as error:  # noqa: BLE001 - whatever the flow's module raises on import: one sentence
            raise ConfigError(f"The flow {self.name!r} cannot run: its execute {self.execute!r} does not load "
                              f"({type(error).__name__}: {error}).") from None

    def fields_for(self, parameters: Mapping[str, Any], settings: "Settings") -> dict[str, Any]:
        return self.run_fields(parameters, settings)

    def refuse_date(self, run_date: dt.date, today: dt.date) -> None:
        """ConfigError with a sentence if this flow cannot run for ``run_date`` (asked on ``today``)."""
        if self.check_date is not None:
            self.check_date(run_date, today)

    def check_parameters(self, parameters: Mapping[str, Any], deployment: str, *,
                         normalize: bool = True) -> dict[str, Any]:
        """A deployment's parameters, checked against this flow's (their values too, with ``normalize``);
        ConfigError names the bad one."""
        if "date" in parameters and not self.deployment_date:
            raise ConfigError(f"The deployment {deployment!r} sets the parameter 'date'; each run gets its slot's "
                              "date, so remove it (use trigger --date or backfill for other dates).")
        unknown = [] if self.parameters is None else sorted(set(parameters) - {"date", *self.parameters})
        if unknown:
            takes = ", ".join(dict.fromkeys(("date", *self.parameters)))
            raise ConfigError(f"The deployment {deployment!r} has the unknown parameter {unknown[0]!r}; "
                              f"the flow {self.name!r} takes {takes}.")
        return self.normalize(parameters) if self.normalize and normalize else dict(parameters)


# How deployment files load (the Prefect 2 layer adds its own). A load scope is entered around running a
# file here and yields the specs it collected; a foreign loader, given (path, python, timeout), loads a
# file meant for another Python interpreter there and returns its specs, or None when the file is not one.
LOAD_SCOPES: list[Callable[[Path], ContextManager[list]]] = []
FOREIGN_LOADERS: list[Callable[[Path, "str | None", float], "list | None"]] = []

_FLOWS: dict[str, FlowEntry] = {}
_RESOLVERS: dict[str, Callable[[str], FlowEntry]] = {}


def register_flow(entry: FlowEntry) -> FlowEntry:
    """Make a flow runnable by deployments (registering the same name again replaces it)."""
    from ..store.rows import RUN_COLUMNS  # here: the store imports the orchestration's states
    check_paths(entry)
    taken = next((f.name for f in entry.fields if f.name in RUN_COLUMNS), None)
    if taken:
        raise ConfigError(f"The flow {entry.name!r} declares the field {taken!r}, which is a column every run has; "
                          "name the field otherwise.")
    _FLOWS[entry.name] = entry
    return entry


def check_paths(entry: FlowEntry) -> None:
    """ConfigError unless the entry's ``execute`` (and ``summary``, if set) is written module:function."""
    for what in ("execute", "summary"):
        value = getattr(entry, what)
        if (value is not None or what == "execute") and not (isinstance(value, str) and _PATH.match(value)):
            raise ConfigError(f"The flow {entry.name!r} has {what}={value!r}, which is not written module:function, "
                              f"as in my_flows.job:{what}.")


def register_resolver(prefix: str, resolve: Callable[[str], FlowEntry]) -> None:
    """Flows named ``prefix...`` are resolved on demand (a user's flow file, named by its path)."""
    _RESOLVERS[prefix] = resolve


class UnknownFlow(ConfigError):
    """A flow no entry or resolver knows: ``flow`` its name, ``hint`` the flows there are and how to add one."""

    def __init__(self, name: str):
        known = ", ".join(repr(n) for n in sorted(_FLOWS) if ":" not in n) or "none"
        self.flow, self.hint = name, f"the flows are: {known}; a flow of your own is added with FHV_FLOWS=module:ENTRY"
        super().__init__(f"The flow {name!r} is not registered ({self.hint}).")


def flow_entry(name: str) -> FlowEntry:
    """The registered flow ``name``; ConfigError lists the flows there are."""
    if name in _FLOWS:
        return _FLOWS[name]
    for prefix, resolve in _RESOLVERS.items():
        if isinstance(name, str) and name.startswith(prefix):
            return resolve(name)
    raise UnknownFlow(name)


def flow_names() -> list[str]:
    return sorted(_FLOWS)


def flow_entries() -> list[FlowEntry]:
    """Every registered flow, in the order they were registered (a user's flow file last)."""
    return list(_FLOWS.values())


def default_flow() -> str:
    """The flow a deployment runs unless it names one: the first registered (``pipeline/flows.py``'s first)."""
    if not _FLOWS:
        raise ConfigError("No flow is registered, so a deployment must name its flow (flow=...).")
    return next(iter(_FLOWS))


def preload_modules() -> tuple[str, ...]:
    """Every registered flow's modules a worker imports once (the forkserver preload)."""
    return tuple(dict.fromkeys(module for entry in _FLOWS.values() for module in entry.preload))


def slot_parameters(parameters: Mapping[str, Any] | None, run_date: dt.date, *, asked: bool = True,
                    keep_deployment_date: bool = False) -> dict[str, Any]:
    """A run's parameters: its deployment's, plus ``date`` = the date of its slot or request.

    A scheduled slot (``asked`` False) of a flow whose deployment may set ``date`` keeps that date.
    """
    if keep_deployment_date and not asked and "date" in (parameters or {}):
        return dict(parameters or {})
    return {**(parameters or {}), "date": run_date.isoformat()}
