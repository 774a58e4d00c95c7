"""A realistic run history for the dashboard's tests, the browser test and the bench.

Everything goes through the ``Store`` API, like the flow and the scheduler write it: twelve
completed monthly runs with the flow's metrics (three of them on synthetic data), one FAILED run
with its error, error task and NOT_RUN tasks, one CRASHED, one CANCELLED, one LATE with its
reason, SCHEDULED upcoming runs of a cron deployment, logs, and artifacts that are real files.
``bulk_history`` adds thousands of runs fast for the bench.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.orchestration import deployments
from pipeline.config import Settings
from pipeline.training import job
from pipeline.training.months import months_for
from pipeline.orchestration.states import State
from pipeline.store import Store, new_run_id, to_db

UTC = dt.timezone.utc
FLOW = "fhv-duration-training"
TASKS = ("read_data", "prepare_features", "train_model", "run_model")
TASK_SECONDS = {"read_data": 1.84, "prepare_features": 0.312, "train_model": 1.217, "run_model": 0.042}
DEPLOYMENT = job.DEFAULT_DEPLOYMENT
ZONE = "America/New_York"
TLC = "https://d37ci6vzurychx.cloudfront.net/trip-data/fhv_tripdata_{month}.parquet"


@dataclass
class Seeded:
    settings: Settings
    deployment: str = DEPLOYMENT
    completed: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)
    failed: str = ""
    crashed: str = ""
    cancelled: str = ""
    late: str = ""


def seed_history(home: Path, *, now: dt.datetime | None = None, scheduler_alive: bool = False) -> Seeded:
    """Write the history into ``home`` (FHV_HOME) and return the ids of the runs it made."""
    now = now or dt.datetime.now(UTC)
    settings = Settings(home=Path(home), data_url="demo:3000").ensure_dirs()
    store = Store(settings.db_path)
    try:
        seeded = Seeded(settings)
        dep_id = ensure_deployment(store, now)
        for i in range(12):
            seeded.completed.append(completed_run(store, settings, dep_id, i, now))
        seeded.failed = failed_run(store, dep_id, now - dt.timedelta(days=1, hours=3))
        seeded.crashed = crashed_run(store, dep_id, now - dt.timedelta(hours=20))
        seeded.cancelled = cancelled_run(store, dep_id, now - dt.timedelta(hours=8))
        seeded.late = late_run(store, dep_id, now)
        seeded.scheduled = scheduled_runs(store, settings, now)
        set_scheduler(store, now, alive=scheduler_alive)
    finally:
        store.close()
    return seeded


# -- deployment and scheduler rows ---------------------------------------------------
def ensure_deployment(store: Store, now: dt.datetime) -> int:
    """The product's default deployment (``0 9 15 * *`` in America/New_York), registered as the CLI does."""
    return deployments.register(store, deployments.default_deployment(), now)["id"]


def set_scheduler(store: Store, now: dt.datetime, *, alive: bool) -> None:
    """A scheduler that started two days ago and is alive (fresh heartbeat) or stopped an hour ago."""
    owner = "seed-host:4242:seed"
    store.take_scheduler_lease(owner=owner, pid=4242, hostname="seed-host", now=now - dt.timedelta(days=2),
                               stale_after=30.0, holder_gone=lambda row: True)
    if alive:
        store.scheduler_heartbeat(now, owner=owner)
    else:
        store.scheduler_stopped(now - dt.timedelta(hours=1), owner=owner)


# -- runs ------------------------------------------------------------------------------
def run_fields(run_date: dt.date, dep_id: int | None, *, synthetic: bool = False) -> dict[str, Any]:
    train, val = months_for(run_date)
    return {"run_date": run_date.isoformat(), "train_month": train, "val_month": val,
            "data_source": "demo:3000" if synthetic else TLC, "synthetic": synthetic,
            "deployment_id": dep_id, "work_queue": "default"}


def scheduled_at(run_date: dt.date) -> dt.datetime:
    """09:00 in New York on the run date, as the cron deployment schedules it."""
    return dt.datetime.combine(run_date, dt.time(9), ZoneInfo(ZONE)).astimezone(UTC)


def completed_run(store: Store, settings: Settings, dep_id: int, i: int, now: dt.datetime) -> str:
    run_date = dt.date(2021 + (i + 2) // 12, (i + 2) % 12 + 1, 15)
    synthetic = i < 3
    start = now - dt.timedelta(days=13 - i, hours=5, minutes=7 * i)
    rng = random.Random(i)
    tasks = plan_tasks(start, rng, ran=len(TASKS))
    metrics = flow_metrics(run_date, rng, synthetic)
    run_id = store.create_run(flow=FLOW, name=f"steady-run-{i + 1:02d}", state=State.COMPLETED, now=start,
                              parameters={"date": run_date.isoformat()}, trigger="schedule",
                              scheduled_time=scheduled_at(run_date), started_at=start, ended_at=_end(tasks),
                              metrics=metrics, **run_fields(run_date, dep_id, synthetic=synthetic))
    write_tasks(store, run_id, tasks)
    run_logs(store, run_id, start, metrics)
    write_artifacts(store, settings, run_id, run_date, start)
    return run_id


def plan_tasks(start: dt.datetime, rng: random.Random, *, ran: int, last_state: State = State.COMPLETED,
               error: str | None = None) -> list[tuple]:
    """(task, state, start, end, error) in order: ``ran`` tasks ran, the last ending in
    ``last_state``; the others are NOT_RUN (no start)."""
    plan, moment = [], start + dt.timedelta(seconds=0.004)
    for position, name in enumerate(TASKS):
        if position >= ran:
            plan.append((name, State.NOT_RUN, None, moment, "Not run: an earlier task did not complete."))
            continue
        end = moment + dt.timedelta(seconds=TASK_SECONDS[name] * rng.uniform(0.85, 1.2))
        state = last_state if position == ran - 1 else State.COMPLETED
        plan.append((name, state, moment, end, None if state is State.COMPLETED else error))
        moment = end + dt.timedelta(seconds=0.002)
    return plan


def _end(plan: list[tuple]) -> dt.datetime:
    return max(end for _, _, _, end, _ in plan) + dt.timedelta(seconds=0.003)


def write_tasks(store: Store, run_id: str, plan: list[tuple]) -> None:
    for position, (name, state, start, end, error) in enumerate(plan):
        first = State.NOT_RUN if state is State.NOT_RUN else State.RUNNING
        task_id = store.create_task_run(run_id, name, position=position, attempt=1, state=first, now=start)
        store.finish_task_run(task_id, state, now=end, error=error)


def flow_metrics(run_date: dt.date, rng: random.Random, synthetic: bool) -> dict[str, Any]:
    """The metrics dict ``pipeline.training.flow._metrics`` produces, with realistic numbers."""
    train, val = months_for(run_date)
    train_rmse, val_rmse = rng.uniform(10.4, 11.8), rng.uniform(10.9, 12.1)
    stats = {part: month_stats(rng) for part in ("train", "val")}
    return {"run_date": run_date.isoformat(), "train_month": train, "val_month": val,
            "train_rows": stats["train"]["rows"], "val_rows": stats["val"]["rows"],
            "feature_count": rng.choice([521, 523, 525]),
            "train_mse": train_rmse ** 2, "train_rmse": train_rmse, "val_mse": val_rmse ** 2, "val_rmse": val_rmse,
            "train_mean_duration": stats["train"]["mean_duration"], "val_mean_duration": stats["val"]["mean_duration"],
            "train_stats": stats["train"], "val_stats": stats["val"],
            "synthetic": synthetic, "data_source": "demo:3000" if synthetic else TLC}


def month_stats(rng: random.Random) -> dict[str, Any]:
    raw = rng.randint(1_100_000, 1_300_000)
    rows = int(raw * rng.uniform(0.955, 0.965))
    return {"raw_rows": raw, "rows": rows, "dropped": raw - rows, "dropped_share": (raw - rows) / raw,
            "mean_duration": rng.uniform(16.0, 18.4), "mean_duration_raw": rng.uniform(19.0, 21.0),
            "median_duration": rng.uniform(13.0, 13.6), "pu_missing_share": rng.uniform(0.82, 0.84),
            "do_missing_share": rng.uniform(0.13, 0.15), "pu_distinct": 261, "do_distinct": 262}


def failed_run(store: Store, dep_id: int, start: dt.datetime) -> str:
    run_date = dt.date(2022, 3, 15)
    error = "fhv_tripdata_2022-01: no trip lasts between 1 and 60 minutes after filtering; the month is empty."
    tasks = plan_tasks(start, random.Random(99), ran=3, last_state=State.FAILED, error=error)
    run_id = store.create_run(flow=FLOW, name="sarcastic-lorikeet", state=State.FAILED, now=start,
                              parameters={"date": run_date.isoformat()}, trigger="manual",
                              scheduled_time=start, started_at=start, ended_at=_end(tasks),
                              error=error, error_task="train_model", state_message=error,
                              **run_fields(run_date, dep_id))
    write_tasks(store, run_id, tasks)
    store.add_log(run_id, level="INFO", message="Run date 2022-03-15: training on 2022-01, validating on 2022-02.", ts=start)
    store.add_log(run_id, level="WARNING", message="read_data failed (attempt 1 of 4): HTTP 503; retrying in 5 s.",
                  ts=start + dt.timedelta(seconds=0.5))
    store.add_log(run_id, level="ERROR", message=error, ts=start + dt.timedelta(seconds=2.8))
    return run_id


def crashed_run(store: Store, dep_id: int, start: dt.datetime) -> str:
    run_date = dt.date(2022, 4, 15)
    error = "The run's process (pid 31337) stopped heartbeating for 95 s; marked CRASHED by the scheduler."
    run_id = store.create_run(flow=FLOW, name="brittle-heron", state=State.CRASHED, now=start,
                              parameters={"date": run_date.isoformat()}, trigger="schedule",
                              scheduled_time=scheduled_at(run_date), started_at=start,
                              ended_at=start + dt.timedelta(seconds=97), error=error, state_message=error,
                              **run_fields(run_date, dep_id))
    write_tasks(store, run_id, plan_tasks(start, random.Random(7), ran=1, last_state=State.CRASHED, error=error))
    store.add_log(run_id, level="INFO", message="Run date 2022-04-15: training on 2022-02, validating on 2022-03.", ts=start)
    return run_id


def cancelled_run(store: Store, dep_id: int, start: dt.datetime) -> str:
    run_date = dt.date(2022, 5, 15)
    return store.create_run(flow=FLOW, name="patient-otter", state=State.CANCELLED, now=start,
                            parameters={"date": run_date.isoformat()}, trigger="manual", scheduled_time=start,
                            ended_at=start + dt.timedelta(minutes=2), state_message="Cancelled before it started.",
                            **run_fields(run_date, dep_id))


def late_run(store: Store, dep_id: int, now: dt.datetime) -> str:
    """A slot missed while no scheduler ran, marked LATE (with the scheduler's wording) by one that ran then."""
    due = now - dt.timedelta(hours=2)
    reason = f"no scheduler was running when it was due (before {due + dt.timedelta(minutes=30):%Y-%m-%d %H:%M:%S} UTC)"
    run_date = due.date()
    return store.create_run(flow=FLOW, name="tardy-pelican", state=State.LATE, now=due,
                            parameters={"date": run_date.isoformat()}, trigger="schedule", scheduled_time=due,
                            late_reason=reason, **run_fields(run_date, dep_id))


def scheduled_runs(store: Store, settings: Settings, now: dt.datetime) -> list[str]:
    """The deployment's next runs, made from its schedule as the scheduler makes them."""
    deployments.materialise(store, settings, store.get_deployment(DEPLOYMENT), now)
    return [r["id"] for r in store.runs(states=["SCHEDULED"], deployment=DEPLOYMENT, order="upcoming")]


# -- logs and artifacts ------------------------------------------------------------------
def run_logs(store: Store, run_id: str, start: dt.datetime, metrics: dict[str, Any]) -> None:
    tasks = {t["task"]: t["id"] for t in store.task_runs(run_id)}
    lines = [
        (None, "INFO", f"Run date {metrics['run_date']}: training on {metrics['train_month']}, "
                       f"validating on {metrics['val_month']}."),
        ("read_data", "DEBUG", f"Cache hit for fhv_tripdata_{metrics['train_month']}."),
        ("read_data", "INFO", f"Read fhv_tripdata_{metrics['train_month']}: {metrics['train_stats']['raw_rows']:,} rows."),
        ("prepare_features", "INFO", f"fhv_tripdata_{metrics['train_month']}: {metrics['train_rows']:,} trips kept."),
        ("train_model", "INFO", f"Trained LinearRegression on {metrics['train_rows']:,} rows and "
                                f"{metrics['feature_count']} one-hot features."),
        ("run_model", "INFO", f"Train: MSE {metrics['train_mse']:.4f}, RMSE {metrics['train_rmse']:.4f}. "
                              f"Validation: MSE {metrics['val_mse']:.4f}, RMSE {metrics['val_rmse']:.4f}."),
    ]
    for i, (task, level, message) in enumerate(lines):
        store.add_log(run_id, level=level, message=message, ts=start + dt.timedelta(seconds=0.5 * i),
                      task_run_id=tasks.get(task))


def write_artifacts(store: Store, settings: Settings, run_id: str, run_date: dt.date, now: dt.datetime) -> None:
    folder = settings.artifacts_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    for name, kind, value in ((f"model-{run_date}.pkl", "model", {"coef": [0.1, 0.2], "intercept": 16.2}),
                              (f"dv-{run_date}.pkl", "vectorizer", {"vocabulary": {"PU=1": 0, "DO=1": 1}})):
        path = folder / name
        path.write_bytes(pickle.dumps(value))
        data = path.read_bytes()
        store.add_artifact(run_id, name=name, path=str(path), sha256=hashlib.sha256(data).hexdigest(),
                           size=len(data), now=now, kind=kind)


# -- many runs, fast (the bench) --------------------------------------------------------------
def bulk_history(store: Store, *, runs: int, tasks_per_run: int = 5, now: dt.datetime | None = None) -> None:
    """Add ``runs`` completed or failed runs with their task runs in two ``executemany`` calls."""
    now = now or dt.datetime.now(UTC)
    rng = random.Random(1)
    run_rows, task_rows = [], []
    for i in range(runs):
        run_rows.append(_bulk_run(i, now - dt.timedelta(minutes=7 * (runs - i)), rng))
        task_rows += _bulk_tasks(run_rows[-1], tasks_per_run)
    with store.atomic() as conn:
        conn.executemany(f"INSERT INTO flow_runs ({', '.join(BULK_RUN_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(BULK_RUN_COLUMNS))})", run_rows)
        conn.executemany("INSERT INTO task_runs (flow_run_id, task, position, attempt, state, started_at, ended_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", task_rows)


BULK_RUN_COLUMNS = ("id", "name", "flow", "state", "parameters", "run_date", "fields", "trigger", "scheduled_time",
                    "created_at", "started_at", "ended_at", "metrics", "error", "error_task")


def _bulk_run(i: int, start: dt.datetime, rng: random.Random) -> tuple:
    run_date = dt.date(2015 + (i // 12) % 10, i % 12 + 1, 15)
    failed = i % 17 == 0
    metrics = None if failed else json.dumps(flow_metrics(run_date, rng, synthetic=i % 5 == 0))
    train, val = months_for(run_date)
    end = start + dt.timedelta(seconds=rng.uniform(2.5, 6.0))
    return (new_run_id(), f"bulk-run-{i:05d}", FLOW, "FAILED" if failed else "COMPLETED",
            json.dumps({"date": run_date.isoformat()}), run_date.isoformat(),
            json.dumps({"train_month": train, "val_month": val, "data_source": TLC, "synthetic": i % 5 == 0}),
            "backfill", to_db(start), to_db(start), to_db(start), to_db(end), metrics,
            "fhv_tripdata_x: empty month." if failed else None, "train_model" if failed else None)


def _bulk_tasks(run: tuple, count: int) -> list[tuple]:
    start = dt.datetime.fromisoformat(run[BULK_RUN_COLUMNS.index("started_at")].replace("Z", "+00:00"))
    rows = []
    for position in range(count):
        name = TASKS[position % len(TASKS)] if position < len(TASKS) else f"extra_{position}"
        begin, end = start + dt.timedelta(seconds=position), start + dt.timedelta(seconds=position + 0.8)
        rows.append((run[0], name, position, 1, "COMPLETED", to_db(begin), to_db(end)))
    return rows


# -- a long monthly history (trends of 70 months, the README's screenshots) -----------------------------
def monthly_history(store: Store, *, months: int = 60, first: dt.date = dt.date(2016, 3, 15),
                    gaps: tuple[int, ...] = (20, 21), now: dt.datetime | None = None) -> int:
    """Completed scheduled runs, one a month from ``first``, ``months`` months minus the ``gaps``
    (indexes of months that have no run), with the flow's metrics: a slow drift and a seasonal wave
    in the errors, demo data for the first six months. Returns how many runs it wrote."""
    now = now or dt.datetime.now(UTC)
    dep_id = store.get_deployment(DEPLOYMENT)["id"]
    rng, written = random.Random(70), 0
    for i in range(months):
        if i in gaps:
            continue
        run_date = dt.date(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 15)
        synthetic = i < 6
        metrics = flow_metrics(run_date, rng, synthetic)
        wave = 0.6 * math.sin(i / 12 * 2 * math.pi) + i * 0.01
        for part in ("train", "val"):
            metrics[f"{part}_rmse"] += wave
            metrics[f"{part}_mse"] = metrics[f"{part}_rmse"] ** 2
        start = now - dt.timedelta(days=30 * (months - i), hours=3)
        store.create_run(flow=FLOW, name=f"month-{run_date:%Y-%m}", state=State.COMPLETED, now=start,
                         parameters={"date": run_date.isoformat()}, trigger="schedule",
                         scheduled_time=scheduled_at(run_date), started_at=start,
                         ended_at=start + dt.timedelta(seconds=rng.uniform(3.0, 6.0)), metrics=metrics,
                         **run_fields(run_date, dep_id, synthetic=synthetic))
        written += 1
    return written
