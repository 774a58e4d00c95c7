"""A Prefect 2 flow called in a script (``python homework.py``): it runs now and is recorded in the history.

Like ``python homework.py`` under Prefect 2.0 beta, the run's log lines and its final state are
printed to the terminal (standard error) as they happen::

    20:41:05.123 | INFO    | Created flow run 'perky-eel' for flow 'main'
    20:41:06.456 | INFO    | Task run 'prepare_features' - The mean duration of training is 16.2
    20:41:09.000 | INFO    | Flow run 'perky-eel' - Finished in state Completed()
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from typing import Any, Iterator

from ..config import Settings, load_settings
from ..orchestration.clock import SYSTEM_CLOCK
from ..orchestration.liveness import this_process
from ..orchestration.runtime import Flow, new_run_name, run_context, run_flow
from ..orchestration.states import State
from ..store import Store
from . import api

logger = logging.getLogger("pipeline.prefect2")
_ENDED: contextvars.ContextVar[list | None] = contextvars.ContextVar("prefect2_script_states", default=None)
_SETTINGS: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("prefect2_script_settings", default=None)


def run_as_script(flow: api.PrefectFlow, parameters: dict[str, Any]) -> api.State:
    """Record a run of ``flow`` (trigger 'script') in ``$FHV_HOME`` and run it in this process (a script run with
    ``python file.py`` is an entry point: the flows are registered, as ``python -m pipeline`` does)."""
    from ..flows import load_flows
    from .execution import prints_to_log, register_user_flow

    settings = (_SETTINGS.get() or load_settings()).ensure_dirs()
    load_flows()
    entry = register_user_flow(flow)
    store = Store(settings.history)
    try:
        now = SYSTEM_CLOCK.now()
        recorded = json.loads(json.dumps(parameters, default=str))
        name = new_run_name()
        run_id = store.create_run(flow=entry.name, name=name, state=State.PENDING, now=now, parameters=recorded,
                                  trigger="script", scheduled_time=now, claimed_by=this_process(),
                                  **entry.fields_for(recorded, settings))
        logger.info("Created flow run %r for flow %r", name, flow.name)
        returned: list[Any] = [None]
        with prints_to_log():
            result = run_flow(store, Flow(_keeping(flow, returned), flow.name), run_id, parameters,
                              heartbeat_every=2.0)
    finally:
        store.close()
    error = result.exception or (RuntimeError(result.error) if result.state is not State.COMPLETED else None)
    state = api.State.of(returned[0], error)
    _said_end(name, result.state, result.error)
    ended = _ENDED.get()
    if ended is not None:
        ended.append(state)
    return state


def _keeping(flow: api.PrefectFlow, returned: list[Any]) -> Any:
    """The flow's body for the run, keeping what the function returned for the script's ``state.result()``."""
    def body(**parameters: Any) -> Any:
        returned[0] = flow.run(**parameters)
        return api.scalars(returned[0])
    return body


def _said_end(name: str, state: State, error: str | None) -> None:
    words = state.value.capitalize()
    logger.log(logging.INFO if state is State.COMPLETED else logging.ERROR, "Flow run %r - Finished in state %s(%s)",
               name, words, repr(error) if error else "")


class TerminalFormatter(logging.Formatter):
    """``20:41:06.456 | INFO    | Task run 'read_data' - message``, as Prefect 2.0 beta printed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(where)s%(message)s", "%H:%M:%S")
        self.names: dict[Any, str] = {}

    def format(self, record: logging.LogRecord) -> str:
        record.where = self._where()
        return super().format(record)

    def _where(self) -> str:
        context = run_context()
        if context is None:
            return ""
        if context.task_run_id is not None:
            return f"Task run {self._name(context, context.task_run_id)!r} - "
        return f"Flow run {self._name(context, context.run_id)!r} - "

    def _name(self, context: Any, key: Any) -> str:
        if key not in self.names:
            if key == context.run_id:
                self.names[key] = context.store.get_run(key)["name"]
            else:
                self.names.update({t["id"]: t["task"] for t in context.store.task_runs(context.run_id)})
        return self.names.get(key, "?")


@contextlib.contextmanager
def on_the_terminal(settings: Settings | None = None) -> Iterator[list[api.State]]:
    """Print the ``pipeline`` log lines to standard error; yields the final states of the flows run meanwhile,
    recorded with ``settings`` (read before the script changes folder: a relative FHV_HOME is the caller's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TerminalFormatter())
    handler.setLevel(logging.INFO)
    root = logging.getLogger("pipeline")
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    ended: list[api.State] = []
    tokens = _ENDED.set(ended), _SETTINGS.set(settings)
    try:
        yield ended
    finally:
        _SETTINGS.reset(tokens[1])
        _ENDED.reset(tokens[0])
        root.removeHandler(handler)
        root.setLevel(previous)
