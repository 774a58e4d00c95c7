"""Overview of one flow (picked at the top): is a scheduler alive, which deployments it skips, the flow's last
run, next run, latest results and runs by state."""
from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import flows, labels, queries, widgets
from pipeline.orchestration.registry import FlowEntry, Metric

LOOKING_FORWARD = ("SCHEDULED", "LATE", "AWAITING_RETRY", "PENDING", "RUNNING")
LOOKING_BACK = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def last_run_card(run: dict[str, Any] | None, entry: FlowEntry) -> None:
    st.subheader("Last run", divider="gray")
    if run is None:
        st.info(f"No run of {entry.display_name} has started yet.")
        return
    day = f"run date {run['run_date'] or '-'}"
    st.markdown(f"{labels.run_badge(run)} &nbsp; **{run['name']}** · {labels.nowrap(day, *covered(entry, run))}")
    st.caption(labels.markdown_times(f"Started {labels.utc(run['started_at'] or run['scheduled_time'])} · "
                                     f"took {labels.duration(run['started_at'], run['ended_at'])}"))
    own_results(run, entry)
    if run["state"] == "CANCELLED":
        st.info(labels.reason(run) or "Cancelled on request.", icon=":material/cancel:")
    elif run.get("error"):
        st.error(labels.reason(run), icon=":material/error:")
    widgets.run_link(run, f"Open {run['name']}")


def covered(entry: FlowEntry, run: dict[str, Any]) -> list[str]:
    """What the run covers (its flow's listed fields), as parts of a line; none when it has none."""
    shown = labels.covers(entry, run)
    return [shown] if shown else []


def own_results(run: dict[str, Any], entry: FlowEntry) -> None:
    """The last run's own first two metrics (nothing when it recorded none)."""
    values = run.get("metrics") or {}
    shown = [(m.label, labels.metric_text(m, values.get(m.key)), None) for m in entry.metrics[:2]]
    if shown and shown[0][1]:
        widgets.figures([item for item in shown if item[1]])


def next_run_card(run: dict[str, Any] | None) -> None:
    st.subheader("Next run", divider="gray")
    if run is None:
        st.info("Nothing is scheduled. Resume a deployment on *Upcoming*, or trigger a run.")
        return
    zone = queries.deployment_zone(run.get("deployment"))
    if labels.status(run) == "HELD":
        held_run_card(run)
        return
    starts = widgets.figures_text([("Starts", labels.countdown(run["scheduled_time"], queries.now()), None)])
    where, day = run.get("deployment") or "manual", f"run date {run['run_date']}"
    # one element for both (drawn the same as two, one message and one render less on the first page)
    st.markdown(f"{starts}\n\n{labels.run_badge(run)} &nbsp; **{run['name']}** · {labels.nowrap(where, day)}")
    st.caption(widgets.time_pair(run["scheduled_time"], zone))
    note = widgets.overdue_note(markdown=True)
    if note and labels.is_overdue(run, queries.now()):
        st.warning(note[:1].upper() + note[1:], icon=":material/schedule:")
    widgets.run_link(run, f"Open {run['name']}")


def held_run_card(run: dict[str, Any]) -> None:
    """Every waiting run is held: say by what, how many it holds, and where to resume it."""
    widgets.figures([("Starts", "Paused", None)])
    dep = next((d for d in queries.deployments() if d["name"] == run.get("deployment")), None)
    holds = f"; it holds {labels.plural(dep.get('held_runs') or 0, 'waiting run')}" if dep and not dep["active"] else ""
    st.warning(f"{run['late_reason']}{holds}. Nothing starts until it is resumed on *Upcoming*.",
               icon=":material/pause_circle:")
    where, day = run.get("deployment") or "manual", f"run date {run['run_date']}"
    st.markdown(f"{labels.run_badge(run)} &nbsp; **{run['name']}** · {labels.nowrap(where, day)}")
    widgets.run_link(run, f"Open {run['name']}")


def latest_metrics_card(rows: list[dict[str, Any]], entry: FlowEntry) -> None:
    st.subheader("Latest results", divider="gray")
    if not rows or not entry.metrics:
        st.info(f"No completed run of {entry.display_name} with metrics yet.")
        return
    latest, previous = rows[-1], (rows[-2] if len(rows) > 1 else None)
    shown = widgets.figures_text([change(m, latest, previous) for m in entry.metrics[:2]])  # green when better
    day = f"run date {latest['run_date']}"
    st.markdown(f"{shown}\n\n**{latest['name']}** · {labels.nowrap(day, *covered(entry, latest))}")  # one element
    flags = ", ".join(f.label for f in labels.flagged(entry, latest))
    against = (f"change against {previous['name']} ({labels.covers(entry, previous) or previous['run_date']})"
               if previous else "")
    st.caption(" · ".join(part for part in (flags, against) if part) or " ")
    widgets.run_link(latest, f"Open {latest['name']}")


def change(metric: Metric, latest: dict[str, Any], previous: dict[str, Any] | None) -> tuple[str, str, Any]:
    """A metric's latest value and its change against the previous run (green when it got better)."""
    value = (latest.get("metrics") or {}).get(metric.key)
    before = ((previous or {}).get("metrics") or {}).get(metric.key)
    text = labels.metric_text(metric, value) or "-"
    if before is None or value is None or metric.better is None:
        return metric.label, text, None
    delta = value - before
    worse = delta if metric.better == "lower" else -delta  # figures() colours a positive change red
    return metric.label, text, (worse, f"{'+' if delta >= 0 else '-'}{labels.metric_text(metric, abs(delta))}")


def state_counts(counts: dict[str, int], entry: FlowEntry) -> None:
    """Runs by state as two lines of coloured badges (one Markdown element: quick to draw), with a link
    from each state to the runs list filtered by it."""
    st.subheader("Runs by state", divider="gray")
    st.markdown("\n\n".join(state_line(caption, states, counts, entry) for caption, states in (
        ("Looking forward: runs waiting to start", LOOKING_FORWARD), ("Looking back: finished runs", LOOKING_BACK))))


def state_line(caption: str, states: tuple[str, ...], counts: dict[str, int], entry: FlowEntry) -> str:
    badges = " &nbsp; ".join(f"[{labels.badge(state)} **{counts.get(state, 0):,}**](/runs?state={state}"
                             f"&flow={entry.name})" for state in states)
    return f"{caption}: &nbsp; {badges}"


@st.fragment(run_every=queries.LIVE_EVERY_S)
def live_overview(entry: FlowEntry) -> None:
    widgets.scheduler_status()
    widgets.failing_deployments()
    last, upcoming, metrics = st.columns(3, gap="large")
    with last:
        last_run_card(queries.last_run(entry.name), entry)
    with upcoming:
        next_run_card(queries.next_run(entry.name))
    with metrics:
        latest_metrics_card(queries.latest_metrics(entry.name), entry)
    state_counts(queries.count_by_state(entry.name), entry)  # numbers, no chart: the page loads no charting library


st.title("Overview")
chosen = flows.pick("overview")
if chosen is None:
    st.info("No flow is registered.")
    st.stop()
widgets.flag_banner(chosen)
live_overview(chosen)
