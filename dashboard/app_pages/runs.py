"""Runs: every flow run, filtered by state, deployment, date range and name; a chart of runs
over time (x = start time, y = duration, colour = state) and a paged table linking to each run."""
from __future__ import annotations

import datetime as dt
import math
from typing import Any

import streamlit as st

from dashboard import charts, frames, labels, queries, widgets

PRESETS = {"All time": None, "Past 24 hours": 1, "Past 7 days": 7, "Past 30 days": 30,
           "Past year": 365, "Custom range": "custom"}
PER_PAGE = (25, 50, 100)


def filter_bar() -> dict[str, Any]:
    """The filters as keyword arguments of ``Store.runs``."""
    states_col, deployment_col, period_col, search_col = st.columns([3, 2, 2, 2])
    chosen = states_col.multiselect("States", labels.RUN_STATES, format_func=labels.state_label,
                                    placeholder="All states", key="runs_states")
    names = [d["name"] for d in queries.deployments()]
    deployment = deployment_col.selectbox("Deployment", ["All deployments", *names], key="runs_deployment")
    since, until = period(period_col)
    search = search_col.text_input("Search", placeholder="Run name, id or run date", key="runs_search")
    return {"states": tuple(chosen) or None, "search": search.strip() or None,
            "deployment": None if deployment == "All deployments" else deployment,
            "since": since, "until": until}


def period(column: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A preset or a custom range of days, as UTC instants [since, until)."""
    preset = PRESETS[column.selectbox("Date range (UTC)", list(PRESETS), key="runs_period")]
    today = queries.now().date()
    if preset is None:
        return None, None
    if preset == "custom":
        picked = column.date_input("Days (UTC)", (today - dt.timedelta(days=30), today), key="runs_days")
        first, last = (picked + (picked[-1],))[:2] if picked else (today, today)
        return _midnight(first), _midnight(last + dt.timedelta(days=1))
    return queries.now() - dt.timedelta(days=preset), None


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc)


def runs_chart(filters: dict[str, Any]) -> None:
    points = queries.run_points(**filters)
    event = st.plotly_chart(charts.runs_scatter(points), key="runs_chart", on_select="rerun",
                            selection_mode="points", config={"displaylogo": False})
    selected = (event or {}).get("selection", {}).get("points", [])
    if selected and selected[0].get("customdata"):
        st.switch_page(widgets.RUN_PAGE, query_params={"id": selected[0]["customdata"][0]})
    if len(points) >= 2000:
        st.caption("The chart shows the 2,000 most recent runs that match; the table has them all.")


def pager(total: int) -> tuple[int, int]:
    """Items per page and the page index (0-based)."""
    count_col, size_col = st.columns([5, 1])
    per_page = size_col.selectbox("Items per page", PER_PAGE, index=1, key="runs_per_page")
    pages = max(math.ceil(total / per_page), 1)
    count_col.markdown(f"**{total:,} runs** match these filters, newest first.")
    page = st.pagination(pages, key=f"runs_page_{pages}") if pages > 1 else 1
    return per_page, page - 1


def latest_line(run: dict[str, Any] | None) -> None:
    """The run triggered last and its state as text (the table draws on a canvas): a run just
    enqueued is seen here going Scheduled → Running → Completed."""
    if run is None:
        return
    st.markdown(f"**Latest run:** [{run['name']}]({frames.run_url(run)}) &nbsp; {labels.badge(run['state'])} "
                f"&nbsp; {frames.covers(run)} · {run.get('deployment') or 'manual'}")


@st.fragment(run_every=queries.LIVE_EVERY_S)
def live_runs(filters: dict[str, Any]) -> None:
    latest_line(queries.latest_run())
    runs_chart(filters)
    per_page, page = pager(queries.count_runs(**filters))
    table = queries.runs_page(page=page, per_page=per_page, overdue_note=widgets.overdue_note(), **filters)
    if table.empty:
        st.info("No run matches these filters.")
        return
    widgets.runs_table(table, key="runs_table", height=min(38 + 35 * len(table), 740))


st.title("Runs")
live_runs(filter_bar())
