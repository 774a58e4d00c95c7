"""The third flow (``tests/flows/echo.py``, registered through FHV_FLOWS as a user would) on every dashboard page,
signed in, next to training and scoring runs: each page shows echo's own fields, metric, tasks and deployments
through its entry's declarations, never training's."""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass

import pytest
import streamlit as st

from dashboard import access, sessions
from dashboard.labels import badge, nowrap
from pipeline import users
from pipeline.config import Settings
from pipeline.flows import load_flows
from pipeline.orchestration import registry
from pipeline.orchestration.states import State
from pipeline.scoring.job import FLOW_NAME as SCORING
from pipeline.store import Store
from tests.dashboard_seed import seed_history
from tests.test_dashboard import open_page, table, texts
from tests.test_scoring_dashboard import backfill_plan, choices, picked
from tests.test_third_flow import FHV_FLOWS, echo_history

UTC = dt.timezone.utc
ECHO = "echo"
PASSWORD = "correct horse battery staple"


@dataclass
class History:
    settings: Settings
    done: dict  # echo-daily's completed run (word "hello": 5 letters)
    refused: dict  # echo-refused's failed run (word "nope", at the flow's own gate)
    last: dict  # the echo run that started last (either of them, by the time of day the test runs)
    scheduled: list  # echo's scheduled runs
    training: str  # a completed training run


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """One history for the module: echo's deployments ran a day through the scheduler (``echo_history``), then
    training's seeded history and a scoring run were added; an operator is signed in."""
    home = tmp_path_factory.mktemp("third") / "fhv"
    settings = Settings(home=home, data_url="demo:3000").ensure_dirs()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_FLOWS", dict(registry._FLOWS))
        for name, value in (("FHV_FLOWS", FHV_FLOWS), ("FHV_HOME", str(home)), ("FHV_DATA_URL", "demo:3000")):
            patch.setenv(name, value)
        load_flows()
        store = Store(settings.db_path)
        try:
            _, runs = echo_history(store, settings, home.parent)  # first: its scheduler would run training's runs
            seeded = seed_history(home)
            store.create_run(flow=SCORING, name="scoring-heron", state=State.COMPLETED, now=dt.datetime.now(UTC),
                             run_date="2022-02-01", month="2022-01", metrics={"rows_scored": 1000, "rmse": 11.2})
            echoes = [r for r in store.runs(limit=1000) if r["flow"] == ECHO]
        finally:
            store.close()
        users.add(users.users_path(home), "olive", PASSWORD, "operator")
        token = sessions.issue(home, "olive", time.time())
        patch.setattr(access, "token", lambda: token)
        started = [r for r in echoes if r["started_at"]]
        yield History(settings, runs["echo-daily"], runs["echo-refused"], max(started, key=lambda r: r["started_at"]),
                      [r for r in echoes if r["state"] == "SCHEDULED"], seeded.completed[-1])
    st.cache_data.clear()
    st.cache_resource.clear()


def names(frame) -> list[str]:
    return [url.split("name=")[1] for url in frame["Run"]]


def row_of(frame, run: dict) -> dict:
    return next(row for _, row in frame.iterrows() if row["Run"].endswith(f"name={run['name']}"))


def charts(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_the_overview_shows_its_last_run_next_run_headline_metric_and_fields(history):
    assert choices(open_page("overview"))["Echo"] == f"flow={ECHO}"  # a choice of the picker, as any flow
    at = open_page("overview", flow=ECHO)
    shown = texts(at)
    assert picked(at) == "Echo" and at.query_params["flow"] == ECHO
    last_word = history.last["word"]
    assert f"**{history.last['name']}** · " in shown and nowrap(f"Word {last_word}") in shown  # its last run
    first = min(history.scheduled, key=lambda r: r["scheduled_time"])
    assert f"**{first['name']}** · " in shown  # its next run
    assert ":gray[Letters]  \n### 5" in shown and f"**{history.done['name']}** · " in shown  # its latest results
    assert nowrap("Word hello") in shown
    for state, count in (("COMPLETED", 1), ("FAILED", 1), ("SCHEDULED", len(history.scheduled))):
        assert f"{badge(state)} **{count}**](/runs?state={state}&flow={ECHO})" in shown
    assert "Validation RMSE" not in shown and "steady-run" not in shown
    assert "Train month" not in shown and nowrap("Train month") not in shown


def test_the_runs_list_of_echo_has_its_word_column_and_letters_and_all_flows_lists_its_runs_too(history):
    at = open_page("runs", flow=ECHO)
    assert picked(at) == "Echo"
    echo = table(at, "Reason")
    assert {"Letters", "Word"} <= set(echo.columns) and "Validation RMSE" not in echo.columns
    assert set(names(echo)) == {r["name"] for r in (history.done, history.refused, *history.scheduled)}
    done, refused = row_of(echo, history.done), row_of(echo, history.refused)
    assert (done["Letters"], done["Word"], refused["Letters"], refused["Word"]) == ("5", "hello", "", "nope")
    assert refused["Reason"] == "shout: Echo refuses the word 'nope'."
    at.query_params["flow"] = "all"  # as the link "All flows" opens it (Overview, where AppTest starts, has none)
    every = table(at.run(), "Reason")
    assert not at.exception and {"Echo", "Monthly training", "Monthly batch scoring"} <= set(every["Flow"])
    done = row_of(every, history.done)
    assert (done["Flow"], done["Result"], done["Covers"]) == ("Echo", "Letters 5", "Word hello")
    assert row_of(every, history.refused)["Covers"] == "Word nope"


def test_an_echo_runs_page_shows_its_results_fields_and_tasks(history):
    at = open_page("run_detail", id=history.done["id"])
    shown = texts(at)
    assert at.title[0].value == history.done["name"]
    for line in (":gray[Flow]  \n### Echo", ":gray[Word]  \n### hello", ":gray[Letters]  \n### 5", "| Letters | 5 |"):
        assert line in shown
    (gantt,) = [chart for chart in charts(at) if any(t.get("orientation") == "h" for t in chart["data"])]
    assert sorted(y for trace in gantt["data"] for y in trace["y"]) == ["count", "shout"]
    assert "Validation RMSE" not in shown and "Train month" not in shown


def test_a_refused_echo_runs_page_shows_its_failure_in_its_task_and_its_logs(history):
    at = open_page("run_detail", id=history.refused["id"])
    assert "**Failed** in `shout`: Echo refuses the word 'nope'." in [e.value for e in at.error]
    assert ":gray[Word]  \n### nope" in texts(at) and "No metrics: the run did not complete." in texts(at)
    logs = at.table[0].value
    assert list(logs["Task"]) == ["shout"] and list(logs["Message"]) == ["Echo refuses the word 'nope'."]
    (gantt,) = [chart for chart in charts(at) if any(t.get("orientation") == "h" for t in chart["data"])]
    assert {trace["name"]: trace["y"] for trace in gantt["data"]} == {"Failed": ["shout"], "Not run": ["count"]}


def test_the_trends_page_draws_letters_one_point_per_word(history):
    at = open_page("trends", flow=ECHO)
    assert picked(at) == "Echo"
    points = table(at, "covers")
    assert list(points.columns) == ["run_date", "covers", "name", "runs", "letters"]
    assert (list(points["name"]), list(points["covers"]), list(points["letters"])) == (
        [history.done["name"]], ["Word hello"], [5.0])
    assert "One row per word: its latest completed run" in texts(at)
    (chart,) = charts(at)
    assert [trace["name"] for trace in chart["data"]] == ["Letters"]
    assert "Letters %{y:d}<br>" in chart["data"][0]["hovertemplate"]  # in its declared format
    assert chart["layout"]["xaxis"]["title"]["text"] == "Run date"  # one point per word, placed at its run date


def test_upcoming_shows_its_deployments_and_their_scheduled_runs_with_their_words(history):
    at = open_page("upcoming")
    shown = texts(at)
    assert "### echo-daily &nbsp; :green-badge[Active]" in shown and "parameters `{'word': 'nope'}`" in shown
    waiting = [d.value for d in at.dataframe if "Why it waits" in d.value.columns]
    listed = {name: covers for frame in waiting for name, covers in zip(names(frame), frame["Covers"])}
    for run in history.scheduled:
        assert listed[run["name"]] == f"{run['run_date']}: Word {run['word']}"


def test_the_models_page_lists_training_versions_only_with_echo_runs_in_the_history(history):
    at = open_page("models")
    versions = next(d.value for d in at.dataframe if "val_rmse" in d.value.columns)
    assert history.training[:8] in set(versions["id"])
    assert not {history.done["name"], history.refused["name"]} & set(versions["name"])


def test_the_backfill_preview_says_which_word_each_run_of_an_echo_deployment_will_echo(history):
    plan = backfill_plan(ECHO, "echo-refused", dt.date(2026, 1, 1), dt.date(2026, 1, 3))
    assert plan.to_dict("list") == {"Run date": ["2026-01-01", "2026-01-02", "2026-01-03"], "Word": ["nope"] * 3}


def test_the_trigger_page_enqueues_a_run_of_an_echo_deployment_with_its_word(history):
    at = open_page("trigger", flow=ECHO)
    assert "Signed in as **olive** (operator)" in texts(at)
    assert at.selectbox(key="trigger_deployment").options == ["echo-daily", "echo-refused"]
    at.selectbox(key="trigger_deployment").set_value("echo-refused")
    at.date_input(key="trigger_date").set_value(dt.date(2026, 1, 5)).run()
    assert any(c.value.startswith("It covers Word nope.") for c in at.caption)  # the deployment's word
    at.button(key="trigger_run").click().run()
    assert not at.exception and at.toast and at.toast[0].value.endswith("for run date 2026-01-05 (Echo, Word nope).")
    store = Store(history.settings.db_path, readonly=True)
    try:
        (made,) = [r for r in store.runs(deployment="echo-refused", limit=100) if r["run_date"] == "2026-01-05"]
    finally:
        store.close()
    assert (made["flow"], made["state"], made["trigger"], made["word"]) == (ECHO, "SCHEDULED", "manual", "nope")
