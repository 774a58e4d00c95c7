"""Trends: training and validation MSE and RMSE, one point a month (its latest completed run,
aggregated in SQL), months without a run left as gaps, a range selector, and a per-month table
with rows, mean trip duration and where the data came from. Runs on synthetic data have hollow markers."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, labels, quality, queries

REGRESSION = 0.05  # a validation RMSE 5 % above the previous month's is flagged


def regression_note(history: pd.DataFrame) -> None:
    """Flag the latest month when its validation RMSE rose by more than REGRESSION."""
    if len(history) < 2:
        return
    latest, previous = history.iloc[-1], history.iloc[-2]
    if previous["val_rmse"] and latest["val_rmse"] > previous["val_rmse"] * (1 + REGRESSION):
        rise = latest["val_rmse"] / previous["val_rmse"] - 1
        st.warning(f"Validation RMSE rose {labels.share(rise)} in the latest run ({latest['name']}, {latest['months']}): "
                   f"{previous['val_rmse']:.4f} → {latest['val_rmse']:.4f} min.", icon=":material/trending_up:")


def figures_table(history: pd.DataFrame) -> None:
    table = history[["run_date", "months", "name", "data", "runs", "train_rmse", "val_rmse", "train_mse", "val_mse",
                     "train_rows", "val_rows", "train_mean_duration", "val_mean_duration"]].iloc[::-1].copy()
    table["run_date"] = table["run_date"].dt.strftime("%Y-%m")
    number = st.column_config.NumberColumn
    st.subheader("Per month", divider="gray")
    st.dataframe(table, hide_index=True, width="stretch", key="trends_table", column_config={
        "run_date": "Run month", "months": "Months", "name": "Run", "data": "Data", "runs": number("Runs", format="%d"),
        "train_rmse": number("Train RMSE (min)", format="%.4f"), "val_rmse": number("Val RMSE (min)", format="%.4f"),
        "train_mse": number("Train MSE (min²)", format="%.4f"), "val_mse": number("Val MSE (min²)", format="%.4f"),
        "train_rows": number("Train rows", format="localized"), "val_rows": number("Val rows", format="localized"),
        "train_mean_duration": number("Train mean (min)", format="%.2f"),
        "val_mean_duration": number("Val mean (min)", format="%.2f"),
    })
    st.caption("One row per run month: its latest completed run (Runs: how many completed that month).")


def hidden_note(history: pd.DataFrame, real_only: bool) -> None:
    """With "Real data only" and no real run: how many synthetic runs it hides, and how to see them."""
    synthetic = queries.synthetic_share()[0]
    if real_only and history.empty and synthetic:
        st.info(f"No completed run on real data yet: {labels.plural(synthetic, 'run')} on synthetic demo data "
                f"{'is' if synthetic == 1 else 'are'} hidden. Turn off *Real data only* to see "
                f"{'it' if synthetic == 1 else 'them'}.", icon=":material/visibility_off:")


@st.fragment(run_every=queries.LIVE_EVERY_S * 6)
def live_trends(real_only: bool) -> None:
    history = queries.metric_months(real_only)
    hidden_note(history, real_only)
    regression_note(history)
    st.plotly_chart(charts.metric_trends(history), config={"displaylogo": False, "displayModeBar": False},
                    key="trends_chart")
    if not history.empty:
        figures_table(history)
    quality.trends(real_only)


st.title("Trends")
st.caption("MSE is in minutes², RMSE in minutes (the course printed an RMSE and called it MSE). "
           "Hollow markers: runs on synthetic demo data.")
live_trends(st.toggle("Real data only", key="trends_real_only",
                      help="Only runs on a real source (the TLC, a mirror or a local folder): hides synthetic demo data"))
