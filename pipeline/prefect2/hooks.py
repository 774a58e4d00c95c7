"""How the Prefect 2 layer plugs into the orchestrator, importing the layer only when it is used.

``install()`` (an item of ``pipeline/flows.py``) registers the resolver of users' flows
(``prefect2:/path/file.py:main``), the load scope that serves ``import prefect`` to deployment files and
the foreign loader of files meant for another interpreter. Each imports its part of the layer when first
called, so that a command that loads no deployment file and runs no user's flow does not import it.
"""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Any, Iterator

from ..orchestration.registry import FOREIGN_LOADERS, LOAD_SCOPES, FlowEntry, register_resolver

PREFIX = "prefect2:"


def install() -> list[FlowEntry]:
    """Plug the layer in (again: nothing changes); its flows resolve by name, so it returns none."""
    register_resolver(PREFIX, resolve)
    if load_scope not in LOAD_SCOPES:
        LOAD_SCOPES.append(load_scope)
    if load_elsewhere not in FOREIGN_LOADERS:
        FOREIGN_LOADERS.append(load_elsewhere)
    return []


def resolve(name: str) -> FlowEntry:
    return _layer("execution").resolve(name)


@contextlib.contextmanager
def load_scope(folder: Path) -> Iterator[list]:
    with _layer("scope").prefect_scope(folder) as collected:
        yield collected


def load_elsewhere(path: Path, python: str | None, timeout: float) -> list | None:
    return _layer("deployments").load_elsewhere(path, python, timeout)


def _layer(module: str) -> Any:
    return importlib.import_module(f"{__package__}.{module}")
