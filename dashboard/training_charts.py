"""The training flow's own figures: its data checks' drift across months (``quality.py``) and the model in use
against the version retrained (``models_view.py``). Pure functions, DataFrame in, figure out, as ``charts``."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .charts import _month_step, _titled, by_month, empty_figure

SIDE_COLOR = {"pickup": "#2563eb", "dropoff": "#f59e0b", "duration": "#10b981"}
SIDE_NAME = {"pickup": "pickup zones", "dropoff": "drop-off zones", "duration": "durations"}


def drift_trends(history: pd.DataFrame, *, limit: float | None = None) -> go.Figure:
    """PSI of the validation month against the training month across run months, a line for pickup
    zones, drop-off zones and durations (columns ``psi_pickup`` ...), gaps for months without a run,
    and ``limit`` (a gate's max_psi) as a dashed line."""
    if history.empty:
        return empty_figure("No completed run with data checks yet.", height=320)
    monthly = by_month(history, "run_date")
    fig = go.Figure([_side_trace(monthly, side) for side in SIDE_NAME])
    if limit is not None:
        fig.add_hline(y=limit, line=dict(color="#dc2626", dash="dash", width=1),
                      annotation_text=f"max_psi {limit:g}", annotation_position="top left")
    _titled(fig, "Drift: PSI, validation month against training month", height=320)
    fig.update_xaxes(type="date", tickformat="%Y-%m", dtick=_month_step(monthly), ticklabelmode="period",
                     title_text="Run date")
    fig.update_yaxes(title_text="PSI", rangemode="tozero")
    return fig


def _side_trace(monthly: pd.DataFrame, side: str) -> go.Scatter:
    return go.Scatter(x=monthly["run_date"], y=monthly[f"psi_{side}"], mode="lines+markers", name=SIDE_NAME[side],
                      connectgaps=False, line=dict(color=SIDE_COLOR[side]), marker=dict(size=7),
                      customdata=monthly[["name", "months"]].fillna("").to_numpy(),
                      hovertemplate=(f"<b>%{{customdata[0]}}</b><br>PSI of {SIDE_NAME[side]} %{{y:.4f}}"
                                     "<br>%{customdata[1]}<extra></extra>"))


IN_USE_COLOR, RETRAINED_COLOR, PROMOTED_COLOR = "#dc2626", "#2563eb", "#16a34a"


def model_in_use(points: pd.DataFrame) -> go.Figure:
    """The model in use on each new month: its RMSE there (``in_use_rmse``) beside the retrained version's
    (``retrained_rmse``), by validation month (``val_month``), the promotions marked with a star."""
    if points.empty:
        return empty_figure("No run has been judged on a new month yet.", height=340)
    months = pd.to_datetime(points["val_month"] + "-01")
    hover = points[["name", "decision"]].fillna("").to_numpy()
    fig = go.Figure([
        go.Scatter(x=months, y=points["in_use_rmse"], mode="lines+markers", name="model in use", connectgaps=False,
                   line=dict(color=IN_USE_COLOR), marker=dict(size=7), customdata=hover,
                   hovertemplate="<b>%{x|%Y-%m}</b><br>model in use: RMSE %{y:.4f}<extra></extra>"),
        go.Scatter(x=months, y=points["retrained_rmse"], mode="lines+markers", name="retrained", connectgaps=False,
                   line=dict(color=RETRAINED_COLOR, dash="dot"), marker=dict(size=7), customdata=hover,
                   hovertemplate="<b>%{x|%Y-%m}</b><br>retrained (%{customdata[0]}): RMSE %{y:.4f}"
                                 "<br>%{customdata[1]}<extra></extra>"),
    ])
    promoted = points["promoted"].astype(bool)
    fig.add_trace(go.Scatter(x=months[promoted], y=points.loc[promoted, "retrained_rmse"], mode="markers",
                             name="promoted", marker=dict(symbol="star", size=14, color=PROMOTED_COLOR),
                             hoverinfo="skip"))
    _titled(fig, "Validation RMSE (minutes) of the model in use and of the version retrained, by month", height=340)
    fig.update_xaxes(type="date", tickformat="%Y-%m", dtick="M1" if len(points) <= 24 else "M12",
                     title_text="Validation month (each point is scored on it)")
    fig.update_yaxes(title_text="RMSE (min)")
    return fig
