"""Prefect 2.0 beta's ``prefect.context``: what a running flow or task knows about its run.

``get_run_context()`` inside a flow gives a ``FlowRunContext`` whose ``flow_run`` has the run's
``id`` (a UUID), ``name``, ``expected_start_time`` (the time it was scheduled for, in UTC; for a trigger
or backfill asked for another date, that date at that time of day: the course's week-4 ``score.py``
takes its run date from it), ``parameters``, ``deployment_id`` and ``flow_name``;
inside a task it gives a ``TaskRunContext`` whose ``task_run`` has the task run's ``id`` and ``name``
(and, for convenience, the same ``flow_run``). Outside a run it raises, as Prefect did.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from ..orchestration.runtime import RunContext, run_context
from ..store import from_db


class MissingContextError(RuntimeError):
    """``get_run_context()`` called outside a flow or task run."""


@dataclass(frozen=True)
class FlowRun:
    id: uuid.UUID
    name: str
    flow_name: str
    expected_start_time: dt.datetime
    start_time: dt.datetime | None
    parameters: dict[str, Any]
    deployment_id: int | None


@dataclass(frozen=True)
class TaskRun:
    id: int
    name: str
    task_key: str
    flow_run_id: uuid.UUID


@dataclass(frozen=True)
class FlowRunContext:
    flow_run: FlowRun
    flow: Any = None

    @classmethod
    def get(cls) -> "FlowRunContext | None":
        context = run_context()
        return None if context is None else cls(_flow_run(context), context.flow)


@dataclass(frozen=True)
class TaskRunContext:
    task_run: TaskRun
    flow_run: FlowRun
    task: Any = None

    @classmethod
    def get(cls) -> "TaskRunContext | None":
        context = run_context()
        if context is None or context.task_run_id is None:
            return None
        flow_run = _flow_run(context)
        name = next((t["task"] for t in context.store.task_runs(context.run_id) if t["id"] == context.task_run_id),
                    "task")
        return cls(TaskRun(context.task_run_id, name, re.sub(r"-\d+$", "", name), flow_run.id), flow_run)


def get_run_context() -> FlowRunContext | TaskRunContext:
    """The context of the task run or flow run this is called from."""
    found = TaskRunContext.get() or FlowRunContext.get()
    if found is None:
        raise MissingContextError("No run context available. You are not in a flow or task run context.")
    return found


def _flow_run(context: RunContext) -> FlowRun:
    run = context.store.get_run(context.run_id)
    return FlowRun(id=uuid.UUID(run["id"]), name=run["name"], flow_name=context.flow.name,
                   expected_start_time=_expected_start(run), start_time=from_db(run.get("started_at")),
                   parameters=dict(run.get("parameters") or {}), deployment_id=run.get("deployment_id"))


def _expected_start(run: dict[str, Any]) -> dt.datetime:
    """When the run was scheduled for; a trigger or backfill for another date D: D at that time of day."""
    scheduled = from_db(run.get("scheduled_time")) or from_db(run["created_at"])
    asked = run.get("run_date")
    if run.get("trigger") in ("manual", "backfill") and asked and asked != scheduled.date().isoformat():
        return dt.datetime.combine(dt.date.fromisoformat(asked), scheduled.timetz())
    return scheduled


@contextlib.contextmanager
def tags(*names: str) -> Iterator[set[str]]:
    """Prefect 2.0 beta's ``with tags("ml"): main()``: accepted; here a run's tags are its deployment's."""
    yield set(names)
