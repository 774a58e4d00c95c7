"""The monthly batch-scoring flow: load_champion -> read_data -> score_month -> check_data -> write_predictions.

For run date D it scores the month before D (the course's week-4 ``score.py``) with the champion at the
moment the run starts, writes ``fhv_predictions_YYYY-MM.parquet`` and records the champion's RMSE on the
month (its actual durations are known) and the month's drift against the champion's training month.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..config import Settings, normalize_data_url
from ..errors import PipelineError, TransientError
from ..orchestration.clock import Clock
from ..orchestration.liveness import this_process
from ..orchestration.runtime import SYSTEM_CLOCK, FlowResult, flow, run_context, run_flow, task
from ..store import Store
from ..training import champion, data, features, pickles, quality
from ..training.job import FLOW_NAME as TRAINING_FLOW
from ..training.months import parse_date
from . import predictions, results, zones
from .job import FLOW_NAME, TASKS, check_date, run_fields, scored_month

log = logging.getLogger("pipeline.scoring.flow")


class NoChampion(PipelineError):
    """There is no model in use to score with."""


@dataclass(frozen=True, eq=False)
class InUse:
    """The champion as this run scores with it: its coefficients by zone and what the run records of it."""

    model: zones.ZoneModel
    version: dict[str, Any]
    train_figures: dict[str, Any] | None


@task(timeout=600)
def load_champion(month: str, settings: Settings) -> InUse:
    """The champion now: its pickles (checked against their SHA-256) turned into coefficients by zone, or
    those coefficients kept from an earlier run with the same pickles (``zones.cached``)."""
    store = run_context().store
    held = store.champion(TRAINING_FLOW)
    if held is None:
        raise NoChampion(f"There is no champion model to score {month} with: train one first "
                         "(python -m pipeline run); the first completed training run becomes the champion.")
    files = champion.artifact_files(store, held["id"])
    label = f"the champion {held['name']} ({held['id'][:8]})"
    model, kept = zones.cached(settings.home / "models" / "coefficients", files,
                               lambda: _coefficients(store, settings, held["id"], files, label))
    version = {"run_id": held["id"], "name": held["name"], "run_date": held["run_date"],
               "train_month": held["train_month"], "val_month": held["val_month"],
               "synthetic": bool(held.get("synthetic")),
               "files": {name: {"sha256": a["sha256"], "size": a["size"]} for name, a in files.items()}}
    log.info("Scoring with %s, trained on %s (model sha256 %s; its coefficients %s).", label, held["train_month"],
             files["model"]["sha256"][:12], "kept from an earlier run" if kept else "from its pickles")
    seen = results.saw_sentence(version, month, results.saw_month(version, month))
    if seen:
        log.warning(seen)
    figures = ((held.get("metrics") or {}).get("data") or {}).get("train")
    return InUse(model, version, figures if figures and "hist" in figures else None)


def _coefficients(store: Store, settings: Settings, run_id: str, files: dict[str, dict[str, Any]],
                  label: str) -> zones.ZoneModel:
    """The champion's coefficients by zone from its pickles: read without scikit-learn when they are as the
    installed scikit-learn writes them (``pickles.weights``, the layout a training run of this history kept),
    else unpickled by scikit-learn, which loads them or says why not (a DataError naming the run)."""
    payloads = {kind: champion.artifact_bytes(store, files[kind]) for kind in pickles.KINDS}
    found = pickles.weights(pickles.cached(settings.cache_dir), payloads)
    if found is None:
        return zones.from_pickles(*champion.load_model(store, run_id), label)
    return zones.from_weights(found.vocabulary, found.coef, found.intercept, label)


@task(retries=3, retry_delay=5.0, retry_on=(TransientError,), timeout=3600)
def read_data(settings: Settings, month: str) -> Any:
    """Fetch (download, generate or open) the month's file, checked."""
    return data.fetch_month(settings, month)


@task(timeout=3600)
def score_month(path: Any, month: str, in_use: InUse, target: Any) -> predictions.Scored:
    """Score every trip of 1 to 60 minutes, batch by batch, into a temporary file beside the target."""
    label = f"fhv_tripdata_{month}"
    scored = predictions.score_file(path, label, month, in_use.model, in_use.version["run_id"], target)
    left_out = scored.summary.dropped_by_rule()
    log.info("Scored %s trips of %s read; left out (the course's steps keep 1 to 60 minutes): %s missing a "
             "timestamp, %s under 1 minute, %s over 60 minutes. RMSE of the champion on %s: %.4f.",
             f"{scored.rows:,}", f"{scored.summary.raw_rows:,}", f"{left_out['missing_times']:,}",
             f"{left_out['under_1_min']:,}", f"{left_out['over_60_min']:,}", month, scored.rmse())
    return scored


@task(timeout=600)
def check_data(scored: predictions.Scored, month: str, in_use: InUse) -> dict[str, Any]:
    """The month's figures and its drift against the champion's training month (``training/quality.py``)."""
    figures = quality.month_figures(scored.summary, month)
    drift = quality.drift(in_use.train_figures, figures) if in_use.train_figures else None
    if drift is None:
        log.info("The champion's run recorded no figures of its training month: no drift to measure.")
    else:
        worst = max((drift[side]["psi"] or 0.0, side) for side in quality.SIDES)
        log.info("Drift of %s against the champion's training month %s: largest PSI %.3f (%s).", month,
                 drift["reference"], worst[0], quality.SIDES[worst[1]])
    return {"figures": figures, "drift": drift}


@task(timeout=600)
def write_predictions(scored: predictions.Scored) -> str:
    """Rename the predictions into place and record the file as the run's artifact (its bytes stay on disk)."""
    path = predictions.publish(scored)
    log.info("Wrote %s (%s predictions, %s bytes, sha256 %s).", path, f"{scored.rows:,}", f"{scored.size:,}",
             scored.sha256[:12])
    context = run_context()
    if context:
        context.store.add_artifact(context.run_id, name=path.name, kind="predictions", path=str(path),
                                   sha256=scored.sha256, size=scored.size, now=context.clock.now())
    return str(path)


@flow(FLOW_NAME, tasks=TASKS)
def scoring_flow(*, settings: Settings, date: str | None = None, data_url: str | None = None,
                 output: str | None = None) -> dict:
    run_date = parse_date(date)
    settings = settings.with_data_url(data_url)
    month = scored_month(run_date)
    context = run_context()
    if context:
        context.store.update_fields(context.run_id, {"data_source": settings.data_url,
                                                       "synthetic": settings.is_synthetic})
    log.info("Run date %s: scoring %s, data from %s.", run_date, month, data.describe_source(settings.data_url))
    target = predictions.output_path(output, settings.home / "predictions", month)
    predictions.check_target(target)
    in_use = load_champion(month, settings)
    path = read_data(settings, month)
    scored = score_month(path, month, in_use, target)
    try:
        checks = check_data(scored, month, in_use)
        written = write_predictions(scored)
    finally:
        predictions.discard(scored)
    return _metrics(run_date.isoformat(), month, written, scored, in_use, checks, settings)


def _metrics(run_date: str, month: str, output: str, scored: predictions.Scored, in_use: InUse,
             checks: dict[str, Any], settings: Settings) -> dict[str, Any]:
    summary = scored.summary
    mse = scored.squared_error / scored.rows
    return {"rows_scored": scored.rows, "rmse": scored.rmse(), "rows_read": summary.raw_rows, "mse": mse,
            "mean_predicted": scored.predicted_sum / scored.rows, "mean_actual": float(summary.cell_minutes.sum()) / scored.rows,
            "run_date": run_date, "month": month, "output": output, "rows_left_out": summary.dropped_by_rule(),
            "model_version": in_use.version, "month_figures": checks["figures"], "drift_vs_champion": checks["drift"],
            "synthetic": settings.is_synthetic, "data_source": settings.data_url,
            "champion_saw_month": results.saw_month(in_use.version, month),
            "distribution": {"predicted": predictions.predicted_minutes(summary, in_use.model),
                             "actual": checks["figures"]["hist"]["duration"]}}


def execute(store: Store, settings: Settings, run_id: str, *, clock: Clock = SYSTEM_CLOCK,
            await_policy: Any = None, heartbeat_every: float = 5.0) -> FlowResult:
    """Run an existing PENDING run of the scoring flow to its end."""
    features.tune_memory()
    parameters = dict(store.get_run(run_id)["parameters"])
    return run_flow(store, scoring_flow, run_id, {**parameters, "settings": settings}, clock=clock,
                    await_policy=await_policy, heartbeat_every=heartbeat_every)


FOREGROUND_HEARTBEAT = 1.0


def score_now(store: Store, settings: Settings, *, date: str | None = None, data_url: str | None = None,
              output: str | None = None, name: str, clock: Clock = SYSTEM_CLOCK) -> FlowResult:
    """Create a scoring run for ``date`` and execute it in this process (``python -m pipeline score``)."""
    today = clock.now().astimezone().date()
    run_date = parse_date(date, today=today)
    check_date(run_date, today)
    parameters: dict[str, Any] = {"date": run_date.isoformat()}
    if data_url:
        parameters["data_url"] = normalize_data_url(data_url)
    if output:
        parameters["output"] = predictions.absolute(output)
        predictions.check_target(predictions.output_path(parameters["output"], settings.home / "predictions",
                                                         scored_month(run_date)))  # before a run is made
    now = clock.now()
    run_id = store.create_run(flow=FLOW_NAME, name=name, state="PENDING", now=now, parameters=parameters,
                              trigger="cli", scheduled_time=now, claimed_by=this_process(),
                              **run_fields(parameters, settings))
    return execute(store, settings, run_id, clock=clock, heartbeat_every=FOREGROUND_HEARTBEAT)
