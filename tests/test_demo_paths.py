"""The demo source behaves like the TLC's: months before 2015-01 are not published, so a user sees
a failure (Run once for a January 2015 date) and the awaiting-data path (a backfill of it) from
the dashboard without real data."""
from __future__ import annotations

import datetime as dt

import pytest

from pipeline.config import Settings, load_settings
from pipeline.errors import NotPublishedError
from pipeline.orchestration import control
from pipeline.orchestration.executor import AwaitData
from pipeline.orchestration.states import State
from pipeline.store import Store, from_db
from pipeline.training import data, flow
from tests.test_dashboard import open_page, texts
from tests.test_dashboard_status import history  # noqa: F401 - fixture: the seeded history, FHV_HOME set

UTC = dt.timezone.utc
NOT_PUBLISHED = "fhv_tripdata_2014-11 is not published: the FHV trip records start in 2015-01."


def test_run_once_for_january_2015_on_demo_data_fails_with_one_sentence(history):
    at = open_page("trigger")
    at.date_input(key="trigger_date").set_value(dt.date(2015, 1, 15)).run()
    at.radio(key="trigger_source").set_value("demo").run()
    at.button(key="trigger_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    store = Store(history.settings.db_path)
    try:
        run = next(r for r in store.runs(limit=100) if r["run_date"] == "2015-01-15")
        assert (run["trigger"], run["train_month"], run["val_month"]) == ("manual", "2014-11", "2014-12")
        assert store.transition(run["id"], State.PENDING, now=dt.datetime.now(UTC))  # as a claim does
        flow.execute(store, load_settings(), run["id"], await_policy=AwaitData().policy_for(run))
        done = store.get_run(run["id"])
    finally:
        store.close()
    assert (done["state"], done["error_task"]) == ("FAILED", "read_data")
    assert NOT_PUBLISHED in done["error"]
    page = texts(open_page("run_detail", id=run["id"]))
    assert "Failed" in page and NOT_PUBLISHED in page


def test_a_backfill_of_january_2015_on_demo_data_awaits_the_data(history):
    now = dt.datetime.now(UTC)
    store = Store(history.settings.db_path)
    try:
        settings = load_settings()
        plan = control.plan_backfill(store, settings, deployment=history.deployment, start=dt.date(2015, 1, 1),
                                     end=dt.date(2015, 2, 28), now=now)
        runs = control.backfill(store, settings, plan, now=now).runs
        assert len(runs) == 2
        run = store.get_run(runs[0]["id"])
        assert run["trigger"] == "backfill" and store.transition(run["id"], State.PENDING, now=now)
        flow.execute(store, settings, run["id"],
                     await_policy=AwaitData().policy_for(run))
        done = store.get_run(run["id"])
    finally:
        store.close()
    assert done["state"] == "AWAITING_RETRY" and "is not published: the FHV trip records start in 2015-01" in done["error"]
    assert from_db(done["next_attempt_at"]) > now
    page = texts(open_page("run_detail", id=done["id"]))
    assert "Awaiting Retry" in page and "not published" in page, page


def test_a_month_before_2015_is_never_asked_of_a_server(tmp_path):
    # a closed port: asking it would be a transient error, not this sentence
    settings = Settings(home=tmp_path, data_url="http://127.0.0.1:9/fhv_tripdata_{month}.parquet").ensure_dirs()
    with pytest.raises(NotPublishedError, match="fhv_tripdata_2014-12 is not published: the FHV trip records start"):
        data.fetch_month(settings, "2014-12")
