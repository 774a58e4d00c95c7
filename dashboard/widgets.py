"""Pieces of UI that several pages share: the sidebar, the scheduler banner, state badges,
the runs table and the link to a run."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from pipeline.orchestration.registry import FlowEntry

from . import access, flows, labels, queries

RUN_PAGE = "app_pages/run_detail.py"
UPCOMING_PAGE = "app_pages/upcoming.py"
RUNS_PAGE = "app_pages/runs.py"
STATE_OPTIONS = [labels.state_label(s) for s in labels.STATUS_COLORS]
RUN_NAME_WIDTH = 192  # px: the longest two-word run name (25 characters) whole


def sidebar() -> None:
    """The history path, whether a scheduler runs, and a banner when data is synthetic."""
    settings = queries.settings()
    with st.sidebar:
        _sidebar_live()
        st.caption("Run history")
        st.markdown(inline_code(settings.history_label))
        access.sidebar()  # (on a phone the sidebar closes once a page is chosen: ``page_head``)


@st.fragment(run_every=queries.LIVE_EVERY_S)
def _sidebar_live() -> None:
    scheduler_status(compact=True)
    flag_banner(flows.chosen(), compact=True)


def scheduler_alive() -> bool:
    return labels.scheduler_state(queries.scheduler_status(), queries.now())[0]


def overdue_note(*, markdown: bool = False) -> str | None:
    """While no scheduler is alive, why a past-due run waits (with the command); else None."""
    return None if scheduler_alive() else labels.overdue_reason(queries.scheduler_command(), markdown=markdown)


def scheduler_code() -> None:
    """The exact command that starts a scheduler on this history, ready to copy.

    Inline code, not ``st.code``: a code block loads a syntax highlighter, a second's wait in the browser."""
    st.markdown(inline_code(queries.scheduler_command()))


def inline_code(text: str) -> str:
    """Markdown inline code for ``text`` (its own backticks fenced by longer runs)."""
    fence = "`" * (max((len(run) for run in text.split("`")[1::2]), default=0) + 1) if "`" in text else "`"
    return f"{fence}{text}{fence}"


def scheduler_status(*, compact: bool = False) -> bool:
    """Say loudly when no scheduler is alive, with the command that starts one."""
    status = queries.scheduler_status()
    alive, sentence = labels.scheduler_state(status, queries.now())
    sentence = labels.markdown_times(sentence)  # on every first page: no time taken for an emoji code
    if status and status.get("last_error") and not compact:
        st.warning(labels.markdown_times(f"The scheduler's last error ({labels.utc(status['last_error_at'])}): ")
                   + status["last_error"], icon=":material/warning:")
    if alive:
        st.success(sentence, icon=":material/favorite:")
        return True
    if compact:
        st.error(f"**Scheduler down.** {sentence} Start it with:", icon=":material/heart_broken:")
        scheduler_code()
        return False
    # one element: the sentence, the command and what happens meanwhile (fewer elements, a faster page)
    st.error(f"**Scheduler down.** {sentence} Scheduled runs will not start until one runs. Start it with:\n\n"
             f"{inline_code(queries.scheduler_command())}\n\nWhile it is down, due runs keep waiting as they are, "
             "shown as overdue: only a running scheduler marks runs Late. When it starts, it applies each "
             "deployment's catch-up policy to the slots it missed, then starts the due runs.",
             icon=":material/heart_broken:")
    return False


def deployment_error(dep: dict[str, Any]) -> None:
    """Say loudly that the scheduler skips this deployment, why and since when (nothing if it does not)."""
    sentence = labels.deployment_error(dep)
    if sentence:
        st.error(f"{sentence} Until this is fixed the scheduler leaves it out of that step; every other deployment "
                 "keeps getting its runs.",
                 icon=":material/event_busy:")


def failing_deployments() -> None:
    """A summary of the deployments the scheduler skips, each with its sentence (nothing if none)."""
    failing = queries.failing_deployments()
    if not failing:
        return
    lines = "\n".join(f"- {labels.deployment_error(dep)}" for dep in failing)
    st.error(f"**{labels.skipped_deployments([dep['name'] for dep in failing])}.** Every other deployment keeps "
             f"getting its runs.\n\n{lines}", icon=":material/event_busy:")
    st.page_link(UPCOMING_PAGE, label="See the deployments on Upcoming", icon=":material/event_upcoming:")


def flag_banner(entry: FlowEntry | None, *, compact: bool = False) -> None:
    """In the sidebar: new runs use demo data (this dashboard's data source). On a page and in the sidebar: how
    many completed runs of the flow had a flag field set (e.g. synthetic data), and on a page what that means."""
    settings = queries.settings()
    if compact and settings.is_synthetic:
        st.warning(f"**Synthetic data.** New runs use generated demo months (FHV_DATA_URL={settings.data_url}), "
                   "not real TLC trips.", icon=":material/science:")
        return
    for field in (f for f in (entry.fields if entry else ()) if f.kind == "flag"):
        flagged, total = queries.flag_share(entry.name, field.name)
        if flagged:
            more = "" if compact else f" {field.help} Hollow markers in charts.".rstrip()
            st.warning(f"**{flagged} of {total}** completed runs of {entry.display_name} had {field.label}.{more}",
                       icon=":material/science:")


def figures(items: list[tuple[str, str, tuple[float, str] | None]]) -> None:
    """A row of labelled numbers, each with an optional change (green when it got better, red when worse; the
    arrow says which way it went) as one Markdown element: drawn at once, where ``st.metric`` loads a
    component per number."""
    st.markdown(figures_text(items))


def figures_text(items: list[tuple[str, str, tuple[float, str] | None]]) -> str:
    """The Markdown of ``figures``, for a page that draws it and the line under it as one element."""
    parts = []
    for label, value, delta in items:
        change = ""
        if delta is not None:
            colour = "green" if delta[0] <= 0 else "red"  # the first number: how much worse it got
            arrow = "↓" if delta[1].startswith("-") else "↑"  # the text: which way the value went
            change = f" :{colour}[{arrow} {delta[1]}]"
        parts.append(f":gray[{label}]  \n### {value}{change}")
    return " \n\n".join(parts) if len(parts) == 1 else "\n\n".join(parts)


def lines_table(lines: list[tuple[str, str]]) -> str:
    """(label, text) lines as one Markdown table (one element, drawn at once)."""
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return "| Result | |\n|---|---|\n" + "\n".join(f"| {cell(label)} | {cell(text)} |" for label, text in lines)


def state_badge(state: str) -> None:
    st.markdown(labels.badge(state))


def run_link(run: dict[str, Any], label: str | None = None) -> None:
    """A link to a run's detail page (``/run?id=<uuid>``)."""
    st.page_link(RUN_PAGE, label=label or f"{run['name']} ({labels.state_label(run['state'])})",
                 icon=":material/open_in_new:", query_params={"id": run["id"]})


def runs_table(table: pd.DataFrame, *, key: str, height: int | str = "auto", select: bool = False,
               entry: FlowEntry | None = None) -> Any:
    """Runs with coloured states, what they covered, and a link to each one.

    At 1440 px the columns up to Reason fit without scrolling the grid; on a phone the first
    three (state, run date, the headline metric) do. ``select``: rows can be picked (the event is returned).
    """
    shown = [c for c in table.columns if c != "id"]
    extra = {"on_select": "rerun", "selection_mode": "multi-row"} if select else {}
    return st.dataframe(table, hide_index=True, key=key, height=height, width="stretch", column_order=shown,
                        column_config=run_columns_config(entry), **extra)


def run_columns_config(entry: FlowEntry | None = None) -> dict[str, Any]:
    """How each column of a runs table is drawn (widths fit 1440 px up to Reason), with the flow's headline
    metric and listed fields (a month narrow) when the table shows one flow."""
    text = st.column_config.TextColumn
    config = {
        "Run": st.column_config.LinkColumn("Run", display_text=r"name=([^&]+)", width=RUN_NAME_WIDTH,
                                           help="Open the run's detail page"),
        "State": st.column_config.MultiselectColumn("State", options=STATE_OPTIONS, width=124,  # "Awaiting Retry"
                                                    color=list(labels.STATUS_COLORS.values())),
        "Run date": text("Run date", width=92),
        "Flow": text("Flow", width=150), "Result": text("Result", width=180, help="Each run's headline metric"),
        "Started (UTC)": text("Started (UTC)", width=150, help="Start time, or the time it is due"),
        "Duration": text("Duration", width=74),
        "Covers": text("Covers", help="Run date: what the run covers"),
        "Tasks": st.column_config.NumberColumn("Tasks", format="%d", width=56),
        "Reason": text("Reason", width="large", help="Why it waits, or why it failed"),
        "Why it waits": text("Why it waits", width="large", help="Why the run has not started yet"),
        "Trigger": text("Trigger", width=80), "Deployment": text("Deployment", width=130),
    }
    if entry is None:
        return config
    shown = {f.label: text(f.label, width=68 if f.kind == "month" else 110) for f in entry.fields if f.listed}
    headline = {m.label: text(m.label, width=78, help=m.label) for m in entry.metrics[:1]}
    return config | shown | headline


def time_pair(moment: str | dt.datetime | None, zone: str | None) -> str:
    """The schedule's local time, labelled, and UTC: ``09:00 EST (America/New_York) · 14:00 UTC``."""
    if not zone or zone == "UTC":
        return labels.utc(moment, seconds=False)
    return f"{labels.in_zone(moment, zone)} · {labels.utc(moment, seconds=False)}"


def notify(message: str, run: dict[str, Any] | None = None) -> None:
    """Keep a confirmation for the next rerun, which shows it as a toast (and a link to the run)."""
    st.session_state["notice"] = (message, run)


def show_notice() -> None:
    message, run = st.session_state.pop("notice", (None, None))
    if message:
        st.toast(message, icon=":material/check_circle:")
        if run:
            run_link(run, f"Open {run['name']} ({labels.state_label(run['state'])})")
