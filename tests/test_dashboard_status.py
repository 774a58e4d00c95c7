"""What the dashboard says must be true: a started run is not late, a queued run waits, pause holds,
the Overview's cards name their run, a backfill's result replaces its plan, logs are whole, a
cancelled run is neutral, data sources are named, and the runs list filters, sorts and cancels."""
from __future__ import annotations

import datetime as dt
import json

import pytest
import streamlit as st

from dashboard import frames, labels, training_view
from pipeline.training.job import ENTRY as TRAINING
from pipeline.orchestration.states import State
from pipeline.store import Store
from tests.dashboard_seed import FLOW, TLC, run_fields, seed_history
from tests.test_dashboard import APP, open_page, table, texts

UTC = dt.timezone.utc
QUEUE_FULL = "its work queue 'default' is full (1 of 1 running)"
WAITING = "waiting for a free slot: 2nd in line in 'default' (1 of 1 running)"


@pytest.fixture
def history(tmp_path, monkeypatch):
    seeded = seed_history(tmp_path / "fhv", scheduler_alive=True)
    monkeypatch.setenv("FHV_HOME", str(seeded.settings.home))
    monkeypatch.setenv("FHV_DATA_URL", "demo:3000")
    yield seeded
    st.cache_data.clear()
    st.cache_resource.clear()


def write(history, **fields) -> str:
    """One more run in the seeded history (a scheduled run due a minute ago unless told otherwise)."""
    store = Store(history.settings.db_path)
    try:
        now = dt.datetime.now(UTC)
        base = {"flow": FLOW, "name": "extra-run", "state": State.SCHEDULED, "now": now - dt.timedelta(minutes=1),
                "scheduled_time": now - dt.timedelta(minutes=1), "trigger": "manual",
                **run_fields(dt.date(2023, 5, 15), store.get_deployment(history.deployment)["id"])}
        return store.create_run(**(base | fields))
    finally:
        store.close()


# -- honest status ---------------------------------------------------------------------------------
def test_a_run_that_started_shows_no_late_reason_left_in_its_row(history):
    started = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    run_id = write(history, name="finally-ran", state=State.COMPLETED, late_reason=QUEUE_FULL, started_at=started,
                   ended_at=started + dt.timedelta(seconds=4))
    at = open_page("runs")
    row = table(at, "Reason").set_index("id").loc[run_id]
    assert row["Reason"] == "" and row["State"] == ["Completed"]
    detail = open_page("run_detail", id=run_id)
    assert QUEUE_FULL not in texts(detail)


def pause(history, what: str) -> None:
    store = Store(history.settings.db_path)
    try:
        if what == "deployment":
            store.set_deployment_active(history.deployment, False, dt.datetime.now(UTC))
        else:
            store.set_work_queue_paused("default", True)
    finally:
        store.close()


@pytest.mark.parametrize("note, shown, paused", [
    (WAITING, "Waiting", None), ("Held: deployment monthly-training is paused", "Held", "deployment"),
    ("Held: work queue default is paused", "Held", "queue")])
def test_a_scheduled_run_waiting_for_its_queue_or_held_is_shown_so_not_late(history, note, shown, paused):
    run_id = write(history, name="in-line", late_reason=None if paused else note)  # held: before the scheduler says so
    if paused:
        pause(history, paused)
    at = open_page("runs")
    row = table(at, "Reason").set_index("id").loc[run_id]
    assert row["State"] == [shown] and row["Reason"] == note
    assert labels.run_badge({"state": "SCHEDULED", "late_reason": note}).endswith(f"{shown}]")
    upcoming = open_page("upcoming")
    assert not any("late" in w.value and "in-line" in w.value for w in upcoming.warning)


def test_many_late_runs_make_one_summary_with_a_link_to_the_list(history):
    for i in range(6):
        write(history, name=f"late-{i}", state=State.LATE, late_reason="no scheduler was running when it was due")
    at = open_page("upcoming")
    late = [w.value for w in at.warning if "are late" in w.value]
    assert len(late) == 1 and late[0].startswith("**7 runs are late**")
    (link,) = [p for p in at.get("page_link") if p.proto.label == "See the 7 late runs on Runs"]
    assert link.proto.page.endswith("runs") or "runs" in link.proto.page


@pytest.mark.parametrize("paused", ["deployment", "queue"])
def test_runs_held_by_a_pause_say_so_everywhere_never_overdue_and_the_next_run_says_paused(tmp_path, monkeypatch,
                                                                                           paused):
    seeded = seed_history(tmp_path / "fhv")  # no scheduler alive: a due run would read "overdue"
    monkeypatch.setenv("FHV_HOME", str(seeded.settings.home))
    write(seeded, name="held-run")  # due a minute ago
    pause(seeded, paused)
    held = f"Held: deployment {seeded.deployment} is paused" if paused == "deployment" else "Held: work queue default is paused"
    runs = table(open_page("runs"), "Reason").set_index("Run")
    waiting = runs[runs["State"].map(lambda s: s[0] in ("Scheduled", "Held", "Late"))]
    assert not waiting.empty and set(waiting["Reason"]) == {held}
    upcoming = open_page("upcoming")
    rows = table(upcoming, "Why it waits")
    assert set(rows["Why it waits"]) == {held} and set(rows["Starts"]) == {"when resumed"}
    overview = open_page("overview")
    assert ":gray[Starts]  \n### Paused" in texts(overview) and "Starts in" not in texts(overview)
    warning = [w.value for w in overview.warning if w.value.startswith(held)]
    assert warning and ("it holds 5 waiting runs" in warning[0]) == (paused == "deployment")
    st.cache_data.clear()
    st.cache_resource.clear()


def test_a_paused_deployment_says_how_many_runs_it_holds(history):
    store = Store(history.settings.db_path)
    try:
        store.set_deployment_active(history.deployment, False, dt.datetime.now(UTC))
    finally:
        store.close()
    at = open_page("upcoming")
    assert any("Paused: it starts nothing" in i.value and "holds 4 waiting run(s)" in i.value for i in at.info)


def test_overview_cards_name_their_run_and_the_last_run_shows_its_own_errors(history):
    at = open_page("overview")
    store = Store(history.settings.db_path, readonly=True)
    last = store.get_run(store.run_timeline(limit=1)[0]["id"])
    store.close()
    links = [p.proto.label for p in at.get("page_link")]
    assert f"Open {last['name']}" in links and sum(label.startswith("Open ") for label in links) == 3
    if last["metrics"]:
        assert f":gray[Validation RMSE]  \n### {labels.number(last['metrics']['val_rmse'], 4)}" in texts(at)


def test_the_last_run_card_shows_its_train_and_validation_mse_and_rmse(history):
    started = dt.datetime.now(UTC)
    metrics = {"train_mse": 100.0, "train_rmse": 10.0, "val_mse": 121.0, "val_rmse": 11.0, "synthetic": False}
    write(history, name="fresh-run", state=State.COMPLETED, started_at=started,
          ended_at=started + dt.timedelta(seconds=3), metrics=metrics)
    at = open_page("overview")
    assert ":gray[Training RMSE]  \n### 10.0000" in texts(at) and ":gray[Validation RMSE]  \n### 11.0000" in texts(at)


def test_a_cancelled_run_is_shown_as_cancelled_not_as_an_error(history):
    at = open_page("run_detail", id=history.cancelled)
    assert not at.error and any(i.value.startswith("**Cancelled.**") for i in at.info)


def test_logs_have_millisecond_times_whole_messages_and_the_error_in_its_task(history):
    at = open_page("run_detail", id=history.failed)
    logs = next(t.value for t in at.table if "Level" in t.value.columns)
    assert all(len(stamp) == 23 and stamp[19] == "." for stamp in logs.index)  # 2026-11-25 13:11:24.042
    error = logs[logs["Level"] == "ERROR"].iloc[0]
    assert error["Task"] == "train_model" and error["Message"].endswith("the month is empty.")


@pytest.mark.parametrize("url, label", [
    (TLC, "TLC (cloudfront)"), ("https://mirror.example.org/fhv/fhv_tripdata_{month}.parquet", "mirror mirror.example.org"),
    ("/data/fhv/fhv_tripdata_{month}.parquet", "local folder /data/fhv"),
    ("file:///data/fhv/fhv_tripdata_{month}.parquet", "local folder /data/fhv"), ("demo:3000", "synthetic demo data"),
])
def test_the_data_label_says_where_the_data_came_from(url, label):
    assert training_view.data_label({"data_source": url, "synthetic": url.startswith("demo")}) == label


def test_without_synthetic_data_means_any_non_demo_source_and_says_so(history):
    at = open_page("trends")
    toggle = at.toggle(key="trends_hide_flagged")
    assert toggle.label == "Without synthetic data" and "non-demo" not in toggle.label
    shown = table(at, "val_rmse")
    toggle.set_value(True).run()
    real = table(at, "val_rmse")
    assert len(shown) == 12 and len(real) == 9 and set(shown["name"]) > set(real["name"])


# -- backfill and run once ----------------------------------------------------------------------
def test_a_confirmed_backfill_shows_its_result_with_links_and_the_plan_is_gone(history):
    at = open_page("trigger")
    at.date_input(key="backfill_start").set_value(dt.date(2023, 1, 1))
    at.date_input(key="backfill_end").set_value(dt.date(2023, 3, 31)).run()
    at.button(key="backfill_preview").click().run()
    at.button(key="backfill_confirm").click().run()
    assert not at.exception
    assert any(s.value.startswith("Enqueued 3 backfill run(s)") for s in at.success)
    assert not [b for b in at.button if b.key == "backfill_confirm"]
    assert not [d for d in at.dataframe if "Train month" in d.value.columns]  # the plan is gone
    assert len([p for p in at.get("page_link") if "Scheduled" in p.proto.label]) == 3


def test_a_big_backfill_links_to_the_filtered_runs_list(history):
    at = open_page("trigger")
    at.date_input(key="backfill_start").set_value(dt.date(2022, 6, 1))
    at.date_input(key="backfill_end").set_value(dt.date(2023, 6, 30)).run()
    at.button(key="backfill_preview").click().run()
    at.button(key="backfill_confirm").click().run()
    (link,) = [p for p in at.get("page_link") if "backfill runs on Runs" in p.proto.label]
    assert "trigger=backfill" in link.proto.query_string


# -- the runs list ---------------------------------------------------------------------------------
def test_runs_filter_by_trigger_and_run_dates_and_sort_by_validation_rmse(history):
    at = open_page("runs")
    at.multiselect(key="runs_triggers").set_value(["manual"]).run()
    assert set(table(at, "Reason")["Trigger"]) == {"manual"}
    at.multiselect(key="runs_triggers").set_value([]).run()
    at.date_input(key="runs_run_dates").set_value((dt.date(2021, 3, 1), dt.date(2021, 12, 31))).run()
    dates = table(at, "Reason")["Run date"]
    assert len(dates) == 10 and dates.between("2021-03-01", "2021-12-31").all()
    at.selectbox(key="runs_sort").set_value("metric_asc").run()
    rmse = table(at, "Reason")["Validation RMSE"].astype(float)
    assert rmse.is_monotonic_increasing


def test_runs_filters_come_from_the_address(history):
    at = open_page("runs", state="LATE")
    assert list(table(at, "Reason")["id"]) == [history.late]


def test_runs_filter_by_a_deployment_tag(history):
    at = open_page("runs")
    every = len(table(at, "Reason"))
    at.selectbox(key="runs_tag").set_value("ml").run()
    assert len(table(at, "Reason")) == every  # every seeded run belongs to the default deployment (tag ml)
    store = Store(history.settings.db_path, readonly=True)
    try:
        assert store.count_run_list(tag="no-such-tag") == 0 and store.tags_in_use() == ["ml"]
    finally:
        store.close()


def test_empty_values_are_blank_not_none():
    row = frames.runs_table([{"id": "x", "name": "n", "state": "SCHEDULED"}]).iloc[0]
    assert all(row[c] == "" for c in ("Run date", "Flow", "Result", "Covers", "Started (UTC)", "Duration", "Reason"))
    row = frames.runs_table([{"id": "x", "name": "n", "state": "SCHEDULED"}], entry=TRAINING).iloc[0]
    assert all(row[c] == "" for c in ("Validation RMSE", "Train month", "Validation month", "Started (UTC)"))


def test_selected_runs_are_cancelled_together(history):
    at = open_page("runs", state="SCHEDULED")
    ids = list(table(at, "Reason")["id"])
    assert any(b.key == "runs_cancel_selected" and b.disabled for b in at.button)  # nothing selected yet
    store = Store(history.settings.db_path)
    try:
        from dashboard import actions
        done, refused = actions.cancel_many(history.settings, ids[:2])
        assert [r["state"] for r in done] == ["CANCELLED", "CANCELLED"] and not refused
        assert {store.get_run(i)["state"] for i in ids[2:]} == {"SCHEDULED"}
    finally:
        store.close()


def test_a_whole_backfill_is_cancelled_from_one_of_its_runs(history):
    store = Store(history.settings.db_path)
    try:
        now = dt.datetime.now(UTC)
        dep = store.get_deployment(history.deployment)["id"]
        ids = [store.create_run(flow=FLOW, name=f"fill-{i}", state=State.SCHEDULED, now=now, trigger="backfill",
                                scheduled_time=now, **run_fields(dt.date(2020, i, 15), dep)) for i in (1, 2, 3)]
    finally:
        store.close()
    at = open_page("run_detail", id=ids[1])
    button = next(b for b in at.button if b.key == "detail_cancel_backfill")
    assert button.label == "Cancel its backfill (3 of 3 waiting or running)"
    button.click().run()
    store = Store(history.settings.db_path, readonly=True)
    try:
        assert {store.get_run(i)["state"] for i in ids} == {"CANCELLED"}
    finally:
        store.close()


def test_run_list_reads_no_metrics_blob_and_pages_in_sql(history):
    store = Store(history.settings.db_path, readonly=True)
    try:
        page = store.run_list(limit=5, offset=5, sort="newest")
        assert len(page) == 5 and all(set(r["metrics"]) <= {"val_rmse", "synthetic", "data_source"} for r in page)
        assert store.count_run_list(triggers=["schedule"]) == len(store.run_list(limit=100, triggers=["schedule"]))
    finally:
        store.close()
    assert json.dumps(page, default=str)


def test_the_runs_chart_draws_the_runs_of_the_page_on_demand(history):
    at = open_page("runs")
    assert not at.get("plotly_chart")  # the list first: no charting library to load
    at.toggle(key="runs_chart_on").set_value(True).run()
    (chart,) = at.get("plotly_chart")
    drawn = sum(len(trace["x"]) for trace in json.loads(chart.proto.spec)["data"])
    assert drawn == len([r for r in table(at, "Reason")["Started (UTC)"] if r and "(due)" not in r])


def test_a_deployment_card_shows_its_schedule_zone_queue_limit_catchup_and_recent_runs(history):
    at = open_page("upcoming")
    shown = texts(at)
    assert "At 09:00 AM, on day 15 of the month" in shown or "day 15" in shown
    assert "America/New_York" in shown and "DST:" in shown and "catch-up" in shown
    assert "Work queue `default` (" in shown
    recent = next(d.value for d in at.dataframe if "Reason" in d.value.columns and len(d.value) == 5)
    assert set(recent["State"].map(tuple)) <= {("Completed",), ("Failed",), ("Crashed",), ("Cancelled",)}
    assert any(b.key == f"toggle_{history.deployment}" for b in at.button)


def test_pause_and_resume_from_the_dashboard_keep_the_runs_ids_and_names(history):
    def waiting() -> set[tuple[str, str]]:
        store = Store(history.settings.db_path, readonly=True)
        try:
            return {(r["id"], r["name"]) for r in store.runs(states=["SCHEDULED", "LATE"], limit=100)}
        finally:
            store.close()

    before = waiting()
    at = open_page("upcoming")
    at.button(key=f"toggle_{history.deployment}").click().run()
    assert waiting() == before
    assert any("Paused: it starts nothing" in i.value for i in at.info)
    at.button(key=f"toggle_{history.deployment}").click().run()
    assert {run_id for run_id, _ in before} <= {run_id for run_id, _ in waiting()}
    assert not any("Paused: it starts nothing" in i.value for i in at.info)


def test_cached_reads_see_a_write_at_once(history):
    at = open_page("run_detail", id=history.scheduled[0])
    assert any("Scheduled]" in m.value and history.scheduled[0] in m.value for m in at.markdown)
    store = Store(history.settings.db_path)
    try:
        store.transition(history.scheduled[0], State.PENDING, now=dt.datetime.now(UTC))
    finally:
        store.close()
    at.run()
    assert any("Pending]" in m.value and history.scheduled[0] in m.value for m in at.markdown)


def test_run_once_offers_the_data_sources_and_checks_a_template(history):
    at = open_page("trigger")
    assert at.radio(key="trigger_source").options == ["As configured", "Demo (synthetic)", "TLC", "A mirror or folder"]
    at.radio(key="trigger_source").set_value("custom").run()
    at.text_input(key="trigger_source_url").input("https://mirror.example/no-month-here.parquet").run()
    before = len(table(open_page("runs"), "Reason"))
    at.button(key="trigger_run").click().run()
    assert any("{month}" in e.value for e in at.error)  # a template must name the month
    assert len(table(open_page("runs"), "Reason")) == before



def test_run_once_on_demo_data_records_that_source(history):
    at = open_page("trigger")
    at.radio(key="trigger_source").set_value("demo").run()
    at.button(key="trigger_run").click().run()
    store = Store(history.settings.db_path, readonly=True)
    try:
        run = store.latest_run(now=dt.datetime.now(UTC))
    finally:
        store.close()
    assert run["parameters"].get("data_url") == "demo" and training_view.data_label(run) == "synthetic demo data"


def test_a_history_from_an_older_version_is_upgraded_when_the_dashboard_opens_it(tmp_path, monkeypatch):
    from pipeline.store import MIGRATIONS

    home = tmp_path / "old"
    old = Store(home / "history.db", migrate=False)
    old.migrate(upto=6)  # the schema of the version before model quality, workers and PostgreSQL
    old.close()
    monkeypatch.setenv("FHV_HOME", str(home))
    try:
        for page in ("overview", "runs", "models", "trends"):
            at = open_page(page)
            assert not at.exception and not any("no such table" in str(e.value) for e in at.error), page
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()
    upgraded = Store(home / "history.db", readonly=True)
    try:
        assert upgraded.applied_migrations() == sorted(name for name, _ in MIGRATIONS)
    finally:
        upgraded.close()


def test_upcoming_lists_the_workers_with_their_load_and_whether_they_are_alive(history):
    store = Store(history.settings.db_path)
    try:
        now = dt.datetime.now(UTC)
        for identity, beat in (("gpu-box:4242:a1", now), ("old-box:77:b2", now - dt.timedelta(minutes=10)),
                               ("done-box:9:c3", now)):
            store.register_worker(identity=identity, hostname=identity.split(":")[0], pid=int(identity.split(":")[1]),
                                  queues=["default"] if identity.startswith("gpu") else [], concurrency=2,
                                  stale_after=30.0, now=beat)
        store.worker_stopped("done-box:9:c3", now)
        write(history, name="on-the-gpu-box", state=State.RUNNING, started_at=now, claimed_by="gpu-box:4242:a1")
    finally:
        store.close()
    shown = table(open_page("upcoming"), "Worker").set_index("Worker")
    assert shown.loc["gpu-box:4242:a1", ["Host", "Queues", "Running", "Status"]].tolist() == [
        "gpu-box", "default", "1 of 2", "alive"]
    assert shown.loc["old-box:77:b2", "Status"] == "gone: silent for more than 30 s"
    assert shown.loc["old-box:77:b2", "Queues"] == "every queue"
    assert shown.loc["done-box:9:c3", "Status"] == "stopped"


def test_upcoming_shows_no_workers_section_when_flows_run_in_the_scheduler(history):
    assert "Workers" not in [s.value for s in open_page("upcoming").subheader]


def test_an_awaiting_retry_run_shows_its_next_attempt_in_the_time_columns(history):
    retry_at = dt.datetime.now(UTC) + dt.timedelta(hours=3)
    run_id = write(history, name="second-try", state=State.AWAITING_RETRY, next_attempt_at=retry_at)
    shown = labels.utc(retry_at, seconds=False)
    runs = table(open_page("runs"), "Reason").set_index("id")
    assert runs.loc[run_id, "Started (UTC)"] == f"{shown.removesuffix(' UTC')} (retry)"
    upcoming = table(open_page("upcoming"), "Why it waits")
    row = upcoming[upcoming["Run"].str.contains("second-try")].iloc[0]
    assert row["UTC"] == shown and row["Starts"].startswith("in 2 h 59 min")


@pytest.mark.parametrize("state, says", [
    (State.COMPLETED, "This run trained and validated on generated demo months"),
    (State.FAILED, "This run was to train and validate on generated demo months"),
    (State.CANCELLED, "This run was to train and validate on generated demo months"),
    (State.SCHEDULED, "This run will train and validate on generated demo months")])
def test_the_demo_months_note_says_what_the_run_did_or_would_have_done(history, state, says):
    fields = {"run_date": "2023-05-15", "train_month": "2023-03", "val_month": "2023-04", "data_source": "demo:3000",
              "synthetic": True}
    run_id = write(history, name="demo-run", state=state, **fields)
    notes = [w.value for w in open_page("run_detail", id=run_id).main.warning if "This run" in w.value]
    assert len(notes) == 1 and says in notes[0]
    assert ("trained and validated on" in notes[0]) == (state is State.COMPLETED)


def test_without_synthetic_data_and_no_real_run_says_how_many_synthetic_runs_it_hides(tmp_path, monkeypatch):
    from pipeline.config import Settings
    from tests.dashboard_seed import completed_run, ensure_deployment
    settings = Settings(home=tmp_path / "fhv", data_url="demo:3000").ensure_dirs()
    store = Store(settings.db_path)
    try:
        now = dt.datetime.now(UTC)
        dep_id = ensure_deployment(store, now)
        for i in range(2):  # the seed's first three months are synthetic
            completed_run(store, settings, dep_id, i, now)
    finally:
        store.close()
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    at = open_page("trends")
    at.toggle(key="trends_hide_flagged").set_value(True).run()
    assert any("No completed run without synthetic data yet: 2 runs with synthetic data are hidden. Turn off "
               "*Without synthetic data* to see them." in i.value for i in at.info)
    st.cache_data.clear()
    st.cache_resource.clear()


def test_one_matching_run_is_one_run_and_shares_have_one_format_everywhere(history):
    at = open_page("runs", q="steady-run-01")
    assert "**1 run** matches these filters." in texts(at)
    assert labels.share(0.8353) == "83.53%" and labels.share(None) == "-"  # as tables' "percent" columns show it
