"""Store rows -> pandas DataFrames shaped for the tables and the charts. Pure functions."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable
from urllib.parse import urlencode

import pandas as pd

from pipeline.orchestration.liveness import worker_alive

from . import labels

METRIC_KEYS = ("train_mse", "val_mse", "train_rmse", "val_rmse", "train_rows", "val_rows",
               "train_mean_duration", "val_mean_duration", "feature_count")


def run_url(run: dict[str, Any]) -> str:
    """The detail page of a run: ``/run?id=<uuid>&name=<name>`` (the name only labels the link)."""
    return "/run?" + urlencode({"id": run["id"], "name": run.get("name") or run["id"][:8]})


RUN_COLUMNS = ["State", "Run date", "Val RMSE", "Run", "Months", "Started (UTC)", "Duration", "Reason",
               "Trigger", "Deployment", "Tasks", "Data", "id"]


def runs_table(rows: Iterable[dict[str, Any]], task_counts: dict[str, int] | None = None, *,
               now: dt.datetime | None = None, overdue_note: str | None = None) -> pd.DataFrame:
    """One line per flow run: what a user scans first (state, run date, validation RMSE) on the
    left, so that a phone still shows them; empty values are blank, never "None".

    ``overdue_note`` (given while no scheduler is alive) is the reason of waiting runs past due.
    """
    task_counts = task_counts or {}
    records = [_run_record(r, task_counts.get(r["id"]), now, overdue_note) for r in rows]
    return pd.DataFrame.from_records(records, columns=RUN_COLUMNS)


def _run_record(run: dict[str, Any], tasks: int | None, now: dt.datetime | None,
                overdue_note: str | None) -> dict[str, Any]:
    metrics = run.get("metrics") or {}
    rmse = metrics.get("val_rmse")
    return {
        "State": [labels.state_label(labels.status(run))],
        "Run date": run.get("run_date") or "",
        "Val RMSE": "" if rmse is None else f"{rmse:.4f}",
        "Run": run_url(run) if run.get("id") else None,
        "Months": months_short(run),
        "Started (UTC)": _when(run),
        "Duration": labels.duration(run["started_at"], run.get("ended_at") or now) if run.get("started_at") else "",
        "Reason": labels.reason(run, now=now, overdue_note=overdue_note),
        "Trigger": run.get("trigger") or "",
        "Deployment": run.get("deployment") or "manual",
        "Tasks": tasks or 0,
        "Data": labels.data_label(run),
        "id": run.get("id"),
    }


def months_short(run: dict[str, Any]) -> str:
    """``2021-06 → 2021-07`` (training month → validation month); blank for a run without months."""
    return f"{run['train_month']} → {run['val_month']}" if run.get("train_month") else ""


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
    if run.get("state") == "AWAITING_RETRY" and run.get("next_attempt_at"):
        return f"{labels.utc(run['next_attempt_at'], seconds=False).removesuffix(' UTC')} (retry)"
    if run.get("scheduled_time"):
        return f"{labels.utc(run['scheduled_time'], seconds=False).removesuffix(' UTC')} (due)"
    return ""


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


def metric_months(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """``Store.metric_months`` rows as the trends frame: one row per month, oldest run date first."""
    records = [{"id": r["id"], "name": r["name"], "run_date": pd.Timestamp(r["run_date"]),
                "months": labels.months(r), "synthetic": bool(r.get("synthetic")), "runs": r.get("runs") or 1,
                "data": labels.source_label(r.get("data_source")) if not r.get("synthetic") else "synthetic demo data",
                **{k: r.get(k) for k in METRIC_KEYS}} for r in rows]
    columns = ["id", "name", "run_date", "months", "synthetic", "runs", "data", *METRIC_KEYS]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame[list(METRIC_KEYS)] = frame[list(METRIC_KEYS)].astype(float)
    return frame.sort_values("run_date", kind="stable").reset_index(drop=True)


def logs_table(rows: Iterable[dict[str, Any]], run: dict[str, Any] | None = None) -> pd.DataFrame:
    """Log lines with millisecond UTC times and whole messages; see ``log_task`` for the Task column."""
    records = [{"Time (UTC)": labels.utc_ms(r["ts"]), "Level": r["level"], "Task": log_task(r, run),
                "Message": r["message"]} for r in rows]
    return pd.DataFrame.from_records(records, columns=["Time (UTC)", "Level", "Task", "Message"])


def log_task(line: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    """The task a log line came from; an error the flow logged about its failure goes to the task it
    happened in (the run's ``error_task``), not to "flow"."""
    if line.get("task"):
        return line["task"]
    failed_in = (run or {}).get("error_task")
    if failed_in and line.get("level") in ("ERROR", "CRITICAL"):
        return failed_in
    return "flow"


def logs_text(rows: Iterable[dict[str, Any]], run: dict[str, Any] | None = None) -> str:
    """The log as a plain text file: one line per record, times in UTC with milliseconds."""
    return "".join(f"{labels.utc_ms(r['ts'])} {r['level']:<7} {log_task(r, run):<16} {r['message']}\n"
                   for r in rows)


def upcoming_table(rows: Iterable[dict[str, Any]], zone: str | None, now: dt.datetime,
                   overdue_note: str | None = None) -> pd.DataFrame:
    """Waiting runs with their time in the schedule's zone (named in the header) and in UTC.

    ``overdue_note`` (given while no scheduler is alive) is the reason of the runs past due.
    """
    local = f"Local time ({zone})" if zone and zone != "UTC" else "Local time (UTC)"
    records = [{"Run": run_url(r), "State": [labels.state_label(labels.status(r))],
                local: labels.in_zone(labels.due_time(r), zone or "UTC").split(" (")[0],
                "UTC": labels.utc(labels.due_time(r), seconds=False),
                "Starts": labels.countdown(labels.due_time(r), now) if not labels.is_held(r) else "when resumed",
                "Why it waits": labels.reason(r, now=now, overdue_note=overdue_note),
                "Covers": covers(r)} for r in rows]
    columns = ["Run", "State", local, "UTC", "Starts", "Why it waits", "Covers"]
    return pd.DataFrame.from_records(records, columns=columns)


def work_queues_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    records = [{"Work queue": q["name"],
                "Concurrency limit": "unlimited" if q.get("concurrency_limit") is None else str(q["concurrency_limit"]),
                "Status": "paused" if q.get("paused") else "active", "Running": q.get("running", 0),
                "Scheduled": q.get("scheduled", 0), "Late": q.get("late", 0),
                "Awaiting data": q.get("awaiting", 0)} for q in rows]
    return pd.DataFrame.from_records(records, columns=["Work queue", "Concurrency limit", "Status", "Running",
                                                       "Scheduled", "Late", "Awaiting data"])


def workers_table(rows: Iterable[dict[str, Any]], running: dict[str, int], now: dt.datetime) -> pd.DataFrame:
    """One line per worker (``python -m pipeline worker``): where it runs, what it serves, its load, alive or not."""
    records = [{"Worker": w["id"], "Host": w["hostname"],
                "Queues": ", ".join(w["queues"]) or "every queue",
                "Running": f"{running.get(w['id'], 0)} of {w['concurrency']}",
                "Last heartbeat (UTC)": labels.utc(w["heartbeat_at"]).removesuffix(" UTC"),
                "Status": "stopped" if w["stopped_at"] else "alive" if worker_alive(w, now=now)
                else f"gone: silent for more than {w['stale_after']:g} s",
                "Last error": w.get("last_error") or ""} for w in rows]
    return pd.DataFrame.from_records(records, columns=["Worker", "Host", "Queues", "Running", "Last heartbeat (UTC)",
                                                       "Status", "Last error"])


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
