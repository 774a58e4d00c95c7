"""Store rows -> pandas DataFrames shaped for the tables and the charts. Pure functions."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable
from urllib.parse import urlencode

import pandas as pd

from pipeline.orchestration.liveness import worker_alive

from pipeline.orchestration.registry import Field, FlowEntry

from . import labels

def run_url(run: dict[str, Any]) -> str:
    """The detail page of a run: ``/run?id=<uuid>&name=<name>`` (the name only labels the link)."""
    return "/run?" + urlencode({"id": run["id"], "name": run.get("name") or run["id"][:8]})


BEFORE = ["State", "Run date"]  # the columns a runs table starts with (a phone shows them and the headline)
AFTER = ["Started (UTC)", "Duration", "Reason", "Trigger", "Deployment", "Tasks", "id"]


def run_columns(entry: FlowEntry | None) -> list[str]:
    """A runs table's columns: of one flow, its headline metric and its listed fields by their labels; of every
    flow, the flow, each run's headline and what it covers."""
    if entry is None:
        return [*BEFORE, "Flow", "Result", "Run", "Covers", *AFTER]
    headline = [entry.metrics[0].label] if entry.metrics else []
    listed = [f.label for f in entry.fields if f.listed and f.kind != "flag"]
    return [*BEFORE, *headline, "Run", *listed, *AFTER]


def runs_table(rows: Iterable[dict[str, Any]], task_counts: dict[str, int] | None = None, *,
               now: dt.datetime | None = None, overdue_note: str | None = None,
               entry: FlowEntry | None = None) -> pd.DataFrame:
    """One line per flow run: what a user scans first (state, run date, the headline metric) on the
    left, so that a phone still shows them; empty values are blank, never "None". ``entry``: the flow
    of every row (its fields and headline as columns), None for runs of any flow.

    ``overdue_note`` (given while no scheduler is alive) is the reason of waiting runs past due.
    """
    task_counts = task_counts or {}
    records = [_run_record(r, task_counts.get(r["id"]), now, overdue_note, entry) for r in rows]
    return pd.DataFrame.from_records(records, columns=run_columns(entry))


def _run_record(run: dict[str, Any], tasks: int | None, now: dt.datetime | None,
                overdue_note: str | None, entry: FlowEntry | None) -> dict[str, Any]:
    return {
        "State": [labels.state_label(labels.status(run))],
        "Run date": run.get("run_date") or "",
        **_flow_cells(run, entry),
        "Run": run_url(run) if run.get("id") else None,
        "Started (UTC)": _when(run),
        "Duration": labels.duration(run["started_at"], run.get("ended_at") or now) if run.get("started_at") else "",
        "Reason": labels.reason(run, now=now, overdue_note=overdue_note),
        "Trigger": run.get("trigger") or "",
        "Deployment": run.get("deployment") or "manual",
        "Tasks": tasks or 0,
        "id": run.get("id"),
    }


def _flow_cells(run: dict[str, Any], entry: FlowEntry | None) -> dict[str, Any]:
    """The cells a run's flow declares: its headline metric and listed fields (or, of any flow, its own)."""
    if entry is None:
        own = labels.entry_of(run.get("flow"))
        return {"Flow": own.display_name if own else "", "Result": labels.headline(own, run),
                "Covers": labels.covers(own, run)}
    metrics = run.get("metrics") or {}
    cells = {m.label: labels.metric_text(m, metrics.get(m.key)) for m in entry.metrics[:1]}
    return cells | {f.label: labels.field_text(f, labels.field_value(run, f.name)) for f in entry.fields
                    if f.listed and f.kind != "flag"}


def covers(run: dict[str, Any]) -> str:
    """``2021-08-15: Train month 2021-06 · Validation month 2021-07`` (run date: the fields its flow lists)."""
    if not run.get("run_date"):
        return "-"
    shown = labels.covers(labels.entry_of(run.get("flow")), run)
    return f"{run['run_date']}: {shown}" if shown else run["run_date"]


def _when(run: dict[str, Any]) -> str:
    if run.get("started_at"):
        return labels.utc(run["started_at"], seconds=False).removesuffix(" UTC")
    if run.get("state") == "AWAITING_RETRY" and run.get("next_attempt_at"):
        return f"{labels.utc(run['next_attempt_at'], seconds=False).removesuffix(' UTC')} (retry)"
    if run.get("scheduled_time"):
        return f"{labels.utc(run['scheduled_time'], seconds=False).removesuffix(' UTC')} (due)"
    return ""


def run_points(rows: Iterable[dict[str, Any]], now: dt.datetime, entry: FlowEntry | None = None) -> pd.DataFrame:
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
                        "covers": labels.covers(entry or labels.entry_of(run.get("flow")), run) or "-",
                        "run_date": run.get("run_date") or "-"})
    columns = ["id", "name", "state", "started_at", "duration_s", "duration", "covers", "run_date"]
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


def trend_frame(rows: Iterable[dict[str, Any]], entry: FlowEntry) -> pd.DataFrame:
    """``Store.trend_points`` rows as the Trends frame, oldest first: ``x`` (the trend's month field as a date,
    else the run date), what the run covers, whether a flag field is set, how many runs the point stands for,
    and the flow's metrics by key."""
    trend = entry.trend
    by = entry.field(trend.by) if trend and trend.by else None
    keys = list(dict.fromkeys([*((trend.metric, *trend.also) if trend else ()), *(m.key for m in entry.metrics)]))
    records = [{"id": r["id"], "name": r["name"], "x": _trend_x(r, by), "run_date": r.get("run_date") or "",
                "covers": labels.covers(entry, r), "flagged": bool(labels.flagged(entry, r)),
                "runs": r.get("runs") or 1, **{k: r.get(k) for k in keys}} for r in rows]
    frame = pd.DataFrame.from_records(records, columns=["id", "name", "x", "run_date", "covers", "flagged", "runs",
                                                        *keys])
    frame[keys] = frame[keys].astype(float)
    return frame.sort_values("x", kind="stable").reset_index(drop=True)


def _trend_x(run: dict[str, Any], by: Field | None) -> pd.Timestamp:
    """Where a trend point sits: its month field's month (mid-month), else its run date."""
    value = labels.field_value(run, by.name) if by else None
    if by is not None and by.kind == "month" and value:
        return pd.Timestamp(f"{value}-15")
    return pd.Timestamp(run.get("run_date") or run.get("ended_at"))


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
