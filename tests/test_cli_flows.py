"""The command line over two flows: ``runs ls`` filters by flow and shows each flow's own fields and headline,
the JSON of ``runs ls`` and ``runs show`` names the flow and the deployment and carries a flow's results only
when its run has them, ``score --json`` gives a failed run's month, ``trigger`` says what any flow's run covers
and ``deployment ls`` names each deployment's flow."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from pipeline.cli import main
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.states import State
from pipeline.scoring.job import FLOW_NAME as SCORING
from pipeline.training.job import FLOW_NAME as TRAINING

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def home(settings, store, monkeypatch):
    """A history with a completed training run (its champion decision recorded), and a completed and a failed
    scoring run of the deployment ``monthly-scoring``."""
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_DATA_URL", "demo:3000")
    scoring = register(store, DeploymentSpec(name="monthly-scoring", flow=SCORING, trigger="monthly-training"),
                       NOW)["id"]
    ended = {"state": State.COMPLETED, "started_at": NOW, "ended_at": NOW + dt.timedelta(seconds=5),
             "data_source": "demo:3000", "synthetic": True}
    ids = {"training": store.create_run(
        flow=TRAINING, name="train-owl", now=NOW, run_date="2021-08-15", train_month="2021-06", val_month="2021-07",
        metrics={"val_rmse": 7.5, "train_rmse": 7.1, "promotion": {"decision": "first", "reason": "The first."}},
        **ended)}
    ids["scoring"] = store.create_run(flow=SCORING, name="score-heron", now=NOW + dt.timedelta(minutes=1),
                                      run_date="2021-08-15", month="2021-07", deployment_id=scoring,
                                      metrics={"rmse": 6.25, "rows_scored": 1000}, **ended)
    ids["failed"] = store.create_run(flow=SCORING, name="score-wren", now=NOW + dt.timedelta(minutes=2),
                                     run_date="2021-09-15", month="2021-08", deployment_id=scoring,
                                     **ended | {"state": State.FAILED}, error="There is no champion model.")
    return ids


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def header(text: str) -> str:
    """The column titles of the table rich printed: its first line drawn with heavy bars."""
    return next(line for line in text.splitlines() if line.startswith("┃"))


def test_runs_ls_of_one_flow_shows_its_runs_with_its_own_fields_and_headline(home, capsys):
    code, out, _ = cli(capsys, "runs", "ls", "--flow", SCORING)
    titles = [cell.strip() for cell in header(out).strip("┃ ").split("┃")]
    assert code == 0 and titles == ["Name", "Id", "State", "Run date", "Scored month", "Started / due", "Duration",
                                    "Champion's RMSE on the month"]
    assert "score-heron" in out and "score-wren" in out and "train-owl" not in out
    assert "2021-07" in out and "6.2500" in out


def test_runs_ls_of_every_flow_names_each_runs_flow_what_it_covers_and_its_labelled_result(home, capsys):
    code, out, _ = cli(capsys, "runs", "ls")
    titles = [cell.strip() for cell in header(out).strip("┃ ").split("┃")]
    assert code == 0 and titles == ["Name", "Id", "Flow", "State", "Run date", "Covers", "Started / due", "Duration",
                                    "Result"]
    flat = " ".join(out.split())
    assert "Validation RMSE 7.5000" in flat and "Scored month 2021-07" in flat and TRAINING in flat


def test_runs_ls_of_an_unknown_flow_is_one_sentence_listing_the_flows(home, capsys):
    code, out, err = cli(capsys, "runs", "ls", "--flow", "fhv-nope")
    assert (code, out) == (2, "")
    assert err.startswith("error: The flow 'fhv-nope' is not registered") and f"'{SCORING}', '{TRAINING}'" in err


def test_runs_ls_json_names_each_runs_flow_deployment_and_fields(home, capsys):
    listed = json.loads(cli(capsys, "runs", "ls", "--flow", SCORING, "--json")[1])
    assert [(r["name"], r["flow"], r["deployment"], r["fields"]["month"]) for r in listed] == \
        [("score-wren", SCORING, "monthly-scoring", "2021-08"), ("score-heron", SCORING, "monthly-scoring", "2021-07")]


def test_runs_show_json_carries_a_flows_results_only_when_its_run_has_them(home, capsys):
    scoring = json.loads(cli(capsys, "runs", "show", home["scoring"], "--json")[1])
    training = json.loads(cli(capsys, "runs", "show", home["training"], "--json")[1])
    assert (scoring["flow"], scoring["deployment"], scoring["fields"]) == \
        (SCORING, "monthly-scoring", {"month": "2021-07", "data_source": "demo:3000", "synthetic": True})
    assert not {"data", "drift", "warnings", "promotion"} & set(scoring)
    assert (training["flow"], training["deployment"], training["promotion"]["decision"]) == (TRAINING, None, "first")
    assert not {"data", "drift", "warnings"} & set(training)


def test_score_json_of_a_failed_run_gives_the_month_it_was_to_score(settings, monkeypatch, capsys):
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_DATA_URL", "demo:3000")
    code, out, _ = cli(capsys, "score", "--date", "2021-09-15", "--json")
    summary = json.loads(out)
    assert (code, summary["state"], summary["month"]) == (1, "FAILED", "2021-08")


def test_trigger_of_a_scoring_deployment_says_which_month_it_scores(home, capsys):
    code, out, _ = cli(capsys, "trigger", "--deployment", "monthly-scoring", "--date", "2021-10-15")
    assert code == 0 and "for 2021-10-15: Scored month 2021-09." in " ".join(out.split())


def test_trigger_of_a_training_deployment_says_which_months_it_covers(home, capsys):
    code, out, _ = cli(capsys, "trigger", "--date", "2021-10-15")
    assert code == 0 and "for 2021-10-15: Train month 2021-08 · Validation month 2021-09." in " ".join(out.split())


def test_deployment_ls_names_each_deployments_flow(home, capsys):
    code, out, _ = cli(capsys, "deployment", "ls")
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    assert code == 0 and "Flow" in header(out)
    assert rows == {"monthly-scoring": SCORING, "monthly-training": TRAINING}
