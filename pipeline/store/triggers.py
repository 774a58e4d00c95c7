"""Runs of a deployment triggered by another deployment's completed runs (``orchestration/triggers.py``)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from .base import to_db
from .parts import StoreParts


class TriggerStore(StoreParts):
    """Completion triggers (mixed into ``Store``). Each completed upstream run gets at most one run of each
    downstream deployment: the unique index ``flow_runs_triggered_once`` on (deployment, triggered_by)."""

    def completed_without_followup(self, upstream_id: int, downstream_id: int, *, since: dt.datetime,
                                   limit: int = 100) -> list[dict[str, Any]]:
        """Completed runs of deployment ``upstream_id`` ended since ``since`` that have no run of deployment
        ``downstream_id`` yet (whatever its state), oldest first."""
        return self._all(
            "SELECT u.* FROM flow_runs u WHERE u.deployment_id = :upstream AND u.state = 'COMPLETED' "
            "AND u.ended_at >= :since AND NOT EXISTS (SELECT 1 FROM flow_runs f WHERE f.deployment_id = :downstream "
            "AND f.triggered_by = u.id) ORDER BY u.ended_at NULLS FIRST, u.id LIMIT :limit",
            {"upstream": upstream_id, "since": to_db(since), "downstream": downstream_id, "limit": limit})

    def followups(self, run_id: str) -> list[dict[str, Any]]:
        """The runs that run ``run_id``'s completion triggered, with their deployment's name, oldest first."""
        return self._all(
            "SELECT r.id, r.name, r.state, r.run_date, r.flow, d.name AS deployment FROM flow_runs r "
            "LEFT JOIN deployments d ON d.id = r.deployment_id WHERE r.triggered_by = :run_id "
            "ORDER BY r.created_at, r.id", {"run_id": run_id})
