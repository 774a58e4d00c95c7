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
FLAGGED_NAME = "flagged (hollow)"  # a run with a flag field set, e.g. on synthetic data
MAIN_COLOR, OTHER_COLOR = "#2563eb", "#94a3b8"
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
            customdata=group[["id", "name", "covers", "duration", "run_date"]].to_numpy(),
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


def metric_trends(history: pd.DataFrame, lines: list[tuple[str, ...]], *, title: str, x_title: str,
                  monthly: bool = True) -> go.Figure:
    """A flow's trend: one line per ``(column, label[, format])`` of ``lines`` (the first solid, the others dotted) over
    ``x``; one point a month when ``monthly`` (a month without a run breaks the lines, never bridged), else one
    a run. A date axis with labels thinned to the span and a range selector (6 months to 5 years). Hollow
    markers are runs with a flag set (``flagged``: e.g. synthetic data); hover names the run and what it covers.
    """
    if history.empty:
        return empty_figure("No completed run with metrics yet.", height=320)
    shown = by_month(history) if monthly else history
    fig = go.Figure([_metric_trace(shown, column, label, *spec, main=i == 0)
                     for i, (column, label, *spec) in enumerate(lines)])
    if shown["flagged"].fillna(False).astype(bool).any():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=FLAGGED_NAME, hoverinfo="skip",
                                 marker=dict(size=9, color="white", line=dict(color="#475569", width=2))))
    _titled(fig, title, height=420)
    fig.update_xaxes(type="date", tickformat="%Y-%m", dtick=_month_step(shown), ticklabelmode="period",
                     title_text=x_title, rangeselector=dict(x=0, y=1.02, buttons=[
        dict(count=6, label="6 m", step="month", stepmode="backward"),
        dict(count=1, label="1 y", step="year", stepmode="backward"),
        dict(count=2, label="2 y", step="year", stepmode="backward"),
        dict(count=5, label="5 y", step="year", stepmode="backward"), dict(step="all", label="all")]))
    return fig


def by_month(history: pd.DataFrame, column: str = "x") -> pd.DataFrame:
    """One row per calendar month from the first month of ``column`` to the last: a month without a run is a
    row of NaN, which breaks the lines (plotly does not connect gaps)."""
    frame = history.copy()
    frame["month"] = frame[column].dt.to_period("M")
    frame = frame.drop_duplicates("month", keep="last").set_index("month")
    months = pd.period_range(frame.index.min(), frame.index.max(), freq="M")
    full = frame.reindex(months)
    full[column] = full[column].fillna(pd.Series(months.to_timestamp() + pd.Timedelta(days=14), index=months))
    return full.reset_index(drop=True)


def _month_step(monthly: pd.DataFrame) -> str:
    """A tick every month up to 18 months, then every 3, 6 or 12: some 6 to 18 labels."""
    months = len(monthly)
    step = 1 if months <= 18 else 3 if months <= 48 else 6 if months <= 96 else 12
    return f"M{step}"


def _hover_data(history: pd.DataFrame):
    data = history[["name", "covers", "flagged"]].copy()
    data["flagged"] = data["flagged"].map({True: FLAGGED_NAME, False: ""})
    return data.fillna("").to_numpy()


def _metric_trace(history: pd.DataFrame, column: str, label: str, spec: str = ".4f", *, main: bool) -> go.Scatter:
    """One line a metric, its values in the format ``spec`` on hover; a flagged run's marker is hollow (one trace,
    per-point symbols: fast to draw)."""
    color = MAIN_COLOR if main else OTHER_COLOR
    hollow = history["flagged"].eq(True)
    return go.Scatter(
        x=history["x"], y=history[column], mode="lines+markers", name=label, connectgaps=False,
        line=dict(color=color, dash="solid" if main else "dot"),
        marker=dict(size=8, color=color, symbol=["circle-open" if h else "circle" for h in hollow],
                    line=dict(width=2, color=color)),
        customdata=_hover_data(history),
        hovertemplate=(f"<b>%{{customdata[0]}}</b><br>{label} %{{y:{spec}}}<br>%{{customdata[1]}}"
                       "<br>%{x|%Y-%m-%d}<br>%{customdata[2]}<extra></extra>"))


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


def duration_shares(shares: pd.DataFrame, *, title: str = "Trip durations (share of kept trips per minute)",
                    empty: str = "No duration histogram recorded for this run.") -> go.Figure:
    """The kept trips' durations of a run's months, share per minute: columns ``minute``, ``month``
    (a label), ``share``; one line a month (or a series: predicted, actual), so that a shift between them shows."""
    if shares.empty:
        return empty_figure(empty, height=300)
    fig = go.Figure()
    for (label, group), color in zip(shares.groupby("month", sort=False), ("#94a3b8", "#2563eb")):
        fig.add_trace(go.Scatter(x=group["minute"], y=group["share"], mode="lines", name=label, line_shape="hvh",
                                 line=dict(color=color, width=2),
                                 customdata=group["minute"] + 1,
                                 hovertemplate="%{x}-%{customdata} min: %{y:.2%}<extra>" + label + "</extra>"))
    _titled(fig, title, height=300)
    fig.update_xaxes(title_text="minutes", range=[1, 60])
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return fig
