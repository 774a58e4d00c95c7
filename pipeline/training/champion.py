"""The champion: the model version in use, how a new version challenges it, promotions by hand.

A completed training run is a model version. On its validation month a run scores the current
champion too (its pickled DictVectorizer and LinearRegression, loaded as a user would), and
becomes champion only if its RMSE is not worse than the champion's by more than the deployment's
tolerance. A run on synthetic data never replaces a champion trained on real data. Each change of
champion is one event in the history (``Store.record_model_event``); the champion's files are then
copied to ``$FHV_HOME/models/current/`` with a card, atomically, for a batch job to load
(``model_files``, whose names are also this module's). numpy, pyarrow and the helper are imported only
to score a champion, so that ``models ls`` and the other reads stay light.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import pickle
import subprocess
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import DataError, InvalidTransition, NeedsConfirmation, NotFound, PipelineError
from ..store.interfaces import ModelRegistry
from .job import FLOW_NAME
from .model_files import (  # noqa: F401  (the stable copy's names, as callers know them)
    CARD, FILES, artifact_bytes, artifact_files, champion_card, current_dir, holds, load_current, load_model,
    publish_current, read_card)

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("pipeline.training.champion")

AUTO_ACTOR = "pipeline"
RACE_TRIES = 3
PROMOTING = ("first", "promoted")
# Relative slack when comparing RMSEs: the new version's comes from the exact solve, the champion's from its
# pickles, so one model scored both ways differs in the last digits (1e-15) and a tie must stay a tie.
ROUNDING = 1e-9


# -- the champion scored on a month, exactly, from the month's sums ----------------------------------
def score_on_summary(dv: Any, regression: Any, summary: Any) -> dict[str, float]:
    """The MSE and RMSE of a pickled model on a month's sums (see ``score_predictions``)."""
    from . import helper

    pu, do = summary_pairs(summary)
    return score_predictions(helper.predict_pairs(dv, regression, pu, do), summary)


def summary_pairs(summary: Any) -> tuple[np.ndarray, np.ndarray]:
    """The (pickup, drop-off) zone codes of each pair seen in the month, in the order of its cells."""
    import numpy as np

    from .schema import SLOTS

    cells = np.flatnonzero(summary.cell_trips)
    return cells // SLOTS - 1, cells % SLOTS - 1


def score_predictions(predicted: np.ndarray, summary: Any) -> dict[str, float]:
    """The MSE and RMSE of one prediction per zone pair seen in the month (``summary_pairs``' order),
    weighted by its trips, its summed minutes and the month's summed squared minutes."""
    import numpy as np

    cells = np.flatnonzero(summary.cell_trips)
    trips, minutes = summary.cell_trips[cells].astype(np.float64), summary.cell_minutes[cells]
    squared = summary.squared_minutes - 2 * float(predicted @ minutes) + float((predicted * predicted) @ trips)
    mse = max(squared, 0.0) / summary.rows
    return {"mse": mse, "rmse": math.sqrt(mse), "rows": summary.rows}


def scored_rmse(store: ModelRegistry, run_id: str, summary: Any, writer: Any = None) -> float:
    """The RMSE of run ``run_id``'s pickled model on a month's sums: read without scikit-learn when its pickles
    are as this scikit-learn writes them (``pickles``), else in the helper process when one runs
    (scikit-learn is imported there, not here), else here. DataError/NotFound with a sentence when its
    artifacts are missing, do not unpickle or do not predict."""
    from . import pickles

    if writer is None or (writer.layout is None and not writer.started):
        return score_on_summary(*load_model(store, run_id), summary)["rmse"]
    payloads = {name: artifact_bytes(store, artifact) for name, artifact in artifact_files(store, run_id).items()}
    pu, do = summary_pairs(summary)
    found = pickles.weights(writer.layout, payloads)  # pickles as this scikit-learn writes a run's
    if found is not None:
        predicted = pickles.predict_pairs(found, pu, do)
    else:
        predicted = _in_the_helper(writer, run_id, payloads, pu, do)
    if predicted is None:
        return score_on_summary(*load_model(store, run_id), summary)["rmse"]
    return score_predictions(predicted, summary)["rmse"]


def _in_the_helper(writer: Any, run_id: str, payloads: dict[str, bytes], pu: np.ndarray,
                   do: np.ndarray) -> np.ndarray | None:
    """The champion's predictions by the helper process; None when it runs no more (then scored here)."""
    from . import helper

    if not writer.started:
        return None
    try:
        return writer.predict(payloads, pu, do)
    except helper.Unloadable as error:
        if error.name == "predict":
            raise DataError(error.detail) from None
        raise DataError(f"The {error.name} of run {run_id[:8]} does not unpickle ({error.detail})") from None
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        log.warning("The helper process could not score the champion (%s); scoring it here.", error)
        return None


# -- the decision ---------------------------------------------------------------------------------
RULE = ("A run replaces the model in use only if it was trained on the same or newer months and its validation "
        "RMSE on its own validation month (the newest) is not worse than the champion's there by more than the "
        "tolerance; a version trained on older months (a backfill) is never promoted by a run, only by hand.")


def decide(*, new_rmse: float, synthetic: bool, champion: dict[str, Any] | None, champion_rmse: float | None,
           tolerance: float, unreadable: str | None = None, train_month: str | None = None,
           val_month: str | None = None) -> dict[str, Any]:
    """The promotion record of a new version (a pure function): decision, both RMSEs, tolerance, reason.

    ``train_month`` and ``val_month`` are the new version's; a version trained on months older than the
    champion's is ``older_months`` whatever it scores (on its old validation month an old model wins)."""
    record = {"new_rmse": new_rmse, "champion_rmse": champion_rmse,
              "champion_run_id": champion["id"] if champion else None, "tolerance": tolerance,
              "train_month": train_month, "val_month": val_month,
              "champion_train_month": champion.get("train_month") if champion else None}
    if champion is None:
        return {"decision": "first", **record, "reason": "The first completed version becomes the champion."}
    name = f"{champion['name']} ({champion['id'][:8]})"
    if synthetic and not champion.get("synthetic"):
        return {"decision": "not_eligible", **record,
                "reason": f"A run on synthetic data never replaces the champion {name}, trained on real data."}
    if not synthetic and champion.get("synthetic"):
        return {"decision": "promoted", **record,
                "reason": f"The champion {name} was trained on synthetic data; the first version trained on real "
                          "data replaces it."}
    held = record["champion_train_month"]
    if train_month and held and train_month < held:
        return {"decision": "older_months", **record,
                "reason": f"Trained on {train_month}, older than the champion {name} trained on {held}: a run "
                          "never replaces a model trained on newer months (promote it by hand if wanted)."}
    if unreadable:
        return {"decision": "promoted", **record,
                "reason": f"The champion {name} could not be scored ({unreadable}); the new version replaces it."}
    return _by_rmse(record, name, new_rmse, champion_rmse, tolerance, _where(train_month, held, val_month))


def _where(train_month: str | None, held: str | None, val_month: str | None) -> str:
    """On which month the two were compared, in words: the champion's own (a rerun) or the newest."""
    if not val_month:
        return ""
    if train_month and train_month == held:
        return f" on {val_month} (a rerun on the champion's own months)"
    return f" on {val_month} (the newest month)"


def _by_rmse(record: dict[str, Any], name: str, new_rmse: float, champion_rmse: float, tolerance: float,
             where: str) -> dict[str, Any]:
    limit = champion_rmse + tolerance
    if new_rmse <= limit + ROUNDING * max(abs(limit), 1.0):
        return {"decision": "promoted", **record,
                "reason": f"Validation RMSE {new_rmse:.4f}{where} is not worse than the champion {name}'s "
                          f"{champion_rmse:.4f} by more than the tolerance {tolerance:g}."}
    return {"decision": "kept", **record,
            "reason": f"Validation RMSE {new_rmse:.4f}{where} is worse than the champion {name}'s "
                      f"{champion_rmse:.4f} by more than the tolerance {tolerance:g}: the champion stays."}


def challenge(store: ModelRegistry, *, run_id: str, new_rmse: float, val_summary: Any, synthetic: bool,
              tolerance: float, now: dt.datetime, flow: str = FLOW_NAME, train_month: str | None = None,
              val_month: str | None = None, writer: Any = None) -> dict[str, Any]:
    """Score the champion on the run's validation month, decide, and record a promotion event.

    The run is judged against the *contender*: the champion, or a run that promoted itself and is still
    finishing (``Store.contender``), so two runs finishing together end as if one had finished first.
    The event names the ``seq`` it follows: if another change came in between, the run decides again
    against the new contender (a few times, then it keeps what it has). With ``writer`` (the run's
    helper process, ``helper.ArtifactWriter``), the champion is scored there.
    """
    tolerance = float(tolerance or 0.0)
    months = {"train_month": train_month, "val_month": val_month}
    for _ in range(RACE_TRIES):
        after_seq, held = store.last_model_seq(flow), store.contender(flow, besides=run_id)
        record = _decision(store, new_rmse, val_summary, synthetic, tolerance, held, months, writer)
        if record["decision"] not in PROMOTING:
            return record
        event = store.record_model_event(flow=flow, run_id=run_id, action="promoted", actor=AUTO_ACTOR,
                                         reason=record["reason"], now=now, after_seq=after_seq,
                                         undo_to=held["event_id"] if held else None)
        if event is not None:
            return {**record, "event_id": event}
    return {**record, "decision": "kept", "reason": "The champion changed while this run was deciding; "
                                                    "it stays as it is (promote this run by hand if wanted)."}


def _decision(store: ModelRegistry, new_rmse: float, val_summary: Any, synthetic: bool, tolerance: float,
              champion: dict[str, Any] | None, months: dict[str, str | None], writer: Any = None) -> dict[str, Any]:
    champion_rmse, unreadable = None, None
    if _scored(champion, synthetic, months["train_month"]):
        try:
            champion_rmse = scored_rmse(store, champion["id"], val_summary, writer)
            if not math.isfinite(champion_rmse):  # NaN would keep it forever: no RMSE is "not worse" than NaN
                champion_rmse, unreadable = None, "its RMSE on this month is not a number"
        except (DataError, NotFound, pickle.UnpicklingError, AttributeError, ValueError) as error:
            unreadable = str(error).rstrip(".")
        if unreadable:
            log.warning("The champion %s could not be scored: %s.", champion["name"], unreadable)
    return decide(new_rmse=new_rmse, synthetic=synthetic, champion=champion, champion_rmse=champion_rmse,
                  tolerance=tolerance, unreadable=unreadable, **months)


def _scored(champion: dict[str, Any] | None, synthetic: bool, train_month: str | None) -> bool:
    """Whether the decision needs the champion's RMSE: not for a synthetic run against a real champion,
    nor for a version trained on older months (neither can win)."""
    if champion is None or (synthetic and not champion.get("synthetic")):
        return False
    return not (train_month and champion.get("train_month") and train_month < champion["train_month"])


# -- by hand: promote a version, roll back to the previous champion --------------------------------
def promote(store: ModelRegistry, settings: Settings, run_ref: str, *, actor: str, now: dt.datetime,
            reason: str | None = None, flow: str = FLOW_NAME, confirmed: bool = False) -> dict[str, Any]:
    """Make run ``run_ref`` (id, unique prefix or name) the champion; returns its event. A version trained
    on older months than the champion's needs ``confirmed`` (NeedsConfirmation names both months)."""
    run = store.get_run(run_ref)
    check_version(store, run, flow)
    after_seq, champion = store.last_model_seq(flow), store.champion(flow)
    if champion is not None and champion["id"] == run["id"]:
        raise InvalidTransition(f"The run {run['name']} ({run['id'][:8]}) is the champion already.")
    if champion is not None and run.get("synthetic") and not champion.get("synthetic"):
        raise InvalidTransition(f"The run {run['name']} ({run['id'][:8]}) was trained on synthetic data; it "
                                f"cannot replace the champion {champion['name']} ({champion['id'][:8]}), trained on "
                                "real data.")
    older = older_than_champion(run, champion)
    if older and not confirmed:
        raise NeedsConfirmation(f"{older}: confirm to promote it anyway.")
    text = reason or f"Promoted by hand by {actor}."
    text = f"{text} {older}." if older else text
    return _apply(store, settings, flow=flow, run_id=run["id"], action="manual", actor=actor, reason=text, now=now,
                  after_seq=after_seq, undo_to=champion["event_id"] if champion else None)


def older_than_champion(run: dict[str, Any] | None, champion: dict[str, Any] | None) -> str | None:
    """A sentence (no final stop) when ``run`` was trained on older months than ``champion``, else None."""
    if champion is None or run is None or not run.get("train_month") or not champion.get("train_month") \
            or run["train_month"] >= champion["train_month"]:
        return None
    return (f"{run['name']} ({run['id'][:8]}) was trained on {run['train_month']}, older than the champion "
            f"{champion['name']} ({champion['id'][:8]}) trained on {champion['train_month']}")


def rollback(store: ModelRegistry, settings: Settings, *, actor: str, now: dt.datetime,
             flow: str = FLOW_NAME) -> dict[str, Any]:
    """Make the previous champion the champion again (each rollback goes one champion further back)."""
    after_seq, champion = store.last_model_seq(flow), store.champion(flow)
    if champion is None:
        raise InvalidTransition("There is no champion yet, so there is nothing to roll back.")
    previous = store.model_event(champion["event_undo_to"]) if champion["event_undo_to"] else None
    if previous is None:
        raise InvalidTransition(f"The champion {champion['name']} ({champion['id'][:8]}) has no previous champion "
                                "to roll back to.")
    target = store.get_run(previous["run_id"])
    if target["state"] != "COMPLETED":
        raise InvalidTransition(f"The previous champion {target['name']} is {target['state']}: it cannot be used.")
    if target.get("synthetic") and not champion.get("synthetic"):
        raise InvalidTransition(f"The previous champion {target['name']} ({target['id'][:8]}) was trained on synthetic "
                                f"data; it cannot replace the champion {champion['name']} ({champion['id'][:8]}), "
                                "trained on real data (promote another version instead).")
    text = f"Rolled back by {actor} from {champion['name']} ({champion['id'][:8]}) to {target['name']}."
    return _apply(store, settings, flow=flow, run_id=target["id"], action="rollback", actor=actor, reason=text,
                  now=now, after_seq=after_seq, undo_to=previous["undo_to"])


def check_version(store: ModelRegistry, run: dict[str, Any], flow: str = FLOW_NAME) -> None:
    """A sentence unless ``run`` is a completed run of the flow with its two artifacts."""
    where = f"The run {run['name']} ({run['id'][:8]})"
    if run["flow"] != flow:
        raise InvalidTransition(f"{where} is a run of {run['flow']}, not a model version of {flow}.")
    if run["state"] != "COMPLETED":
        raise InvalidTransition(f"{where} is {run['state']}: only a completed run is a model version.")
    artifact_files(store, run["id"])


def _apply(store: ModelRegistry, settings: Settings, **event: Any) -> dict[str, Any]:
    event_id = store.record_model_event(**event)
    if event_id is None:
        raise InvalidTransition("The champion changed meanwhile (another promotion or rollback came first); "
                                "look again and retry.")
    try:
        publish_current(store, settings, flow=event["flow"])
    except (OSError, PipelineError) as error:  # the champion did change: say so, and the copy's fault
        log.warning("The champion could not be copied to %s: %s", current_dir(settings), error)
    return store.model_event(event_id)


# -- reading: the versions and the champion ------------------------------------------------------
def versions(store: ModelRegistry, *, flow: str = FLOW_NAME, limit: int = 200) -> list[dict[str, Any]]:
    """The model versions (completed runs), newest first: months, RMSEs, decision, champion or not."""
    now = store.champion(flow)
    held = now["id"] if now is not None else None
    return [_version(run, run["id"] == held) for run in store.model_versions(flow, limit=limit)]


def _version(run: dict[str, Any], is_champion: bool) -> dict[str, Any]:
    metrics = run.get("metrics") or {}
    promotion = metrics.get("promotion") or {}
    return {"run_id": run["id"], "name": run["name"], "champion": is_champion, "run_date": run["run_date"],
            "train_month": run.get("train_month"), "val_month": run.get("val_month"), "val_rmse": metrics.get("val_rmse"),
            "train_rmse": metrics.get("train_rmse"), "feature_count": metrics.get("feature_count"),
            "decision": promotion.get("decision"), "champion_rmse": promotion.get("champion_rmse"),
            "synthetic": bool(run.get("synthetic")), "data_source": run.get("data_source"), "ended_at": run["ended_at"]}


def current(store: ModelRegistry, settings: Settings, *, flow: str = FLOW_NAME, repair: bool = False) -> dict[str, Any] | None:
    """The champion as ``models current`` shows it: its card, its artifacts in the history and whether
    the stable folder holds it; None before the first version. With ``repair``, a folder that does not
    hold it (a truncated or edited file, a missing card) is written again from the history at once."""
    now = store.champion(flow)
    if now is None:
        return None
    card = champion_card(store, now)
    artifacts = [{k: a[k] for k in ("name", "path", "sha256", "size")}
                 for a in artifact_files(store, now["id"]).values()]
    return {**{k: v for k, v in card.items() if k != "files"}, "artifacts": artifacts,
            "folder": _folder(store, settings, card, flow, repair)}


def _folder(store: ModelRegistry, settings: Settings, card: dict[str, Any], flow: str, repair: bool) -> dict[str, Any]:
    """Whether ``models/current/`` holds ``card``'s files (written again first, with ``repair``)."""
    up_to_date = holds(current_dir(settings), card)
    found = {"path": str(current_dir(settings)), "up_to_date": up_to_date, "repaired": False, "repair_error": None}
    if repair and not up_to_date:
        error = _repair(store, settings, flow)
        found.update(up_to_date=error is None, repaired=error is None, repair_error=error)
    on_disk = read_card(settings)
    return {**found, "run_id": on_disk.get("run_id") if on_disk else None}


def _repair(store: ModelRegistry, settings: Settings, flow: str) -> str | None:
    """Write the stable folder again; None when it then holds the champion, else why not (a sentence)."""
    try:
        publish_current(store, settings, flow=flow)
    except (OSError, PipelineError) as error:
        return f"{current_dir(settings)} could not be written again: {error}"
    log.warning("The stable copy %s did not hold the champion's files: written again from the history.",
                current_dir(settings))
    return None
