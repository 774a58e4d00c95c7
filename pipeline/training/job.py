"""The monthly training job as the orchestrator sees it: its name, tasks, parameters and run fields.

Light on purpose (no pyarrow, no scikit-learn): deployments, the CLI and the dashboard import it
to list and validate runs; only a worker imports ``flow`` to execute one.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..config import Settings, is_synthetic, normalize_data_url
from ..errors import NotPublishedError
from ..orchestration.registry import FlowEntry, register_flow
from .gates import check_gates, check_tolerance
from .months import check_run_date, months_for, parse_date

FLOW_NAME = "fhv-duration-training"
TASKS = ("read_data", "prepare_features", "check_data", "train_model", "run_model", "compare_with_champion")
# what a deployment may set; ``date`` comes from each run's slot
PARAMETERS = ("data_url", "gates", "promotion_tolerance")


def run_fields(parameters: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The columns a run carries before it starts: its date, months and data source."""
    run_date = parse_date(parameters.get("date"))
    data_url = normalize_data_url(parameters.get("data_url") or settings.data_url)
    train_month, val_month = months_for(run_date)
    return {"run_date": run_date.isoformat(), "train_month": train_month, "val_month": val_month,
            "data_source": data_url, "synthetic": is_synthetic(data_url)}


def normalize(parameters: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(parameters)
    if out.get("data_url"):
        out["data_url"] = normalize_data_url(out["data_url"])
    if "gates" in out:
        out["gates"] = check_gates(out["gates"]).to_json()
    if "promotion_tolerance" in out:
        out["promotion_tolerance"] = check_tolerance(out["promotion_tolerance"])
    return out


ENTRY = register_flow(FlowEntry(
    name=FLOW_NAME, execute="pipeline.training.flow:execute", run_fields=run_fields, parameters=PARAMETERS,
    await_errors=(NotPublishedError,), preload=("pipeline.training.flow", "pipeline.training.model",
                                                    "sklearn.linear_model", "sklearn.feature_extraction"),
    normalize=normalize, check_date=check_run_date))
