"""What a person asks of the orchestrator, from the CLI or the dashboard: the same functions for both.

Trigger a run, plan and enqueue a backfill, cancel a run, pause or resume a deployment, register
deployment files, create a work queue. Each takes the store and ``now``; bad input raises a
PipelineError with one sentence. The CLI prints what they return; the dashboard shows it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import NotFound
from ..store import DeploymentRow, RunRow, Store, from_db
from . import catchup, enqueue
from .deployment_files import LOAD_TIMEOUT
from .deployments import DeploymentSpec, check_name, load_specs, materialise, register
from .registry import flow_entry

BACKFILL_QUEUE = "backfill"


def trigger(store: Store, settings: Settings, *, deployment: str | None, date: dt.date | None,
            now: dt.datetime, parameters: dict | None = None) -> RunRow:
    """Enqueue one manual run of ``deployment`` (None: the default one) for ``date`` (None: the date the
    deployment sets itself, if its flow lets it, else today); ``parameters`` (such as ``data_url``) apply to
    this run only."""
    date = date or _own_date(store, deployment)
    return enqueue.trigger_run(store, settings, deployment=deployment, date=date, now=now, parameters=parameters)


def _own_date(store: Store, deployment: str | None) -> dt.date | None:
    """A deployment's own ``date`` parameter (a Prefect 2 spec's ``parameters={"date": "2021-08-15"}``)."""
    row = enqueue.find_deployment(store, deployment)
    if not flow_entry(row["flow"]).deployment_date:
        return None
    try:
        return dt.date.fromisoformat(str((row.get("parameters") or {}).get("date"))[:10])
    except ValueError:
        return None


def plan_backfill(store: Store, settings: Settings, *, deployment: str | None, start: dt.date, end: dt.date,
                  now: dt.datetime, force: bool = False) -> enqueue.BackfillPlan:
    """What a backfill would enqueue and skip; writes nothing."""
    return enqueue.plan_backfill(store, settings, deployment=deployment, start=start, end=end, now=now, force=force)


def backfill(store: Store, settings: Settings, plan: enqueue.BackfillPlan, *, now: dt.datetime,
             concurrency: int | None = None) -> enqueue.Enqueued:
    """Enqueue a plan; with ``concurrency``, in the work queue 'backfill' limited to that many at once."""
    if concurrency and plan.dates:
        store.upsert_work_queue(BACKFILL_QUEUE, concurrency_limit=concurrency, now=now)
        plan = dataclasses.replace(plan, work_queue=BACKFILL_QUEUE)
    return enqueue.enqueue_backfill(store, settings, plan, now=now)


def cancel(store: Store, run_id: str, *, now: dt.datetime) -> RunRow:
    """Cancel a waiting run at once, or ask whoever runs it (scheduler or foreground command) to stop it."""
    return store.request_cancel(run_id, now=now)


def held_by(store: Store, run: RunRow) -> str | None:
    """What holds a waiting run, with the command that releases it: its paused deployment or work queue."""
    deployment = next((d for d in store.deployments() if d["id"] == run.get("deployment_id")), None)
    if deployment and not deployment["active"]:
        return (f"Deployment {deployment['name']} is paused: the run waits until "
                f"`python -m pipeline deployment resume {deployment['name']}`")
    queue = next((q for q in store.work_queues() if q["name"] == run.get("work_queue")), None)
    if queue and queue["paused"]:
        return f"Work queue {queue['name']} is paused: the run waits until `python -m pipeline work-queue resume {queue['name']}`"
    return None


def pause(store: Store, name: str, *, now: dt.datetime) -> DeploymentRow:
    """Hold a deployment: it starts nothing (scheduled, manual or backfill runs) until resumed.

    Its runs stay as they are, with their ids and names; no new slots are made meanwhile.
    """
    return store.set_deployment_active(name, False, now)


def resume(store: Store, settings: Settings, name: str, *, now: dt.datetime) -> DeploymentRow:
    """Schedule a paused deployment again from ``now``; its slots that passed while it was paused are
    judged by its catch-up policy, as after a downtime; manual and backfill runs it held run."""
    paused = store.get_deployment(name)
    row = store.set_deployment_active(name, True, now)
    if not paused["active"]:
        missed = store.missed_runs(row["id"], after=None, until=now)
        catchup.apply_policy(store, row, missed, since=from_db(paused["updated_at"]), now=now,
                             why="while it was paused")
    materialise(store, settings, row, now)
    return store.get_deployment(name)


def create_work_queue(store: Store, name: str, *, limit: int | None, now: dt.datetime) -> dict:
    check_name(name, "work queue")
    return store.upsert_work_queue(name, concurrency_limit=limit, now=now)


@dataclass(frozen=True)
class Registered:
    """A deployment as registered from a file, with what the user should know about it."""

    row: DeploymentRow
    spec: DeploymentSpec
    notes: list[str] = field(default_factory=list)


def register_file(store: Store, settings: Settings, path: Path, *, now: dt.datetime, python: str | None = None,
                  timeout: float = LOAD_TIMEOUT) -> list[Registered]:
    """Register every spec of a deployment file (loaded in ``python`` if given, within ``timeout`` seconds); a
    work queue it names that does not exist is created, and said."""
    specs = load_specs(path, python=python, timeout=timeout)
    out = []
    for spec in specs:
        notes = _replaced_flow(store, spec) + ([] if _queue_exists(store, spec.work_queue) else [
            f"Created the work queue {spec.work_queue!r} (no concurrency limit) for {spec.name}; the queues were "
            f"{', '.join(q['name'] for q in store.work_queues())}. Set a limit with: python -m pipeline work-queue "
            f"set-limit {spec.work_queue} N"])
        row = register(store, spec, now, settings=settings, source_file=str(Path(path).resolve()))
        out.append(Registered(row, spec, notes))
    return out


def _replaced_flow(store: Store, spec: DeploymentSpec) -> list[str]:
    """A deployment of this name that ran another flow (another file's) is replaced: said, not silent."""
    try:
        before = store.get_deployment(spec.name)["flow"]
    except NotFound:
        return []
    if before == spec.flow:
        return []
    return [f"The deployment {spec.name} ran the flow {before}; it runs {spec.flow} from now on (a deployment "
            "name is unique here: give the spec another name to keep both)."]


def _queue_exists(store: Store, name: str) -> bool:
    try:
        store.work_queue(name)
    except NotFound:
        return False
    return True
