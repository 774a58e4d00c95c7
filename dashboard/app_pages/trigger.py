"""Trigger: a manual run for a date, and a backfill over a date range with a dry-run preview
of the months it will run and a confirmation. Bad input is explained and writes nothing."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import access, actions, labels, queries, widgets
from pipeline.orchestration.deployments import DEFAULT_DEPLOYMENT
from pipeline.errors import PipelineError
from pipeline.training.months import last_allowed_run_date, months_for

# The pickers reach back to the first FHV files (2015), so every range the pipeline would refuse
# (over 120 months, in the future, reversed) can be entered and gets its sentence.
FIRST_DATE = dt.date(2015, 1, 1)


def deployment_choice(key: str) -> str:
    """The deployment whose queue and parameters the new runs get (the default one first)."""
    known = {d["name"]: d for d in queries.deployments()}
    names = [DEFAULT_DEPLOYMENT] + [n for n in known if n != DEFAULT_DEPLOYMENT]
    chosen = st.selectbox("Deployment", names, key=key, help="Its work queue and parameters apply to the new runs; "
                          f"{DEFAULT_DEPLOYMENT} is created on first use if it does not exist")
    if chosen in known:
        widgets.deployment_error(known[chosen])
    return chosen


def months_caption(day: dt.date) -> str:
    train, val = months_for(day)
    return f"Trains on {train}, validates on {val}."


def today(deployment: str) -> dt.date:
    return labels.today_in(queries.now(), queries.deployment_zone(deployment) or "America/New_York")


def latest_date(deployment: str) -> dt.date:
    """The latest run date either form accepts, by the rule of ``run``, ``trigger`` and ``backfill``: the
    last day of this month in the deployment's zone (a later date's validation month is not over)."""
    return last_allowed_run_date(today(deployment))


def latest_rule(deployment: str) -> str:
    """The same sentence under both forms."""
    last = latest_date(deployment)
    return (f"Latest run date: {last.isoformat()}; a run validates on the month before its run date, and "
            f"that month must be over ({months_for(last)[1]} is the latest).")


SOURCES = {"configured": "As configured", "demo": "Demo (synthetic)", "tlc": "TLC", "custom": "A mirror or folder"}


def data_source() -> str | None:
    """The data the run reads: None for this dashboard's FHV_DATA_URL, else a checked URL template."""
    configured = queries.settings().data_url
    choice = st.radio("Data source", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="trigger_source",
                      help=f"As configured: {labels.source_label(configured)} (FHV_DATA_URL={configured})")
    if choice == "configured":
        return None
    if choice == "custom":
        template = st.text_input("URL template or folder", placeholder="https://mirror.example/fhv_tripdata_{month}"
                                 ".parquet or /data/fhv", key="trigger_source_url")
        return template.strip() or None
    return choice


def manual_run() -> None:
    st.subheader("Run once", divider="gray")
    deployment = deployment_choice("trigger_deployment")
    last = latest_date(deployment)
    day = st.date_input("Run date", today(deployment), min_value=FIRST_DATE, max_value=last, key="trigger_date",
                        format="YYYY-MM-DD")
    source = data_source()
    paused = any(d["name"] == deployment and not d["active"] for d in queries.deployments())
    starts = (f"Deployment {deployment} is paused: the run waits until it is resumed on *Upcoming*." if paused else
              "The scheduler starts it as soon as its work queue has room.")
    st.caption(f"{months_caption(day)} {latest_rule(deployment)} {starts}")
    if access.button(st, "Enqueue run", "trigger", type="primary", icon=":material/play_arrow:", key="trigger_run"):
        try:
            row = actions.trigger(queries.settings(), date=day, deployment=deployment, data_url=source)
        except PipelineError as error:
            st.error(str(error), icon=":material/error:")
            return
        queries.refresh()
        confirm(f"Enqueued {row['name']} for run date {row['run_date']} ({labels.months(row)}, "
                f"{labels.data_label(row) or 'data as configured'}).", [row])


def backfill() -> None:
    st.subheader("Backfill", divider="gray")
    if backfill_result():
        return
    deployment = deployment_choice("backfill_deployment")
    last = latest_date(deployment)
    start_col, end_col = st.columns(2)
    start = start_col.date_input("First run date", (today(deployment) - dt.timedelta(days=183)).replace(day=15),
                                 min_value=FIRST_DATE, max_value=last, key="backfill_start", format="YYYY-MM-DD")
    end = end_col.date_input("Last run date", today(deployment), min_value=FIRST_DATE, max_value=last, key="backfill_end",
                             format="YYYY-MM-DD")
    st.caption(latest_rule(deployment))
    force = st.checkbox("Also rerun months that already completed", key="backfill_force")
    inputs = (start, end, deployment, force)
    if st.button("Preview", icon=":material/visibility:", key="backfill_preview"):
        st.session_state["backfill_plan"] = (inputs, preview(start, end, deployment, force))
    planned_for, plan = st.session_state.get("backfill_plan", (None, None))
    if plan is not None and planned_for == inputs:  # a changed input needs a new preview
        show_plan(plan)


def backfill_result() -> bool:
    """After a confirmed backfill: what it enqueued, with links, instead of the form (True then)."""
    done = st.session_state.get("backfill_done")
    if not done:
        return False
    st.success(done["message"], icon=":material/check_circle:")
    if len(done["runs"]) <= LINKS:
        for row in done["runs"]:
            widgets.run_link(row)
    else:
        st.page_link(widgets.RUNS_PAGE, label=f"See the {len(done['runs'])} backfill runs on Runs",
                     icon=":material/list:", query_params={"trigger": "backfill", "deployment": done["deployment"]})
    if not widgets.scheduler_alive():
        st.caption("No scheduler is running: the runs wait as Scheduled until one starts. Start it with:")
        widgets.scheduler_code()
    if st.button("New backfill", icon=":material/add:", key="backfill_again"):
        st.session_state.pop("backfill_done", None)
        st.rerun()
    return True


LINKS = 6


def preview(start: dt.date, end: dt.date, deployment: str | None, force: bool) -> Any:
    """The dry run: the plan, or None after saying what is wrong with the input."""
    try:
        return actions.plan_backfill(queries.settings(), start=start, end=end, deployment=deployment, force=force)
    except PipelineError as error:
        st.error(str(error), icon=":material/error:")
        return None


def show_plan(plan: Any) -> None:
    st.markdown(f"**Dry run:** {len(plan.dates)} run(s) for deployment **{plan.deployment}**, "
                f"{len(plan.skipped)} skipped.")
    if plan.dates:
        st.dataframe(plan_table(plan.dates), hide_index=True, key="backfill_dates", height=min(38 + 35 * len(plan.dates), 400))
    if plan.skipped:
        st.dataframe(pd.DataFrame([{"Run date": d.isoformat(), "Skipped because": why} for d, why in plan.skipped]),
                     hide_index=True, key="backfill_skipped")
    if plan.dates and access.button(st, f"Confirm: enqueue {len(plan.dates)} run(s)", "backfill", type="primary",
                                    icon=":material/done_all:", key="backfill_confirm"):
        enqueue(plan)


def plan_table(dates: list[dt.date]) -> pd.DataFrame:
    return pd.DataFrame([{"Run date": d.isoformat(), "Train month": months_for(d)[0],
                          "Validation month": months_for(d)[1]} for d in dates])


def enqueue(plan: Any) -> None:
    try:
        done = actions.enqueue_backfill(queries.settings(), plan)
    except PipelineError as error:
        st.error(str(error), icon=":material/error:")
        return
    queries.refresh()
    st.session_state.pop("backfill_plan", None)
    first, last = plan.dates[0], plan.dates[-1]
    taken = (f" {len(done.taken)} date(s) were enqueued meanwhile by another request and were left out: "
             f"{', '.join(d.isoformat() for d in done.taken)}.") if done.taken else ""
    message = f"Enqueued {len(done.runs)} backfill run(s) for run dates {first} to {last}.{taken}"
    st.toast(message, icon=":material/check_circle:")
    st.session_state["backfill_done"] = {"message": message, "deployment": plan.deployment,
                                         "runs": [{k: r[k] for k in ("id", "name", "state")} for r in done.runs]}
    st.rerun()  # the result replaces the plan and its Confirm button


def confirm(message: str, rows: list[dict[str, Any]]) -> None:
    st.toast(message, icon=":material/check_circle:")
    st.success(message, icon=":material/check_circle:")
    for row in rows[:5]:
        widgets.run_link(row)
    if not widgets.scheduler_alive():
        st.caption("No scheduler is running: the run waits as Scheduled until one starts. Start it with:")
        widgets.scheduler_code()


st.title("Trigger")
st.caption("Runs go to the history as Scheduled; the scheduler process runs them. Nothing trains in the dashboard.")
access.explain("trigger", "backfill")
once, many = st.columns(2, gap="large")
with once:
    manual_run()
with many:
    backfill()
