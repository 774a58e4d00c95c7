"""The shapes of the rows the store returns (what the scheduler and the CLI read by key)."""
from __future__ import annotations

from typing import Any, TypedDict


class RunRow(TypedDict, total=False):
    """A flow run. Times are the store's UTC text; JSON columns are decoded.

    These are the orchestrator's own columns (``run_date``: the date of the run's slot or request).
    The fields its flow gives (``FlowEntry.run_fields``) are under ``fields`` and flattened into the
    row as well, so a flow's own code reads them by name; the orchestrator only passes them on.
    """

    id: str
    name: str
    flow: str
    state: str
    state_message: str | None
    parameters: dict[str, Any]
    trigger: str
    scheduled_time: str | None
    created_at: str
    started_at: str | None
    ended_at: str | None
    heartbeat_at: str | None
    pid: int | None
    hostname: str | None
    metrics: dict[str, Any] | None
    error: str | None
    error_task: str | None
    deployment_id: int | None
    deployment: str | None
    work_queue: str | None
    schedule_fingerprint: str | None
    claimed_by: str | None
    cancel_requested: int
    attempts: int
    next_attempt_at: str | None
    late_reason: str | None
    enqueue_key: str | None
    retry_of: str | None
    triggered_by: str | None  # the completed run of another deployment that made this one (its trigger)
    retry_number: int
    max_lateness: float | None
    run_date: str | None
    fields: dict[str, Any]


# The columns of flow_runs: anything else a run is given is one of its flow's fields (kept in ``fields``).
RUN_COLUMNS = frozenset(RunRow.__annotations__) - {"deployment", "max_lateness"}


class DeploymentRow(TypedDict, total=False):
    """A deployment with its next and last run, as ``Store.deployments()`` returns it."""

    id: int
    name: str
    flow: str
    schedule: dict[str, Any] | None
    schedule_fingerprint: str | None
    parameters: dict[str, Any]
    tags: list[str]
    work_queue: str
    catchup: str
    max_lateness: float | None
    retries: int
    active: bool
    description: str | None
    source_file: str | None
    schedule_since: str | None
    after_deployment: str | None  # runs once for each completed run of that deployment
    last_error: str | None
    last_error_at: str | None
    next_run_time: str | None
    last_run_state: str | None
    skipped_slots: int
    created_at: str
    updated_at: str
