"""Prefect 2.0 beta's ``DeploymentSpec`` (and 2.0b8's ``Deployment``), turned into this product's deployments.

``DeploymentSpec(flow=main, name=..., schedule=..., parameters=..., tags=..., flow_runner=...)``,
bound to a name or not, and ``DeploymentSpec(flow_location="homework.py", flow_name="main", ...)``
with the path relative to the deployment file. Each spec becomes a ``pipeline`` DeploymentSpec whose
flow is the user's flow, registered by its file (``prefect2:/abs/path/homework.py:main``, followed by
``?python=/path/bin/python`` when its runs use an interpreter of their own: see ``environment.py``).

While a file is created here (mode ``load``), each spec is made at once, so an error names its line;
in another interpreter (mode ``inspect``) each spec is described as JSON and made here from that; while
a flow runs or a file runs as a script, specs are inert.
"""
from __future__ import annotations

import ast
import contextlib
import contextvars
import inspect
import logging
import runpy
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import ConfigError
from . import api, scope
from .environment import declared_python, explicit_python, python_of_runner
from .schedules import CronSchedule, IntervalSchedule, PrefectSchedule, RRuleSchedule  # noqa: F401  (the API)

logger = logging.getLogger("pipeline.prefect2")
SUPPORTED_RUNNERS = ("SubprocessFlowRunner", "NoneType")
_PYTHON: contextvars.ContextVar[str | None] = contextvars.ContextVar("prefect2_python", default=None)


class DeploymentSpec:
    """Prefect 2.0 beta's spec: made into a deployment of the user's flow as soon as it is built."""

    def __init__(self, *, name: str | None = None, flow: Any = None, flow_location: str | Path | None = None,
                 flow_name: str | None = None, schedule: Any = None, parameters: Mapping[str, Any] | None = None,
                 tags: Any = (), flow_runner: Any = None, flow_storage: Any = None, **unsupported: Any):
        _refuse(unsupported, type(self).__name__)
        self.name, self.spec = name, None
        if api.MODE.get() in ("run", "script"):
            return
        self.flow = _the_flow(flow, flow_location, flow_name, name)
        self.name = name or self.flow.name
        _check_runner(flow_runner, self.name)
        if flow_storage is not None:
            logger.warning("The deployment %s sets flow_storage; its runs use the local file %s.", self.name,
                           self.flow.path)
        python = _PYTHON.get() or python_of_runner(flow_runner, scope.folder(), f"The deployment {self.name!r}")
        described = describe(self, schedule, parameters, tags, python)
        if api.MODE.get() == "inspect":
            scope.collect(described)
            return
        if python is not None:
            from .elsewhere import check_python

            check_python(python)
        self.spec = make_spec(described)
        scope.collect(self.spec)


def describe(spec: DeploymentSpec, schedule: Any, parameters: Any, tags: Any, python: str | None) -> dict[str, Any]:
    """A spec as plain values: what a file loaded in another interpreter sends back."""
    if schedule is not None and not isinstance(schedule, PrefectSchedule):
        raise ConfigError(f"The schedule of {spec.name!r} must be a CronSchedule or an IntervalSchedule from "
                          f"prefect.orion.schemas.schedules, not {type(schedule).__name__}.")
    return {"name": spec.name, "path": str(Path(spec.flow.path).resolve()), "function": spec.flow.fn.__name__,
            "flow": spec.flow.name, "takes": spec.flow.parameters, "python": python,
            "schedule": schedule.to_json() if schedule else None, "parameters": _with_own_date(spec.flow, parameters),
            "tags": list(tags or ())}


def _with_own_date(flow: api.PrefectFlow, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The spec's parameters, plus the flow function's own default ``date`` when the spec leaves it unset and
    the default is written as a literal (``def main(date="2021-08-15")``): as under Prefect, its scheduled runs
    and a trigger without --date use it. A computed default (``date=str(date.today())``), which Prefect
    computed again in each run's process, is left to the slot's date."""
    out = dict(parameters or {})
    literal = _literal_default(flow.fn, "date")
    if "date" not in out and isinstance(literal, str):
        out["date"] = literal
    return out


def _literal_default(fn: Any, name: str) -> Any:
    """The default of ``fn``'s parameter ``name`` if its source writes it as a literal, else None."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return None
    function = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)), None)
    if function is None:
        return None
    arguments = function.args
    positional = arguments.posonlyargs + arguments.args
    pairs = list(zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults))
    pairs += [(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults) if d is not None]
    found = next((d for a, d in pairs if a.arg == name), None)
    return found.value if isinstance(found, ast.Constant) else None


def make_spec(described: Mapping[str, Any]) -> Any:
    """The orchestrator's DeploymentSpec for a described spec, its user flow registered."""
    from ..orchestration.deployments import DeploymentSpec as Spec
    from .execution import register_described

    entry = register_described(described)
    schedule = PrefectSchedule.from_json(described["schedule"])
    where = f" with {described['python']}" if described["python"] else ""
    return Spec(name=described["name"], schedule=schedule.to_schedule() if schedule else None, flow=entry.name,
                parameters=dict(described["parameters"]), tags=tuple(described["tags"]),
                description=f"Prefect 2 flow {described['flow']} from {described['path']}{where}")


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


# -- files loaded in another interpreter ------------------------------------------------------------

@contextlib.contextmanager
def default_python(python: str | None) -> Iterator[None]:
    """Specs built meanwhile run with ``python`` (``deployment create --python``), even one whose
    ``SubprocessFlowRunner`` names another environment: the command line wins over the file."""
    token = _PYTHON.set(python)
    try:
        yield
    finally:
        _PYTHON.reset(token)


def load_descriptions(path: Path, python: str | None) -> list[dict[str, Any]]:
    """In the user's interpreter: the described specs of the deployment file ``path``."""
    with scope.prefect_scope(path.resolve().parent, mode="inspect") as collected, default_python(python):
        runpy.run_path(str(path), run_name="__deployments__")
    return collected


def load_elsewhere(path: Path, python: str | None, timeout: float) -> list | None:
    """A foreign loader (orchestration's ``FOREIGN_LOADERS``): the specs of a file given ``--python``, or of a
    file that names its one environment in ``SubprocessFlowRunner(...)``, loaded there; else None."""
    from .elsewhere import inspect_file

    chosen = explicit_python(python) if python is not None else declared_python(path)
    if chosen is None:
        return None
    return [make_spec(described) for described in inspect_file(path.resolve(), chosen, timeout)]
