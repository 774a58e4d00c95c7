"""The user's own Python environment: which interpreter a deployment's flows run with, and what it needs.

A deployment names one with ``SubprocessFlowRunner(virtualenv="path")`` or ``condaenv="name or path"``
(relative paths are read from the deployment file's folder), or ``deployment create FILE --python
PATH`` gives one to every spec of the file that names none. Its runs execute in that interpreter with
this product's package on ``PYTHONPATH``; they record states, task runs and logs into the history as
any run does. What that environment must contain besides the user's own packages:

- Python 3.11 or newer (with its standard ``sqlite3``);
- ``psycopg`` (3.x), only when the history is on PostgreSQL (``FHV_DATABASE_URL``).

Nothing else: not the dashboard's packages, not scikit-learn or pandas unless the flow imports them. The
store's SQLAlchemy is lent from this product's environment when that one has none (``lent.py``).
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import lent

MIN_PYTHON = (3, 11)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the ``pipeline`` package
CHECK_TIMEOUT = 60.0
INSTALL = {"psycopg": "'psycopg[binary]'"}  # what to pip install for a module runs need

# Run with ``python -c`` in the user's interpreter: written for any Python 3, so that an old one still says why.
BOOTSTRAP = """
import sys
if sys.version_info < {minimum}:
    sys.stderr.write("needs-python %d.%d\\n" % sys.version_info[:2])
    sys.exit(3)
from pipeline.prefect2.remote import main
sys.exit(main(sys.argv[1:]))
""".format(minimum=MIN_PYTHON)


def python_of_runner(runner: Any, folder: Path, deployment: str) -> str | None:
    """The interpreter a ``SubprocessFlowRunner(virtualenv=..., condaenv=...)`` names, or None (this one's).

    ``deployment`` is who names it in the sentences, like ``The deployment 'x'`` or ``The deployment file f.py``.
    """
    virtualenv, condaenv = getattr(runner, "virtualenv", None), getattr(runner, "condaenv", None)
    if virtualenv and condaenv:
        raise ConfigError(f"{deployment} gives both virtualenv= and condaenv= to its "
                          "SubprocessFlowRunner; give one.")
    if virtualenv:
        return _in_prefix(_path(virtualenv, folder), f"virtualenv={str(virtualenv)!r}", deployment)
    if condaenv:
        return _in_prefix(_conda_prefix(str(condaenv), folder, deployment), f"condaenv={str(condaenv)!r}", deployment)
    return None


def _path(value: Any, folder: Path) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else folder / path


def _in_prefix(prefix: Path, what: str, deployment: str) -> str:
    python = prefix / "bin" / "python"
    if not os.access(python, os.X_OK):
        raise ConfigError(f"{deployment} runs its flows in SubprocessFlowRunner({what}), but there "
                          f"is no Python at {python}; make the environment first (python3 -m venv {prefix}).")
    return str(python.absolute())  # not resolved: a virtualenv's python is a link that must stay one


def _conda_prefix(name: str, folder: Path, deployment: str) -> Path:
    if "/" in name or name.startswith("~"):
        return _path(name, folder)
    conda = os.environ.get("CONDA_EXE") or shutil.which("conda")
    if not conda:
        raise ConfigError(f"{deployment} runs its flows in the conda environment {name!r}, but "
                          "conda is not on PATH here to find it; give its folder (condaenv=\"/opt/conda/envs/"
                          f"{name}\") or use: deployment create FILE --python /path/to/envs/{name}/bin/python")
    try:
        listed = subprocess.run([conda, "env", "list", "--json"], capture_output=True, text=True,
                                timeout=CHECK_TIMEOUT)
        prefixes = [Path(p) for p in json.loads(listed.stdout or "{}").get("envs", [])]
    except (OSError, subprocess.TimeoutExpired, ValueError) as error:
        raise ConfigError(f"{deployment} runs its flows in the conda environment {name!r}, but "
                          f"'{conda} env list' did not list the environments ({error}); give its folder "
                          f"instead (condaenv=\"/opt/conda/envs/{name}\").") from None
    found = [p for p in prefixes if p.name == name]
    if not found:
        raise ConfigError(f"{deployment} runs its flows in the conda environment {name!r}, which "
                          f"conda does not list (it has: {', '.join(p.name for p in prefixes) or 'none'}).")
    return found[0]


def explicit_python(value: str) -> str:
    """``--python PATH``: an interpreter that exists and runs (a folder means its ``bin/python``)."""
    path = Path(os.path.expanduser(value))
    if path.is_dir():
        path = path / "bin" / "python"
    if not os.access(path, os.X_OK) or path.is_dir():
        raise ConfigError(f"--python {value}: there is no Python interpreter there; give the python of the "
                          "environment, like --python ~/venvs/course/bin/python.")
    return str(path.absolute())


def declared_python(path: Path) -> str | None:
    """The one environment a file names by literal in ``SubprocessFlowRunner(virtualenv=|condaenv=...)``, if any.

    Such a file is loaded in that environment, where its packages are, rather than here.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return None
    named = {(k.arg, k.value.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
             and _called(node) == "SubprocessFlowRunner" for k in node.keywords
             if k.arg in ("virtualenv", "condaenv") and isinstance(k.value, ast.Constant)
             and isinstance(k.value.value, str)}
    if len(named) != 1:
        return None
    [(kind, value)] = named
    runner = type("Runner", (), {kind: value})()
    return python_of_runner(runner, path.resolve().parent, f"The deployment file {path.name}")


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def environment_for(python: str) -> dict[str, str]:
    """The environment a user's interpreter runs with, as if activated: its ``bin`` first on PATH (a flow that
    starts ``python`` gets that one), and this product's package importable, none of its packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    prefix = Path(python).parent.parent
    if (prefix / "pyvenv.cfg").is_file():
        env["VIRTUAL_ENV"] = str(prefix)
    elif (prefix / "conda-meta").is_dir():
        env["CONDA_PREFIX"] = str(prefix)
    env["PATH"] = os.pathsep.join(filter(None, (str(Path(python).parent), env.get("PATH"))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(PACKAGE_ROOT), env.get("PYTHONPATH"))))
    env[lent.VARIABLE] = lent.locations()
    return env


def problem_sentence(python: str, code: int, stderr: str) -> str | None:
    """What the bootstrap said about an interpreter that cannot run flows here, in one sentence."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    said = next((line for line in lines if line.startswith(("needs-python ", "needs-module "))), None)
    if said and said.startswith("needs-python "):
        return (f"The interpreter {python} is Python {said.split()[1]}; flows run here need Python "
                f"{'.'.join(map(str, MIN_PYTHON))} or newer in that environment.")
    if said:
        module = said.split()[1]
        return (f"The environment of {python} lacks the package {module!r}, which runs of this deployment need there "
                f"({python} -m pip install {INSTALL.get(module, module)}).")
    if code != 0:
        return f"The interpreter {python} could not start ({lines[-1] if lines else f'exit code {code}'})."
    return None
