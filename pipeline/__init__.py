"""Monthly retraining of the NYC FHV trip-duration model, with its own small orchestrator.

Packages: ``training`` (the monthly job), ``orchestration`` (flows, schedules, deployments, the
scheduler), ``store`` (every SQL statement), ``cli`` (``python -m pipeline``).

The public API for deployment files::

    from pipeline import AfterCompletion, CronSchedule, DeploymentSpec, IntervalSchedule

Importing the package registers no flow: the process entry points call ``pipeline.flows.load_flows()``.

The flat module paths of earlier versions (``pipeline.deployments``, ``pipeline.schedules``,
``pipeline.flow``, ...) still import: each is the same module object as its new home.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
from typing import Any

__all__ = ["AfterCompletion", "CronSchedule", "DeploymentSpec", "IntervalSchedule"]

MOVED = {
    **{f"pipeline.{name}": f"pipeline.training.{name}"
       for name in ("months", "schema", "data", "demo", "features", "model", "flow")},
    **{f"pipeline.{name}": f"pipeline.orchestration.{name}"
       for name in ("states", "runtime", "schedules", "deployments", "enqueue", "catchup", "scheduler",
                    "executor")},
}
_PUBLIC = {"AfterCompletion": "pipeline.orchestration.triggers",
           "DeploymentSpec": "pipeline.orchestration.deployments",
           "CronSchedule": "pipeline.orchestration.schedules",
           "IntervalSchedule": "pipeline.orchestration.schedules"}


class _MovedModules:
    """``import pipeline.deployments`` gives ``pipeline.orchestration.deployments`` itself.

    A meta path finder and loader by its methods (subclassing ``importlib.abc``'s would import
    ``importlib.resources``, 12 ms of every command's start-up)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: Any) -> None:
        """The module ran already under its new name."""


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")

