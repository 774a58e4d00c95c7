"""Reads the dashboard needs beyond the run and scheduling reads."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from .base import to_db
from .runs import _run_filters


class DashboardStore:
    """Dashboard reads (mixed into ``Store``)."""

    # -- dashboard reads -------------------------------------------------------------
    def run_timeline(self, *, limit: int = 2000, **filters: Any) -> list[dict[str, Any]]:
        """Started runs, newest first, with only the columns the runs-over-time chart needs."""
        where, params = _run_filters(**filters)
        started = "r.started_at IS NOT NULL"
        where = f"{where} AND {started}" if where else f"WHERE {started}"
        return self._all(
            "SELECT r.id, r.name, r.state, r.run_date, r.train_month, r.val_month, r.started_at, "
            "r.ended_at FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
            f"{where} ORDER BY r.started_at DESC LIMIT ?", (*params, limit))

    def task_counts(self, run_ids: Iterable[str]) -> dict[str, int]:
        """How many task runs each of these flow runs has (attempts and not-run tasks included)."""
        ids = list(run_ids)
        if not ids:
            return {}
        rows = self.conn.execute(
            f"SELECT flow_run_id, COUNT(*) FROM task_runs WHERE flow_run_id IN ({', '.join('?' * len(ids))}) "
            "GROUP BY flow_run_id", ids).fetchall()
        return {run_id: count for run_id, count in rows}

    def run_with_deployment(self, run_id: str) -> dict[str, Any]:
        """One run with the name of its deployment (None for a manual run)."""
        run = self.get_run(run_id)
        row = self.conn.execute("SELECT name FROM deployments WHERE id = ?",
                                (run.get("deployment_id"),)).fetchone()
        return {**run, "deployment": row[0] if row else None}

    def synthetic_counts(self) -> tuple[int, int]:
        """(runs on synthetic data, all runs) among the completed runs."""
        row = self.conn.execute(  # the column, set when the run's data source is known (no metrics blob read)
            "SELECT COALESCE(SUM(synthetic), 0), COUNT(*) FROM flow_runs WHERE state = 'COMPLETED'").fetchone()
        return row[0], row[1]

    def latest_run(self, *, now: dt.datetime) -> dict[str, Any] | None:
        """The run created last among those due by ``now`` (upcoming schedule slots left out),
        with its deployment's name: the run a user just triggered, whatever its state now."""
        return self._one(
            "SELECT r.*, d.name AS deployment FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
            "WHERE COALESCE(r.scheduled_time, r.created_at) <= ? ORDER BY r.created_at DESC LIMIT 1", (to_db(now),))

    _OVERDUE = ("FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
                "WHERE r.state IN ('SCHEDULED', 'LATE', 'AWAITING_RETRY') "
                "AND COALESCE(r.next_attempt_at, r.scheduled_time) <= ?")

    def overdue_runs(self, *, now: dt.datetime, limit: int = 20) -> list[dict[str, Any]]:
        """Waiting runs whose time (or next attempt) has passed, oldest first, with their deployment's name."""
        return self._all(f"SELECT r.*, d.name AS deployment {self._OVERDUE} "
                         "ORDER BY COALESCE(r.next_attempt_at, r.scheduled_time) LIMIT ?", (to_db(now), limit))

    def count_overdue_runs(self, *, now: dt.datetime) -> int:
        return self.conn.execute(f"SELECT COUNT(*) {self._OVERDUE}", (to_db(now),)).fetchone()[0]

    def count_task_runs(self) -> int:
        """Every task run in the history (attempts and not-run tasks included)."""
        return self.conn.execute("SELECT COUNT(*) FROM task_runs").fetchone()[0]

    def log_level_counts(self, run_id: str) -> dict[str, int]:
        rows = self.conn.execute("SELECT level, COUNT(*) FROM logs WHERE flow_run_id = ? GROUP BY level",
                                 (run_id,)).fetchall()
        return {level: count for level, count in rows}

    # -- the runs list: one page of rows, filtered and sorted in SQL --------------------
    def run_list(self, *, limit: int = 50, offset: int = 0, sort: str = "newest", **filters: Any) -> list[dict[str, Any]]:
        """One page of the runs list with only the columns it draws (no metrics blob: its validation
        RMSE, synthetic flag and data source are read in SQL); ``filters``: see ``_list_filters``.

        The page's ids are chosen first; only its rows' metrics are read (on PostgreSQL each read
        parses the JSON, so reading them for every run before the LIMIT would cost a parse a run)."""
        where, params = _list_filters(**filters)
        order = f"{SORTS[sort]}, r.id"
        rows = self._all(
            f"SELECT r.id, r.name, r.state, r.run_date, r.train_month, r.val_month, r.trigger, r.scheduled_time, "
            f"r.next_attempt_at, r.started_at, r.ended_at, r.error, r.error_task, r.state_message, r.late_reason, "
            f"r.data_source, r.synthetic, r.deployment_id, r.work_queue, r.created_at, d.name AS deployment, {_LIST_METRICS} "
            f"FROM (SELECT r.id AS page_id {_LIST_FROM} {where} ORDER BY {order} LIMIT ? OFFSET ?) page "
            f"JOIN flow_runs r ON r.id = page.page_id LEFT JOIN deployments d ON d.id = r.deployment_id "
            f"ORDER BY {order}", (*params, limit, offset))
        return [_with_metrics(row) for row in rows]

    def count_run_list(self, **filters: Any) -> int:
        where, params = _list_filters(**filters)
        return self.conn.execute(f"SELECT COUNT(*) {_LIST_FROM} {where}", params).fetchone()[0]

    def run_list_points(self, *, limit: int = 1000, **filters: Any) -> list[dict[str, Any]]:
        """Started runs matching the list's filters, newest first, with only what the chart draws."""
        where, params = _list_filters(**filters)
        started = "r.started_at IS NOT NULL"
        where = f"{where} AND {started}" if where else f"WHERE {started}"
        return self._all(
            "SELECT r.id, r.name, r.state, r.run_date, r.train_month, r.val_month, r.started_at, r.ended_at "
            f"{_LIST_FROM} {where} ORDER BY r.started_at DESC LIMIT ?", (*params, limit))

    def cancellable_ids(self, **filters: Any) -> list[str]:
        """The ids of the waiting or running runs matching the list's filters (to cancel them together)."""
        where, params = _list_filters(**filters)
        alive = "r.state IN ('SCHEDULED', 'LATE', 'AWAITING_RETRY', 'PENDING', 'RUNNING')"
        where = f"{where} AND {alive}" if where else f"WHERE {alive}"
        return [row[0] for row in self.conn.execute(f"SELECT r.id {_LIST_FROM} {where}", params).fetchall()]

    def backfill_batch(self, run_id: str) -> list[dict[str, Any]]:
        """The runs one backfill request enqueued together with ``run_id`` (same deployment, same
        request time), oldest run date first; empty for a run that no backfill made."""
        return self._all(
            "SELECT b.id, b.name, b.state, b.run_date FROM flow_runs r JOIN flow_runs b "
            "ON b.trigger = 'backfill' AND b.created_at = r.created_at "
            "AND b.deployment_id IS NOT DISTINCT FROM r.deployment_id "
            "WHERE r.id = ? AND r.trigger = 'backfill' ORDER BY b.run_date", (run_id,))

    def tags_in_use(self) -> list[str]:
        """Every tag some deployment carries, sorted."""
        rows = self.conn.execute("SELECT DISTINCT json_each.value FROM deployments d, json_each(d.tags) "
                                 "ORDER BY json_each.value").fetchall()
        return [row[0] for row in rows]

    # -- trends: one row per validation month, aggregated in SQL ---------------------------
    def metric_months(self, *, real_only: bool = False, limit: int = 240) -> list[dict[str, Any]]:
        """The latest completed run of each validation month with its metrics (and how many
        completed runs that month had), oldest run date first; ``real_only``: non-demo sources only."""
        # Only the chosen rows' metrics blobs are read: the ranking reads small columns.
        real = "AND synthetic = 0" if real_only else ""
        keys = ", ".join(f"json_extract(f.metrics, '$.{key}') AS {key}" for key in METRIC_KEYS)
        rows = self._all(
            "WITH ranked AS (SELECT id, val_month, ROW_NUMBER() OVER (PARTITION BY val_month ORDER BY "
            "ended_at DESC) AS position, COUNT(*) OVER (PARTITION BY val_month) AS runs "
            f"FROM flow_runs WHERE state = 'COMPLETED' AND val_month IS NOT NULL {real}) "
            f"SELECT f.id, f.name, f.run_date, f.train_month, f.val_month, k.runs, "
            f"f.synthetic AS column_synthetic, f.data_source AS column_data_source, "
            f"json_extract(f.metrics, '$.synthetic') AS synthetic, "
            f"json_extract(f.metrics, '$.data_source') AS data_source, {keys} "
            "FROM ranked k JOIN flow_runs f ON f.id = k.id WHERE k.position = 1 "
            "ORDER BY f.run_date DESC LIMIT ?", (limit,))
        return [_with_columns(row) for row in rows[::-1] if row["val_rmse"] is not None]
    # (end of dashboard reads)


METRIC_KEYS = ("train_mse", "val_mse", "train_rmse", "val_rmse", "train_rows", "val_rows",
               "train_mean_duration", "val_mean_duration", "feature_count")
_LIST_FROM = "FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id"
_VAL_RMSE = "json_extract(r.metrics, '$.val_rmse')"
_LIST_METRICS = (f"{_VAL_RMSE} AS m_val_rmse, "
                 "json_extract(r.metrics, '$.synthetic') AS m_synthetic, "
                 "json_extract(r.metrics, '$.data_source') AS m_data_source")
_MOMENT = "COALESCE(r.started_at, r.scheduled_time, r.created_at)"
SORTS = {
    "newest": f"{_MOMENT} DESC", "oldest": f"{_MOMENT} ASC",
    "run_date_desc": f"r.run_date DESC, {_MOMENT} DESC", "run_date_asc": f"r.run_date ASC, {_MOMENT} ASC",
    "val_rmse_desc": f"{_VAL_RMSE} DESC NULLS LAST, {_MOMENT} DESC",
    "val_rmse_asc": f"{_VAL_RMSE} ASC NULLS LAST, {_MOMENT} DESC",
    "duration_desc": f"julianday(r.ended_at) - julianday(r.started_at) DESC NULLS LAST, {_MOMENT} DESC",
    "name": "r.name ASC",
}


def _with_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A trends row whose synthetic flag and data source come from its metrics, else from its columns."""
    for key in ("synthetic", "data_source"):
        column = row.pop(f"column_{key}")
        row[key] = column if row[key] is None else row[key]
    return row


def _with_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """A list row with the three metrics it read put back under ``metrics`` (as a run row has them)."""
    metrics = {key: row.pop(f"m_{key}") for key in ("val_rmse", "synthetic", "data_source")}
    row["metrics"] = {k: v for k, v in metrics.items() if v is not None}
    return row


def _list_filters(*, states: Iterable[str] | None = None, deployment: str | None = None,
                  triggers: Iterable[str] | None = None, tag: str | None = None,
                  run_date_from: dt.date | None = None, run_date_to: dt.date | None = None,
                  since: dt.datetime | None = None, until: dt.datetime | None = None,
                  search: str | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause of the runs list: states, deployment, triggers, a deployment tag, a range
    of run dates, a range of start (or due) times, and a name, id or run date search."""
    clauses, params = [], []

    def add(clause: str, *values: Any) -> None:
        clauses.append(clause)
        params.extend(values)

    for column, values in (("r.state", states), ("r.trigger", triggers)):
        values = list(values or [])
        if values:
            add(f"{column} IN ({', '.join('?' * len(values))})", *values)
    if deployment:
        add("d.name = ?", deployment)
    if tag:
        add("EXISTS (SELECT 1 FROM json_each(d.tags) WHERE value = ?)", tag)
    if run_date_from:
        add("r.run_date >= ?", run_date_from.isoformat())
    if run_date_to:
        add("r.run_date <= ?", run_date_to.isoformat())
    if since:
        add(f"{_MOMENT} >= ?", to_db(since))
    if until:
        add(f"{_MOMENT} < ?", to_db(until))
    if search:
        add("(r.name LIKE ? OR r.id LIKE ? OR r.run_date LIKE ?)", f"%{search}%", f"{search}%", f"%{search}%")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
