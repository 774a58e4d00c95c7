"""Every dashboard page headless with AppTest on a seeded history, and its main interaction.

The app is started from its entrypoint (``dashboard/app.py``) and switched to each page, as a
user's browser would; FHV_HOME points at a history in tmp_path.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import inspect
import re
import tomllib
from pathlib import Path

import pytest
import streamlit as st
from streamlit.config import ShowErrorDetailsConfigOptions
from streamlit.testing.v1 import AppTest

from dashboard import labels as dashboard_labels
from pipeline.errors import ConfigError
from pipeline.orchestration.deployments import zone_name
from pipeline.orchestration.schedules import zone
from pipeline.orchestration.states import State
from pipeline.training.months import check_run_date, last_allowed_run_date
from pipeline.store import Store
from tests.dashboard_seed import DEPLOYMENT, FLOW, bulk_history, seed_history

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
OVERDUE = "overdue: no scheduler alive (start it with"
PAGES = ["overview", "runs", "run_detail", "upcoming", "trends", "trigger"]


@pytest.fixture
def history(tmp_path, monkeypatch):
    seeded = seed_history(tmp_path / "fhv")
    monkeypatch.setenv("FHV_HOME", str(seeded.settings.home))
    monkeypatch.setenv("FHV_DATA_URL", "demo:3000")
    yield seeded
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def store(history):
    opened = Store(history.settings.db_path, readonly=True)
    yield opened
    opened.close()


def open_page(page: str, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params.update(query)
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception[0].value
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "error", "warning", "info", "success", "caption", "title")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def table(at: AppTest, column: str):
    """The first table with this column (read-only dataframes carry no key in AppTest)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def run_ids(store: Store) -> set[str]:
    return {r["id"] for r in store.runs(limit=10_000)}


# -- every page renders --------------------------------------------------------------------
@pytest.mark.parametrize("page, expected", [
    ("overview", "Scheduler down"), ("runs", "runs** match"), ("upcoming", "America/New_York"),
    ("trends", "Hollow markers: runs with synthetic data"), ("trigger", "It covers Train month"),
    ("run_detail", "· trigger "),
])
def test_each_page_renders_the_seeded_history_without_exception(history, page, expected):
    at = open_page(page)
    assert expected in texts(at)


# What Streamlit's browser code takes for an emoji code (it loads its emoji table before such a text shows).
EMOJI_CODE = re.compile(r":(?!material/|streamlit:)[\w+-][\w_+-]*:")


def test_the_first_page_and_the_sidebar_have_no_html_nor_emoji_code_in_their_markdown(history):
    at = AppTest.from_file(APP, default_timeout=30).run()  # Overview: what a first visit draws
    shown = [e.proto for kind in ("markdown", "caption", "error", "warning", "info", "success") for e in at.get(kind)]
    assert any(re.search(r"stopped at [-\d]+ \d\d\\:\d\d\\:\d\d UTC", p.body) for p in shown)  # a time, escaped
    assert [p.body for p in shown if getattr(p, "allow_html", False) or EMOJI_CODE.search(p.body)] == []


def drawn(block) -> int:
    """How many elements a block draws (those of its blocks included)."""
    children = getattr(block, "children", None)
    return sum(drawn(child) for child in children.values()) if isinstance(children, dict) else 1


def test_overview_draws_its_cards_in_at_most_twenty_elements_and_no_html_element(history):
    """Each element is a message and a render in the browser: a card's figures and the line under them are
    one Markdown element, and so are the two lines of runs by state. The phone's sidebar script is in the
    page's head (``page_head``), not an ``st.html`` element (which loads a sanitiser first)."""
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert drawn(at.main) <= 20 and drawn(at.sidebar) <= 5 and not at.get("html")


def test_run_detail_page_renders_a_failed_run_with_its_reason_in_the_header(history):
    at = open_page("run_detail", id=history.failed)
    assert at.title[0].value == "sarcastic-lorikeet"
    assert "in `train_model`" in at.error[0].value or any("train_model" in e.value for e in at.error)
    assert "no trip lasts between 1 and 60 minutes" in texts(at)


@pytest.mark.parametrize("page", PAGES)
def test_each_page_renders_an_empty_history_without_exception(tmp_path, monkeypatch, page):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "empty"))
    open_page(page)


def test_overview_looks_forward_with_the_next_run_and_scheduled_count(history):
    at = open_page("overview")
    flow = "&flow=fhv-duration-training"  # the list opens on the flow the Overview shows
    assert f"Scheduled] **3**](/runs?state=SCHEDULED{flow})" in texts(at) and f"Late] **1**](/runs?state=LATE{flow})" in texts(at)
    assert ":gray[Starts]  \n### in " in texts(at)


def test_the_scheduler_command_shown_names_the_repo_the_history_and_the_data(history):
    at = open_page("overview")
    (command,) = {c.value.strip("`") for c in at.markdown if "-m pipeline scheduler" in c.value}  # the sidebar
    assert f"`{command}`" in next(e.value for e in at.main.error if "Scheduler down" in e.value)  # and the page
    home = history.settings.home.absolute()
    assert command.startswith(f"cd {ROOT} && FHV_HOME={home} FHV_DATA_URL=demo:3000 ")
    assert command.endswith((" .venv/bin/python -m pipeline scheduler", " .venv/bin/python3 -m pipeline scheduler",
                             " python -m pipeline scheduler"))
    assert "turn Late" not in texts(at) and "only a running scheduler marks runs Late" in texts(at)


def test_overview_counts_runs_by_state_each_linking_to_the_runs_list_filtered_by_it(history):
    at = open_page("overview")
    (lines,) = [m.value for m in at.markdown if m.value.startswith("Looking forward")]  # one element, two lines
    forward, back = lines.split("\n\n")
    assert [part.split("/runs?state=")[1].split("&")[0] for part in forward.split("&nbsp; [")[1:]] == [
        "SCHEDULED", "LATE", "AWAITING_RETRY", "PENDING", "RUNNING"]
    assert "Completed] **12**" in back and "Failed] **1**" in back


def test_overview_says_the_scheduler_is_alive_when_it_beats(tmp_path, monkeypatch):
    seeded = seed_history(tmp_path / "fhv", scheduler_alive=True)
    monkeypatch.setenv("FHV_HOME", str(seeded.settings.home))
    at = open_page("overview")
    assert any("Scheduler alive" in s.value for s in at.success)
    assert not any("Scheduler down" in e.value for e in at.error)


# -- runs past due while no scheduler is alive ----------------------------------------------------
def past_due_manual_run(history, minutes: float = 10) -> str:
    """A manual run enqueued ``minutes`` ago that no scheduler picked up (it stays SCHEDULED)."""
    writer = Store(history.settings.db_path)
    try:
        due = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes)
        return writer.create_run(flow=FLOW, name="forgotten-walrus", state=State.SCHEDULED, now=due,
                                 parameters={"date": "2026-01-15"}, trigger="manual", scheduled_time=due,
                                 run_date="2026-01-15", train_month="2025-11", val_month="2025-12",
                                 work_queue="default")
    finally:
        writer.close()


def test_upcoming_explains_runs_past_due_by_the_missing_scheduler_with_its_command(history):
    past_due_manual_run(history)
    at = open_page("upcoming")
    (overdue,) = [w.value for w in at.warning if OVERDUE in w.value]  # one summary, not a banner a run
    assert overdue.startswith("**2 runs past due will not start**") and "(tardy-pelican)" in overdue
    assert "FHV_HOME=" in overdue and "-m pipeline scheduler`" in overdue
    deployment, manual = [d.value for d in at.dataframe if "Why it waits" in d.value.columns]
    assert list(deployment["Why it waits"].str.startswith(OVERDUE)) == [True, False, False, False]  # slots to come
    assert list(manual["Why it waits"].str.startswith(OVERDUE)) == [True]


def test_upcoming_shows_the_recorded_late_reason_while_a_scheduler_is_alive(tmp_path, monkeypatch):
    seeded = seed_history(tmp_path / "fhv", scheduler_alive=True)
    monkeypatch.setenv("FHV_HOME", str(seeded.settings.home))
    at = open_page("upcoming")
    assert OVERDUE not in texts(at)
    assert any("tardy-pelican" in w.value and "no scheduler was running when it was due" in w.value
               for w in at.warning)


def test_runs_table_gives_a_run_past_due_the_overdue_reason_while_no_scheduler_is_alive(history):
    past_due_manual_run(history)
    at = open_page("runs")
    reasons = table(at, "Reason").set_index("Run date")["Reason"]
    assert reasons["2026-01-15"].startswith(OVERDUE)
    assert reasons["2026-01-15"].endswith("-m pipeline scheduler)")


def test_run_detail_of_a_run_past_due_says_no_scheduler_is_alive(history):
    at = open_page("run_detail", id=past_due_manual_run(history))
    assert any(w.value.startswith(OVERDUE) for w in at.warning)


def test_runs_page_names_the_latest_run_and_its_state_as_text(history):
    run_id = past_due_manual_run(history, minutes=0.1)
    at = open_page("runs")
    (line,) = [m.value for m in at.markdown if m.value.startswith("**Latest run:**")]
    assert f"[forgotten-walrus](/run?id={run_id}&name=forgotten-walrus)" in line and "Scheduled]" in line


def test_the_latest_run_is_the_one_created_last_among_those_due_not_an_upcoming_slot(history, store):
    assert store.latest_run(now=dt.datetime.now(dt.timezone.utc))["id"] == history.late
    run_id = past_due_manual_run(history, minutes=0.1)
    assert store.latest_run(now=dt.datetime.now(dt.timezone.utc))["id"] == run_id


def test_run_detail_with_an_unknown_id_says_so(history):
    at = open_page("run_detail", id="no-such-run")
    assert any("matches no run" in e.value for e in at.error)


# -- deployments the scheduler skips, slots it never made -------------------------------------------
DATA_GONE = ("materialise: The data folder /gone does not exist (data URL '/gone/{month}.parquet').")
SKIP_REASON = ("7 slot(s) of monthly-fhv from 2024-01-15 14:00:00 UTC to 2024-07-15 13:00:00 UTC passed while no "
               "scheduler ran and were not made into runs.")
AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@contextlib.contextmanager
def writer(history):
    opened = Store(history.settings.db_path)
    try:
        yield opened, opened.get_deployment(DEPLOYMENT)["id"]
    finally:
        opened.close()


def skip_slots(history, count: int = 7, *, at_least: bool = False) -> None:
    with writer(history) as (store, dep_id):
        store.record_skipped_slots(dep_id, first=dt.datetime(2024, 1, 15, 14, tzinfo=dt.timezone.utc),
                                   last=dt.datetime(2024, 7, 15, 13, tzinfo=dt.timezone.utc), count=count,
                                   at_least=at_least, reason=SKIP_REASON, now=AT)


def test_upcoming_says_loudly_which_deployment_the_scheduler_skips_why_and_since_when(history):
    with writer(history) as (store, dep_id):
        store.set_deployment_error(dep_id, DATA_GONE, AT)
    at = open_page("upcoming")
    (error,) = [e.value for e in at.error if DATA_GONE in e.value]
    assert error.startswith(f"**{DEPLOYMENT}** is skipped by the scheduler since 2026-01-02 03:04:05 UTC: {DATA_GONE}")
    assert "every other deployment keeps getting its runs" in error
    assert any("Skipped by the scheduler]" in m.value and DEPLOYMENT in m.value for m in at.markdown)


def test_overview_sums_up_the_deployments_the_scheduler_skips(history):
    with writer(history) as (store, dep_id):
        store.set_deployment_error(dep_id, DATA_GONE, AT)
    at = open_page("overview")
    (summary,) = [e.value for e in at.error if "skipped by the scheduler" in e.value]
    assert summary.startswith(f"**1 deployment is skipped by the scheduler: {DEPLOYMENT}.**")
    assert f"since 2026-01-02 03:04:05 UTC: {DATA_GONE}" in summary


def test_a_deployment_the_scheduler_skips_is_named_where_runs_are_triggered_for_it(history):
    with writer(history) as (store, dep_id):
        store.set_deployment_error(dep_id, DATA_GONE, AT)
    at = open_page("trigger")
    assert any(DATA_GONE in e.value for e in at.error)


def test_upcoming_lists_the_slots_skipped_after_a_downtime_with_their_count(history):
    skip_slots(history)
    at = open_page("upcoming")
    assert any(s.value == "Slots skipped after a downtime" for s in at.subheader)
    (row,) = table(at, "How many").to_dict("records")
    assert row == {"Deployment": DEPLOYMENT, "From (UTC)": "2024-01-15 14:00", "To (UTC)": "2024-07-15 13:00",
                   "How many": "7", "Reason": SKIP_REASON, "Recorded (UTC)": "2026-01-02 03:04"}
    (note,) = [w.value for w in at.warning if "never made into runs" in w.value]
    assert note.startswith("7 slots of this deployment passed during a downtime")


def test_a_skipped_slot_count_that_hit_its_limit_says_at_least(history):
    skip_slots(history, 100_000, at_least=True)
    at = open_page("upcoming")
    assert table(at, "How many")["How many"].tolist() == ["at least 100,000"]
    assert any(w.value.startswith("at least 100,000 slots of this deployment") for w in at.warning)


def test_without_deployment_errors_or_skipped_slots_nothing_of_them_shows(history):
    for page in ("upcoming", "overview"):
        at = open_page(page)
        shown = texts(at) + "\n".join(s.value for s in at.subheader)
        assert "skipped" not in shown.lower() and "never made into runs" not in shown
        assert not any("How many" in d.value.columns for d in at.dataframe)


def test_a_deployment_whose_stored_schedule_no_longer_loads_is_shown_with_why(history):
    with writer(history) as (store, dep_id):
        with store.atomic() as conn:
            conn.execute("UPDATE deployments SET schedule = ? WHERE id = ?", ('{"type": "weekly"}', dep_id))
        store.set_deployment_error(dep_id, "materialise: The schedule type 'weekly' is unknown.", AT)
    at = open_page("upcoming")
    assert any("The stored schedule does not load: The schedule type 'weekly' is unknown" in m.value
               for m in at.markdown)
    assert any("'weekly' is unknown" in e.value and "is skipped by the scheduler" in e.value for e in at.error)


@pytest.mark.parametrize("names, text", [
    (["a"], "1 deployment is skipped by the scheduler: a"),
    (["a", "b"], "2 deployments are skipped by the scheduler: a, b"),
])
def test_the_summary_of_skipped_deployments_counts_and_names_them(names, text):
    assert dashboard_labels.skipped_deployments(names) == text


@pytest.mark.parametrize("count, at_least, text", [
    (1, False, "1 slot"), (12, False, "12 slots"), (100_000, True, "at least 100,000 slots"),
])
def test_slot_counts_read_as_words(count, at_least, text):
    assert dashboard_labels.slot_count(count, at_least) == text


# -- interactions ------------------------------------------------------------------------------
def test_runs_can_be_filtered_by_state(history):
    at = open_page("runs")
    assert len(table(at, "Reason")) == 19
    at.multiselect(key="runs_states").set_value(["FAILED"]).run()
    failed = table(at, "Reason")
    assert list(failed["State"].map(tuple)) == [("Failed",)]
    assert failed["Reason"].iloc[0].startswith("train_model:")


def test_runs_can_be_limited_to_a_date_range(history):
    at = open_page("runs")
    at.selectbox(key="runs_period").set_value("Past 7 days").run()
    recent = table(at, "Reason")
    assert len(recent) == 12  # 5 completed, failed, crashed, cancelled, late and 3 scheduled
    assert "2021-08-15" not in set(recent["Run date"])


def test_runs_are_paged(history):
    writer = Store(history.settings.db_path)
    bulk_history(writer, runs=60)
    writer.close()
    at = open_page("runs")
    at.selectbox(key="runs_per_page").set_value(25).run()
    first_page = table(at, "Reason")
    assert len(first_page) == 25 and at.pagination[0].num_pages == 4
    at.pagination[0].select(4).run()
    last_page = table(at, "Reason")
    assert len(last_page) == 79 - 75 and set(last_page["Run"]).isdisjoint(first_page["Run"])


def test_runs_can_be_searched_by_name(history):
    at = open_page("runs")
    at.text_input(key="runs_search").input("brittle").run()
    found = table(at, "Reason")
    assert list(found["Run date"]) == ["2022-04-15"]
    assert (list(found["Train month"]), list(found["Validation month"])) == (["2022-02"], ["2022-03"])


def log_table(at: AppTest):
    return next(t.value for t in at.table if "Level" in t.value.columns)


def test_log_level_filter_hides_and_shows_debug_lines(history):
    at = open_page("run_detail", id=history.completed[-1])
    assert not log_table(at)["Level"].eq("DEBUG").any()
    at.pills(key="detail_levels").select("DEBUG").run()
    assert log_table(at)["Level"].eq("DEBUG").sum() == 1
    at.pills(key="detail_levels").set_value(["DEBUG"]).run()
    assert set(log_table(at)["Level"]) == {"DEBUG"}


def test_run_detail_labels_mse_and_rmse_and_offers_artifacts(history):
    at = open_page("run_detail", id=history.completed[-1])
    assert ":gray[Validation RMSE]" in texts(at) and ":gray[Training RMSE]" in texts(at)
    assert all(f"| {name} | " in texts(at) for name in ("Training MSE", "Validation MSE", "Validation RMSE"))
    assert " min² |" in texts(at) and " min |" in texts(at)
    assert len([b for b in at.download_button if b.key and b.key.startswith("artifact_")]) == 2
    assert any(c.value.startswith("`sha256 ") for c in at.markdown)


def test_trigger_enqueues_a_scheduled_run_and_confirms_it(history, store):
    before = run_ids(store)
    at = open_page("trigger")
    at.button(key="trigger_run").click().run()
    assert not at.exception
    new = run_ids(store) - before
    assert len(new) == 1
    run = store.get_run(new.pop())
    (deployment,) = [d for d in store.deployments() if d["id"] == run["deployment_id"]]
    today = dt.datetime.now(dt.timezone.utc).astimezone(zone(zone_name(deployment))).date()  # the deployment's day
    assert run["state"] == State.SCHEDULED and run["run_date"] == today.isoformat()
    assert at.toast and "Enqueued" in at.toast[0].value
    assert any(c.value.startswith(f"`cd {ROOT} && FHV_HOME=") for c in at.main.markdown)  # no scheduler: how to start one


def test_run_once_and_backfill_share_the_cli_rule_for_the_latest_run_date_and_say_it_the_same_way(history):
    at = open_page("trigger")
    today = dashboard_labels.today_in(dt.datetime.now(dt.timezone.utc), "America/New_York")
    last = last_allowed_run_date(today)  # the last day of this month: its validation month, last month, has ended
    assert last.month == today.month and (last + dt.timedelta(days=1)).day == 1
    assert {at.date_input(key=k).max for k in ("trigger_date", "backfill_start", "backfill_end")} == {last}
    rule = f"Latest run date: {last.isoformat()}."
    assert sum(rule in c.value for c in at.caption) == 2
    check_run_date(last, today)
    with pytest.raises(ConfigError, match=f"a month not over yet .* use a run date up to {last.isoformat()}"):
        check_run_date(last + dt.timedelta(days=1), today)


def test_a_run_date_validating_on_a_future_month_is_refused_and_writes_nothing(history, store):
    from dashboard import actions
    from pipeline.errors import ConfigError
    before = run_ids(store)
    with pytest.raises(ConfigError, match="future|not over yet"):
        actions.trigger(history.settings, date=dt.date.today() + dt.timedelta(days=35), deployment=None)
    assert run_ids(store) == before


@pytest.mark.parametrize("start, end, says", [
    (dt.date(2021, 6, 15), dt.date(2021, 3, 15), "before"),  # ends before it starts
    (dt.date(2015, 1, 15), dt.date(2025, 6, 15), "the most is 120"),  # 126 months
])
def test_an_invalid_backfill_is_refused_with_a_sentence_and_writes_nothing(history, store, start, end, says):
    before = run_ids(store)
    at = open_page("trigger")
    at.date_input(key="backfill_start").set_value(start)
    at.date_input(key="backfill_end").set_value(end).run()
    at.button(key="backfill_preview").click().run()
    assert any(says in e.value for e in at.error), [e.value for e in at.error]
    assert not _has(at, "backfill_confirm")
    assert run_ids(store) == before


def test_backfill_preview_then_confirm_enqueues_the_months(history, store):
    before = run_ids(store)
    at = open_page("trigger")
    at.date_input(key="backfill_start").set_value(dt.date(2023, 1, 15))
    at.date_input(key="backfill_end").set_value(dt.date(2023, 3, 15)).run()
    at.button(key="backfill_preview").click().run()
    planned = table(at, "Train month")
    assert list(planned["Run date"]) == ["2023-01-15", "2023-02-15", "2023-03-15"]
    assert run_ids(store) == before  # the preview is a dry run
    at.button(key="backfill_confirm").click().run()
    new = [store.get_run(i) for i in run_ids(store) - before]
    assert sorted(r["run_date"] for r in new) == ["2023-01-15", "2023-02-15", "2023-03-15"]
    assert at.toast and "3 backfill run" in at.toast[0].value


def test_a_deployment_can_be_paused_and_resumed(history, store):
    at = open_page("upcoming")
    at.button(key=f"toggle_{DEPLOYMENT}").click().run()
    assert store.get_deployment(DEPLOYMENT)["active"] is False
    assert "Paused" in texts(at)
    at.button(key=f"toggle_{DEPLOYMENT}").click().run()
    assert store.get_deployment(DEPLOYMENT)["active"] is True


def test_a_scheduled_run_can_be_cancelled_from_its_page(history, store):
    run_id = history.scheduled[0]
    at = open_page("run_detail", id=run_id)
    at.button(key="detail_cancel").click().run()
    assert store.get_run(run_id)["state"] == State.CANCELLED
    assert at.button(key="detail_cancel").disabled


def test_rerun_enqueues_the_same_run_date(history, store):
    before = run_ids(store)
    at = open_page("run_detail", id=history.failed)
    at.button(key="detail_rerun").click().run()
    (new,) = run_ids(store) - before
    assert store.get_run(new)["run_date"] == "2022-03-15"


def _has(at: AppTest, key: str) -> bool:
    return any(b.key == key for b in at.button)


# -- configuration and the bench -------------------------------------------------------------
def test_error_details_shown_to_users_are_the_exception_type_only():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == ShowErrorDetailsConfigOptions.TYPE


def test_the_served_dashboard_neither_watches_its_sources_nor_collects_every_object_after_each_run():
    """Both would cost every first load: the watcher walks all imported modules per new session, the
    forced collection walks every object holding the GIL before the last messages go out."""
    config = tomllib.loads((ROOT / "dashboard" / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert config["runner"]["postScriptGC"] is False


def test_the_store_counts_task_runs(history, store):
    assert store.count_task_runs() == sum(len(store.task_runs(r["id"])) for r in store.runs(limit=100))


def test_the_bench_counts_its_history_through_the_store_without_sql(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("dashboard_pages", ROOT / "bench" / "dashboard_pages.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert "SELECT" not in inspect.getsource(bench) and ".conn" not in inspect.getsource(bench)
    bench.seed(tmp_path / "fhv", runs=10, tasks=30)
    reader = Store(tmp_path / "fhv" / "history.db", readonly=True)
    try:
        expected = f"history: {reader.count_runs():,} flow runs, {reader.count_task_runs():,} task runs"
    finally:
        reader.close()
    assert expected in capsys.readouterr().out and reader.count_runs() == 19 + 10


@pytest.mark.parametrize("metrics, shown, absent", [
    (None, "This flow records no metrics.", "Validation RMSE"),
    ({"rmse": 12.5, "rows": 3000}, "rmse", "Validation RMSE"),
])
def test_a_completed_run_of_a_users_prefect_flow_shows_its_own_numbers_not_empty_metric_cards(history, metrics,
                                                                                              shown, absent):
    writer = Store(history.settings.db_path)
    now = dt.datetime.now(dt.timezone.utc)
    run_id = writer.create_run(flow="prefect2:/tmp/homework.py:main", name="course-flow", state=State.PENDING,
                               now=now, parameters={"date": "2021-08-15"}, trigger="script", run_date="2021-08-15")
    writer.start_run(run_id, now=now, pid=1)
    writer.transition(run_id, State.COMPLETED, now=now, metrics=metrics)
    writer.close()
    at = open_page("run_detail", id=run_id)
    labels = {m.label: m.value for m in at.metric}
    assert absent not in texts(at) and ":gray[Flow]  \n### prefect2:/tmp/homework.py:main" in texts(at)
    assert shown in texts(at) or shown in labels


def test_an_fhv_flows_item_naming_a_function_gives_one_sentence_and_calls_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    monkeypatch.setenv("FHV_FLOWS", "tests.flows.echo:execute")
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=30)
        at.run()
    finally:
        st.cache_resource.clear()
    assert not at.exception
    assert any("The flow 'tests.flows.echo:execute' (FHV_FLOWS) is the function execute" in e.value for e in at.error)


@pytest.mark.parametrize("page", ["overview", "runs"])
def test_a_corrupt_history_gives_one_sentence_not_a_traceback(tmp_path, monkeypatch, page):
    home = tmp_path / "fhv"
    home.mkdir()
    (home / "history.db").write_bytes(b"this is not a database at all" * 100)
    monkeypatch.setenv("FHV_HOME", str(home))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    if page != "overview":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception
    assert any(str(home / "history.db") in e.value for e in at.error)
