"""Prefect 2.0 beta's API, so the course's own flow and deployment files run here unchanged.

``python -m pipeline deployment create homework.py`` loads such a file with ``import prefect``
served by this package (see ``scope.py``); users who prefer to edit their imports can take the
same names from here::

    from pipeline.prefect2 import flow, task, get_run_logger, DeploymentSpec, IntervalSchedule

Its names import when first used, and ``hooks.py`` plugs the layer into the orchestrator (listed in
``pipeline/flows.py``), so a command that needs none of it does not import it.

``python -m pipeline.prefect2 homework.py`` runs such a file as a script (its top-level
``main(...)`` call runs the flow, recorded in the history).
"""
from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"api": ("ConcurrentTaskRunner", "PrefectFlow", "PrefectFuture", "SequentialTaskRunner", "State",
                  "SubprocessFlowRunner", "flow", "get_run_logger", "task"),
          "context": ("get_run_context",),
          "deployments": ("CronSchedule", "Deployment", "DeploymentSpec", "FlowScript", "IntervalSchedule",
                          "load_elsewhere"),
          "execution": ("register_user_flow",),
          "scope": ("UnsupportedPrefect", "prefect_scope")}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = ["ConcurrentTaskRunner", "CronSchedule", "Deployment", "DeploymentSpec", "FlowScript",
           "IntervalSchedule", "PrefectFlow", "PrefectFuture", "SequentialTaskRunner", "State", "SubprocessFlowRunner",
           "UnsupportedPrefect", "flow", "get_run_context", "get_run_logger", "task"]


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
