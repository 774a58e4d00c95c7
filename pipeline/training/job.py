"""The monthly training job as the orchestrator sees it: its name, tasks, parameters and run fields.

Light on purpose (no pyarrow, no scikit-learn): deployments, the CLI and the dashboard import it
to list and validate runs; only a worker imports ``flow`` to execute one.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from ..config import Settings, is_synthetic, normalize_data_url
from ..errors import NotPublishedError
from ..orchestration.registry import Field, FlowEntry, Metric, Trend
from .gates import check_gates, check_tolerance
from .months import check_run_date, months_for, parse_date

FLOW_NAME = "fhv-duration-training"
DEFAULT_DEPLOYMENT = "monthly-training"  # the deployment a history gets (``default_deployment``)
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


SYNTHETIC = "Generated demo months, not real TLC trips: its errors say nothing about the real model."
FIELDS = (Field("train_month", "Train month", "month", indexed=True),
          Field("val_month", "Validation month", "month", indexed=True),
          Field("data_source", "Data source", "url", listed=False),
          Field("synthetic", "synthetic data", "flag", listed=False, help=SYNTHETIC))
METRICS = (Metric("val_rmse", "Validation RMSE", ".4f"), Metric("train_rmse", "Training RMSE", ".4f"),
           Metric("val_rows", "Validation trips", ",d", None), Metric("train_rows", "Training trips", ",d", None),
           Metric("feature_count", "Features", ",d", None))
GATE_SENTENCE = "The gate "  # how a gate in block mode words its error (quality.py)
_NOT_PUBLISHED = re.compile(r"fhv_tripdata_\S+ is not (published yet|in the data folder yet)")


def classify_failure(run: Mapping[str, Any]) -> str:
    """A FAILED training run: stopped by a gate (in check_data), its month not published yet, or anything else."""
    error = run.get("error") or ""
    if run.get("error_task") == "check_data" and error.startswith(GATE_SENTENCE):
        return "gate"  # not a check_data that failed otherwise (a bug, a timeout): that is "failed"
    return "not_published" if _NOT_PUBLISHED.search(error) else "failed"


ENTRY = FlowEntry(
    name=FLOW_NAME, execute="pipeline.training.flow:execute", run_fields=run_fields, parameters=PARAMETERS,
    await_errors=(NotPublishedError,), preload=("pipeline.training.flow", "pipeline.training.model",
                                                    "sklearn.linear_model", "sklearn.feature_extraction"),
    normalize=normalize, check_date=check_run_date, title="Monthly training", fields=FIELDS, metrics=METRICS,
    trend=Trend("val_rmse", by="val_month", also=("train_rmse",)), classify_failure=classify_failure,
    spec_options=("gates", "promotion_tolerance"),
    summary="pipeline.training.results:present", default_deployment="pipeline.training.job:default_deployment")


def default_deployment() -> Any:
    """The deployment that ships with the product: the 15th at 09:00 New York time (a DeploymentSpec)."""
    from ..orchestration.deployments import DeploymentSpec  # here: registering the flow imports no orchestrator
    from ..orchestration.schedules import CronSchedule

    return DeploymentSpec(
        name=DEFAULT_DEPLOYMENT, flow=FLOW_NAME, schedule=CronSchedule("0 9 15 * *", "America/New_York"), tags=("ml",),
        catchup="latest",
        description="Monthly retraining: train on the month two months back, validate on the last month.")
