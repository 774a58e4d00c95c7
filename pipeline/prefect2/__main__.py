"""``python -m pipeline.prefect2 homework.py [ARGS...]``: run a Prefect 2.0 beta file as a script.

Its ``import prefect`` is served by this package, and its top-level ``main(...)`` call runs the flow
now, recorded in the history ($FHV_HOME) like any run.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

from ..errors import PipelineError
from .scope import prefect_scope


def main(argv: list[str]) -> int:
    if not argv or not Path(argv[0]).is_file():
        print("usage: python -m pipeline.prefect2 FILE.py [ARGS...]  (FILE.py: a Prefect 2.0 beta flow file)",
              file=sys.stderr)
        return 2
    path = Path(argv[0]).resolve()
    sys.argv = [str(path), *argv[1:]]
    try:
        with prefect_scope(path.parent, mode="script"):
            runpy.run_path(str(path), run_name="__main__")
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
