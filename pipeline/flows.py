"""The flows this installation runs: one explicit list, registered by the process entry points.

Importing ``pipeline`` registers nothing. ``load_flows()`` plugs in ``PLUGINS`` (the Prefect 2 layer, whose
flows resolve on demand), then registers each item of ``FLOWS``, then each item of the environment variable
``FHV_FLOWS`` ("module:ATTRIBUTE,..."); an item names a ``FlowEntry`` or a list or tuple of them, and is never
called. It is called by ``python -m pipeline`` (so by the scheduler and the worker), by each flow process a
scheduler or worker starts, by the dashboard, by ``python -m pipeline.prefect2``, by the benches and by
``tests/conftest.py``; calling it again changes nothing.
"""
from __future__ import annotations

import importlib
import inspect
import os
from typing import Any, Iterable, Mapping

from .errors import ConfigError
from .orchestration.registry import FlowEntry, register_flow

FLOWS = ("pipeline.training.job:ENTRY", "pipeline.scoring.job:ENTRY")
PLUGINS = ("pipeline.prefect2.hooks:install",)  # called by load_flows(): each registers what it needs
ENVIRONMENT = "FHV_FLOWS"


def flow_list(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``FLOWS``, then the items of FHV_FLOWS (a comma-separated list; blanks ignored)."""
    extra = (os.environ if environ is None else environ).get(ENVIRONMENT, "")
    return tuple(dict.fromkeys((*FLOWS, *(item.strip() for item in extra.split(",") if item.strip()))))


def load_flows(items: Iterable[str] | None = None) -> list[FlowEntry]:
    """Register the flows of ``items`` (default: ``flow_list()``) and return their entries.

    A bad item raises ConfigError with one sentence naming it.
    """
    for plugin in PLUGINS:
        _attribute(plugin)()
    entries = [entry for item in (flow_list() if items is None else items) for entry in _entries(item)]
    return [register_flow(entry) for entry in entries]


def _entries(item: str) -> list[FlowEntry]:
    found = _attribute(item)
    entries = [found] if isinstance(found, FlowEntry) else found
    if not isinstance(entries, (list, tuple)) or not entries or not all(isinstance(e, FlowEntry) for e in entries):
        raise ConfigError(f"The flow {item!r} ({ENVIRONMENT}) is {_what(found)}, not a FlowEntry or a list of them; "
                          "an item names an entry and is never called, as in my_flows.job:ENTRY.")
    return list(entries)


def _what(found: Any) -> str:
    """What an item names, in a few words: "the function execute", "a tuple of str"."""
    if isinstance(found, type) or inspect.isroutine(found):
        return f"the {'class' if isinstance(found, type) else 'function'} {found.__name__}"
    if callable(found):
        return f"a callable {type(found).__name__}"
    if isinstance(found, (list, tuple)):
        kinds = ", ".join(sorted({type(e).__name__ for e in found}))
        return f"a {type(found).__name__} of {kinds}" if found else f"an empty {type(found).__name__}"
    return f"a {type(found).__name__}"


def _attribute(item: str) -> Any:
    module, colon, attribute = item.partition(":")
    if not colon or not module or not attribute.isidentifier():
        raise ConfigError(f"The flow {item!r} ({ENVIRONMENT}) is not written module:ATTRIBUTE, as in "
                          "my_flows.job:ENTRY.")
    try:
        found = importlib.import_module(module)
    except Exception as error:  # noqa: BLE001 - whatever a module raises on import: one sentence naming it
        raise ConfigError(f"The flow {item!r} ({ENVIRONMENT}) cannot be loaded: its module {module!r} does not "
                          f"import ({type(error).__name__}: {error}){_path_hint(error)}.") from None
    if not hasattr(found, attribute):
        raise ConfigError(f"The flow {item!r} ({ENVIRONMENT}) cannot be loaded: the module {module!r} has no "
                          f"{attribute!r}.")
    return getattr(found, attribute)


def _path_hint(error: BaseException) -> str:
    if not isinstance(error, ImportError):
        return ""
    return ("; every process that runs the flow (CLI, scheduler, worker, dashboard) must import it: install it, or "
            "put its folder on PYTHONPATH for each of them")
