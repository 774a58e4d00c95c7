"""The dashboard's figures and frames as plain functions: traces, colours, axes, empty data."""
from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dashboard import charts, frames, labels, training_charts
from pipeline.config import Settings
from pipeline.orchestration.scheduler import SchedulerOptions
from pipeline.store import Store
from pipeline.training.job import ENTRY as TRAINING
from pipeline.training.job import FLOW_NAME
from tests.dashboard_seed import seed_history

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    seeded = seed_history(tmp_path_factory.mktemp("charts") / "fhv", now=NOW)
    store = Store(seeded.settings.db_path, readonly=True)
    yield seeded, store
    store.close()


def run(state: str, start: str, seconds: float, name: str = "r") -> dict:
    begin = dt.datetime.fromisoformat(start).replace(tzinfo=UTC)
    return {"id": f"{name}-{state}", "name": name, "state": state, "started_at": begin,
            "ended_at": begin + dt.timedelta(seconds=seconds), "run_date": "2021-08-15",
            "train_month": "2021-06", "val_month": "2021-07"}


# -- runs over time ---------------------------------------------------------------------
def test_runs_scatter_has_one_trace_per_state_in_the_state_colour(seeded):
    _, store = seeded
    fig = charts.runs_scatter(frames.run_points(store.run_timeline(), NOW))
    colours = {trace.name: trace.marker.color for trace in fig.data}
    assert colours == {"Completed": labels.STATE_COLORS["COMPLETED"], "Failed": labels.STATE_COLORS["FAILED"],
                       "Crashed": labels.STATE_COLORS["CRASHED"]}
    assert sum(len(trace.x) for trace in fig.data) == 14  # 12 completed, 1 failed, 1 crashed


def test_runs_scatter_puts_start_time_in_utc_on_x_and_duration_on_y(seeded):
    _, store = seeded
    fig = charts.runs_scatter(frames.run_points(store.run_timeline(), NOW))
    assert fig.layout.xaxis.type == "date" and "UTC" in fig.layout.xaxis.title.text
    assert "Duration" in fig.layout.yaxis.title.text and fig.layout.yaxis.ticksuffix == " s"


def test_runs_scatter_axis_fits_a_burst_of_runs_instead_of_a_week():
    points = frames.run_points([run("COMPLETED", f"2026-11-25T01:11:{s:02d}", 3.2, f"r{s}") for s in (3, 8, 12, 24)],
                               NOW)
    first, last = charts.runs_scatter(points).layout.xaxis.range
    assert pd.Timestamp(last) - pd.Timestamp(first) <= pd.Timedelta(hours=1, seconds=30)


@pytest.mark.parametrize("durations, axis", [((3.1, 3.7, 4.0), "linear"), ((0.04, 3.5, 97.0), "log")])
def test_runs_scatter_switches_to_a_log_axis_when_durations_differ_widely(durations, axis):
    points = frames.run_points([run("COMPLETED", f"2026-11-2{i}T10:00:00", s, f"r{i}")
                                for i, s in enumerate(durations)], NOW)
    assert charts.runs_scatter(points).layout.yaxis.type == axis


# -- task timeline ---------------------------------------------------------------------
def test_task_gantt_places_bars_by_start_and_length(seeded):
    seeded_history, store = seeded
    completed = store.get_run(seeded_history.completed[-1])
    bars = frames.task_bars(store.task_runs(completed["id"]), completed["started_at"], NOW)
    fig = charts.task_gantt(bars)
    (trace,) = fig.data
    assert trace.orientation == "h" and list(trace.y) == ["read_data", "prepare_features", "train_model", "run_model"]
    starts, lengths = list(trace.base), list(trace.x)
    assert starts[0] == pytest.approx(0.004, abs=1e-6)
    assert all(later >= earlier + length for earlier, length, later in zip(starts, lengths, starts[1:]))


def test_task_gantt_shows_tasks_that_never_ran_as_not_run(seeded):
    seeded_history, store = seeded
    failed = store.get_run(seeded_history.failed)
    fig = charts.task_gantt(frames.task_bars(store.task_runs(failed["id"]), failed["started_at"], NOW))
    by_name = {trace.name: trace for trace in fig.data}
    assert set(by_name) == {"Completed", "Failed", "Not run"}
    assert list(by_name["Not run"].y) == ["run_model"] and list(by_name["Not run"].text) == ["not run"]
    assert by_name["Failed"].marker.color == labels.STATE_COLORS["FAILED"]


def test_task_gantt_labels_sub_second_durations_readably():
    start = dt.datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    tasks = [{"task": "run_model", "attempt": 1, "state": "COMPLETED", "started_at": start,
              "ended_at": start + dt.timedelta(seconds=0.042), "error": None}]
    fig = charts.task_gantt(frames.task_bars(tasks, start, NOW))
    assert list(fig.data[0].text) == ["0.042 s"] and fig.layout.xaxis.ticksuffix == " s"


def test_task_bars_name_retried_attempts():
    start = dt.datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    tasks = [{"task": "read_data", "attempt": a, "state": s, "started_at": start + dt.timedelta(seconds=a),
              "ended_at": start + dt.timedelta(seconds=a + 0.5), "error": None}
             for a, s in ((1, "FAILED"), (2, "COMPLETED"))]
    assert list(frames.task_bars(tasks, start, NOW)["label"]) == ["read_data", "read_data (attempt 2)"]


# -- metric trends -------------------------------------------------------------------------
LINES = [("val_rmse", "Validation RMSE"), ("train_rmse", "Training RMSE")]


def trend_figure(history: pd.DataFrame):
    return charts.metric_trends(history, LINES, title="Validation RMSE", x_title="Validation month")


def seeded_trend(store) -> pd.DataFrame:
    keys = tuple(m.key for m in TRAINING.metrics)
    return frames.trend_frame(store.trend_points(FLOW_NAME, "val_rmse", by="val_month", keys=keys), TRAINING)


def test_metric_trends_chart_the_trend_metric_and_the_one_drawn_beside_it_labelled(seeded):
    _, store = seeded
    fig = trend_figure(seeded_trend(store))
    assert fig.layout.title.text == "Validation RMSE" and fig.layout.xaxis.title.text == "Validation month"
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["Validation RMSE", "Training RMSE"] and all(len(t.x) == 12 for t in lines)
    assert lines[0].line.dash == "solid" and lines[1].line.dash == "dot"


def test_metric_trends_mark_synthetic_runs_with_hollow_markers(seeded):
    _, store = seeded
    fig = trend_figure(seeded_trend(store))
    val_rmse = fig.data[0]
    assert list(val_rmse.marker.symbol[:4]) == ["circle-open"] * 3 + ["circle"]  # steady-run-01..03: demo data
    assert any(t.name == charts.FLAGGED_NAME for t in fig.data)  # named in the legend
    assert "steady-run-01" in val_rmse.customdata[0][0] and val_rmse.customdata[0][2] == charts.FLAGGED_NAME


def months_frame(months: list[str]) -> pd.DataFrame:
    rows = [{"id": m, "name": f"run-{m}", "run_date": f"{m}-15", "train_month": m, "val_month": m, "runs": 1,
             "synthetic": 0, "data_source": "tlc", **{k.key: 10.0 + i / 100 for k in TRAINING.metrics}}
            for i, m in enumerate(months)]
    return frames.trend_frame(rows, TRAINING)


def test_trends_of_70_months_thin_their_labels_break_at_gaps_and_offer_a_range_selector():
    months = [str(p) for p in pd.period_range("2019-01", periods=72, freq="M") if str(p) not in ("2020-05", "2020-06")]
    fig = trend_figure(months_frame(months))
    assert len(months) == 70
    val = fig.data[0]
    assert len(val.x) == 72 and val.connectgaps is False
    gap = [i for i, y in enumerate(val.y) if y is None or y != y]
    assert gap == [16, 17]  # 2020-05 and 2020-06: the line breaks there, not bridged
    assert fig.layout.xaxis.type == "date" and fig.layout.xaxis.dtick == "M6"  # 12 labels, not 72
    assert [b.label for b in fig.layout.xaxis.rangeselector.buttons] == ["6 m", "1 y", "2 y", "5 y", "all"]


@pytest.mark.parametrize("months, step", [(6, "M1"), (18, "M1"), (30, "M3"), (70, "M6"), (120, "M12")])
def test_trend_labels_are_thinned_to_the_span(months, step):
    names = [str(p) for p in pd.period_range("2015-01", periods=months, freq="M")]
    assert trend_figure(months_frame(names)).layout.xaxis.dtick == step


def test_metric_months_keep_the_latest_completed_run_of_each_month_and_count_them(seeded):
    seeded_history, store = seeded
    rows = store.trend_points(FLOW_NAME, "val_rmse", by="val_month", keys=("train_rmse",))
    assert len(rows) == 12 and [r["val_month"] for r in rows] == sorted(r["val_month"] for r in rows)
    assert all(r["runs"] == 1 for r in rows) and rows[-1]["id"] == seeded_history.completed[-1]
    real = store.trend_points(FLOW_NAME, "val_rmse", by="val_month", without="synthetic")
    assert len(real) == 9  # three months ran on demo data


# -- state counts and empty data ---------------------------------------------------------
def test_state_counts_colour_each_bar_by_its_state():
    fig = charts.state_counts({"COMPLETED": 12, "SCHEDULED": 3, "FAILED": 1, "RUNNING": 0})
    assert list(fig.data[0].y) == ["Completed", "Failed", "Scheduled"]
    assert list(fig.data[0].marker.color) == [labels.STATE_COLORS[s] for s in ("COMPLETED", "FAILED", "SCHEDULED")]


@pytest.mark.parametrize("figure", [
    lambda: charts.runs_scatter(frames.run_points([], NOW)),
    lambda: charts.task_gantt(frames.task_bars([], None, NOW)),
    lambda: trend_figure(frames.trend_frame([], TRAINING)),
    lambda: charts.state_counts({}),
])
def test_empty_data_gives_an_annotated_empty_figure(figure):
    fig = figure()
    assert len(fig.data) == 0 and fig.layout.annotations[0].text


# -- wording -------------------------------------------------------------------------------
def test_runs_table_rows_show_months_covered_and_the_failure_reason(seeded):
    seeded_history, store = seeded
    table = frames.runs_table(store.runs(limit=100))
    failed = table[table["Run"].str.contains(seeded_history.failed)].iloc[0]
    assert (failed["Run date"], failed["Covers"]) == ("2022-03-15", "Train month 2022-01 · Validation month 2022-02")
    assert failed["Flow"] == "Monthly training"
    assert failed["Reason"].startswith("train_model: fhv_tripdata_2022-01")
    assert failed["State"] == ["Failed"] and failed["Run"].startswith(f"/run?id={seeded_history.failed}")


@pytest.mark.parametrize("moment, zone, text", [
    ("2026-12-15T14:00:00Z", "America/New_York", "2026-12-15 09:00 EST (America/New_York)"),
    ("2026-07-15T13:00:00Z", "America/New_York", "2026-07-15 09:00 EDT (America/New_York)"),
    ("2026-12-15T14:00:00Z", None, "2026-12-15 14:00 UTC"),
])
def test_times_carry_their_zone(moment, zone, text):
    assert labels.in_zone(moment, zone) == text


@pytest.mark.parametrize("seconds, text", [(0.042, "0.042 s"), (3.21, "3.2 s"), (97, "1m 37s")])
def test_durations_stay_readable_below_a_second(seconds, text):
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert labels.duration(start, start + dt.timedelta(seconds=seconds)) == text


@pytest.mark.parametrize("status, alive", [
    (None, False),
    ({"heartbeat_at": "2026-11-25T11:59:50.000000Z", "stopped_at": None, "pid": 1, "hostname": "h"}, True),
    ({"heartbeat_at": "2026-11-25T11:58:00.000000Z", "stopped_at": None, "pid": 1, "hostname": "h"}, False),
    ({"heartbeat_at": "2026-11-25T11:59:59.000000Z", "stopped_at": "2026-11-25T11:59:59.000000Z"}, False),
])
def test_a_scheduler_is_alive_only_with_a_recent_heartbeat_and_no_stop(status, alive):
    assert labels.scheduler_state(status, NOW)[0] is alive


@pytest.mark.parametrize("age_s, stale_after, alive", [
    (45, None, True),     # no recorded limit: the scheduler's default of 60 s
    (75, None, False),
    (45, 30.0, False),    # the limit the scheduler recorded in its row
    (90, 120.0, True),
    (125, 120.0, False),
])
def test_a_scheduler_is_alive_within_the_stale_after_it_recorded(age_s, stale_after, alive):
    beat = NOW - dt.timedelta(seconds=age_s)
    status = {"heartbeat_at": beat.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "stopped_at": None, "stale_after": stale_after,
              "pid": 1, "hostname": "h"}
    assert labels.scheduler_state(status, NOW)[0] is alive


def test_the_default_stale_after_is_the_schedulers_own():
    assert labels.DEFAULT_STALE_AFTER_S == SchedulerOptions().stale_after


# -- the scheduler command -----------------------------------------------------------------
@pytest.fixture
def repo(tmp_path):
    """A repository root with a virtualenv in ``.venv``, in a folder whose name needs quoting."""
    root = tmp_path / "my repo"
    (root / ".venv" / "bin").mkdir(parents=True)
    return root


@pytest.mark.parametrize("executable, python", [
    ("{root}/.venv/bin/python", ".venv/bin/python"),
    ("{root}/.venv/bin/python3", ".venv/bin/python3"),
    ("/usr/bin/python3", "python"),
    ("/opt/other-env/bin/python", "python"),
])
def test_the_scheduler_command_uses_the_repos_venv_python_or_plain_python(repo, executable, python):
    settings = Settings(home=Path("/srv/fhv home"), data_url="demo:3000")
    command = labels.scheduler_command(settings, root=repo, executable=executable.format(root=repo), environ={})
    assert command == (f"cd '{repo}' && FHV_HOME='/srv/fhv home' FHV_DATA_URL=demo:3000 {python} "
                       "-m pipeline scheduler")


def test_the_scheduler_command_names_every_setting_that_differs_from_the_defaults(repo):
    settings = Settings(home=Path("/srv/fhv"), data_url="https://mirror.example/fhv_tripdata_{month}.parquet",
                        solver="lsqr", download_timeout=120.0)
    command = labels.scheduler_command(settings, root=repo, executable="/usr/bin/python3", environ={})
    assert command == (f"cd '{repo}' && FHV_HOME=/srv/fhv "
                       "FHV_DATA_URL='https://mirror.example/fhv_tripdata_{month}.parquet' FHV_SOLVER=lsqr "
                       "FHV_DOWNLOAD_TIMEOUT=120 python -m pipeline scheduler")


def test_the_scheduler_command_carries_fhv_flows_and_pythonpath_when_they_are_set(repo, tmp_path, monkeypatch):
    settings = Settings(home=Path("/srv/fhv"), data_url="demo:3000")
    monkeypatch.chdir(tmp_path)
    environ = {"FHV_FLOWS": "my_flows.echo:ENTRY", "PYTHONPATH": f"my flows{os.pathsep}/opt/lib"}
    command = labels.scheduler_command(settings, root=repo, executable="/usr/bin/python3", environ=environ)
    assert command == (f"cd '{repo}' && FHV_HOME=/srv/fhv FHV_DATA_URL=demo:3000 FHV_FLOWS=my_flows.echo:ENTRY "
                       f"PYTHONPATH='{tmp_path / 'my flows'}{os.pathsep}/opt/lib' python -m pipeline scheduler")
    assert "FHV_FLOWS" not in labels.scheduler_command(settings, root=repo, environ={"FHV_FLOWS": " "})


def test_a_scheduler_started_with_the_command_shown_registers_the_flows_of_fhv_flows(tmp_path):
    """Run the shown command in a shell, its python registering the flows as the scheduler does (``load_flows``)."""
    folder = tmp_path / "my flows"
    folder.mkdir()
    (folder / "my_echo.py").write_text("from tests.flows.echo import ENTRY\n")
    settings = Settings(home=tmp_path / "fhv", data_url="demo:3000")
    command = labels.scheduler_command(settings, environ={"FHV_FLOWS": "my_echo:ENTRY", "PYTHONPATH": str(folder)})
    report = "from pipeline.flows import load_flows; print([e.name for e in load_flows()][-1])"
    probe = command.replace("-m pipeline scheduler", f"-c {shlex.quote(report)}")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # "python" is this one
    env = {name: value for name, value in os.environ.items() if name not in ("FHV_FLOWS", "PYTHONPATH")}
    done = subprocess.run(["bash", "-c", probe], cwd=tmp_path, env={**env, "PATH": path}, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "echo", done.stderr


def test_the_scheduler_command_runs_from_any_folder_with_the_history_and_data_it_names(tmp_path):
    """Run the shown command in a shell (its python reporting what it got instead of scheduling)."""
    settings = Settings(home=tmp_path / "fhv home", data_url="https://mirror.example/fhv_tripdata_{month}.parquet")
    command = labels.scheduler_command(settings)
    report = "import os; print(os.getcwd()); print(os.environ['FHV_HOME']); print(os.environ['FHV_DATA_URL'])"
    probe = command.replace("-m pipeline scheduler", f"-c {shlex.quote(report)}")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # "python" is this one
    done = subprocess.run(["bash", "-c", probe], cwd=tmp_path, env={**os.environ, "PATH": path},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(labels.REPO_ROOT), str(settings.home), settings.data_url]


# -- runs past due while no scheduler is alive ---------------------------------------------------
def waiting(state: str, due: dt.datetime, **extra) -> dict:
    return {"id": f"{state}-{due:%H%M}", "name": f"{state.lower()}-run", "state": state,
            "scheduled_time": due.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "run_date": "2026-11-25", **extra}


@pytest.mark.parametrize("run, overdue", [
    (waiting("SCHEDULED", NOW - dt.timedelta(seconds=1)), True),
    (waiting("LATE", NOW - dt.timedelta(hours=2)), True),
    (waiting("AWAITING_RETRY", NOW - dt.timedelta(days=1), next_attempt_at="2026-11-25T11:00:00.000000Z"), True),
    (waiting("AWAITING_RETRY", NOW - dt.timedelta(days=1), next_attempt_at="2026-11-25T13:00:00.000000Z"), False),
    (waiting("SCHEDULED", NOW + dt.timedelta(minutes=5)), False),
    (waiting("RUNNING", NOW - dt.timedelta(minutes=5)), False),
    (waiting("COMPLETED", NOW - dt.timedelta(minutes=5)), False),
])
def test_a_waiting_run_is_overdue_once_its_time_or_next_attempt_passed(run, overdue):
    assert labels.is_overdue(run, NOW) is overdue


NOTE = labels.overdue_reason("cd /repo && FHV_HOME=/h FHV_DATA_URL=demo python -m pipeline scheduler")


def test_overdue_reason_names_the_missing_scheduler_and_the_command():
    assert NOTE == ("overdue: no scheduler alive (start it with "
                    "cd /repo && FHV_HOME=/h FHV_DATA_URL=demo python -m pipeline scheduler)")
    assert labels.overdue_reason("cmd", markdown=True) == "overdue: no scheduler alive (start it with `cmd`)"


def test_upcoming_table_gives_runs_past_due_the_overdue_reason_while_no_scheduler_is_alive():
    rows = [waiting("SCHEDULED", NOW - dt.timedelta(minutes=3)),
            waiting("LATE", NOW - dt.timedelta(hours=2), late_reason="its work queue 'default' is paused"),
            waiting("SCHEDULED", NOW + dt.timedelta(days=20))]
    down = frames.upcoming_table(rows, "America/New_York", NOW, NOTE)
    assert list(down["Why it waits"]) == [NOTE, NOTE, ""]
    alive = frames.upcoming_table(rows, "America/New_York", NOW)
    assert list(alive["Why it waits"]) == ["", "its work queue 'default' is paused", ""]


def test_runs_table_gives_runs_past_due_the_overdue_reason_while_no_scheduler_is_alive(seeded):
    seeded_history, store = seeded
    rows = store.runs(limit=100)
    down = frames.runs_table(rows, now=NOW, overdue_note=NOTE).set_index("id")
    assert down.loc[seeded_history.late, "Reason"] == NOTE
    assert (down["Reason"] == NOTE).sum() == 1  # the scheduled slots are not due yet; the others ended
    alive = frames.runs_table(rows, now=NOW)
    assert not (alive["Reason"] == NOTE).any()
    assert alive["Reason"].str.startswith("no scheduler was running when it was due").sum() == 1


def test_countdown_says_in_or_overdue():
    assert labels.countdown(NOW + dt.timedelta(days=20, minutes=20), NOW) == "in 20 d 00 h 20 min"
    assert labels.countdown(NOW - dt.timedelta(hours=2), NOW) == "overdue by 2 h 00 min"


def test_a_chart_title_fits_a_phone_with_range_buttons_under_it_and_the_legend_under_the_plot():
    months = [str(p) for p in pd.period_range("2019-01", periods=24, freq="M")]
    drift = months_frame(months).assign(psi_pickup=0.01, psi_dropoff=0.02, psi_duration=0.03, run_date=lambda f: f["x"])
    for fig in (trend_figure(months_frame(months)), training_charts.drift_trends(drift.assign(months=drift["covers"]))):
        title, legend = fig.layout.title, fig.layout.legend
        assert all(len(line) <= charts.TITLE_WIDTH for line in title.text.split("<br>"))
        assert (title.yref, title.y, title.yanchor) == ("container", 1, "top")  # the top of the chart
        assert (legend.yref, legend.y, legend.yanchor) == ("container", 0, "bottom")  # its bottom, under the axis
        lines = len(title.text.split("<br>"))
        assert fig.layout.margin.t >= 18 * lines + 40  # room for the title, then the range buttons
    assert fig.layout.title.text.count("<br>") == 1  # the long drift title wraps


def test_the_model_in_use_chart_draws_both_rmses_by_month_and_stars_the_promotions():
    points = pd.DataFrame([
        {"val_month": "2021-05", "in_use_rmse": None, "retrained_rmse": 11.0, "promoted": True, "name": "a",
         "decision": "first"},
        {"val_month": "2021-06", "in_use_rmse": 11.2, "retrained_rmse": 11.3, "promoted": False, "name": "b",
         "decision": "kept"},
        {"val_month": "2021-07", "in_use_rmse": 11.2, "retrained_rmse": 11.1, "promoted": True, "name": "c",
         "decision": "promoted"}])
    fig = training_charts.model_in_use(points)
    in_use, retrained, stars = fig.data
    assert (in_use.name, retrained.name, stars.name) == ("model in use", "retrained", "promoted")
    assert list(retrained.y) == [11.0, 11.3, 11.1] and list(in_use.y)[1:] == [11.2, 11.2]
    assert [str(x)[:7] for x in stars.x] == ["2021-05", "2021-07"] and list(stars.y) == [11.0, 11.1]
    empty = training_charts.model_in_use(pd.DataFrame())
    assert empty.layout.annotations[0].text == "No run has been judged on a new month yet."
