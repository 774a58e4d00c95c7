"""What a scoring run leaves and says: whether its champion saw the month it scores, where its predictions may go
(checked before the month is read), the file synced before its rename, and the file as the run's artifact."""
import hashlib
import json
import os

import pytest

from pipeline.cli import main
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.registry import flow_entry
from pipeline.scoring import predictions
from pipeline.scoring.flow import score_now
from pipeline.scoring.job import FLOW_NAME
from pipeline.training.job import FLOW_NAME as TRAINING_FLOW
from tests.conftest import FakeClock
from tests.test_dashboard import open_page, texts
from tests.test_scoring import trained  # noqa: F401  (the fixture: a champion trained on 2021-06, validated on 2021-07)


@pytest.fixture
def cli(trained, monkeypatch):  # noqa: F811
    settings, store, folder = trained
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_DATA_URL", str(folder))
    return trained


@pytest.mark.parametrize("date, month, saw, words", [
    ("2021-07-15", "2021-06", "train", "trained"), ("2021-08-15", "2021-07", "validation", "validated")])
def test_a_month_the_champion_was_trained_or_validated_on_is_said_so_in_its_metrics_log_and_score(
        cli, capsys, date, month, saw, words):
    _, store, _ = cli
    assert main(["score", "--date", date, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    held = store.champion(TRAINING_FLOW)
    sentence = (f"The champion {held['name']} ({held['id'][:8]}) was {words} on {month}, the month scored: its RMSE "
                "on the month is not an out-of-sample error.")
    assert summary["champion_saw_month"] == saw and store.get_run(summary["run_id"])["metrics"]["month"] == month
    assert [line["message"] for line in store.logs(summary["run_id"]) if line["message"].startswith("The champion ")] \
        == [sentence]
    assert main(["score", "--date", date]) == 0
    assert sentence in " ".join(capsys.readouterr().out.split())


def test_a_month_the_champion_never_saw_is_out_of_sample_and_nothing_is_said(cli, capsys):
    assert main(["score", "--date", "2021-09-15", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["champion_saw_month"] is None
    assert main(["score", "--date", "2021-09-15"]) == 0
    assert "out-of-sample" not in capsys.readouterr().out


def test_the_scoring_run_page_says_its_champion_saw_the_month(cli, capsys):
    assert main(["score", "--date", "2021-08-15", "--json"]) == 0
    shown = texts(open_page("run_detail", id=json.loads(capsys.readouterr().out)["run_id"]))
    assert "was validated on 2021-07, the month scored: its RMSE on the month is not an out-of-sample error." in shown
    assert "(not out-of-sample: the champion was validated on this month)" in shown


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_an_output_that_is_a_file_is_refused_before_the_month_is_read_with_one_sentence(cli, capsys, tmp_path, kind):
    _, store, _ = cli
    taken = tmp_path / "passwd"
    taken.write_text("root:x:0:0\n")
    before = store.count_run_list(flow=FLOW_NAME)
    output = taken if kind == "a file" else taken / "deeper"
    assert main(["score", "--date", "2021-09-15", "--output", str(output)]) != 0
    err = capsys.readouterr().err
    assert f"The predictions cannot go under {taken}, which is a file, not a folder." in " ".join(err.split())
    assert "Traceback" not in err and store.count_run_list(flow=FLOW_NAME) == before
    assert taken.read_text() == "root:x:0:0\n"


def test_a_folder_that_cannot_be_made_is_refused_naming_it(cli, capsys):
    assert main(["score", "--date", "2021-09-15", "--output", "/proc/x"]) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert "The folder /proc/x for the predictions cannot be made" in err and "Traceback" not in err


def test_a_deployment_whose_output_is_a_file_fails_its_run_before_reading_the_month(cli, tmp_path):
    settings, store, _ = cli
    taken = tmp_path / "taken"
    taken.write_text("mine")
    clock = FakeClock()
    register(store, DeploymentSpec(name="bad-output", flow=FLOW_NAME, parameters={"output": str(taken)}), clock.now())
    run_id = store.create_run(flow=FLOW_NAME, name="misplaced", state="PENDING", now=clock.now(),
                              parameters={"date": "2021-09-15", "output": str(taken)})
    result = flow_entry(FLOW_NAME).load()(store, settings, run_id, clock=clock, await_policy=None, heartbeat_every=60)
    run = store.get_run(run_id)
    assert result.state.value == "FAILED" and {t["state"] for t in store.task_runs(run_id)} == {"NOT_RUN"}
    assert run["error"] == f"The predictions cannot go under {taken}, which is a file, not a folder."


def test_an_output_ending_in_parquet_is_the_file_itself(cli, capsys, tmp_path):
    target = tmp_path / "scores" / "x.parquet"
    assert main(["score", "--date", "2021-09-15", "--output", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == str(target) and target.is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.parquet"]


def test_an_output_that_is_a_folder_named_parquet_is_refused(cli, capsys, tmp_path):
    (tmp_path / "x.parquet").mkdir()
    assert main(["score", "--date", "2021-09-15", "--output", str(tmp_path / "x.parquet")]) != 0
    assert f"The predictions file {tmp_path / 'x.parquet'} is a folder" in " ".join(capsys.readouterr().err.split())


def test_the_predictions_file_is_synced_before_its_rename_and_its_folder_after(trained, monkeypatch, tmp_path):
    settings, store, _ = trained
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(a))), replace(a, b))[1])
    run = store.get_run(score_now(store, settings, date="2021-09-15", output=str(tmp_path / "out"), name="synced",
                                  clock=FakeClock()).run_id)
    (renamed,) = [path for event, path in events if event == "replace" and path.endswith(".part")]
    assert events.index(("fsync", renamed)) < events.index(("replace", renamed))
    assert events[events.index(("replace", renamed)) + 1] == ("fsync", str(tmp_path / "out"))
    assert run["state"] == "COMPLETED"


def test_the_predictions_file_is_the_runs_artifact_with_its_checksum_and_size(cli, capsys):
    settings, store, _ = cli
    assert main(["score", "--date", "2021-09-15", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    data = open(summary["output"], "rb").read()
    (artifact,) = store.artifacts(summary["run_id"])
    assert (artifact["name"], artifact["kind"], artifact["path"]) == (
        "fhv_predictions_2021-08.parquet", "predictions", summary["output"])
    assert (artifact["sha256"], artifact["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    assert not artifact["stored"]  # the history keeps no copy of a month's predictions
    assert main(["runs", "show", summary["run_id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["artifacts"][0]["sha256"] == artifact["sha256"]
    shown = open_page("run_detail", id=summary["run_id"])
    assert "No artifacts" not in texts(shown) and "**fhv_predictions_2021-08.parquet** · predictions" in texts(shown)


def test_a_target_is_checked_without_leaving_a_file(tmp_path):
    target = tmp_path / "a" / "b" / "fhv_predictions_2021-08.parquet"
    predictions.check_target(target)
    assert target.parent.is_dir() and list(target.parent.iterdir()) == []
    assert predictions.output_path(str(tmp_path / "m-{month}.parquet"), tmp_path, "2021-08") == \
        tmp_path / "m-2021-08.parquet"
