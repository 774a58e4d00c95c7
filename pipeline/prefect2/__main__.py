"""``python -m pipeline.prefect2 homework.py [ARGS...]``: run a Prefect 2.0 beta file as a script.

Its ``import prefect`` is served by this package, and its top-level ``main(...)`` call runs the flow
now, recorded in the history ($FHV_HOME) like any run, with the file's folder as working directory
(as a deployment's runs have), from whatever folder it is started. The run's log lines and final
state are printed to the terminal; the exit code is 1 if a flow run failed (or the file raised), 2 for
an error of this product's (a file that cannot be run), else what the file exits with.
"""
from __future__ import annotations

import contextlib
import runpy
import sys
import traceback
from pathlib import Path

from ..config import load_settings
from ..errors import PipelineError, package_of
from ..flows import load_flows
from .adaptations import adapted_libraries
from .deployments import find_flows
from .scope import prefect_scope
from .scripts import on_the_terminal


def main(argv: list[str]) -> int:
    if not argv or not Path(argv[0]).is_file():
        print("usage: python -m pipeline.prefect2 FILE.py [ARGS...]  (FILE.py: a Prefect 2.0 beta flow file)",
              file=sys.stderr)
        return 2
    path = Path(argv[0]).resolve()
    sys.argv = [str(path), *argv[1:]]
    try:
        settings = load_settings()  # here, before the folder changes: FHV_HOME's default ./.fhv is the caller's
        load_flows()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    namespace: dict = {}
    with on_the_terminal(settings) as ended, contextlib.chdir(path.parent):
        code = _run(path, namespace)
    failed = [state for state in ended if state.is_failed()]
    if code == 0 and not ended:
        _say_nothing_ran(path, namespace)
    return code or (1 if failed else 0)


def _run(path: Path, namespace: dict) -> int:
    try:
        with prefect_scope(path.parent, mode="script"), adapted_libraries():
            namespace.update(runpy.run_path(str(path), run_name="__main__"))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as error:
        return error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
    except ModuleNotFoundError as error:  # a package the file imports is missing here: which, and how to get it
        print(f"error: {path.name} imports the package {error.name!r}, which is not installed here "
              f"({sys.executable} -m pip install {package_of(error.name)}) ({_where(error, path)})", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the file's own error, outside any flow: where it happened
        print(f"error: {path.name} raised {type(error).__name__}: {error} ({_where(error, path)})", file=sys.stderr)
        return 1
    return 0


def _say_nothing_ran(path: Path, namespace: dict) -> None:
    """A file that defines flows but calls none ran nothing: say so (``python homework.py`` was silent)."""
    flows = [f.fn.__name__ for f in find_flows(namespace)]
    if flows:
        which = f"the flow {flows[0]}" if len(flows) == 1 else f"the flows {', '.join(flows)}"
        print(f"{path.name} defines {which} but calls none, so nothing ran; call it at the end of the file "
              "(as in if __name__ == \"__main__\": main()), or trigger its deployment.", file=sys.stderr)


def _where(error: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == path]
    return f"line {frames[-1].lineno} of {path.name}" if frames else "while it ran"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
