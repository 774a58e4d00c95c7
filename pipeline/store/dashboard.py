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
        row = self.conn.execute(
            "SELECT COALESCE(SUM(COALESCE(json_extract(metrics, '$.synthetic'), synthetic)), 0), COUNT(*) "
            "FROM flow_runs WHERE state = 'COMPLETED'").fetchone()
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
    # (end of dashboard reads)
