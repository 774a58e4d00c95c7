"""Upcoming: the next runs of every deployment in the schedule's zone and in UTC, the schedule
in words with its zone and DST policy, why a run is late, pause/resume, a deployment the scheduler
skips (why, since when), the slots skipped after a downtime, and the work queues."""
from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import access, actions, frames, labels, queries, widgets
from pipeline.errors import PipelineError


def deployment_card(dep: dict[str, Any]) -> None:
    with st.container(border=True):
        title_col, button_col = st.columns([5, 1])
        state = ":green-badge[Active]" if dep["active"] else ":gray-badge[Paused]"
        failing = " :red-badge[:material/event_busy: Skipped by the scheduler]" if dep.get("last_error") else ""
        title_col.markdown(f"### {dep['name']} &nbsp; {state}{failing}")
        pause_button(button_col, dep)
        widgets.deployment_error(dep)
        zone = dep.get("timezone") or "UTC"
        st.markdown(f"**{dep['schedule_text']}**")
        st.caption(f"Schedule `{dep['schedule_expr']}` in **{zone}** · DST: {dep['dst_policy']}")
        st.caption(f"Work queue `{dep.get('work_queue') or 'default'}` ({queue_limit(dep.get('work_queue'))}) · "
                   f"tags {', '.join(dep.get('tags') or []) or '-'}"
                   f" · catch-up `{dep.get('catchup') or '-'}` · crash retries {dep.get('retries') or 0}"
                   f" · parameters `{dep.get('parameters') or {}}`")
        skipped_slots_note(dep)
        upcoming = queries.upcoming_runs(dep["name"])
        if not dep["active"]:
            held = dep.get("held_runs") or 0
            st.info(f"Paused: it starts nothing (scheduled, manual or backfill runs) until it is resumed; it holds "
                    f"{held} waiting run(s), which keep their ids and names.", icon=":material/pause_circle:")
        if upcoming:
            table = frames.upcoming_table(upcoming, zone, queries.now(), widgets.overdue_note())
            widgets.runs_table(table, key=f"upcoming_{dep['name']}")
        elif dep["active"]:
            st.info("No run materialised yet: the scheduler keeps the next runs ready while it runs.")
        recent = queries.recent_runs_of(dep["name"])
        if not recent.empty:
            st.caption("Recent runs")
            widgets.runs_table(recent, key=f"recent_{dep['name']}")


def queue_limit(name: str | None) -> str:
    """``at most 1 at once`` or ``no limit``, for the deployment's work queue."""
    for queue in queries.work_queues():
        if queue["name"] == (name or "default"):
            limit = queue.get("concurrency_limit")
            return "no limit" if limit is None else f"at most {limit} at once"
    return "no limit"


def skipped_slots_note(dep: dict[str, Any]) -> None:
    """How many of the deployment's slots were never made into runs after a downtime, if any."""
    if not dep.get("skipped_slots"):
        return
    at_least = any(r["count_is_floor"] for r in queries.skipped_slots(dep["id"]))
    st.warning(labels.skipped_slots_note(dep["skipped_slots"], at_least), icon=":material/event_busy:")


def pause_button(column: Any, dep: dict[str, Any]) -> None:
    label, icon = ("Pause", ":material/pause:") if dep["active"] else ("Resume", ":material/play_arrow:")
    if access.button(column, label, "pause", icon=icon, key=f"toggle_{dep['name']}", width="stretch"):
        try:
            actions.set_active(queries.settings(), dep["name"], not dep["active"])
        except PipelineError as error:
            st.error(str(error))
            return
        queries.refresh()
        widgets.notify(f"{'Paused' if dep['active'] else 'Resumed'} {dep['name']}.")
        st.rerun()


def manual_runs() -> None:
    waiting = [r for r in queries.upcoming_runs(None, limit=100) if not r.get("deployment")]
    if waiting:
        st.subheader("Waiting runs without a deployment", divider="gray")
        widgets.runs_table(frames.upcoming_table(waiting, None, queries.now(), widgets.overdue_note()),
                           key="upcoming_manual")


def late_explanations() -> None:
    """One summary of the runs that did not start on time, with a link to the list of them: while no
    scheduler is alive, the runs past due (nothing will start them); else the runs marked Late (a
    scheduler could have started them and did not). Runs waiting for a free slot are not late."""
    note = widgets.overdue_note(markdown=True)
    if note:
        runs, total = queries.overdue_runs()
        what, link = f"{labels.plural(total, 'run')} past due will not start", None
        reason = note
    else:
        runs, total = queries.late_runs(), queries.count_by_state().get("LATE", 0)
        what, link = f"{labels.plural(total, 'run')} {'is' if total == 1 else 'are'} late", {"state": "LATE"}
        reason = runs[0].get("late_reason") if runs else ""
    if not total:
        return
    oldest = runs[0] if runs else {}
    due = labels.utc(oldest.get("next_attempt_at") or oldest.get("scheduled_time"))
    st.warning(f"**{what}**, the oldest due {due} ({oldest.get('name', '-')}): "
               f"{(reason or 'not started at its scheduled time').rstrip('.')}.", icon=":material/running_with_errors:")
    if link:
        st.page_link(widgets.RUNS_PAGE, label=f"See the {labels.plural(total, 'late run')} on Runs", icon=":material/list:",
                     query_params=link)


def skipped_slots() -> None:
    """Slots that passed while no scheduler ran and that catch-up did not make into runs (newest first)."""
    records = queries.skipped_slots()
    if not records:
        return
    st.subheader("Slots skipped after a downtime", divider="orange")
    st.caption("After a downtime the scheduler makes only the latest missed slots into runs and lets the catch-up "
               "policy judge them; the older ones were never made into runs and are listed here, newest first.")
    st.dataframe(frames.skipped_slots_table(records), hide_index=True, key="upcoming_skipped", width="stretch",
                 column_config={"Reason": st.column_config.TextColumn("Reason", width="large")})


def work_queues() -> None:
    st.subheader("Work queues", divider="gray")
    st.caption("A queue starts at most *concurrency limit* runs at once; the others wait in order.")
    st.dataframe(frames.work_queues_table(queries.work_queues()), hide_index=True, key="upcoming_queues")


def workers() -> None:
    """The workers serving the history from this or other hosts; nothing when flows run only in the scheduler."""
    table = queries.workers()
    if table.empty:
        return
    st.subheader("Workers", divider="gray")
    st.caption("Workers (`python -m pipeline worker`) claim due runs of their queues and run them on their own "
               "host; a worker silent past its stale time is gone, and its runs are judged as crashed or handed back.")
    st.dataframe(table, hide_index=True, key="upcoming_workers")


@st.fragment(run_every=queries.LIVE_EVERY_S)
def live_upcoming() -> None:
    widgets.show_notice()
    if not widgets.scheduler_status():
        st.warning("While no scheduler runs, nothing below starts on time.", icon=":material/warning:")
    late_explanations()
    deployments = queries.deployments()
    if not deployments:
        st.info("No deployment yet. `python -m pipeline deployment create` or starting the scheduler creates one.")
    for dep in deployments:
        deployment_card(dep)
    skipped_slots()
    manual_runs()
    work_queues()
    workers()


st.title("Upcoming")
st.caption("Each time is shown in its schedule's zone (named) and in UTC; countdowns are from now.")
access.explain("pause")
live_upcoming()
