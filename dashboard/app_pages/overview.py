"""Overview: is a scheduler alive, which deployments it skips, the last run, the next run, the latest error, runs by state."""
from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import labels, queries, widgets

LOOKING_FORWARD = ("SCHEDULED", "LATE", "AWAITING_RETRY", "PENDING", "RUNNING")
LOOKING_BACK = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def last_run_card(run: dict[str, Any] | None) -> None:
    st.subheader("Last run", divider="gray")
    if run is None:
        st.info("No run has started yet.")
        return
    day = f"run date {run['run_date'] or '-'}"
    st.markdown(f"{labels.run_badge(run)} &nbsp; **{run['name']}** · {labels.nowrap(day, labels.months(run))}",
                unsafe_allow_html=True)
    st.caption(f"Started {labels.utc(run['started_at'] or run['scheduled_time'])} · "
               f"took {labels.duration(run['started_at'], run['ended_at'])}")
    own_errors(run)
    if run["state"] == "CANCELLED":
        st.info(labels.reason(run) or "Cancelled on request.", icon=":material/cancel:")
    elif run.get("error"):
        st.error(labels.reason(run), icon=":material/error:")
    widgets.run_link(run, f"Open {run['name']}")


def own_errors(run: dict[str, Any]) -> None:
    """The last run's own training and validation MSE and RMSE (nothing when it recorded none)."""
    values = run.get("metrics") or {}
    if "val_rmse" not in values:
        return
    widgets.figures([("Training RMSE", labels.number(values.get("train_rmse"), 4), None),
                     ("Validation RMSE", labels.number(values.get("val_rmse"), 4), None)])
    st.caption(f"RMSE in minutes. MSE: training {labels.number(values.get('train_mse'), 4)} · validation "
               f"{labels.number(values.get('val_mse'), 4)} (min²)")


def next_run_card(run: dict[str, Any] | None) -> None:
    st.subheader("Next run", divider="gray")
    if run is None:
        st.info("Nothing is scheduled. Resume a deployment on *Upcoming*, or trigger a run.")
        return
    zone = queries.deployment_zone(run.get("deployment"))
    if labels.status(run) == "HELD":
        held_run_card(run)
        return
    widgets.figures([("Starts", labels.countdown(run["scheduled_time"], queries.now()), None)])
    where, day = run.get("deployment") or "manual", f"run date {run['run_date']}"
    st.markdown(f"{labels.run_badge(run)} &nbsp; **{run['name']}** · {labels.nowrap(where, day)}",
                unsafe_allow_html=True)
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
    st.markdown(f"{labels.run_badge(run)} &nbsp; **{run['name']}** · {labels.nowrap(where, day)}",
                unsafe_allow_html=True)
    widgets.run_link(run, f"Open {run['name']}")


def latest_metrics_card(rows: list[dict[str, Any]]) -> None:
    st.subheader("Latest validation error", divider="gray")
    if not rows:
        st.info("No completed run with metrics yet.")
        return
    latest, previous = rows[-1], (rows[-2] if len(rows) > 1 else None)
    shown = []
    for key, unit, digits in (("val_rmse", "min", 4), ("val_mse", "min²", 2)):
        value, before = latest["metrics"].get(key), (previous or {}).get("metrics", {}).get(key)
        delta = None if before is None or value is None else (value - before, f"{value - before:+.{digits}f} {unit}")
        shown.append((f"Validation {key[4:].upper()}", labels.number(value, digits), delta))
    widgets.figures(shown)  # a change is green when the error fell (lower is better)
    day = f"run date {latest['run_date']}"
    st.markdown(f"**{latest['name']}** · {labels.nowrap(day, labels.months(latest))}", unsafe_allow_html=True)
    st.caption(f"Data: {labels.data_label(latest) or '-'}" + (
        f" · change against {previous['name']} ({previous['val_month']})" if previous else ""))
    widgets.run_link(latest, f"Open {latest['name']}")


def state_counts(counts: dict[str, int]) -> None:
    """Runs by state as two lines of coloured badges (one element each: quick to draw), with a link
    from each state to the runs list filtered by it."""
    st.subheader("Runs by state", divider="gray")
    for caption, states in (("Looking forward: runs waiting to start", LOOKING_FORWARD),
                            ("Looking back: finished runs", LOOKING_BACK)):
        badges = " &nbsp; ".join(f"[{labels.badge(state)} **{counts.get(state, 0):,}**](/runs?state={state})"
                                 for state in states)
        st.markdown(f"{caption}: &nbsp; {badges}")


@st.fragment(run_every=queries.LIVE_EVERY_S)
def live_overview() -> None:
    widgets.scheduler_status()
    widgets.failing_deployments()
    last, upcoming, metrics = st.columns(3, gap="large")
    with last:
        last_run_card(queries.last_run())
    with upcoming:
        next_run_card(queries.next_run())
    with metrics:
        latest_metrics_card(queries.latest_metrics())
    state_counts(queries.count_by_state())  # numbers, no chart: the first page loads no charting library


st.title("Overview")
widgets.synthetic_banner()
live_overview()
