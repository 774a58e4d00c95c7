"""Prefect 2.0 beta's API, so the course's own flow and deployment files run here unchanged.

``python -m pipeline deployment create homework.py`` loads such a file with ``import prefect``
served by this package (see ``scope.py``); users who prefer to edit their imports can take the
same names from here::

    from pipeline.prefect2 import flow, task, get_run_logger, DeploymentSpec, IntervalSchedule

``python -m pipeline.prefect2 homework.py`` runs such a file as a script (its top-level
``main(...)`` call runs the flow, recorded in the history).
"""
from __future__ import annotations

from ..orchestration import registry as _registry
from .api import (ConcurrentTaskRunner, PrefectFlow, PrefectFuture, SequentialTaskRunner, State,
                  SubprocessFlowRunner, flow, get_run_logger, task)
from .context import get_run_context
from .deployments import CronSchedule, Deployment, DeploymentSpec, FlowScript, IntervalSchedule, load_elsewhere
from .execution import register_user_flow  # noqa: F401  (registers the resolver of user flows)
from .scope import UnsupportedPrefect, prefect_scope

__all__ = ["ConcurrentTaskRunner", "CronSchedule", "Deployment", "DeploymentSpec", "FlowScript",
           "IntervalSchedule", "PrefectFlow", "PrefectFuture", "SequentialTaskRunner", "State", "SubprocessFlowRunner",
           "UnsupportedPrefect", "flow", "get_run_context", "get_run_logger", "task"]

if prefect_scope not in _registry.LOAD_SCOPES:
    _registry.LOAD_SCOPES.append(prefect_scope)
if load_elsewhere not in _registry.FOREIGN_LOADERS:
    _registry.FOREIGN_LOADERS.append(load_elsewhere)
