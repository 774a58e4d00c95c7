"""Run detail (``/run?id=<uuid>``): header with state and failure reason, Cancel and Rerun, the fields its
flow declares, the task runs as a timeline, logs, its results (the flow's presenter, then its own sections:
``flow_pages``), artifacts."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import access, actions, charts, flow_pages, frames, labels, notify_view, queries, widgets
from pipeline.errors import PipelineError
from pipeline.orchestration.deployments import default_deployment
from pipeline.orchestration.states import ACTIVE_STATES, WAITING_STATES

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CANCELLABLE = {s.value for s in WAITING_STATES | ACTIVE_STATES}


def chosen_run() -> dict[str, Any] | None:
    """The run named by ``?id=``, or one picked from the recent runs."""
    run_id = st.query_params.get("id")
    if not run_id:
        recent = queries.recent_runs()
        if not recent:
            st.info("No run has started yet.")
            return None
        picked = st.selectbox("Run", recent, format_func=lambda r: f"{r['name']} · {r['run_date']} · "
                              f"{labels.state_label(r['state'])}", key="detail_pick")
        run_id = picked["id"]
    try:
        return queries.run(run_id)
    except PipelineError as error:
        st.error(str(error))
        return None


def header(run: dict[str, Any]) -> None:
    st.title(run["name"])
    st.markdown(f"{labels.run_badge(run)} &nbsp; `{run['id']}` · "
                f"{run.get('deployment') or 'manual run'} · trigger {run['trigger']}")
    overdue = widgets.overdue_note(markdown=True)
    reason = labels.reason(run)
    if overdue and labels.is_overdue(run, queries.now()) and not labels.is_held(run):
        st.warning(overdue + (f". Recorded earlier: {reason}" if reason else ""), icon=":material/schedule:")
    elif run["state"] == "CANCELLED":  # a person asked for it: neutral, not an error
        st.info(f"**Cancelled.** {reason or 'Cancelled on request.'}", icon=":material/cancel:")
    elif run.get("error"):
        where = f" in `{run['error_task']}`" if run.get("error_task") else ""
        st.error(f"**{labels.state_label(run['state'])}**{where}: {run['error']}", icon=":material/error:")
    elif reason:
        st.info(reason, icon=":material/hourglass_empty:" if run["state"] == "SCHEDULED" else ":material/info:")
    for field in labels.flagged(labels.entry_of(run.get("flow")), run):
        st.warning(f"**{field.label.upper()}.** {flow_pages.flag_note(run, field)}".strip(), icon=":material/science:")
    buttons(run)


def buttons(run: dict[str, Any]) -> None:
    cancel_col, rerun_col, batch_col = st.columns([1, 1, 4])
    can_cancel = run["state"] in CANCELLABLE and not run.get("cancel_requested")
    if access.button(cancel_col, "Cancel", "cancel", icon=":material/cancel:", disabled=not can_cancel,
                     key="detail_cancel"):
        write(lambda: actions.cancel(queries.settings(), run["id"]), "Cancel requested for {name}: now {state}.")
    # a run without a deployment reruns through the default one: only a run of that deployment's flow can
    rerunnable = bool(run.get("deployment")) or run.get("flow") == default_deployment().flow
    if access.button(rerun_col, "Rerun", "trigger", icon=":material/replay:", key="detail_rerun",
                     disabled=not rerunnable, help="Enqueue a new run with the same run date and deployment"
                     if rerunnable else "A run without a deployment: trigger its flow from the command line"):
        write(lambda: actions.trigger(queries.settings(), date=run["run_date"], deployment=run.get("deployment")),
              "Enqueued {name} for run date {run_date}.", link=True)
    backfill_button(batch_col, run)
    access.explain("cancel", "trigger")


def backfill_button(column: Any, run: dict[str, Any]) -> None:
    """For a run a backfill made: cancel every run of that backfill that still waits or runs."""
    batch = queries.backfill_batch(run["id"]) if run.get("trigger") == "backfill" else []
    alive = [r["id"] for r in batch if r["state"] in CANCELLABLE]
    if not batch:
        return
    if access.button(column, f"Cancel its backfill ({len(alive)} of {len(batch)} waiting or running)", "cancel",
                     icon=":material/cancel_schedule_send:", disabled=not alive, key="detail_cancel_backfill"):
        done, refused = actions.cancel_many(queries.settings(), alive)
        queries.refresh()
        widgets.notify(f"Cancel requested for {len(done)} run(s) of this backfill."
                       + (f" {len(refused)} could not be cancelled: {refused[0]}" if refused else ""))
        st.rerun()


def write(request: Any, message: str, *, link: bool = False) -> None:
    """Send one request; on success confirm it after a rerun, on bad input say why."""
    try:
        row = request()
    except PipelineError as error:
        st.error(str(error))
        return
    queries.refresh()
    widgets.notify(message.format(name=row["name"], state=labels.state_label(row["state"]),
                                  run_date=row.get("run_date")), row if link else None)
    st.rerun()


def facts(run: dict[str, Any]) -> None:
    zone = queries.deployment_zone(run.get("deployment"))
    entry = labels.entry_of(run.get("flow"))
    shown = [("Flow", entry.display_name if entry else "-"), ("Run date", run["run_date"] or "-"),
             *[(f.label, labels.field_text(f, labels.field_value(run, f.name)) or "-") for f in fields_shown(entry)],
             ("Duration", labels.duration(run["started_at"], run["ended_at"]))]
    for column, (label, value) in zip(st.columns(len(shown)), shown):
        with column:
            widgets.figures([(label, value, None)])
    sources = [f"{f.label.lower()} `{labels.field_value(run, f.name)}`" for f in (entry.fields if entry else ())
               if f.kind == "url" and labels.field_value(run, f.name)]
    st.caption(" · ".join([f"Scheduled {widgets.time_pair(run['scheduled_time'], zone)}",
                           f"started {labels.utc(run['started_at'])}", f"ended {labels.utc(run['ended_at'])}",
                           *sources]))
    trigger_links(run)


def fields_shown(entry: Any) -> list[Any]:
    """The fields a run's header shows: its flow's fields but the flags (said in a banner when set)."""
    return [f for f in (entry.fields if entry else ()) if f.kind != "flag"]


def trigger_links(run: dict[str, Any]) -> None:
    """Links both ways between a run and the runs another deployment ran after its completion."""
    found = queries.run_links(run["id"], run.get("triggered_by"))
    upstream = found["triggered_by"]
    if upstream:
        widgets.run_link(upstream, f"Triggered by the completion of {upstream['name']} "
                                   f"({upstream['deployment'] or 'no deployment'})")
    for after in found["triggered"]:
        widgets.run_link(after, f"Its completion triggered {after['name']} of {after['deployment']} "
                                f"({labels.state_label(after['state'])})")


def timeline(run: dict[str, Any]) -> None:
    bars = frames.task_bars(queries.task_runs(run["id"]), run["started_at"], queries.now())
    st.plotly_chart(charts.task_gantt(bars, started=labels.utc(run["started_at"])),
                    config={"displayModeBar": False}, key="detail_gantt")


def logs(run: dict[str, Any]) -> None:
    counts = queries.log_level_counts(run["id"])
    present = [level for level in LEVELS if counts.get(level)]
    chosen = st.pills("Levels", present, selection_mode="multi", default=[l for l in present if l != "DEBUG"],
                      format_func=lambda level: f"{level} ({counts[level]})", key="detail_levels")
    rows = queries.logs(run["id"], tuple(chosen)) if chosen else []
    if rows:  # a static table wraps long messages: every line is read whole, with millisecond times
        st.table(frames.logs_table(rows, run).set_index("Time (UTC)"))
    else:
        st.caption("No log line at these levels.")
    st.download_button("Download log", frames.logs_text(queries.logs(run["id"]), run), icon=":material/download:",
                       file_name=f"{run['name']}-{run['id'][:8]}.log", mime="text/plain", on_click="ignore")


def results(run: dict[str, Any]) -> None:
    """The run's results as its flow presents them (``FlowEntry.present``), then the flow's own sections."""
    values = run.get("metrics") or {}
    entry = labels.entry_of(run.get("flow"))
    lines = entry.present(run) if entry else []
    if lines:
        headline = [(m.label, labels.metric_text(m, values.get(m.key)), None) for m in entry.metrics[:2]]
        for column, item in zip(st.columns(4), [item for item in headline if item[1]]):
            with column:
                widgets.figures([item])
        st.markdown(widgets.lines_table(lines))
    elif run["state"] != "COMPLETED":
        st.info("No metrics: the run did not complete.")
    elif values and not entry.metrics:
        own_metrics(values)  # a flow that declares nothing (a user's Prefect 2 flow): the numbers it returned
    else:
        st.info("This flow records no metrics.")
    flow_pages.run_results(run)


def own_metrics(values: dict[str, Any]) -> None:
    numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for column, (key, value) in zip(st.columns(max(1, min(4, len(numbers)))), list(numbers.items())[:4]):
        column.metric(key, labels.number(value))
    others = {k: v for k, v in values.items() if k not in list(numbers)[:4]}
    if others:
        st.json(others)


def artifacts(run: dict[str, Any]) -> None:
    found = queries.artifacts(run["id"])
    if not found:
        st.info("No artifacts: this run saved no file.")
        return
    home = queries.settings().home.resolve()
    for item in found:
        path = Path(item["path"])
        name_col, sum_col, button_col = st.columns([2, 5, 1])
        name_col.markdown(f"**{item['name']}** · {item['kind'] or '-'} · {item['size']:,} B")
        sum_col.markdown(f"`sha256 {item['sha256']}`")
        if item.get("stored"):  # the history's bytes: whichever host wrote the file
            button_col.download_button("Download", functools.partial(queries.artifact_data, item), file_name=path.name,
                                       on_click="ignore", icon=":material/download:", key=f"artifact_{item['id']}")
        elif path.is_file() and path.resolve().is_relative_to(home):
            button_col.download_button("Download", path.read_bytes, file_name=path.name, on_click="ignore",
                                       icon=":material/download:", key=f"artifact_{item['id']}")
        else:
            button_col.caption("file not found")


@st.fragment(run_every=queries.LIVE_EVERY_S)
def live_detail(run_id: str) -> None:
    run = queries.run(run_id)
    widgets.show_notice()
    header(run)
    facts(run)
    notify_view.section(run)
    tasks_tab, logs_tab, metrics_tab, artifacts_tab, parameters_tab = st.tabs(
        ["Task runs", "Logs", "Results", "Artifacts", "Parameters"])
    with tasks_tab:
        timeline(run)
    with logs_tab:
        logs(run)
    with metrics_tab:
        results(run)
    with artifacts_tab:
        artifacts(run)
    with parameters_tab:
        st.json(run["parameters"])


chosen = chosen_run()
if chosen is not None:
    live_detail(chosen["id"])
