"""This product's side inside the user's own interpreter (started by ``elsewhere.py`` with ``BOOTSTRAP``).

``check [MODULE ...]`` says whether the modules a run needs there are importable; ``inspect`` loads a
deployment file there and writes its Prefect 2 specs as JSON; ``run`` executes one claimed run of a
user's flow there, recording it in the history like any run. Each reads its job as JSON on standard
input. Only the standard library and this package are imported before the user's own code.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

NEEDS_EXIT = 3


def main(argv: list[str]) -> int:
    command, *rest = argv or ["?"]
    if command == "check":
        return _needs(rest)
    from .lent import install

    install()  # the store's SQLAlchemy, if this environment has none
    from ..flows import load_flows

    load_flows()
    job = json.loads(sys.stdin.read() or "{}")
    if command == "inspect":
        return inspect(job)
    if command == "run":
        return run(job)
    sys.stderr.write(f"unknown command {command!r}\n")
    return 2


def _needs(modules: list[str]) -> int:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            sys.stderr.write(f"needs-module {module}\n")
            return NEEDS_EXIT
    return 0


def inspect(job: dict[str, Any]) -> int:
    """Load ``job['file']`` in the prefect scope here; write ``{"specs": [...]}`` or ``{"error": ...}`` to
    ``job['out']``."""
    from .deployments import load_descriptions

    try:
        os.chdir(Path(job["file"]).parent)  # the file's folder, as for its runs
        answer = {"specs": load_descriptions(Path(job["file"]), job.get("python"))}
    except (Exception, SystemExit) as error:  # noqa: BLE001 - told to the parent as the file's error, in one sentence
        answer = {"error": _sentence(Path(job["file"]), error)}
    Path(job["out"]).write_text(json.dumps(answer, default=str))
    return 0


def _sentence(path: Path, error: BaseException) -> str:
    from ..errors import ConfigError, package_of, user_line

    if isinstance(error, ModuleNotFoundError) and error.name:
        package = package_of(error.name)
        return (f"The deployment file {path} (or a file it loads) imports the package {error.name!r}, which is not "
                f"installed in the environment of {sys.executable} ({sys.executable} -m pip install {package}).")
    if isinstance(error, ImportError) and isinstance(error, ConfigError):
        return f"The deployment file {path} (or a file it loads) imports what is not supported here: {error}"
    if isinstance(error, ConfigError):
        return f"The deployment file {path} cannot be registered{user_line(error)}: {error}"
    if isinstance(error, SystemExit):
        return f"The deployment file {path} called sys.exit({error.code!r}) while loading; it should only define specs."
    where = traceback.extract_tb(error.__traceback__)[-1:] or [None]
    line = f" (line {where[0].lineno} of {Path(where[0].filename).name})" if where[0] else ""
    return f"The deployment file {path} failed to load: {type(error).__name__}: {error}{line}"


def run(job: dict[str, Any]) -> int:
    """Execute the claimed run ``job['run_id']`` of a user's flow in this interpreter."""
    from ..store import Store
    from ..store.base import is_database_url
    from .execution import execute_here

    if is_database_url(job["history"]) and _needs(["psycopg"]):
        return NEEDS_EXIT
    store = Store(job["history"], migrate=False)
    store.claimer = job.get("claimer")
    try:
        execute_here(store, None, job["run_id"], heartbeat_every=float(job.get("heartbeat_every", 5.0)))
    finally:
        store.close()
    return 0
