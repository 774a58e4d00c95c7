"""Two model versions side by side: their figures, their errors on the same month, their features
and the largest coefficient changes by zone (from their pickled vectorizer and regression)."""
from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import DataError, NotFound
from ..store import Store
from . import champion

SIDES = {"PUlocationID": "pickup", "DOlocationID": "drop-off"}
FIGURES = (("train_month", "Training month"), ("val_month", "Validation month"), ("train_rows", "Training rows"),
           ("val_rows", "Validation rows"), ("train_rmse", "Training RMSE (min)"),
           ("val_rmse", "Validation RMSE (min)"), ("feature_count", "One-hot features"))


def figures(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: its name, then version a's and version b's value."""
    rows = []
    for key, name in FIGURES:
        values = [run.get(key) if key.endswith("month") else (run.get("metrics") or {}).get(key) for run in (a, b)]
        rows.append({"figure": name, "a": values[0], "b": values[1]})
    rows.append({"figure": "Data", "a": _data(a), "b": _data(b)})
    return rows


def _data(run: dict[str, Any]) -> str:
    return "synthetic" if run.get("synthetic") else "real"


def same_month(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """Both RMSEs on one month, when one version scored the other as the champion it challenged."""
    for new, old in ((b, a), (a, b)):
        promotion = (new.get("metrics") or {}).get("promotion") or {}
        if promotion.get("champion_run_id") == old["id"] and promotion.get("champion_rmse") is not None:
            scores = {new["id"]: promotion["new_rmse"], old["id"]: promotion["champion_rmse"]}
            return {"month": new["val_month"], "a": scores[a["id"]], "b": scores[b["id"]],
                    "how": f"recorded when {new['name']} challenged {old['name']}"}
    return None


def score_on_month(store: Store, settings: Settings, runs: list[dict[str, Any]], month: str,
                   data_url: str) -> dict[str, float]:
    """Each run's validation RMSE on ``month`` of ``data_url`` (the cached file, else fetched once)."""
    from . import data, features

    path = data.fetch_month(settings.with_data_url(data_url), month, progress=False)
    summary = features.read_month(path, data.file_name(month).removesuffix(".parquet")).summary
    summary.check()
    return {run["id"]: champion.score_on_summary(*champion.load_model(store, run["id"]), summary)["rmse"]
            for run in runs}


def coefficients(store: Store, a: dict[str, Any], b: dict[str, Any], *, top: int = 10) -> dict[str, Any]:
    """The two versions' features and their ``top`` largest coefficient changes (b - a) by zone."""
    weights = [_weights(store, run) for run in (a, b)]
    names = [set(w) for w in weights]
    common = names[0] & names[1]
    changes = sorted(({"side": SIDES.get(name.split("=")[0], name.split("=")[0]), "zone": name.split("=", 1)[-1],
                       "a": weights[0][name], "b": weights[1][name], "change": weights[1][name] - weights[0][name]}
                      for name in common), key=lambda row: -abs(row["change"]))
    return {"a_count": len(names[0]), "b_count": len(names[1]), "common": len(common),
            "only_a": sorted(names[0] - names[1]), "only_b": sorted(names[1] - names[0]), "changes": changes[:top]}


def _weights(store: Store, run: dict[str, Any]) -> dict[str, float]:
    dv, regression = champion.load_model(store, run["id"])
    try:
        return dict(zip(dv.feature_names_, map(float, regression.coef_)))
    except (AttributeError, TypeError) as error:
        raise DataError(f"The artifacts of {run['name']} ({run['id'][:8]}) are not a DictVectorizer and a "
                        f"LinearRegression ({error}).") from None


def compare(store: Store, a_ref: str, b_ref: str, *, top: int = 10) -> dict[str, Any]:
    """Versions ``a`` and ``b`` side by side; ``coefficients`` is a sentence when a model cannot be read."""
    a, b = store.get_run(a_ref), store.get_run(b_ref)
    try:
        weights: dict[str, Any] | str = coefficients(store, a, b, top=top)
    except (DataError, NotFound) as error:
        weights = str(error)
    return {"a": a, "b": b, "figures": figures(a, b), "same_month": same_month(a, b), "coefficients": weights}
