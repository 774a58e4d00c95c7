"""The batch-scoring job as the orchestrator sees it: its name, tasks, parameters and run fields.

Light on purpose (no pyarrow, no scikit-learn), like ``training/job.py``: only a worker imports
``flow`` to execute a run.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from ..config import Settings, is_synthetic, normalize_data_url
from ..errors import ConfigError, NotPublishedError
from ..orchestration.registry import Field, FlowEntry, Metric, Trend
from ..training.job import classify_failure
from ..training.months import FIRST_MONTH, month_of, parse_date, shift_month

FLOW_NAME = "fhv-batch-scoring"
TASKS = ("load_champion", "read_data", "score_month", "check_data", "write_predictions")
PARAMETERS = ("data_url", "output")  # what a deployment may set; ``date`` comes from each run's slot or trigger


def scored_month(run_date: dt.date) -> str:
    """The month a run dated ``run_date`` scores: the month before (the course's week-4 ``score.py``)."""
    return shift_month(month_of(run_date), -1)


def check_date(run_date: dt.date, today: dt.date) -> None:
    """Refuse a run date whose month to score is before the first FHV month or not over yet."""
    month = scored_month(run_date)
    if month < FIRST_MONTH:
        raise ConfigError(f"The run date {run_date.isoformat()} would score {month}, before the first FHV month "
                          f"{FIRST_MONTH}; use a run date from 2015-02-01 on.")
    if month >= month_of(today):
        raise ConfigError(f"The run date {run_date.isoformat()} would score {month}, a month not over yet (today "
                          f"is {today.isoformat()}).")


def run_fields(parameters: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The fields a run carries before it starts: its date, the month it scores and its data source."""
    run_date = parse_date(parameters.get("date"))
    data_url = normalize_data_url(parameters.get("data_url") or settings.data_url)
    return {"run_date": run_date.isoformat(), "month": scored_month(run_date), "data_source": data_url,
            "synthetic": is_synthetic(data_url)}


def normalize(parameters: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(parameters)
    if out.get("data_url"):
        out["data_url"] = normalize_data_url(out["data_url"])
    if out.get("output") is not None and not isinstance(out["output"], str):
        raise ConfigError(f"The output {out['output']!r} must be a folder or a path template with {{month}}.")
    return out


SYNTHETIC = "A generated demo month, not real TLC trips: its errors say nothing about the real model."
FIELDS = (Field("month", "Scored month", "month", indexed=True),
          Field("data_source", "Data source", "url", listed=False),
          Field("synthetic", "synthetic data", "flag", listed=False, help=SYNTHETIC))
METRICS = (Metric("rmse", "Champion's RMSE on the month", ".4f"), Metric("rows_scored", "Trips scored", ",d", None),
           Metric("mean_predicted", "Mean predicted minutes", ".2f", None),
           Metric("mean_actual", "Mean actual minutes", ".2f", None))


ENTRY = FlowEntry(
    name=FLOW_NAME, execute="pipeline.scoring.flow:execute", run_fields=run_fields, parameters=PARAMETERS,
    await_errors=(NotPublishedError,), preload=("pipeline.scoring.flow",), normalize=normalize,
    check_date=check_date, title="Monthly batch scoring", fields=FIELDS, metrics=METRICS,
    trend=Trend("rmse", by="month"), classify_failure=classify_failure, summary="pipeline.scoring.results:present")
