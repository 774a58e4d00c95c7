"""Store rows -> pandas DataFrames shaped for the tables and the charts. Pure functions."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable
from urllib.parse import urlencode

import pandas as pd

from . import labels

METRIC_KEYS = ("train_mse", "val_mse", "train_rmse", "val_rmse", "train_rows", "val_rows",
               "train_mean_duration", "val_mean_duration", "feature_count")


def run_url(run: dict[str, Any]) -> str:
    """The detail page of a run: ``/run?id=<uuid>&name=<name>`` (the name only labels the link)."""
    return "/run?" + urlencode({"id": run["id"], "name": run.get("name") or run["id"][:8]})


def runs_table(rows: Iterable[dict[str, Any]], task_counts: dict[str, int] | None = None, *,
               now: dt.datetime | None = None, overdue_note: str | None = None) -> pd.DataFrame:
    """One line per flow run, with the months it covered and why it failed or waits.

    ``overdue_note`` (given while no scheduler is alive) is the reason of waiting runs past due.
    """
    task_counts = task_counts or {}
    records = [_run_record(r, task_counts.get(r["id"]), now, overdue_note) for r in rows]
    return pd.DataFrame.from_records(records, columns=list(_run_record({"id": ""}, None, None, None)))


def _run_record(run: dict[str, Any], tasks: int | None, now: dt.datetime | None,
                overdue_note: str | None) -> dict[str, Any]:
    metrics = run.get("metrics") or {}
    state = run.get("state") or "SCHEDULED"
    return {
        "Run": run_url(run) if run.get("id") else None,
        "State": [labels.state_label(state)],
        "Covers": covers(run),
        "Reason": labels.reason(run, now=now, overdue_note=overdue_note),
        "Start (UTC)": _when(run),
        "Duration": labels.duration(run.get("started_at"), run.get("ended_at")),
        "Tasks": tasks or 0,
        "Val RMSE": metrics.get("val_rmse"),
        "Data": "synthetic" if labels.is_synthetic(run) else "real",
        "Deployment": run.get("deployment") or "manual",
    }


def covers(run: dict[str, Any]) -> str:
    """``2021-08-15: 2021-06 → 2021-07`` (run date: training month → validation month)."""
    if not run.get("run_date"):
        return "-"
    if not run.get("train_month"):
        return run["run_date"]
    return f"{run['run_date']}: {run['train_month']} → {run['val_month']}"


def _when(run: dict[str, Any]) -> str:
    if run.get("started_at"):
        return labels.utc(run["started_at"], seconds=False).removesuffix(" UTC")
    if run.get("scheduled_time"):
        return f"{labels.utc(run['scheduled_time'], seconds=False).removesuffix(' UTC')} (due)"
    return "-"


def run_points(rows: Iterable[dict[str, Any]], now: dt.datetime) -> pd.DataFrame:
    """Started runs for the scatter: start time (UTC), duration in seconds, state, hover text."""
    records = []
    for run in rows:
        start = labels.as_moment(run.get("started_at"))
        if start is None:
            continue
        end = labels.as_moment(run.get("ended_at")) or now
        seconds = max((end - start).total_seconds(), 0.0)
        records.append({"id": run["id"], "name": run["name"], "state": run["state"],
                        "started_at": start.astimezone(labels.UTC).replace(tzinfo=None),
                        "duration_s": seconds, "duration": labels.seconds_text(seconds),
                        "months": labels.months(run), "run_date": run.get("run_date") or "-"})
    columns = ["id", "name", "state", "started_at", "duration_s", "duration", "months", "run_date"]
    return pd.DataFrame.from_records(records, columns=columns)


def task_bars(tasks: Iterable[dict[str, Any]], run_start: str | dt.datetime | None,
              now: dt.datetime) -> pd.DataFrame:
    """Task runs placed by their start (seconds after the run started) and length.

    Tasks that never ran have no start: ``offset_s`` and ``duration_s`` are NaN and the
    chart draws them as "not run".
    """
    tasks = list(tasks)
    origin = labels.as_moment(run_start) or _first_start(tasks)
    records = [_task_record(t, origin, now) for t in tasks]
    columns = ["task", "attempt", "state", "offset_s", "duration_s", "duration", "error", "label"]
    return pd.DataFrame.from_records(records, columns=columns)


def _first_start(tasks: list[dict[str, Any]]) -> dt.datetime | None:
    starts = [labels.as_moment(t["started_at"]) for t in tasks if t.get("started_at")]
    return min(starts) if starts else None


def _task_record(task: dict[str, Any], origin: dt.datetime | None, now: dt.datetime) -> dict[str, Any]:
    start = labels.as_moment(task.get("started_at"))
    ran = start is not None and origin is not None and task["state"] != "NOT_RUN"
    end = (labels.as_moment(task.get("ended_at")) or now) if ran else None
    seconds = max((end - start).total_seconds(), 0.0) if ran else float("nan")
    attempt = int(task.get("attempt") or 1)
    name = task["task"] if attempt == 1 else f"{task['task']} (attempt {attempt})"
    return {"task": task["task"], "attempt": attempt, "state": task["state"],
            "offset_s": (start - origin).total_seconds() if ran else float("nan"),
            "duration_s": seconds, "duration": labels.seconds_text(seconds) if ran else "not run",
            "error": task.get("error") or "", "label": name}


def metric_history(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Completed runs with their metrics, oldest run date first (for the trends)."""
    records = []
    for run in rows:
        metrics = run.get("metrics") or {}
        records.append({"id": run["id"], "name": run["name"],
                        "run_date": pd.Timestamp(run.get("run_date") or metrics.get("run_date")),
                        "months": labels.months(run), "synthetic": labels.is_synthetic(run),
                        **{k: metrics.get(k) for k in METRIC_KEYS}})
    columns = ["id", "name", "run_date", "months", "synthetic", *METRIC_KEYS]
    frame = pd.DataFrame.from_records(records, columns=columns)
    return frame.sort_values("run_date", kind="stable").reset_index(drop=True)


def logs_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    records = [{"Time (UTC)": labels.utc(r["ts"]).removesuffix(" UTC"), "Level": r["level"],
                "Task": r.get("task") or "flow", "Message": r["message"]} for r in rows]
    return pd.DataFrame.from_records(records, columns=["Time (UTC)", "Level", "Task", "Message"])


def logs_text(rows: Iterable[dict[str, Any]]) -> str:
    """The log as a plain text file: one line per record, times in UTC."""
    return "".join(f"{labels.utc(r['ts'])} {r['level']:<7} {r.get('task') or 'flow':<16} {r['message']}\n"
                   for r in rows)


def upcoming_table(rows: Iterable[dict[str, Any]], zone: str | None, now: dt.datetime,
                   overdue_note: str | None = None) -> pd.DataFrame:
    """Waiting runs with their time in the schedule's zone (named in the header) and in UTC.

    ``overdue_note`` (given while no scheduler is alive) is the reason of the runs past due.
    """
    local = f"Local time ({zone})" if zone and zone != "UTC" else "Local time (UTC)"
    records = [{"Run": run_url(r), "State": [labels.state_label(r["state"])],
                local: labels.in_zone(r["scheduled_time"], zone or "UTC").split(" (")[0],
                "UTC": labels.utc(r["scheduled_time"], seconds=False),
                "Starts": labels.countdown(r.get("next_attempt_at") or r["scheduled_time"], now),
                "Late reason": _waiting_reason(r, now, overdue_note),
                "Covers": covers(r)} for r in rows]
    columns = ["Run", "State", local, "UTC", "Starts", "Late reason", "Covers"]
    return pd.DataFrame.from_records(records, columns=columns)


def _waiting_reason(run: dict[str, Any], now: dt.datetime, overdue_note: str | None) -> str:
    if overdue_note and labels.is_overdue(run, now):
        return overdue_note
    return run.get("late_reason") or run.get("state_message") or ""


def work_queues_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    records = [{"Work queue": q["name"],
                "Concurrency limit": "unlimited" if q.get("concurrency_limit") is None else str(q["concurrency_limit"]),
                "Status": "paused" if q.get("paused") else "active", "Running": q.get("running", 0),
                "Scheduled": q.get("scheduled", 0), "Late": q.get("late", 0),
                "Awaiting data": q.get("awaiting", 0)} for q in rows]
    return pd.DataFrame.from_records(records, columns=["Work queue", "Concurrency limit", "Status", "Running",
                                                       "Scheduled", "Late", "Awaiting data"])


def skipped_slots_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Slots never made into runs after a downtime, one line per record (newest first), times in UTC."""
    records = [{"Deployment": r["deployment"],
                "From (UTC)": labels.utc(r["first_slot"], seconds=False).removesuffix(" UTC"),
                "To (UTC)": labels.utc(r["last_slot"], seconds=False).removesuffix(" UTC"),
                "How many": labels.how_many(r["count"], bool(r.get("count_is_floor"))),
                "Reason": r.get("reason") or "",
                "Recorded (UTC)": labels.utc(r.get("recorded_at"), seconds=False).removesuffix(" UTC")}
               for r in rows]
    return pd.DataFrame.from_records(records, columns=["Deployment", "From (UTC)", "To (UTC)", "How many",
                                                       "Reason", "Recorded (UTC)"])
