"""The scoring flow's own part of the run page: under its results, a link to the training run whose model it
used and its predicted against actual durations. The generic pages reach it only through ``flow_pages``."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, widgets
from pipeline.scoring.results import ScoringResults

SERIES = (("predicted", "predicted"), ("actual", "actual"))


def distribution(results: ScoringResults) -> pd.DataFrame:
    """Predicted and actual durations of the scored trips as shares per minute (``charts.duration_shares``)."""
    frames = []
    for key, name in SERIES:
        counts = pd.Series(results.distribution.get(key) or [], dtype=float)
        if counts.sum():
            frames.append(pd.DataFrame({"minute": range(1, len(counts) + 1), "month": name,
                                        "share": counts / counts.sum()}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["minute", "month", "share"])


def run_results(run: dict[str, Any]) -> None:
    """Under a scoring run's results: whether its champion saw the month, the model it used (a link to its
    training run) and the distributions."""
    results = ScoringResults.of(run.get("metrics"))
    if results is None:
        return
    if caveat := results.caveat():
        st.warning(caveat, icon=":material/visibility:")
    version = results.model_version
    if version.get("run_id"):
        widgets.run_link({"id": version["run_id"], "name": version.get("name") or version["run_id"][:8]},
                         f"Model: {results.model()}")
    title = f"Trip durations of {results.month or 'the month'}: predicted and actual (share of scored trips)"
    st.plotly_chart(charts.duration_shares(distribution(results), title=title, empty="No distribution recorded "
                                           "for this run."), config={"displayModeBar": False}, key="scoring_durations")
