"""The scope in which a Prefect 2.0 beta file is loaded or run: a ``prefect`` package of our own.

While a deployment file is loaded, or a worker runs a user's flow, ``import prefect`` (and
``prefect.deployments``, ``prefect.orion.schemas.schedules``, ``prefect.flow_runners``,
``prefect.task_runners``) gives this compatibility layer; any other ``prefect.*`` import fails with
one sentence naming it. The file's folder is importable (``from homework import main``). When the
scope ends, everything is as it was: a real Prefect installed in the environment is never shadowed
outside it, and the user's modules are forgotten.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib.abc
import importlib.machinery
import sys
import types
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError
from . import api

_FOLDER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("prefect2_folder", default=None)
_COLLECTED: contextvars.ContextVar[list | None] = contextvars.ContextVar("prefect2_specs", default=None)
SUPPORTED = ("prefect", "prefect.deployments", "prefect.orion", "prefect.orion.schemas",
             "prefect.orion.schemas.schedules", "prefect.flow_runners", "prefect.task_runners", "prefect.logging",
             "prefect.context", "prefect.engine", "prefect.tasks", "prefect.flows")


class UnsupportedPrefect(ConfigError, ImportError):
    """A Prefect feature this product does not provide (raised where the file imports or names it)."""


def _module(name: str, **names: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(names)
    module.__path__ = []  # a package: its submodules come from the finder below

    def missing(attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise UnsupportedPrefect(f"{name}.{attribute} is not supported here; a Prefect 2.0 beta file may use "
                                 "flow, task, get_run_logger, get_run_context, tags, DeploymentSpec, Deployment, "
                                 "IntervalSchedule, CronSchedule, SubprocessFlowRunner, SequentialTaskRunner and "
                                 "ConcurrentTaskRunner.")
    module.__getattr__ = missing  # type: ignore[attr-defined]
    return module


def _modules() -> dict[str, types.ModuleType]:
    from . import context, deployments

    runners = {"SubprocessFlowRunner": api.SubprocessFlowRunner, "UniversalFlowRunner": api.SubprocessFlowRunner}
    schedules = {"IntervalSchedule": deployments.IntervalSchedule, "CronSchedule": deployments.CronSchedule,
                 "RRuleSchedule": deployments.RRuleSchedule}
    contexts = {"get_run_context": context.get_run_context, "FlowRunContext": context.FlowRunContext,
                "TaskRunContext": context.TaskRunContext, "MissingContextError": context.MissingContextError,
                "tags": context.tags}
    made = {
        "prefect": _module("prefect", flow=api.flow, task=api.task, get_run_logger=api.get_run_logger,
                           Deployment=deployments.Deployment, get_run_context=context.get_run_context,
                           tags=context.tags, Flow=api.PrefectFlow, Task=api.PrefectTask, State=api.State,
                           __version__="2.0b8 (compatibility layer of pipeline.prefect2)"),
        "prefect.deployments": _module("prefect.deployments", DeploymentSpec=deployments.DeploymentSpec,
                                       Deployment=deployments.Deployment, FlowScript=deployments.FlowScript),
        "prefect.orion": _module("prefect.orion"),
        "prefect.orion.schemas": _module("prefect.orion.schemas"),
        "prefect.orion.schemas.schedules": _module("prefect.orion.schemas.schedules", **schedules),
        "prefect.flow_runners": _module("prefect.flow_runners", **runners),
        "prefect.task_runners": _module("prefect.task_runners", SequentialTaskRunner=api.SequentialTaskRunner,
                                        ConcurrentTaskRunner=api.ConcurrentTaskRunner),
        "prefect.logging": _module("prefect.logging", get_run_logger=api.get_run_logger, get_logger=api.get_logger),
        "prefect.context": _module("prefect.context", **contexts),
        "prefect.tasks": _module("prefect.tasks", task=api.task, task_input_hash=api.task_input_hash,
                                 Task=api.PrefectTask),
        "prefect.flows": _module("prefect.flows", flow=api.flow, Flow=api.PrefectFlow),
        "prefect.engine": _module("prefect.engine", raise_failed_state=api.raise_failed_state,
                                  get_result=api.get_result),
    }
    for name, module in made.items():  # each submodule is an attribute of its parent, as after a real import
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(made[parent], child, module)
    return made


class _Unsupported(importlib.abc.MetaPathFinder):
    """Any other ``prefect.*`` module: one sentence naming it, at import."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.startswith("prefect.") and fullname not in SUPPORTED:
            raise UnsupportedPrefect(f"The module {fullname} is not supported here; a Prefect 2.0 beta file may "
                                     f"import {', '.join(SUPPORTED)}.")
        return None


@contextlib.contextmanager
def prefect_scope(folder: Path, *, mode: str = "load") -> Iterator[list]:
    """Serve ``prefect`` from this layer and import from ``folder``; yields the DeploymentSpecs built."""
    saved = {name: sys.modules.get(name) for name in sys.modules if name == "prefect" or name.startswith("prefect.")}
    before = set(sys.modules)
    finder = _Unsupported()
    for name in saved:
        sys.modules.pop(name, None)
    sys.modules.update(_modules())
    sys.meta_path.insert(0, finder)
    sys.path.insert(0, str(folder))
    specs: list = []
    tokens = (_FOLDER.set(Path(folder)), _COLLECTED.set(specs), api.MODE.set(mode))
    try:
        yield specs
    finally:
        api.MODE.reset(tokens[2])
        _COLLECTED.reset(tokens[1])
        _FOLDER.reset(tokens[0])
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))
        sys.meta_path.remove(finder)
        _forget(before, Path(folder))
        sys.modules.update({name: module for name, module in saved.items() if module is not None})


def _forget(before: set[str], folder: Path) -> None:
    """Drop the fake ``prefect`` modules and the user's modules imported from ``folder``.

    A module of a package imported before the scope (``pipeline`` itself, when a deployment file
    sits in the repository) is kept, so that no class ever exists twice.
    """
    packages = {name.partition(".")[0] for name in before}
    for name in set(sys.modules) - before:
        where = getattr(sys.modules[name], "__file__", None)
        if name == "prefect" or name.startswith("prefect."):
            del sys.modules[name]
        elif where and name.partition(".")[0] not in packages and Path(where).resolve().is_relative_to(
                folder.resolve()):
            del sys.modules[name]


def collect(spec: Any) -> None:
    """A DeploymentSpec built while a file loads (bound to a name or not) is registered with the file."""
    specs = _COLLECTED.get()
    if specs is not None:
        specs.append(spec)


def folder() -> Path:
    """The folder of the file being loaded (where relative paths of its specs point)."""
    return _FOLDER.get() or Path.cwd()


def relative(location: str) -> Path:
    """``flow_location`` is relative to the deployment file's folder."""
    path = Path(location)
    folder = _FOLDER.get()
    return (path if path.is_absolute() or folder is None else folder / path).resolve()
