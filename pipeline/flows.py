"""The flows this installation runs: one explicit list, registered by the process entry points.

Importing ``pipeline`` registers nothing. ``load_flows()`` registers each item of ``FLOWS``, then each
item of the environment variable ``FHV_FLOWS`` ("module:ATTRIBUTE,..."); an item names a ``FlowEntry``,
or a callable that registers what it needs and returns its entries (the Prefect 2 layer resolves its
flows on demand and returns none). It is called by ``python -m pipeline`` (so by the scheduler and the
worker), by each flow process a scheduler or worker starts, by the dashboard, by ``python -m
pipeline.prefect2``, by the benches and by ``tests/conftest.py``; calling it again changes nothing.
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Iterable, Mapping

from .errors import ConfigError
from .orchestration.registry import FlowEntry, register_flow

FLOWS = ("pipeline.training.job:ENTRY", "pipeline.scoring.job:ENTRY", "pipeline.prefect2.hooks:install")
ENVIRONMENT = "FHV_FLOWS"


def flow_list(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``FLOWS``, then the items of FHV_FLOWS (a comma-separated list; blanks ignored)."""
    extra = (os.environ if environ is None else environ).get(ENVIRONMENT, "")
    return tuple(dict.fromkeys((*FLOWS, *(item.strip() for item in extra.split(",") if item.strip()))))


def load_flows(items: Iterable[str] | None = None) -> list[FlowEntry]:
    """Register the flows of ``items`` (default: ``flow_list()``) and return their entries.

    A bad item raises ConfigError with one sentence naming it.
    """
    entries = [entry for item in (flow_list() if items is None else items) for entry in _entries(item)]
    return [register_flow(entry) for entry in entries]


def _entries(item: str) -> list[FlowEntry]:
    found = _attribute(item)
    found = found() if callable(found) and not isinstance(found, FlowEntry) else found
    entries = [found] if isinstance(found, FlowEntry) else found
    if not isinstance(entries, (list, tuple)) or not all(isinstance(e, FlowEntry) for e in entries):
        raise ConfigError(f"The flow {item!r} ({ENVIRONMENT}) is neither a FlowEntry nor a callable that returns "
                          "a list of FlowEntry.")
    return list(entries)


def _attribute(item: str) -> Any:
    module, colon, attribute = item.partition(":")
    if not colon or not module or not attribute.isidentifier():
        raise ConfigError(f"The flow {item!r} ({ENVIRONMENT}) is not written module:ATTRIBUTE, as in "
                          "my_flows.job:ENTRY.")
    try:
        found = importlib.import_module(module)
    except Exception as error:  # noqa: BLE001 - whatever a module raises on import: one sentence naming it
        raise ConfigError(f"The flow {item!r} ({ENVIRONMENT}) cannot be loaded: its module {module!r} does not "
                          f"import ({type(error).__name__}: {error}).") from None
    if not hasattr(found, attribute):
        raise ConfigError(f"The flow {item!r} ({ENVIRONMENT}) cannot be loaded: the module {module!r} has no "
                          f"{attribute!r}.")
    return getattr(found, attribute)
