"""Trigger: a run of the flow picked at the top (a deployment of it) for a date, and a backfill over a date
range with a dry-run preview of what each run will cover and a confirmation. Bad input is explained and
writes nothing."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import access, actions, flows, labels, queries, widgets
from pipeline.orchestration.deployments import DEFAULT_DEPLOYMENT, default_deployment, run_parameters
from pipeline.orchestration.registry import FlowEntry
from pipeline.errors import PipelineError

# The pickers reach back to the first FHV files (2015), so every range the pipeline would refuse
# (over 120 months, in the future, reversed) can be entered and gets its sentence.
FIRST_DATE = dt.date(2015, 1, 1)


def deployment_names(entry: FlowEntry) -> list[str]:
    """The deployments of the flow; the default deployment first when it is this flow's (made on first use)."""
    names = [d["name"] for d in queries.deployments() if d.get("flow") == entry.name]
    if default_deployment().flow == entry.name:
        names = [DEFAULT_DEPLOYMENT] + [n for n in names if n != DEFAULT_DEPLOYMENT]
    return names


def deployment_choice(key: str, entry: FlowEntry) -> str | None:
    """The deployment whose queue and parameters the new runs get; None (said) when the flow has none."""
    names = deployment_names(entry)
    if not names:
        st.info(f"{entry.display_name} has no deployment yet: create one (python -m pipeline deployment create, or "
                "a deployment file) to trigger its runs here.", icon=":material/info:")
        return None
    if st.session_state.get(key) not in names:
        st.session_state.pop(key, None)  # a deployment of the flow picked before
    chosen = st.selectbox("Deployment", names, key=key,
                          help="Its work queue and parameters apply to the new runs")
    known = {d["name"]: d for d in queries.deployments()}
    if chosen in known:
        widgets.deployment_error(known[chosen])
    return chosen


def covers_caption(entry: FlowEntry, day: dt.date, deployment: str) -> str:
    """What a run of this date covers (``Train month 2021-06 · Validation month 2021-07.``), or why it cannot run."""
    try:
        entry.refuse_date(day, today(deployment))
        shown = labels.covers(entry, fields_on(entry, day, deployment))
    except PipelineError as error:
        return str(error)
    return f"It covers {shown}." if shown else ""


def fields_on(entry: FlowEntry, day: dt.date, deployment: str) -> dict[str, Any]:
    """The fields a run of the deployment for ``day`` gets: its flow's, from the deployment's parameters."""
    row = next((d for d in queries.deployments() if d["name"] == deployment), None)
    return entry.fields_for(run_parameters(row, day) if row else {"date": day.isoformat()}, queries.settings())


def today(deployment: str | None) -> dt.date:
    return labels.today_in(queries.now(), queries.deployment_zone(deployment) or "America/New_York")


def latest_date(deployment: str) -> dt.date:
    """The latest run date the pickers offer: the last day of this month in the deployment's zone (each flow
    refuses a date it cannot run yet with its own sentence)."""
    first_after = (today(deployment).replace(day=1) + dt.timedelta(days=31)).replace(day=1)
    return first_after - dt.timedelta(days=1)


def latest_rule(deployment: str) -> str:
    """The same sentence under both forms."""
    return f"Latest run date: {latest_date(deployment).isoformat()}."


SOURCES = {"configured": "As configured", "demo": "Demo (synthetic)", "tlc": "TLC", "custom": "A mirror or folder"}


def data_choice(entry: FlowEntry) -> str | None:
    """The data the run reads: None for this dashboard's FHV_DATA_URL (or a flow that reads none), else a
    checked URL template."""
    if entry.parameters is not None and "data_url" not in entry.parameters:
        return None
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


def manual_run(entry: FlowEntry) -> None:
    st.subheader("Run once", divider="gray")
    deployment = deployment_choice("trigger_deployment", entry)
    if deployment is None:
        return
    last = latest_date(deployment)
    day = st.date_input("Run date", today(deployment), min_value=FIRST_DATE, max_value=last, key="trigger_date",
                        format="YYYY-MM-DD")
    source = data_choice(entry)
    paused = any(d["name"] == deployment and not d["active"] for d in queries.deployments())
    starts = (f"Deployment {deployment} is paused: the run waits until it is resumed on *Upcoming*." if paused else
              "The scheduler starts it as soon as its work queue has room.")
    st.caption(f"{covers_caption(entry, day, deployment)} {latest_rule(deployment)} {starts}")
    if access.button(st, "Enqueue run", "trigger", type="primary", icon=":material/play_arrow:", key="trigger_run"):
        try:
            row = actions.trigger(queries.settings(), date=day, deployment=deployment, data_url=source)
        except PipelineError as error:
            st.error(str(error), icon=":material/error:")
            return
        queries.refresh()
        covered = ", ".join(part for part in (entry.display_name, labels.covers(entry, row)) if part)
        confirm(f"Enqueued {row['name']} for run date {row['run_date']} ({covered}).", [row])


def backfill(entry: FlowEntry) -> None:
    st.subheader("Backfill", divider="gray")
    if backfill_result():
        return
    deployment = deployment_choice("backfill_deployment", entry)
    if deployment is None:
        return
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
        show_plan(plan, entry)


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


def show_plan(plan: Any, entry: FlowEntry) -> None:
    st.markdown(f"**Dry run:** {len(plan.dates)} run(s) for deployment **{plan.deployment}**, "
                f"{len(plan.skipped)} skipped.")
    if plan.dates:
        st.dataframe(plan_table(plan.dates, entry, plan.deployment), hide_index=True, key="backfill_dates",
                     height=min(38 + 35 * len(plan.dates), 400))
    if plan.skipped:
        st.dataframe(pd.DataFrame([{"Run date": d.isoformat(), "Skipped because": why} for d, why in plan.skipped]),
                     hide_index=True, key="backfill_skipped")
    if plan.dates and access.button(st, f"Confirm: enqueue {len(plan.dates)} run(s)", "backfill", type="primary",
                                    icon=":material/done_all:", key="backfill_confirm"):
        enqueue(plan)


def plan_table(dates: list[dt.date], entry: FlowEntry, deployment: str) -> pd.DataFrame:
    """The planned run dates with what each run of the deployment will cover (the flow's listed fields)."""
    listed = [f for f in entry.fields if f.listed and f.kind != "flag"]
    rows = []
    for day in dates:
        found = fields_on(entry, day, deployment)
        rows.append({"Run date": day.isoformat(), **{f.label: labels.field_text(f, found.get(f.name)) for f in listed}})
    return pd.DataFrame(rows, columns=["Run date", *(f.label for f in listed)])


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
chosen = flows.pick("trigger")
if chosen is None:
    st.info("No flow is registered.")
    st.stop()
once, many = st.columns(2, gap="large")
with once:
    manual_run(chosen)
with many:
    backfill(chosen)
