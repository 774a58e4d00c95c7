"""Two flows in the dashboard: a flow picker on Overview, Runs, Trends and Trigger (kept in the address and
across pages) that every listing, trend and "latest" follows; a scoring run's page with its own summary; its
training run's link both ways; and the one presenter of a run's results that the page and ``runs show`` share."""
from __future__ import annotations

import datetime as dt
import json

import pytest
import streamlit as st

from dashboard.labels import nowrap
from pipeline.cli import main
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.schedules import CronSchedule
from pipeline.orchestration.states import State
from pipeline.scoring.job import FLOW_NAME as SCORING
from pipeline.store import Store
from pipeline.training.job import FLOW_NAME as TRAINING
from tests.dashboard_seed import seed_history
from tests.test_dashboard import open_page, table, texts

UTC = dt.timezone.utc
LEFT_OUT = {"missing_times": 5, "under_1_min": 20, "over_60_min": 15}


@pytest.fixture
def history(tmp_path, monkeypatch):
    seeded = seed_history(tmp_path / "fhv")
    monkeypatch.setenv("FHV_HOME", str(seeded.settings.home))
    monkeypatch.setenv("FHV_DATA_URL", "demo:3000")
    store, now = Store(seeded.settings.db_path), dt.datetime.now(UTC)
    row = register(store, DeploymentSpec(name="monthly-scoring", flow=SCORING, trigger="monthly-training"), now)
    upstream = store.get_run(seeded.completed[-1])
    version = {"run_id": upstream["id"], "name": upstream["name"], "train_month": upstream["train_month"]}
    seeded.scoring = store.create_run(  # on synthetic data: it must not count among the training runs'
        flow=SCORING, name="scoring-heron", state=State.COMPLETED, now=now, deployment_id=row["id"],
        trigger="completion", triggered_by=upstream["id"], run_date=upstream["run_date"], scheduled_time=now,
        started_at=now, ended_at=now + dt.timedelta(seconds=1), month="2021-07", synthetic=True,
        data_source="demo:3000",
        metrics={"rows_scored": 1000, "rmse": 11.2, "rows_read": 1040, "month": "2021-07", "rows_left_out": LEFT_OUT,
                 "mean_predicted": 15.1, "mean_actual": 16.2, "model_version": version, "synthetic": True,
                 "distribution": {"predicted": [0, 300, 700] + [0] * 57, "actual": [100, 400, 500] + [0] * 57}})
    seeded.upstream = upstream
    store.close()
    yield seeded
    st.cache_data.clear()
    st.cache_resource.clear()


def links(at) -> list[str]:
    return [element.proto.label for element in at.get("page_link")]


def run_names(frame) -> set[str]:
    return {url.split("name=")[1] for url in frame["Run"]}


def test_a_triggered_run_and_its_training_run_link_to_each_other(history):
    scoring = open_page("run_detail", id=history.scoring)
    assert f"Triggered by the completion of {history.upstream['name']} (monthly-training)" in links(scoring)
    upstream = open_page("run_detail", id=history.upstream["id"])
    assert "Its completion triggered scoring-heron of monthly-scoring (Completed)" in links(upstream)


def picked(at) -> str:
    """The flow a page shows (its picker's badge), and the other choices are links to the page with ``?flow=``."""
    (line,) = [m.value for m in at.markdown if m.value.startswith("Flow: ")]
    return line.split(":blue-badge[")[1].rstrip("]")


def choices(at) -> dict[str, str]:
    return {link.proto.label: link.proto.query_string for link in at.get("page_link")
            if link.proto.query_string.startswith("flow=")}


def test_the_overview_shows_the_first_flow_with_runs_and_a_scoring_run_is_not_its_latest_results(history):
    at = open_page("overview")
    assert picked(at) == "Monthly training" and at.query_params["flow"] == TRAINING
    assert choices(at) == {"Monthly batch scoring": f"flow={SCORING}"}
    card = [m.value for m in at.markdown if nowrap("Train month 2021-12 · Validation month 2022-01") in m.value]
    assert len(card) == 1 and f"\n\n**{history.upstream['name']}** · " in card[0]  # under its figures
    assert ":gray[Validation RMSE]" in texts(at) and "scoring-heron" not in texts(at)
    at = open_page("overview", flow=SCORING)
    assert picked(at) == "Monthly batch scoring" and choices(at) == {"Monthly training": f"flow={TRAINING}"}
    assert "**scoring-heron** · " in texts(at) and ":gray[Champion's RMSE on the month]  \n### 11.2000" in texts(at)
    assert f"/runs?state=COMPLETED&flow={SCORING}" in texts(at)


def test_the_synthetic_counter_counts_the_runs_of_the_flow_shown(history):
    assert "**3 of 12** completed runs of Monthly training had synthetic data" in texts(open_page("overview"))
    at = open_page("overview", flow=SCORING)
    assert "**1 of 1** completed runs of Monthly batch scoring had synthetic data" in texts(at)


def test_the_runs_list_shows_the_flow_picked_or_every_flow(history):
    at = open_page("runs")
    assert "scoring-heron" not in run_names(table(at, "Reason")) and "Validation RMSE" in table(at, "Reason")
    assert set(choices(at)) == {"All flows", "Monthly batch scoring"}
    scoring = table(open_page("runs", flow=SCORING), "Reason")
    assert run_names(scoring) == {"scoring-heron"} and list(scoring["Champion's RMSE on the month"]) == ["11.2000"]
    at.query_params["flow"] = "all"  # as the link "All flows" opens it (Overview, where AppTest starts, has none)
    every = table(at.run(), "Reason")
    assert {"scoring-heron", history.upstream["name"]} <= run_names(every)
    assert {"Monthly training", "Monthly batch scoring"} <= set(every["Flow"])
    assert "Champion's RMSE on the month 11.2000" in set(every["Result"])


def test_the_flow_picked_holds_across_pages_and_comes_from_the_address(history):
    at = open_page("overview", flow=SCORING)
    at.query_params.clear()
    at.switch_page("app_pages/trends.py").run()
    assert not at.exception and picked(at) == "Monthly batch scoring" and at.query_params["flow"] == SCORING
    at.switch_page("app_pages/runs.py").run()
    assert picked(at) == "Monthly batch scoring"
    assert picked(open_page("trends", flow=TRAINING)) == "Monthly training"


def test_the_trends_page_draws_the_flow_picked(history):
    at = open_page("trends")
    assert "val_rmse" in table(at, "covers").columns and len(table(at, "covers")) == 12
    at = open_page("trends", flow=SCORING)
    scoring = table(at, "covers")
    assert list(scoring["name"]) == ["scoring-heron"] and list(scoring["rmse"]) == [11.2]
    assert "val_rmse" not in scoring.columns and "Data checks" not in [s.value for s in at.subheader]


def test_a_scoring_runs_page_shows_its_own_summary_and_distributions(history):
    at = open_page("run_detail", id=history.scoring)
    shown = texts(at)
    for line in ("| Trips scored | 1,000 of 1,040 read |", "| Champion's RMSE on the month | 11.2000 min |",
                 "| Left out | 5 missing a timestamp · 20 under 1 minute · 15 over 60 minutes |",
                 "| Scored month | 2021-07 |", ":gray[Champion's RMSE on the month]  \n### 11.2000"):
        assert line in shown
    assert f"Model: {history.upstream['name']} ({history.upstream['id'][:8]}), trained on 2021-12" in links(at)
    chart = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if "predicted" in c.proto.spec))
    assert [trace["name"] for trace in chart["data"]] == ["predicted", "actual"]
    assert "Validation RMSE" not in shown and "Data checks" not in shown  # the training flow's own parts


def test_runs_show_prints_the_results_the_run_page_shows(history, capsys):
    for run_id, lines in ((history.scoring, ("Trips scored", "1,000 of 1,040 read", "15 over 60 minutes")),
                          (history.upstream["id"], ("Validation RMSE", "Training trips"))):
        assert main(["runs", "show", run_id]) == 0
        printed = capsys.readouterr().out
        assert "Results" in printed and all(line in printed for line in lines)
        page = texts(open_page("run_detail", id=run_id))
        assert all(line in page for line in lines)


def test_the_trigger_page_enqueues_a_run_of_the_flow_picked(history):
    at = open_page("trigger", flow=SCORING)
    assert at.selectbox(key="trigger_deployment").options == ["monthly-scoring"]
    at.date_input(key="trigger_date").set_value(dt.date(2022, 3, 1)).run()
    assert any(c.value.startswith("It covers Scored month 2022-02.") for c in at.caption)
    at.button(key="trigger_run").click().run()
    assert not at.exception and at.toast and "(Monthly batch scoring" in at.toast[0].value
    store = Store(history.settings.db_path, readonly=True)
    try:
        made = store.latest_run(now=dt.datetime.now(UTC))
    finally:
        store.close()
    assert (made["flow"], made["run_date"], made["deployment"]) == (SCORING, "2022-03-01", "monthly-scoring")


def backfill_plan(flow: str, deployment: str, start: dt.date, end: dt.date):
    """The Trigger page's dry run of a backfill of ``deployment`` (of ``flow``): its table of planned runs."""
    at = open_page("trigger", flow=flow)
    at.selectbox(key="backfill_deployment").set_value(deployment)
    at.date_input(key="backfill_start").set_value(start)
    at.date_input(key="backfill_end").set_value(end).run()
    at.button(key="backfill_preview").click().run()
    assert not at.exception, at.exception[0].value
    return next(d.value for d in at.dataframe if "Run date" in d.value.columns)


def test_the_backfill_preview_says_what_each_run_of_the_flow_picked_covers(history):
    store = Store(history.settings.db_path)
    register(store, DeploymentSpec(name="scoring-on-the-1st", flow=SCORING, schedule=CronSchedule("0 9 1 * *")),
             dt.datetime.now(UTC))
    store.close()
    plan = backfill_plan(SCORING, "scoring-on-the-1st", dt.date(2022, 1, 1), dt.date(2022, 3, 31))
    assert list(plan.columns) == ["Run date", "Scored month"] and list(plan["Run date"]) == [
        "2022-01-01", "2022-02-01", "2022-03-01"]
    assert list(plan["Scored month"]) == ["2021-12", "2022-01", "2022-02"]
