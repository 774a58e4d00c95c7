"""The model in use, month by month: is it getting worse on new data?

Every training run judged on the newest month scores the champion (the model in use then) on its
validation month beside the version it just trained (``champion.challenge``). Read back from the runs'
promotion records, that is a series: for each validation month, the in-use model's RMSE there, the
retrained version's, and whether the retrained one was promoted. A month's point is its latest such
run; backfills of older months (``older_months``) are not judged on the newest month and add none.
"""
from __future__ import annotations

from typing import Any

from ..store.interfaces import ModelRegistry
from .job import FLOW_NAME

JUDGED = ("first", "promoted", "kept")  # decisions taken on the newest month (or the champion's own, a rerun)
PROMOTED = ("first", "promoted")


def on_new_months(store: ModelRegistry, *, flow: str = FLOW_NAME, limit: int = 1000) -> list[dict[str, Any]]:
    """One point per validation month, oldest month first (see the module's doc)."""
    latest: dict[str, dict[str, Any]] = {}
    for run in reversed(store.model_versions(flow, limit=limit)):  # oldest ended first: the latest wins
        point = _point(run)
        if point is not None:
            latest[point["val_month"]] = point
    return [latest[month] for month in sorted(latest)]


def _point(run: dict[str, Any]) -> dict[str, Any] | None:
    promotion = (run.get("metrics") or {}).get("promotion") or {}
    if promotion.get("decision") not in JUDGED or not run.get("val_month"):
        return None
    return {"val_month": run["val_month"], "train_month": run["train_month"], "run_id": run["id"],
            "name": run["name"], "retrained_rmse": promotion.get("new_rmse"),
            "in_use_rmse": promotion.get("champion_rmse"), "in_use_run_id": promotion.get("champion_run_id"),
            "decision": promotion["decision"], "promoted": promotion["decision"] in PROMOTED,
            "synthetic": bool(run.get("synthetic")), "data_source": run.get("data_source"), "ended_at": run["ended_at"]}
