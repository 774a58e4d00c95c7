"""A Prefect 2 flow called in a script (``python homework.py``): it runs now and is recorded in the history."""
from __future__ import annotations

import json
from typing import Any

from ..config import load_settings
from ..orchestration.clock import SYSTEM_CLOCK
from ..orchestration.liveness import this_process
from ..orchestration.runtime import Flow, new_run_name, run_flow
from ..orchestration.states import State
from ..store import Store
from . import api


def run_as_script(flow: api.PrefectFlow, parameters: dict[str, Any]) -> api.State:
    """Record a run of ``flow`` (trigger 'script') in ``$FHV_HOME`` and run it in this process."""
    from .execution import prints_to_log, register_user_flow

    settings = load_settings().ensure_dirs()
    entry = register_user_flow(flow)
    store = Store(settings.history)
    try:
        now = SYSTEM_CLOCK.now()
        recorded = json.loads(json.dumps(parameters, default=str))
        run_id = store.create_run(flow=entry.name, name=new_run_name(), state=State.PENDING, now=now,
                                  parameters=recorded, trigger="script", scheduled_time=now, claimed_by=this_process(),
                                  **entry.fields_for(recorded, settings))
        with prints_to_log():
            result = run_flow(store, Flow(flow.body, flow.name), run_id, parameters, heartbeat_every=2.0)
    finally:
        store.close()
    error = result.exception or (RuntimeError(result.error) if result.state is not State.COMPLETED else None)
    return api.State.of(result.result, error)
