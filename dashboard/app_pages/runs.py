"""Runs: the runs of one flow or of every flow (the picker at the top), filtered by state, deployment,
trigger, tag, run dates, start time and name, sorted, paged in SQL; a chart of runs over time
(x = start time, y = duration, colour = state); rows can be selected and cancelled together, and a whole
backfill cancelled at once.

The filters can come from the address (``/runs?state=LATE&trigger=backfill&flow=...``), so that other
pages link to a filtered list.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

import streamlit as st

from dashboard import access, actions, charts, flows, frames, labels, queries, widgets
from pipeline.orchestration.registry import FlowEntry

PRESETS = {"All time": None, "Past 24 hours": 1, "Past 7 days": 7, "Past 30 days": 30,
           "Past year": 365, "Custom range": "custom"}
PER_PAGE = (25, 50, 100)
TRIGGERS = ("schedule", "manual", "backfill")
# Short enough for the Sort box at 1440 px (a longer one is cut there).
SORTS = {"newest": "Newest first", "oldest": "Oldest first", "run_date_desc": "Run date, latest",
         "run_date_asc": "Run date, earliest", "metric_desc": "{metric}, highest",
         "metric_asc": "{metric}, lowest", "duration_desc": "Longest first", "name": "Name"}


def sorts(entry: FlowEntry | None) -> dict[str, str]:
    """The sorts of the list: by the flow's headline metric too when one flow is shown."""
    if entry is None or not entry.metrics:
        return {key: text for key, text in SORTS.items() if not key.startswith("metric_")}
    return {key: text.format(metric=entry.metrics[0].label) for key, text in SORTS.items()}


def from_address() -> None:
    """Start the filters from the address once (``state``, ``trigger``, ``deployment``, ``tag``, ``q``)."""
    if st.session_state.get("runs_from_address") == dict(st.query_params):
        return
    st.session_state["runs_from_address"] = dict(st.query_params)
    params = st.query_params
    if params.get_all("state"):
        st.session_state["runs_states"] = [s for s in params.get_all("state") if s in labels.RUN_STATES]
    if params.get_all("trigger"):
        st.session_state["runs_triggers"] = [t for t in params.get_all("trigger") if t in TRIGGERS]
    for key, name in (("runs_deployment", "deployment"), ("runs_tag", "tag"), ("runs_search", "q")):
        if params.get(name):
            st.session_state[key] = params[name]


def filter_bar(entry: FlowEntry | None) -> dict[str, Any]:
    """The filters as keyword arguments of ``Store.run_list`` (``flow``: the flow picked, None for every flow)."""
    states_col, trigger_col, deployment_col, tag_col = st.columns([3, 2, 2, 2])
    chosen = states_col.multiselect("States", labels.RUN_STATES, format_func=labels.state_label,
                                    placeholder="All states", key="runs_states")
    triggers = trigger_col.multiselect("Trigger", TRIGGERS, placeholder="Any trigger", key="runs_triggers")
    names = [d["name"] for d in queries.deployments() if entry is None or d.get("flow") == entry.name]
    deployment = deployment_col.selectbox("Deployment", ["All deployments", *names], key="runs_deployment")
    tag = tag_col.selectbox("Tag", ["Any tag", *queries.tags()], key="runs_tag")
    dates_col, period_col, search_col, sort_col = st.columns([3, 2, 2, 2])
    first, last = run_dates(dates_col)
    since, until = period(period_col)
    search = search_col.text_input("Search", placeholder="Run name, id or run date", key="runs_search")
    shown = sorts(entry)
    if st.session_state.get("runs_sort") not in shown:
        st.session_state.pop("runs_sort", None)  # a metric sort, after "All flows" was picked
    sort = sort_col.selectbox("Sort", list(shown), format_func=shown.get, key="runs_sort")
    return {"flow": entry.name if entry else None, "metric": entry.metrics[0].key if entry and entry.metrics else None,
            "states": tuple(chosen) or None, "triggers": tuple(triggers) or None, "search": search.strip() or None,
            "deployment": None if deployment == "All deployments" else deployment,
            "tag": None if tag == "Any tag" else tag, "run_date_from": first, "run_date_to": last,
            "since": since, "until": until, "sort": sort}


def run_dates(column: Any) -> tuple[dt.date | None, dt.date | None]:
    """A range of run dates (inclusive); empty: every run date."""
    picked = column.date_input("Run dates", (), min_value=dt.date(2015, 1, 1), key="runs_run_dates",
                               format="YYYY-MM-DD", help="The runs whose run date is in this range")
    picked = tuple(picked or ())
    return (picked + (picked[-1:] or (None,)))[:2] if picked else (None, None)


def period(column: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A preset or a custom range of days, as UTC instants [since, until)."""
    preset = PRESETS[column.selectbox("Started (UTC)", list(PRESETS), key="runs_period")]
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


def runs_chart(points: Any) -> None:
    """The runs of this page over time; a click on a point opens the run."""
    event = st.plotly_chart(charts.runs_scatter(points), key="runs_chart", on_select="rerun",
                            selection_mode="points", config={"displaylogo": False, "displayModeBar": False})
    selected = (event or {}).get("selection", {}).get("points", [])
    if selected and selected[0].get("customdata"):
        st.switch_page(widgets.RUN_PAGE, query_params={"id": selected[0]["customdata"][0]})


def pager(total: int) -> tuple[int, int]:
    """Items per page and the page index (0-based)."""
    count_col, size_col = st.columns([5, 1])
    per_page = size_col.selectbox("Items per page", PER_PAGE, index=1, key="runs_per_page")
    pages = max(math.ceil(total / per_page), 1)
    count_col.markdown(f"**{labels.plural(total, 'run')}** {'matches' if total == 1 else 'match'} these filters.")
    page = st.pagination(pages, key=f"runs_page_{pages}") if pages > 1 else 1
    return per_page, page - 1


def latest_line(run: dict[str, Any] | None) -> None:
    """The run triggered last and its state as text (the table draws on a canvas): a run just
    enqueued is seen here going Scheduled → Running → Completed."""
    if run is None:
        return
    st.markdown(f"**Latest run:** [{run['name']}]({frames.run_url(run)}) &nbsp; {labels.run_badge(run)} "
                f"&nbsp; {labels.nowrap(frames.covers(run), run.get('deployment') or 'manual')}")


def table_key() -> str:
    """The grid's key: a new one clears its ticks (after a cancel, or when its rows changed under them)."""
    return f"runs_table_{st.session_state.get('runs_selection_round', 0)}"


def clear_selection() -> None:
    st.session_state["runs_selection_round"] = st.session_state.get("runs_selection_round", 0) + 1
    st.session_state.pop("runs_shown", None)


def selected_runs(table: Any, event: Any) -> dict[str, str]:
    """The ticked runs, ``{id: name}``, read from the rows the user saw when ticking them (the grid
    reports positions); if the rows changed since, the ticks are cleared rather than moved to other runs."""
    shown = st.session_state.get("runs_shown") or {}
    rows = list(((event or {}).get("selection") or {}).get("rows") or [])
    picked = {shown[str(i)][0]: shown[str(i)][1] for i in rows if str(i) in shown}
    now_shown = {str(i): (run_id, run_name(url)) for i, (run_id, url) in enumerate(zip(table["id"], table["Run"]))}
    st.session_state["runs_shown"] = now_shown
    if picked and now_shown != shown:
        clear_selection()
        st.rerun()
    return picked


def run_name(url: str | None) -> str:
    return (parse_qs(urlsplit(url or "").query).get("name") or ["?"])[0]


def cancel_label(picked: dict[str, str]) -> str:
    """The button names the runs it cancels (the first three, then how many more)."""
    if not picked:
        return "Cancel selected runs"
    names = list(picked.values())
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"Cancel {', '.join(names[:3])}{more}"


def cancel_selected(picked: dict[str, str]) -> None:
    """A button that cancels the ticked runs that still wait or run, named on it."""
    if access.button(st, cancel_label(picked), "cancel", icon=":material/cancel:", disabled=not picked,
                     key="runs_cancel_selected", help="Tick runs with the boxes on the left of their rows"):
        cancel(list(picked))


def cancel_matching(filters: dict[str, Any]) -> None:
    """With a trigger filter of backfill, one button cancels every waiting or running run that matches."""
    if "backfill" not in (filters.get("triggers") or ()):
        return
    matching = {k: v for k, v in filters.items() if k not in ("sort", "metric")}
    count = len(queries.cancellable_ids(**matching))
    if access.button(st, f"Cancel the {count} waiting or running backfill run(s) matching these filters", "cancel",
                     icon=":material/cancel_schedule_send:", disabled=not count, key="runs_cancel_backfill"):
        cancel(queries.cancellable_ids(**matching))


def cancel(ids: list[str]) -> None:
    if not access.allowed("cancel"):
        return
    done, refused = actions.cancel_many(queries.settings(), ids)
    clear_selection()
    queries.refresh()
    message = f"Cancel requested for {len(done)} run(s)." + (f" {len(refused)} could not be cancelled: "
                                                              f"{refused[0]}" if refused else "")
    widgets.notify(message)
    st.rerun()


@st.fragment(run_every=queries.LIVE_EVERY_S)
def live_runs(filters: dict[str, Any]) -> None:
    widgets.show_notice()
    latest_line(queries.latest_run(filters["flow"]))
    listing = {k: v for k, v in filters.items() if k not in ("sort", "metric")}
    per_page, page = pager(queries.count_run_list(**listing))
    table, points = queries.run_list(page=page, per_page=per_page, overdue_note=widgets.overdue_note(), **filters)
    if table.empty:
        st.info("No run matches these filters.")
        return
    if st.toggle("Chart of this page's runs over time (x = start, y = duration, colour = state)", key="runs_chart_on",
                 help="Off by default: the list draws at once; the chart costs a charting library's time"):
        runs_chart(points)
    event = widgets.runs_table(table, key=table_key(), height=min(38 + 35 * len(table), 740), select=True,
                               entry=labels.entry_of(filters["flow"]))
    left, right = st.columns([1, 2])
    with left:
        cancel_selected(selected_runs(table, event))
    with right:
        cancel_matching(filters)
    access.explain("cancel")


st.title("Runs")
from_address()
live_runs(filter_bar(flows.pick("runs", allow_all=True)))
