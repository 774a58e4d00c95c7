"""Loading a deployment file: its specs, or one sentence saying why there are none.

A deployment file is user code, run in a process of its own (forked from this one, so nothing is
imported twice), in the file's folder (where its runs start too, so that its relative paths mean the
same), within a time limit: a file that loops or computes at import time is stopped after
``timeout`` seconds, one that ends its process (``os._exit(0)``) or is killed is said to have done so,
and whatever it imports or changes stays in that process. The specs come back pickled. A file meant
for another Python interpreter is loaded there by a foreign loader (``registry.FOREIGN_LOADERS``).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import runpy
import signal
from pathlib import Path
from typing import Any

from ..errors import ConfigError, package_of, user_line
from .deployments import DeploymentSpec
from .registry import FOREIGN_LOADERS, LOAD_SCOPES

LOAD_TIMEOUT = 60.0  # seconds a deployment file may take to load


def load_file(path: Path, *, python: str | None = None, timeout: float = LOAD_TIMEOUT) -> list[DeploymentSpec]:
    """The specs a deployment file defines at module level.

    ``python``: load it in that interpreter, where its flows will run (a foreign loader does, for the
    files it knows); a file that names its own environment is loaded there too.
    """
    if not path.is_file():
        raise ConfigError(f"The deployment file {path} does not exist.")
    for loader in FOREIGN_LOADERS:
        specs = loader(path, python, timeout)
        if specs is not None:
            return _collect({"__collected__": specs}, path)
    if python is not None:
        raise ConfigError(f"The deployment file {path} cannot be loaded with --python {python}.")
    return _in_child(path, timeout)


def _in_child(path: Path, timeout: float) -> list[DeploymentSpec]:
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(path, writer), name="load-deployment-file", daemon=True)
    child.start()
    writer.close()
    try:
        answer = _answer(reader, child, path, timeout)
    finally:
        reader.close()
        child.join(5)
    if isinstance(answer, ConfigError):
        raise answer
    return answer


def _answer(reader: Any, child: Any, path: Path, timeout: float) -> Any:
    if not reader.poll(timeout):
        child.kill()
        return ConfigError(f"The deployment file {path} did not finish loading within {timeout:g} s (a loop or a long "
                           "computation at import time?); it was stopped. A deployment file should only define its "
                           "flows and specs (deployment create --timeout S allows more).")
    try:
        kind, value = reader.recv()
    except (EOFError, OSError):
        child.join(5)
        return ConfigError(f"The deployment file {path} {_ended(child.exitcode)} while loading, before it defined "
                           "anything; a deployment file should only define its flows and specs.")
    return ConfigError(value) if kind == "error" else value


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"ended its process with exit code {code} (as os._exit({code}) does)"


def _child(path: Path, writer: Any) -> None:
    """In the loading process, whose working directory is the file's folder (as for its runs): send the specs,
    or the sentence of the error."""
    try:
        path = path.resolve()
        os.chdir(path.parent)
        answer: tuple[str, Any] = ("specs", load_here(path))
    except ConfigError as error:
        answer = ("error", str(error))
    try:
        writer.send(answer)
    except Exception as error:  # noqa: BLE001 - a spec that cannot be sent back is said, not raised
        writer.send(("error", f"The deployment file {path} defines specs that cannot be registered: {error}"))
    writer.close()


def load_here(path: Path) -> list[DeploymentSpec]:
    """Run the file in this process, inside every load scope, and collect its specs."""
    try:
        with contextlib.ExitStack() as stack:
            collected = [stack.enter_context(scope(path.resolve().parent)) for scope in LOAD_SCOPES]
            namespace = runpy.run_path(str(path), run_name="__deployments__")
            namespace = {**namespace, "__collected__": [spec for specs in collected for spec in specs]}
    except ModuleNotFoundError as error:
        raise ConfigError(f"The deployment file {path} (or a file it loads) imports the package {error.name!r}, which "
                          f"is not installed here (pip install {package_of(error.name)}; or, if another environment "
                          f"has it: deployment create {path.name} --python /path/to/that/bin/python).") from None
    except ImportError as error:  # a module or name a load scope refuses (an unsupported Prefect feature)
        raise ConfigError(f"The deployment file {path} (or a file it loads) imports what is not supported here: "
                          f"{error}") from None
    except ConfigError as error:  # a spec, schedule, flow or task the file defines is refused
        raise ConfigError(f"The deployment file {path} cannot be registered{user_line(error)}: {error}") from None
    except SystemExit as error:
        raise ConfigError(f"The deployment file {path} called sys.exit({error.code!r}) while loading; a deployment "
                          "file should only define DeploymentSpecs.") from None
    except Exception as error:  # noqa: BLE001 - any error in user code is reported as a config error
        raise ConfigError(f"The deployment file {path} failed to load: {type(error).__name__}: {error}") from None
    return _collect(namespace, path)


def _collect(namespace: dict[str, Any], path: Path) -> list[DeploymentSpec]:
    specs: dict[str, DeploymentSpec] = {}
    for value in namespace.values():
        for spec in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(spec, DeploymentSpec) or specs.get(spec.name) is spec:
                continue
            if spec.name in specs:
                raise ConfigError(f"The deployment file {path} defines the deployment {spec.name!r} twice.")
            specs[spec.name] = spec
    if not specs:
        raise ConfigError(f"The deployment file {path} defines no DeploymentSpec at module level; add one at its end, "
                          "like DeploymentSpec(flow=main, name=\"model_training\", schedule=CronSchedule(cron=\"0 9 15 "
                          "* *\")), or give deployment create the file that defines it.")
    return list(specs.values())
