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

    def load(self) -> Execute:
        module, _, attribute = self.execute.partition(":")
        return getattr(importlib.import_module(module), attribute)

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
    _FLOWS[entry.name] = entry
    return entry


def register_resolver(prefix: str, resolve: Callable[[str], FlowEntry]) -> None:
    """Flows named ``prefix...`` are resolved on demand (a user's flow file, named by its path)."""
    _RESOLVERS[prefix] = resolve


def flow_entry(name: str) -> FlowEntry:
    """The registered flow ``name``; ConfigError lists the flows there are."""
    if name in _FLOWS:
        return _FLOWS[name]
    for prefix, resolve in _RESOLVERS.items():
        if isinstance(name, str) and name.startswith(prefix):
            return resolve(name)
    known = ", ".join(repr(n) for n in sorted(_FLOWS) if ":" not in n) or "none"
    raise ConfigError(f"The flow {name!r} is not registered; the flows are: {known}.")


def flow_names() -> list[str]:
    return sorted(_FLOWS)


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
