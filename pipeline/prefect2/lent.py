"""The packages this product lends a user's interpreter: what its store needs and the user's environment may lack.

A run in the user's own environment records into the history through this package, whose store compiles its
SQL with SQLAlchemy. An environment with its own SQLAlchemy (1.4 or newer) keeps it; one without borrows
this product's, and ``typing_extensions`` that SQLAlchemy needs, from their folders here: a finder that
Python asks last, for those names only, so no other package of this product leaks into the user's flow.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

LENT = ("sqlalchemy", "typing_extensions")
VARIABLE = "FHV_LENT_PACKAGES"  # JSON: {module name: the folder it is found in, here}


def locations() -> str:
    """Where this interpreter finds the lent packages (the value of ``FHV_LENT_PACKAGES`` for a child)."""
    found = {}
    for name in LENT:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            origin = Path(spec.origin)
            found[name] = str(origin.parent.parent if spec.submodule_search_locations else origin.parent)
    return json.dumps(found)


class _Lender:
    """A meta path finder (by its one method) for the lent packages, from their folders in this product's
    environment; Python asks it after every finder of the user's own environment."""

    def __init__(self, folders: dict[str, str]):
        self.folders = folders

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        folder = self.folders.get(fullname)
        return None if folder is None else importlib.machinery.PathFinder.find_spec(fullname, [folder])


def install() -> None:
    """In the user's interpreter: lend what ``FHV_LENT_PACKAGES`` names (once)."""
    try:
        folders = json.loads(os.environ.get(VARIABLE) or "{}")
    except ValueError:
        return
    if folders and not any(isinstance(finder, _Lender) for finder in sys.meta_path):
        sys.meta_path.append(_Lender(folders))
