"""Trends of one flow (picked at the top): the metric its entry trends, one point per value of the trend's
field (e.g. a month: its latest completed run, aggregated in SQL) or per run, gaps where a month has no run,
a range selector, and a table of every metric the flow declares. Runs with a flag set (e.g. synthetic data)
have hollow markers. Under it, the flow's own trends (``flow_pages``)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, flow_pages, flows, labels, queries
from pipeline.orchestration.registry import FlowEntry, Metric, Trend

REGRESSION = 0.05  # the trend metric 5 % worse than the previous point's is flagged


def trend_of(entry: FlowEntry) -> Trend:
    return entry.trend or Trend(entry.metrics[0].key)


def regression_note(history: pd.DataFrame, entry: FlowEntry) -> None:
    """Flag the latest point when the trend metric got worse by more than REGRESSION."""
    metric = entry.metric(trend_of(entry).metric)
    if len(history) < 2 or metric is None or metric.better is None:
        return
    latest, previous = history.iloc[-1][metric.key], history.iloc[-2][metric.key]
    if not previous or pd.isna(previous) or pd.isna(latest):
        return
    worse = latest / previous - 1 if metric.better == "lower" else 1 - latest / previous
    if worse > REGRESSION:
        run = history.iloc[-1]
        st.warning(f"{metric.label} got {labels.share(worse)} worse in the latest run ({run['name']}"
                   f"{', ' + run['covers'] if run['covers'] else ''}): {labels.metric_text(metric, previous)} → "
                   f"{labels.metric_text(metric, latest)}.", icon=":material/trending_up:")


def number_column(metric: Metric) -> st.column_config.NumberColumn:
    """A table column in the metric's format (``.3f`` as ``%.3f``, a count with separators)."""
    spec = metric.format
    shown = "localized" if spec.endswith("d") else f"%{spec.lstrip(',')}" if spec.endswith("f") else None
    return st.column_config.NumberColumn(metric.label, format=shown)


def figures_table(history: pd.DataFrame, entry: FlowEntry) -> None:
    keys = [m.key for m in entry.metrics]
    table = history[["run_date", "covers", "name", "runs", *keys]].iloc[::-1].copy()
    st.subheader("Per point", divider="gray")
    st.dataframe(table, hide_index=True, width="stretch", key="trends_table", column_config={
        "run_date": "Run date", "covers": "Covers", "name": "Run",
        "runs": st.column_config.NumberColumn("Runs", format="%d"), **{m.key: number_column(m) for m in entry.metrics}})
    by = entry.field(trend_of(entry).by) if trend_of(entry).by else None
    st.caption(f"One row per {by.label.lower()}: its latest completed run (Runs: how many completed for it)." if by
               else "One row per completed run.")


def hidden_note(history: pd.DataFrame, entry: FlowEntry, hide: bool) -> None:
    """With the flagged runs hidden and nothing left: how many it hides, and how to see them."""
    field = next((f for f in entry.fields if f.kind == "flag"), None)
    if not (hide and history.empty and field):
        return
    flagged = queries.flag_share(entry.name, field.name)[0]
    if flagged:
        st.info(f"No completed run without {field.label} yet: {labels.plural(flagged, 'run')} with "
                f"{field.label} {'is' if flagged == 1 else 'are'} hidden. Turn off *{without(entry)}* to see "
                f"{'it' if flagged == 1 else 'them'}.", icon=":material/visibility_off:")


def without(entry: FlowEntry) -> str:
    """The toggle that hides the runs with a flag set: ``Without synthetic data``."""
    return f"Without {next(f.label for f in entry.fields if f.kind == 'flag')}"


def lines(entry: FlowEntry) -> list[tuple[str, ...]]:
    """The chart's lines: (key, label, format) of each metric the flow declares, (key, key) of one it does not."""
    trend = trend_of(entry)
    return [line(entry, key) for key in (trend.metric, *trend.also)]


def line(entry: FlowEntry, key: str) -> tuple[str, ...]:
    metric = entry.metric(key)
    return (key, metric.label, metric.format) if metric else (key, key)


@st.fragment(run_every=queries.LIVE_EVERY_S * 6)
def live_trends(entry: FlowEntry, hide: bool) -> None:
    flag = next((f.name for f in entry.fields if f.kind == "flag"), None)
    history = queries.trend(entry.name, flag if hide else None)
    hidden_note(history, entry, hide)
    regression_note(history, entry)
    trend = trend_of(entry)
    by = entry.field(trend.by) if trend.by else None
    monthly = by is not None and by.kind == "month"
    main = entry.metric(trend.metric)
    st.plotly_chart(charts.metric_trends(history, lines(entry), title=main.label if main else trend.metric,
                                         x_title=by.label if monthly else "Run date", monthly=monthly),
                    config={"displaylogo": False, "displayModeBar": False}, key="trends_chart")
    if not history.empty:
        figures_table(history, entry)
    flow_pages.trends(entry.name, hide)


st.title("Trends")
chosen = flows.pick("trends")
if chosen is None or not (chosen.metrics or chosen.trend):
    st.info("This flow declares no metric to trend." if chosen else "No flow is registered.")
    st.stop()
flags = [f.label for f in chosen.fields if f.kind == "flag"]
if flags:
    st.caption(f"Hollow markers: runs with {' or '.join(flags)}.")
live_trends(chosen, bool(flags) and st.toggle(without(chosen), key="trends_hide_flagged",
                                              help=f"Leave out the runs with {flags[0]}"))
