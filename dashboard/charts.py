"""Plotly figures: pure functions, DataFrame in, figure out. They never call ``st.*``.

Empty data gives an annotated empty figure, never an exception. Colours per state come from
``labels.STATE_COLORS`` so that a state looks the same in every chart and badge.
"""
from __future__ import annotations

import datetime as dt
import math
import textwrap

import pandas as pd
import plotly.graph_objects as go

from .labels import STATE_COLORS, state_label

FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13, color="#1f2937")
GRID = "#e5e7eb"
SYNTHETIC_NAME = "synthetic demo data"
PART_STYLE = {"train": dict(dash="dot"), "val": dict(dash="solid")}
PART_NAME = {"train": "training", "val": "validation"}
PART_COLOR = {"train": "#94a3b8", "val": "#2563eb"}
TITLE_WIDTH = 42  # characters a line: a chart title fits a phone (390 px)
LEGEND_BELOW = 70  # px under the x axis's title for a legend of one or two rows


def _layout(fig: go.Figure, *, height: int, **extra) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), font=FONT,
                      plot_bgcolor="white", paper_bgcolor="white", hovermode="closest",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), **extra)
    fig.update_xaxes(gridcolor=GRID, zeroline=False, showline=True, linecolor=GRID)
    fig.update_yaxes(gridcolor=GRID, zeroline=False, showline=True, linecolor=GRID)
    return fig


def _titled(fig: go.Figure, title: str, *, height: int) -> go.Figure:
    """A chart with a title: the title at the top left (wrapped to fit a phone), range buttons under it, the
    legend under the plot, so that none of them overlaps another at any width."""
    lines = textwrap.wrap(title, TITLE_WIDTH)
    _layout(fig, height=height + 18 * (len(lines) - 1) + LEGEND_BELOW,
            title=dict(text="<br>".join(lines), x=0, xanchor="left", y=1, yanchor="top", yref="container",
                       pad=dict(t=8, l=4), font=dict(size=14)))
    fig.update_layout(margin=dict(l=10, r=10, t=46 + 18 * len(lines), b=10 + LEGEND_BELOW),
                      legend=dict(orientation="h", x=0, xanchor="left", y=0, yanchor="bottom", yref="container"))
    return fig


def empty_figure(message: str, *, height: int = 260) -> go.Figure:
    """A blank figure that says why it is blank."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#6b7280"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height)


def runs_scatter(points: pd.DataFrame) -> go.Figure:
    """Runs over time like Prefect's: x = start time (UTC), y = duration, colour = state."""
    if points.empty:
        return empty_figure("No started runs match these filters.")
    fig = go.Figure()
    for state, group in points.groupby("state", sort=False):
        fig.add_trace(go.Scatter(
            x=group["started_at"], y=group["duration_s"], mode="markers", name=state_label(state),
            marker=dict(color=STATE_COLORS.get(state, "#6b7280"), size=10, opacity=0.85,
                        line=dict(width=1, color="white")),
            customdata=group[["id", "name", "months", "duration", "run_date"]].to_numpy(),
            hovertemplate=("<b>%{customdata[1]}</b><br>%{customdata[2]} (run date %{customdata[4]})"
                           "<br>started %{x|%Y-%m-%d %H:%M:%S} UTC<br>took %{customdata[3]}"
                           f"<extra>{state_label(state)}</extra>")))
    _layout(fig, height=300)
    fig.update_xaxes(title_text="Start time (UTC)", type="date", range=_time_range(points["started_at"]))
    fig.update_yaxes(title_text="Duration (s)", ticksuffix=" s", **_duration_axis(points["duration_s"]))
    return fig


def _duration_axis(seconds: pd.Series) -> dict:
    """Linear from zero, or logarithmic when durations differ by more than 30 times."""
    positive = seconds[seconds > 0]
    if len(positive) >= 2 and positive.max() / positive.min() > 30:
        low, high = math.floor(math.log10(positive.min())), math.ceil(math.log10(positive.max()))
        return {"type": "log", "dtick": 1, "range": [low - 0.05, high + 0.05]}  # a tick a decade: 1 s, 10 s
    return {"type": "linear", "rangemode": "tozero"}


def _time_range(times: pd.Series) -> list[dt.datetime]:
    """The span of the data plus 5 % on each side (at least 30 min): no week-wide empty axis."""
    first, last = times.min(), times.max()
    pad = max((last - first) * 0.05, pd.Timedelta(minutes=30))
    return [first - pad, last + pad]


def task_gantt(bars: pd.DataFrame, *, started: str = "") -> go.Figure:
    """Task runs as bars placed by start and length; tasks that never ran shown as not run."""
    if bars.empty:
        return empty_figure("This run has no task runs yet.", height=200)
    ran, not_run = bars[bars["offset_s"].notna()], bars[bars["offset_s"].isna()]
    span = float((ran["offset_s"] + ran["duration_s"]).max()) if not ran.empty else 1.0
    span = max(span, 0.001)
    fig = go.Figure()
    for state, group in ran.groupby("state", sort=False):
        fig.add_trace(_task_trace(group, state))
    if not not_run.empty:
        fig.add_trace(_not_run_trace(not_run, start=span, width=max(span * 0.15, 0.001)))
    _layout(fig, height=90 + 42 * bars["label"].nunique(), barmode="overlay", bargap=0.35, showlegend=True)
    title = "Seconds since the run started" + (f" ({started})" if started else "")
    fig.update_xaxes(title_text=title, range=[0, span * 1.35], ticksuffix=" s", rangemode="tozero")
    fig.update_yaxes(categoryorder="array", categoryarray=list(dict.fromkeys(bars["label"])),
                     autorange="reversed", title_text=None)
    return fig


def _task_trace(group: pd.DataFrame, state: str) -> go.Bar:
    return go.Bar(
        y=group["label"], x=group["duration_s"], base=group["offset_s"], orientation="h",
        name=state_label(state), marker=dict(color=STATE_COLORS.get(state, "#6b7280")),
        text=group["duration"], textposition="outside", cliponaxis=False,
        customdata=group[["duration", "error"]].to_numpy(),
        hovertemplate=("<b>%{y}</b><br>started %{base:.3f} s after the run<br>took %{customdata[0]}"
                       f"<br>%{{customdata[1]}}<extra>{state_label(state)}</extra>"))


def _not_run_trace(group: pd.DataFrame, *, start: float, width: float) -> go.Bar:
    return go.Bar(
        y=group["label"], x=[width] * len(group), base=[start] * len(group), orientation="h",
        name="Not run", text=["not run"] * len(group), textposition="inside", insidetextanchor="middle",
        marker=dict(color="#f1f5f9", line=dict(color="#94a3b8", width=1),
                    pattern=dict(shape="/", fgcolor="#94a3b8", size=6)),
        customdata=group[["error"]].to_numpy(),
        hovertemplate="<b>%{y}</b><br>never ran<br>%{customdata[0]}<extra>Not run</extra>")


def metric_trends(history: pd.DataFrame) -> go.Figure:
    """RMSE for training and validation across run months, one point a month (the MSE, its square,
    is in the per-month table: one plot draws twice as fast as two).

    The x axis is a date axis with labels thinned to the span (every month up to a year and a
    half, then every quarter, half year or year), a month without a run breaks the line (never
    bridged), a range selector picks the last 6 months, 1, 2 or 5 years. Hollow markers are runs
    on synthetic demo data; hover names the run and its months.
    """
    if history.empty:
        return empty_figure("No completed run with metrics yet.", height=320)
    monthly = by_month(history)
    fig = go.Figure([_metric_trace(monthly, part, "rmse", legend=True) for part in ("train", "val")])
    if monthly["synthetic"].fillna(False).any():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=SYNTHETIC_NAME, hoverinfo="skip",
                                 marker=dict(size=9, color="white", line=dict(color="#475569", width=2))))
    _titled(fig, "RMSE (minutes)", height=420)
    fig.update_yaxes(title_text="minutes")
    fig.update_xaxes(type="date", tickformat="%Y-%m", dtick=_month_step(monthly), ticklabelmode="period",
                     title_text="Run date (training month = run month - 2)", rangeselector=dict(x=0, y=1.02, buttons=[
        dict(count=6, label="6 m", step="month", stepmode="backward"),
        dict(count=1, label="1 y", step="year", stepmode="backward"),
        dict(count=2, label="2 y", step="year", stepmode="backward"),
        dict(count=5, label="5 y", step="year", stepmode="backward"), dict(step="all", label="all")]))
    return fig


def by_month(history: pd.DataFrame) -> pd.DataFrame:
    """One row per calendar month from the first run month to the last: a month without a run is a
    row of NaN, which breaks the lines (plotly does not connect gaps)."""
    frame = history.copy()
    frame["month"] = frame["run_date"].dt.to_period("M")
    frame = frame.drop_duplicates("month", keep="last").set_index("month")
    months = pd.period_range(frame.index.min(), frame.index.max(), freq="M")
    full = frame.reindex(months)
    full["run_date"] = full["run_date"].fillna(pd.Series(months.to_timestamp() + pd.Timedelta(days=14), index=months))
    return full.reset_index(drop=True)


def _month_step(monthly: pd.DataFrame) -> str:
    """A tick every month up to 18 months, then every 3, 6 or 12: some 6 to 18 labels."""
    months = len(monthly)
    step = 1 if months <= 18 else 3 if months <= 48 else 6 if months <= 96 else 12
    return f"M{step}"


def _hover_data(history: pd.DataFrame):
    data = history[["name", "months", "synthetic"]].copy()
    data["synthetic"] = data["synthetic"].map({True: "synthetic demo data", False: "real data"})
    return data.fillna("").to_numpy()


def _metric_trace(history: pd.DataFrame, part: str, metric: str, *, legend: bool) -> go.Scatter:
    """One line a part; a synthetic month's marker is hollow (one trace, per-point symbols: fast to draw)."""
    label = f"{PART_NAME[part]} {metric.upper()}"
    hollow = history["synthetic"].eq(True)
    return go.Scatter(
        x=history["run_date"], y=history[f"{part}_{metric}"], mode="lines+markers", name=PART_NAME[part],
        legendgroup=part, showlegend=legend, connectgaps=False, line=dict(color=PART_COLOR[part], **PART_STYLE[part]),
        marker=dict(size=8, color=PART_COLOR[part], symbol=["circle-open" if h else "circle" for h in hollow],
                    line=dict(width=2, color=PART_COLOR[part])),
        customdata=_hover_data(history),
        hovertemplate=(f"<b>%{{customdata[0]}}</b><br>{label} %{{y:.4f}}<br>%{{customdata[1]}}"
                       "<br>run date %{x|%Y-%m-%d}<br>%{customdata[2]}<extra></extra>"))


def state_counts(counts: dict[str, int]) -> go.Figure:
    """Runs per state as horizontal bars, in the order of the lifecycle."""
    shown = {state: n for state, n in counts.items() if n}
    if not shown:
        return empty_figure("No runs in the history yet.", height=200)
    order = [s for s in STATE_COLORS if s in shown]
    fig = go.Figure(go.Bar(
        y=[state_label(s) for s in order], x=[shown[s] for s in order], orientation="h",
        marker=dict(color=[STATE_COLORS[s] for s in order]), text=[shown[s] for s in order],
        textposition="outside", cliponaxis=False, hovertemplate="%{y}: %{x} runs<extra></extra>"))
    _layout(fig, height=60 + 28 * len(order), showlegend=False)
    fig.update_xaxes(title_text="runs", rangemode="tozero")
    fig.update_yaxes(autorange="reversed")
    return fig


# -- data checks (dashboard/quality.py) ----------------------------------------------------------------
SIDE_COLOR = {"pickup": "#2563eb", "dropoff": "#f59e0b", "duration": "#10b981"}
SIDE_NAME = {"pickup": "pickup zones", "dropoff": "drop-off zones", "duration": "durations"}


def duration_shares(shares: pd.DataFrame) -> go.Figure:
    """The kept trips' durations of a run's months, share per minute: columns ``minute``, ``month``
    (a label), ``share``; one line a month, so that a shift between the months shows."""
    if shares.empty:
        return empty_figure("No duration histogram recorded for this run.", height=300)
    fig = go.Figure()
    for (label, group), color in zip(shares.groupby("month", sort=False), ("#94a3b8", "#2563eb")):
        fig.add_trace(go.Scatter(x=group["minute"], y=group["share"], mode="lines", name=label, line_shape="hvh",
                                 line=dict(color=color, width=2),
                                 customdata=group["minute"] + 1,
                                 hovertemplate="%{x}-%{customdata} min: %{y:.2%}<extra>" + label + "</extra>"))
    _titled(fig, "Trip durations (share of kept trips per minute)", height=300)
    fig.update_xaxes(title_text="minutes", range=[1, 60])
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return fig


def drift_trends(history: pd.DataFrame, *, limit: float | None = None) -> go.Figure:
    """PSI of the validation month against the training month across run months, a line for pickup
    zones, drop-off zones and durations (columns ``psi_pickup`` ...), gaps for months without a run,
    and ``limit`` (a gate's max_psi) as a dashed line."""
    if history.empty:
        return empty_figure("No completed run with data checks yet.", height=320)
    monthly = by_month(history)
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
