"""Cached reads of the run history, through ``pipeline.store`` (read-only).

One read-only ``Store`` per history file (``st.cache_resource``); every query is an
``st.cache_data`` wrapper with a short ttl keyed on the history's path, so that the live parts
of the pages can refresh every few seconds without hammering SQLite. After a write, call
``refresh()`` so the next read sees it at once.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import streamlit as st

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError, StorageError
from pipeline.flows import load_flows
from pipeline.orchestration.registry import Trend, flow_entries, flow_entry
from pipeline.orchestration.states import ACTIVE_STATES, FINAL_STATES, State
from pipeline.store import MIGRATIONS, Store
from pipeline.store.interfaces import DashboardHistory
from pipeline.store.base import is_database_url

from . import frames, labels

TTL_S = 2.0
KEEP_S = 300.0
LIVE_EVERY_S = 5.0
STARTED_STATES = tuple(s.value for s in (FINAL_STATES | ACTIVE_STATES) if s is not State.NOT_RUN)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def settings() -> Settings:
    """The settings of this dashboard process, from the environment (``FHV_HOME``)."""
    return load_settings()


@st.cache_resource(show_spinner=False)
def _store(path: str) -> DashboardHistory:
    """The read-only store of a history; creates an empty history the first time, and upgrades the
    schema of a history written by an older version of the pipeline (the pages read its new tables).
    The flows are registered first (``pipeline/flows.py``): the pages ask each run's flow how to show it."""
    load_flows()
    if is_database_url(path) or not Path(path).exists() or _behind(path):
        Store(path).close()  # migrates, so that the pages can read
    return Store(path, readonly=True)


def _behind(path: str) -> bool:
    """Whether the history's schema misses migrations this version knows (checked without writing)."""
    probe = Store(path, readonly=True)
    try:
        if not probe.conn.has_table("migrations"):
            return True
        return not {name for name, _ in MIGRATIONS} <= set(probe.applied_migrations())
    finally:
        probe.close()


def history_problem() -> str | None:
    """The sentence saying why the history cannot be read (corrupt, unreadable, a newer schema) or a flow of
    FHV_FLOWS cannot be loaded, or None."""
    path = str(settings().history)
    try:
        _store(path).applied_migrations()
    except (StorageError, ConfigError) as error:
        return str(error)
    return None


def refresh() -> None:
    """Forget every cached read (after the dashboard wrote a request)."""
    st.cache_data.clear()


def version(path: str) -> tuple[int, ...]:
    """Changes whenever the history does: the modification times and sizes of the database and its
    write-ahead log (every commit appends to the log; a checkpoint rewrites the database).
    On PostgreSQL: the server's write-ahead log position (``Store.change_mark``)."""
    if is_database_url(path):
        return (_store(path).change_mark(),)
    marks: list[int] = []
    for name in (path, f"{path}-wal"):
        try:
            found = os.stat(name)
            marks += [found.st_mtime_ns, found.st_size]
        except OSError:
            marks += [0, 0]
    return tuple(marks)


def _cached(fn: Callable[..., Any] | None = None, *, live: bool = False) -> Callable[..., Any]:
    """Cache ``fn(store, ...)`` per history path, history version and arguments.

    A read of the history alone stays cached until the history changes (at most KEEP_S); a read
    whose result depends on the clock too (``live``: durations so far, overdue) for TTL_S seconds.
    """
    if fn is None:
        return functools.partial(_cached, live=live)

    def cached(path: str, history_version: tuple[int, ...], *args: Any, **kwargs: Any) -> Any:  # hashed: no leading _
        return fn(_store(path), *args, **kwargs)

    # st.cache_data keys a cache on the function's qualified name: give each wrapper its own.
    cached.__qualname__ = cached.__name__ = f"cached_{fn.__name__}"
    cached = st.cache_data(ttl=TTL_S if live else KEEP_S, show_spinner=False, max_entries=256)(cached)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        path = str(settings().history)
        return cached(path, version(path), *args, **kwargs)
    return call


# -- runs ----------------------------------------------------------------------------
@_cached(live=True)
def run_list(history: DashboardHistory, *, page: int, per_page: int, sort: str = "newest",
             overdue_note: str | None = None, flow: str | None = None, metric: str | None = None,
             **filters: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One page of the runs list of ``flow`` (None: every flow), paged, filtered and sorted in SQL (``filters``:
    the list's; ``metric``: the key a metric sort sorts by), as the table and the chart's points (the same
    runs: the page draws only what it read)."""
    entry = flow_entry(flow) if flow else None
    metrics = (entry.metrics[0].key,) if entry and entry.metrics else _headlines()
    rows = held(history, history.run_list(limit=per_page, offset=page * per_page, sort=sort, flow=flow,
                                          metric=metric if sort.startswith("metric_") else None, metrics=metrics,
                                          **filters))
    table = frames.runs_table(rows, history.task_counts([r["id"] for r in rows]), now=now(),
                              overdue_note=overdue_note, entry=entry)
    return table, frames.run_points(rows, now(), entry)


def _headlines() -> tuple[str, ...]:
    """The headline metric of every registered flow (the first it declares): what a list of any flow reads."""
    return tuple(dict.fromkeys(entry.metrics[0].key for entry in flow_entries() if entry.metrics))


@_cached
def count_run_list(history: DashboardHistory, flow: str | None = None, **filters: Any) -> int:
    return history.count_run_list(flow=flow, **filters)


@_cached(live=True)
def run_list_points(history: DashboardHistory, *, limit: int = 1000, flow: str | None = None,
                    **filters: Any) -> pd.DataFrame:
    return frames.run_points(history.run_list_points(limit=limit, flow=flow, **filters), now(),
                             flow_entry(flow) if flow else None)


def cancellable_ids(flow: str | None = None, **filters: Any) -> list[str]:
    """Waiting or running runs matching the filters, read fresh (it decides what a button cancels)."""
    return _store(str(settings().history)).cancellable_ids(flow=flow, **filters)


@_cached
def flows_with_runs(history: DashboardHistory, names: tuple[str, ...]) -> tuple[str, ...]:
    """Those of the flows ``names`` that have runs."""
    return tuple(name for name in names if history.count_run_list(flow=name))


@_cached(live=True)
def recent_runs_of(history: DashboardHistory, deployment: str, limit: int = 5) -> pd.DataFrame:
    """The deployment's last runs that started, newest first, as a runs table."""
    rows = held(history, history.run_list(limit=limit, deployment=deployment, states=STARTED_STATES,
                                          metrics=_headlines()))
    return frames.runs_table(rows, history.task_counts([r["id"] for r in rows]), now=now())


@_cached
def backfill_batch(history: DashboardHistory, run_id: str) -> list[dict[str, Any]]:
    return history.backfill_batch(run_id)


@_cached
def run_links(history: DashboardHistory, run_id: str, triggered_by: str | None) -> dict[str, Any]:
    """The run whose completion triggered this one (another deployment's), and the runs this one's triggered."""
    return {"triggered_by": history.run_with_deployment(triggered_by) if triggered_by else None,
            "triggered": history.followups(run_id)}


@_cached
def tags(history: DashboardHistory) -> list[str]:
    return history.tags_in_use()


def held(history: DashboardHistory, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with what holds each waiting one now (a paused deployment or work queue) as its reason."""
    paused = ({d["name"] for d in history.deployments() if not d["active"]},
              {q["name"] for q in history.work_queues() if q["paused"]})
    return [labels.hold(row, *paused) for row in rows]


@_cached
def run(history: DashboardHistory, run_id: str) -> dict[str, Any]:
    return held(history, [history.run_with_deployment(run_id)])[0]


@_cached
def recent_runs(history: DashboardHistory, limit: int = 50) -> list[dict[str, Any]]:
    return history.run_list(limit=limit, states=STARTED_STATES, metrics=_headlines())


@_cached
def last_run(history: DashboardHistory, flow: str | None = None) -> dict[str, Any] | None:
    """The run of ``flow`` that started last (whatever its state now)."""
    started = history.run_timeline(limit=1, flow=flow)
    return history.run_with_deployment(started[0]["id"]) if started else None


@_cached(live=True)
def latest_run(history: DashboardHistory, flow: str | None = None) -> dict[str, Any] | None:
    """The run of ``flow`` created last among those due (a run just triggered), whatever its state now."""
    found = history.latest_run(now=now(), flow=flow)
    return held(history, [found])[0] if found else None


@_cached
def next_run(history: DashboardHistory, flow: str | None = None) -> dict[str, Any] | None:
    """The next run of ``flow`` that will start (not one a paused deployment or queue holds); else the first
    held one."""
    rows = held(history, history.run_list(states=[State.SCHEDULED.value], sort="oldest", limit=50, flow=flow))
    return next((r for r in rows if labels.status(r) != "HELD"), rows[0] if rows else None)


@_cached
def upcoming_runs(history: DashboardHistory, deployment: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
    waiting = [State.LATE.value, State.AWAITING_RETRY.value, State.SCHEDULED.value]
    return held(history, history.runs(states=waiting, deployment=deployment, order="upcoming", limit=limit))


@_cached
def late_runs(history: DashboardHistory, limit: int = 20) -> list[dict[str, Any]]:
    return history.runs(states=[State.LATE.value], order="upcoming", limit=limit)


@_cached(live=True)
def overdue_runs(history: DashboardHistory, limit: int = 20) -> tuple[list[dict[str, Any]], int]:
    """Up to ``limit`` waiting runs past due, oldest first, and how many there are."""
    moment = now()
    return history.overdue_runs(now=moment, limit=limit), history.count_overdue_runs(now=moment)


@_cached
def count_by_state(history: DashboardHistory, flow: str | None = None) -> dict[str, int]:
    """Runs by state, of ``flow`` (None: every flow)."""
    if flow is None:
        return history.count_by_state()
    return {state: history.count_run_list(flow=flow, states=(state,)) for state in labels.RUN_STATES}


# -- one run --------------------------------------------------------------------------
@_cached
def task_runs(history: DashboardHistory, run_id: str) -> list[dict[str, Any]]:
    return history.task_runs(run_id)


@_cached
def logs(history: DashboardHistory, run_id: str, levels: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    return history.logs(run_id, levels=levels)


@_cached
def log_level_counts(history: DashboardHistory, run_id: str) -> dict[str, int]:
    return history.log_level_counts(run_id)


@_cached
def artifacts(history: DashboardHistory, run_id: str) -> list[dict[str, Any]]:
    return history.artifacts(run_id)


def artifact_data(artifact: dict[str, Any]) -> bytes:
    """An artifact's bytes as the history keeps them (any host's dashboard can serve them)."""
    return _store(str(settings().history)).read_artifact(artifact, local=False)


# -- metrics --------------------------------------------------------------------------
@_cached
def trend(history: DashboardHistory, flow: str, without: str | None = None) -> pd.DataFrame:
    """What the Trends page draws for ``flow``: its trend metric, one row per value of the trend's field (its
    latest completed run) or per run, with every metric the flow declares, aggregated in SQL, oldest first;
    ``without``: leave out the runs whose flag field of that name is set."""
    entry = flow_entry(flow)
    declared = entry.trend or Trend(entry.metrics[0].key if entry.metrics else "")
    keys = tuple(dict.fromkeys([declared.metric, *declared.also, *(m.key for m in entry.metrics)]))
    return frames.trend_frame(history.trend_points(flow, declared.metric, by=declared.by, keys=keys, without=without),
                              entry)


@_cached
def latest_metrics(history: DashboardHistory, flow: str) -> list[dict[str, Any]]:
    """The latest completed run of ``flow`` and, when its trend goes by a field, the latest one of an earlier
    value of that field (e.g. month), oldest first."""
    rows = history.metric_history(flow, limit=50)
    if not rows:
        return []
    latest, by = rows[-1], (flow_entry(flow).trend or Trend("")).by
    if by is None:
        return rows[-2:]
    earlier = [r for r in rows if str(labels.field_value(r, by) or "") < str(labels.field_value(latest, by) or "")]
    return [earlier[-1], latest] if earlier else [latest]


@_cached
def flag_share(history: DashboardHistory, flow: str, field: str) -> tuple[int, int]:
    """(runs with the flag ``field`` set, all) among the completed runs of ``flow``."""
    return history.flag_counts(flow, field)


# -- deployments, queues, scheduler ---------------------------------------------------
@_cached
def deployments(history: DashboardHistory) -> list[dict[str, Any]]:
    """Deployments with their schedule in words, zone and DST policy."""
    return [labels.deployment(dep) for dep in history.deployments()]


def failing_deployments() -> list[dict[str, Any]]:
    """The deployments the scheduler skips (``last_error`` set), by name."""
    return [dep for dep in deployments() if dep.get("last_error")]


@_cached
def skipped_slots(history: DashboardHistory, deployment_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Records of slots never made into runs after a downtime, newest first (all deployments or one)."""
    return history.skipped_slots(deployment_id, limit=limit)


@_cached
def work_queues(history: DashboardHistory) -> list[dict[str, Any]]:
    return history.work_queues()


@_cached
def scheduler_status(history: DashboardHistory) -> dict[str, Any] | None:
    return history.scheduler_status()


def scheduler_command() -> str:
    """The exact command that starts a scheduler on this dashboard's history and data."""
    return labels.scheduler_command(settings())


def deployment_zone(name: str | None) -> str | None:
    """The time zone of a deployment's schedule, or None (a manual run: UTC)."""
    for dep in deployments():
        if dep["name"] == name:
            return dep.get("timezone")
    return None


@_cached(live=True)
def workers(history: DashboardHistory) -> pd.DataFrame:
    """The workers of the history (the live ones and the latest stopped ones), with their load and status."""
    return frames.workers_table(history.workers(limit=20), history.running_by_claimer(), now())
