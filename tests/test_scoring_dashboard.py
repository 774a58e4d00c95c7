"""A scoring run in the dashboard: its page and its training run's link both ways, and the training pages
(the Overview's latest metrics) keep to training runs."""
from __future__ import annotations

import datetime as dt

import pytest
import streamlit as st

from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.states import State
from pipeline.scoring.job import FLOW_NAME as SCORING
from pipeline.store import Store
from tests.dashboard_seed import seed_history
from tests.test_dashboard import open_page, texts

UTC = dt.timezone.utc


@pytest.fixture
def history(tmp_path, monkeypatch):
    seeded = seed_history(tmp_path / "fhv")
    monkeypatch.setenv("FHV_HOME", str(seeded.settings.home))
    monkeypatch.setenv("FHV_DATA_URL", "demo:3000")
    store, now = Store(seeded.settings.db_path), dt.datetime.now(UTC)
    row = register(store, DeploymentSpec(name="monthly-scoring", flow=SCORING, trigger="monthly-training"), now)
    upstream = store.get_run(seeded.completed[-1])
    seeded.scoring = store.create_run(
        flow=SCORING, name="scoring-heron", state=State.COMPLETED, now=now, deployment_id=row["id"],
        trigger="completion", triggered_by=upstream["id"], run_date=upstream["run_date"], scheduled_time=now,
        started_at=now, ended_at=now + dt.timedelta(seconds=1),
        metrics={"rows_scored": 1000, "rmse": 11.2, "rows_read": 1040, "month": "2021-07"})
    seeded.upstream = upstream
    store.close()
    yield seeded
    st.cache_data.clear()
    st.cache_resource.clear()


def links(at) -> list[str]:
    return [element.proto.label for element in at.get("page_link")]


def test_a_triggered_run_and_its_training_run_link_to_each_other(history):
    scoring = open_page("run_detail", id=history.scoring)
    assert f"Triggered by the completion of {history.upstream['name']} (monthly-training)" in links(scoring)
    upstream = open_page("run_detail", id=history.upstream["id"])
    assert "Its completion triggered scoring-heron of monthly-scoring (Completed)" in links(upstream)


def test_a_scoring_run_is_not_the_overviews_latest_metrics(history):
    at = open_page("overview")
    card = [m.value for m in at.markdown if "train 2021-12 → val 2022-01" in m.value]  # the latest metrics' run
    assert len(card) == 1 and card[0].startswith(f"**{history.upstream['name']}** · ")
    assert "Validation RMSE" in texts(at)
