"""The monthly training flow: read_data -> prepare_features -> check_data -> train_model -> run_model
-> compare_with_champion (which decides whether the new model replaces the one in use)."""
from __future__ import annotations

import datetime as dt
import importlib
import logging
from typing import Any

from ..config import Settings, normalize_data_url
from ..errors import PipelineError, TransientError
from ..orchestration.clock import Clock
from ..orchestration.liveness import this_process
from ..orchestration.runtime import SYSTEM_CLOCK, FlowResult, flow, run_context, run_flow, task
from ..orchestration.states import State
from ..store import Store
from . import acceptance, champion, data, features, helper, quality
from .gates import check_gates
from .job import FLOW_NAME, TASKS, run_fields  # noqa: F401  (run_fields: the registered fields)
from .months import check_run_date, months_for, parse_date

log = logging.getLogger("pipeline.training.flow")


@task(retries=3, retry_delay=5.0, retry_on=(TransientError,), timeout=3600)
def read_data(settings: Settings, train_month: str, val_month: str, writer: Any = None) -> tuple[Any, Any]:
    """Fetch (download, generate or open) both months, then read both at once, batch by batch, into
    per-month sums (``features.Month``); the kept trips themselves only for FHV_SOLVER=lsqr.
    ``writer`` (the artifacts' helper process) starts meanwhile if the months are big."""
    labels = [f"fhv_tripdata_{month}" for month in (train_month, val_month)]
    paths = [data.fetch_month(settings, month) for month in (train_month, val_month)]
    if writer is not None:
        writer.start_for(paths)
    months = data.read_months(paths, labels, keep_trips=settings.solver == "lsqr")
    for label, path, month in zip(labels, paths, months):
        log.info("Read %s: %s rows from %s.", label, f"{month.summary.raw_rows:,}", path)
    return months[0], months[1]


@task(timeout=600)
def prepare_features(train: Any, val: Any) -> Any:
    """Check both months, log their figures, and build the one-hot encoding and the normal
    equations (X'X, X'y) from the training month's sums."""
    for month in (train, val):
        month.summary.check()
        stats = month.stats
        log.info("%s: %s trips kept of %s (%.2f %% outside 1-60 min), mean duration %.4f min.",
                 month.summary.label, f"{stats['rows']:,}", f"{stats['raw_rows']:,}",
                 100 * stats["dropped_share"], stats["mean_duration"])
    return _model().design(train.summary)


@task(timeout=600)
def check_data(train: Any, val: Any, train_month: str, val_month: str, gates: Any = None,
               in_use: Any = None, accepted: dict | None = None) -> dict[str, Any]:
    """Each month's figures, their drift (training month against ``in_use``'s figures, the baseline's
    training month, and validation against training) and the deployment's gates: warnings, or
    GateBlocked in ``block`` mode unless an operator ``accepted`` these months (``acceptance``)."""
    figures = {"train": quality.month_figures(train.summary, train_month),
               "val": quality.month_figures(val.summary, val_month)}
    drift = {"train_vs_champion": quality.drift(in_use, figures["train"]) if in_use else None,
             "val_vs_train": quality.drift(figures["train"], figures["val"])}
    warnings = quality.apply_gates(check_gates(gates), figures, drift, accepted["said"] if accepted else None)
    for warning in warnings:
        log.warning("%s", warning)
    return {"data": figures, "drift": drift, "warnings": warnings} | ({"accepted": accepted} if accepted else {})


def _drift_baseline(train_month: str) -> dict | None:
    """The training month figures later runs measure drift against (``acceptance.baseline``: the champion's,
    or a newer accepted month's), if recorded; logged with its month."""
    context = run_context()
    found = acceptance.baseline(context.store) if context else None
    if found is None or found["figures"] is None:
        return None
    why = "the champion's training month" if found["why"] == "champion" else "accepted by an operator"
    log.info("Drift of %s is measured against %s (%s).", train_month, found["month"], why)
    return found["figures"]


def _accepted(train_month: str, val_month: str) -> dict | None:
    context = run_context()
    return acceptance.for_months(context.store, train_month, val_month) if context else None


def _model() -> Any:
    """The model module (the exact solve from the months' sums; scikit-learn only for the artifacts)."""
    return importlib.import_module("pipeline.training.model")


@task(timeout=1800)
def train_model(design: Any, train: Any, run_date: str, settings: Settings, writer: Any = None) -> Any:
    model = _model()
    trained = model.fit(design, settings.solver, train.trips)
    log.info("Trained LinearRegression (%s solver) on %s rows and %d one-hot features.", settings.solver,
             f"{design.rows:,}", len(trained.onehot.feature_names))
    context = run_context()
    folder = settings.artifacts_dir / (context.run_id if context else f"adhoc-{run_date}")
    for artifact in model.save_artifacts(trained, folder, run_date, writer):
        log.info("Saved %s (%s bytes, sha256 %s).", artifact.name, f"{artifact.size:,}", artifact.sha256[:12])
        if context:
            context.record_artifact(name=artifact.name, path=str(artifact.path), sha256=artifact.sha256,
                                    size=artifact.size, kind="model" if "model" in artifact.name else "vectorizer")
    return trained


@task(timeout=600)
def run_model(trained: Any, train: Any, val: Any) -> dict[str, Any]:
    model = _model()
    on_train, on_val = model.evaluate_summary(trained, train.summary), model.evaluate_summary(trained, val.summary)
    log.info("Train: MSE %.4f, RMSE %.4f. Validation: MSE %.4f, RMSE %.4f (%s rows).", on_train["mse"],
             on_train["rmse"], on_val["mse"], on_val["rmse"], f"{on_val['rows']:,}")
    return {"train_mse": on_train["mse"], "train_rmse": on_train["rmse"],
            "val_mse": on_val["mse"], "val_rmse": on_val["rmse"]}


@task(timeout=600)
def compare_with_champion(scores: dict[str, Any], val: Any, synthetic: bool, tolerance: float,
                          train_month: str | None = None, val_month: str | None = None,
                          writer: Any = None) -> dict[str, Any]:
    """Score the champion on this run's validation month and decide whether this version replaces it
    (never when it was trained on older months than the champion: ``champion.RULE``)."""
    context = run_context()
    promotion = champion.challenge(context.store, run_id=context.run_id, new_rmse=scores["val_rmse"],
                                   val_summary=val.summary, synthetic=synthetic, tolerance=tolerance,
                                   now=context.clock.now(), train_month=train_month, val_month=val_month,
                                   writer=writer)
    log.info("Promotion: %s. %s", promotion["decision"], promotion["reason"])
    return promotion

@flow(FLOW_NAME, tasks=TASKS)
def training_flow(*, settings: Settings, date: str | None = None, data_url: str | None = None,
                  gates: dict | None = None, promotion_tolerance: float = 0.0) -> dict:
    run_date = parse_date(date)
    settings = settings.with_data_url(data_url)
    train_month, val_month = months_for(run_date)
    context = run_context()
    if context:
        context.store.update_fields(context.run_id, {"data_source": settings.data_url,
                                                       "synthetic": settings.is_synthetic})
    log.info("Run date %s: training on %s, validating on %s, data from %s.", run_date, train_month,
             val_month, data.describe_source(settings.data_url))
    # the model is pickled and the champion scored without scikit-learn once a run of this history learned
    # how it pickles them; until then by a helper process that imports it while big months are read (``helper``)
    writer = helper.ArtifactWriter(settings.cache_dir) if settings.solver == "exact" else None
    try:
        train, val = read_data(settings, train_month, val_month, writer)
        design = prepare_features(train, val)
        checks = check_data(train, val, train_month, val_month, gates, _drift_baseline(train_month),
                            _accepted(train_month, val_month))
        trained = train_model(design, train, run_date.isoformat(), settings, writer)
        scores = run_model(trained, train, val)
        promotion = compare_with_champion(scores, val, settings.is_synthetic, promotion_tolerance, train_month,
                                          val_month, writer)
    finally:
        if writer is not None:
            writer.close()
    return (_metrics(run_date, train_month, val_month, train, val, trained, scores, settings) | checks
            | {"promotion": promotion})


def _metrics(run_date: dt.date, train_month: str, val_month: str, train: Any, val: Any,
             trained: Any, scores: dict, settings: Settings) -> dict[str, Any]:
    return {
        "run_date": run_date.isoformat(), "train_month": train_month, "val_month": val_month,
        "train_rows": train.stats["rows"], "val_rows": val.stats["rows"],
        "feature_count": len(trained.onehot.feature_names), **scores,
        "train_mean_duration": train.stats["mean_duration"], "val_mean_duration": val.stats["mean_duration"],
        "train_stats": train.stats, "val_stats": val.stats,
        "synthetic": settings.is_synthetic, "data_source": settings.data_url,
    }


def execute(store: Store, settings: Settings, run_id: str, *, clock: Clock = SYSTEM_CLOCK,
            await_policy: Any = None, heartbeat_every: float = 5.0) -> FlowResult:
    """Run an existing PENDING run of the training flow to its end."""
    features.tune_memory()
    parameters = dict(store.get_run(run_id)["parameters"])
    result = run_flow(store, training_flow, run_id, {**parameters, "settings": settings}, clock=clock,
                      await_policy=await_policy, heartbeat_every=heartbeat_every)
    if result.state is State.COMPLETED:
        _publish_champion(store, settings)
    elif isinstance(result.exception, quality.GateBlocked):
        store.keep_blocked_checks(run_id, result.exception.checks, task="check_data")  # the figures that made it fail
    return result


def _publish_champion(store: Store, settings: Settings) -> None:
    """Copy the champion to models/current/ once a run completed (it may be the new champion); the run
    stays COMPLETED whatever happens here, and the next promotion or rollback publishes again."""
    try:
        champion.publish_current(store, settings)
    except (PipelineError, OSError) as error:
        log.warning("The champion could not be copied to %s: %s", champion.current_dir(settings), error)


FOREGROUND_HEARTBEAT = 1.0  # a foreground run notices a cancel from the CLI or dashboard within a second or two


def run_now(store: Store, settings: Settings, *, date: str | None = None, data_url: str | None = None,
            name: str, trigger: str = "cli", clock: Clock = SYSTEM_CLOCK) -> FlowResult:
    """Create a run for ``date`` and execute it in this process (``python -m pipeline run``)."""
    today = clock.now().astimezone().date()  # the local date of this machine
    run_date = parse_date(date, today=today)
    check_run_date(run_date, today)
    parameters = {"date": run_date.isoformat()}
    if data_url:
        parameters["data_url"] = normalize_data_url(data_url)
    now = clock.now()
    run_id = store.create_run(flow=FLOW_NAME, name=name, state=State.PENDING, now=now, parameters=parameters,
                              trigger=trigger, scheduled_time=now, claimed_by=this_process(),
                              **run_fields(parameters, settings))
    return execute(store, settings, run_id, clock=clock, heartbeat_every=FOREGROUND_HEARTBEAT)
