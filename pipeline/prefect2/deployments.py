"""Prefect 2.0 beta's ``DeploymentSpec`` and schedules, turned into this product's deployments.

``DeploymentSpec(flow=main, name=..., schedule=..., parameters=..., tags=..., flow_runner=...)``,
bound to a name or not, and ``DeploymentSpec(flow_location="homework.py", flow_name="main", ...)``
with the path relative to the deployment file. Each spec becomes a ``pipeline`` DeploymentSpec whose
flow is the user's flow, registered by its file (``prefect2:/abs/path/homework.py:main``).
"""
from __future__ import annotations

import datetime as dt
import logging
import runpy
import sys
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from ..orchestration.deployments import DeploymentSpec as Spec
from ..orchestration.schedules import CronSchedule as Cron
from ..orchestration.schedules import IntervalSchedule as Interval
from . import api, scope

logger = logging.getLogger("pipeline.prefect2")
SUPPORTED_RUNNERS = ("SubprocessFlowRunner", "UniversalFlowRunner", "NoneType")


def IntervalSchedule(interval: dt.timedelta | float | None = None, anchor_date: dt.datetime | None = None,  # noqa: N802
                     timezone: str | None = None, **unsupported: Any) -> Interval:
    """``IntervalSchedule(interval=timedelta(minutes=5), anchor_date=...)``; the anchor defaults to 2020-01-01."""
    _refuse(unsupported, "IntervalSchedule")
    if interval is None:
        raise ConfigError("IntervalSchedule needs an interval, like interval=timedelta(minutes=5).")
    zone = timezone or (anchor_date.tzinfo.key if anchor_date is not None and hasattr(anchor_date.tzinfo, "key")
                        else "UTC")
    return Interval(interval, anchor_date or dt.datetime(2020, 1, 1), zone)


def CronSchedule(cron: str | None = None, timezone: str | None = None, day_or: bool = True,  # noqa: N802
                 **unsupported: Any) -> Cron:
    """``CronSchedule(cron="0 9 15 * *", timezone="America/New_York")``; without a zone, UTC."""
    _refuse(unsupported, "CronSchedule")
    if not day_or:
        raise ConfigError("CronSchedule(day_or=False) is not supported here: day-of-month and day-of-week "
                          "combine as in cron (either matches).")
    if not cron:
        raise ConfigError("CronSchedule needs a cron expression, like cron=\"0 9 15 * *\".")
    return Cron(cron, timezone or "UTC")


def RRuleSchedule(*args: Any, **kwargs: Any) -> None:  # noqa: N802
    raise ConfigError("RRuleSchedule is not supported here; use a CronSchedule or an IntervalSchedule.")


class DeploymentSpec:
    """Prefect 2.0 beta's spec: made into a deployment of the user's flow as soon as it is built."""

    def __init__(self, *, name: str | None = None, flow: Any = None, flow_location: str | Path | None = None,
                 flow_name: str | None = None, schedule: Any = None, parameters: Mapping[str, Any] | None = None,
                 tags: Any = (), flow_runner: Any = None, flow_storage: Any = None, **unsupported: Any):
        _refuse(unsupported, type(self).__name__)
        self.flow = _the_flow(flow, flow_location, flow_name, name)
        self.name = name or self.flow.name
        _check_runner(flow_runner, self.name)
        if flow_storage is not None:
            logger.warning("The deployment %s sets flow_storage; its runs use the local file %s.", self.name,
                           self.flow.path)
        from .execution import register_user_flow

        entry = register_user_flow(self.flow)
        self.spec = Spec(name=self.name, schedule=schedule, flow=entry.name, parameters=dict(parameters or {}),
                         tags=tuple(tags or ()), description=f"Prefect 2 flow {self.flow.name} from {self.flow.path}")
        scope.collect(self.spec)


class FlowScript:
    """Prefect 2.0b8's ``FlowScript(path="homework.py", name="main")``: a flow named by its file."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path, self.name = Path(path), name


class Deployment(DeploymentSpec):
    """Prefect 2.0b8's ``Deployment(flow=main, name=..., schedule=..., flow_runner=..., tags=...)``.

    ``flow`` is a @flow, a path to its file or a ``FlowScript``; without ``name`` the deployment takes the
    flow's name. A packager other than the default is refused: runs use the local file.
    """

    def __init__(self, *, flow: Any, name: str | None = None, packager: Any = None, **options: Any):
        if packager is not None:
            raise ConfigError(f"The deployment {name or '(unnamed)'!r} sets packager={type(packager).__name__}(), "
                              "which is not supported here; leave it out: runs use the local file.")
        if isinstance(flow, FlowScript):
            options.update(flow_location=flow.path, flow_name=flow.name)
            flow = None
        elif isinstance(flow, (str, Path)):
            options["flow_location"], flow = flow, None
        super().__init__(flow=flow, name=name, **options)


def _the_flow(flow: Any, location: str | Path | None, flow_name: str | None, name: str | None) -> api.PrefectFlow:
    if isinstance(flow, api.PrefectFlow):
        return flow
    if callable(flow):
        raise ConfigError(f"The deployment {name!r} names the function {flow.__name__}, which is not a @flow; "
                          "decorate it with @flow.")
    if location is None:
        raise ConfigError(f"The deployment {name!r} names no flow; give flow=<a @flow function> or "
                          "flow_location=\"file.py\" (and flow_name if the file has several flows).")
    return _flow_from_file(scope.relative(str(location)), flow_name, name)


def _flow_from_file(path: Path, flow_name: str | None, name: str | None) -> api.PrefectFlow:
    if not path.is_file():
        raise ConfigError(f"The deployment {name!r} has flow_location {str(path)!r}, which does not exist.")
    flows = find_flows(_namespace_of(path))
    if flow_name is not None:
        flows = [f for f in flows if flow_name in (f.name, f.fn.__name__)]
    if len(flows) != 1:
        what = f"no flow named {flow_name!r}" if flow_name else f"{len(flows)} flows"
        raise ConfigError(f"The flow file {path} has {what}; name one with flow_name=\"...\".")
    return flows[0]


def _namespace_of(path: Path) -> Mapping[str, Any]:
    """The names of the file ``path``, run once: the file being run or imported now (a spec in the flow's own
    file, or in a file that imported it) is not run again, as Prefect 2.0 beta loaded a flow once."""
    frame = sys._getframe(1)
    while frame is not None:
        if _same_file(frame.f_globals.get("__file__"), path):
            return frame.f_globals
        frame = frame.f_back
    for module in list(sys.modules.values()):
        if _same_file(getattr(module, "__file__", None), path):
            return vars(module)
    return runpy.run_path(str(path), run_name="__prefect2_flow__")


def _same_file(where: Any, path: Path) -> bool:
    return isinstance(where, str) and Path(where).resolve() == path


def find_flows(namespace: Mapping[str, Any]) -> list[api.PrefectFlow]:
    return list({id(v): v for v in namespace.values() if isinstance(v, api.PrefectFlow)}.values())


def _check_runner(runner: Any, name: str) -> None:
    kind = type(runner).__name__
    if kind not in SUPPORTED_RUNNERS:
        raise ConfigError(f"The deployment {name!r} uses flow_runner={kind}(), which is not supported here; every "
                          "run has its own process on this machine (SubprocessFlowRunner).")


def _refuse(unsupported: Mapping[str, Any], what: str) -> None:
    if unsupported:
        raise ConfigError(f"{what}({', '.join(f'{k}=...' for k in unsupported)}) is not supported here.")
