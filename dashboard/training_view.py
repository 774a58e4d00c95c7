"""The training flow's own parts of the dashboard: how its runs' months and data are worded, and what its run
page adds under the results (the months' figures, the data checks, the champion decision). The generic pages
reach these only through ``flow_pages``."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import labels
from pipeline.orchestration.states import WAITING_STATES, State

WAITING = frozenset(s.value for s in WAITING_STATES)


def months(run: dict[str, Any]) -> str:
    """What a run covered: ``train 2021-06 → val 2021-07``."""
    if not run.get("train_month"):
        return "-"
    return f"train {run['train_month']} → val {run['val_month']}"


def is_synthetic(run: dict[str, Any]) -> bool:
    """Whether a run used synthetic data: what its metrics say it ran on, else what it was made with."""
    metrics = run.get("metrics") or {}
    return bool(metrics["synthetic"] if "synthetic" in metrics else run.get("synthetic"))


def synthetic_sentence(state: str) -> str:
    """What a run on synthetic data did, does or would have done with it, told by its state."""
    if state == "COMPLETED":
        return ("This run trained and validated on generated demo months, not on real TLC trips: its errors say "
                "nothing about the real model.")
    if state in ("PENDING", "RUNNING"):
        return "This run is using generated demo months, not real TLC trips."
    if state in WAITING:
        return "This run will train and validate on generated demo months, not on real TLC trips."
    return (f"This run was to train and validate on generated demo months, not on real TLC trips; it ended "
            f"{State(state).label.lower()} before it had any errors.")


def flag_note(run: dict[str, Any], field: Any) -> str | None:
    """A run on synthetic data: what it did, does or would have done with it (None for another flag)."""
    return synthetic_sentence(run["state"]) if field.name == "synthetic" else None


def data_label(run: dict[str, Any]) -> str:
    """Where a run's data came from, in a few words: synthetic demo data, TLC, a mirror (its host)
    or a local folder; blank when the run recorded no source."""
    if is_synthetic(run):
        return "synthetic demo data"
    return labels.source_label((run.get("metrics") or {}).get("data_source") or run.get("data_source"))


def data_source(run: dict[str, Any]) -> str:
    """The data a run used (its metrics' record when it completed)."""
    return (run.get("metrics") or {}).get("data_source") or run.get("data_source") or "unknown source"


def data_figures(values: dict[str, Any]) -> pd.DataFrame:
    """The two months a run read: rows kept and read, the share dropped, missing zones, mean duration."""
    rows = []
    for part, name in (("train", "training"), ("val", "validation")):
        stats = values.get(f"{part}_stats") or {}
        rows.append({"Month": f"{name} {values.get(f'{part}_month', '')}".strip(),
                     "Rows kept": labels.number(stats.get("rows")), "Rows read": labels.number(stats.get("raw_rows")),
                     "Dropped (outside 1-60 min)": labels.share(stats.get("dropped_share")),
                     "Pickup zone missing": labels.share(stats.get("pu_missing_share")),
                     "Drop-off zone missing": labels.share(stats.get("do_missing_share")),
                     "Mean duration (min)": labels.number(stats.get("mean_duration"), 2)})
    return pd.DataFrame(rows)


def run_results(run: dict[str, Any]) -> None:
    """Under a training run's results: its months' figures, its data checks and its champion decision."""
    from dashboard import models_view, quality

    values = run.get("metrics") or {}
    if values.get("val_rmse") is not None:
        st.table(data_figures(values).set_index("Month"))  # a static table: no data grid to draw
    quality.data_report(run)
    models_view.promotion(run)


def trends(hide_flagged: bool) -> None:
    """Under the training flow's trend: its data checks across months."""
    from dashboard import quality

    quality.trends(hide_flagged)
