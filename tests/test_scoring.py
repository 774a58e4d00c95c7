"""The batch-scoring flow: the champion's predictions of the month before the run date, as the course's
week-4 steps make them, streamed batch by batch, recorded and written atomically."""
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.registry import flow_entry
from pipeline.orchestration.schedules import CronSchedule
from pipeline.scoring import zones
from pipeline.scoring.flow import TASKS, score_now
from pipeline.scoring.job import FLOW_NAME
from pipeline.store import Store
from pipeline.training import champion, demo, features, pickles
from pipeline.training.flow import run_now
from pipeline.training.job import FLOW_NAME as TRAINING_FLOW
from tests.conftest import FakeClock
from tests.reference_scoring import score as reference_score

ROOT = Path(__file__).resolve().parents[1]
ROWS = 4_000


def with_gaps(path):
    """The month with a few trips missing a timestamp or a zone value set apart, in row groups of 700 rows."""
    table = pq.read_table(path)
    dropoff = table.column("dropOff_datetime").to_pylist()
    for i in range(5, 40, 7):
        dropoff[i] = None
    table = table.set_column(table.schema.get_field_index("dropOff_datetime"), "dropOff_datetime",
                             pa.array(dropoff, table.schema.field("dropOff_datetime").type))
    pq.write_table(table, path, row_group_size=700)
    assert pq.ParquetFile(path).metadata.num_row_groups > 1
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A history with a champion trained on 2021-06 (validated on 2021-07), and the folder of months."""
    root = tmp_path_factory.mktemp("scoring")
    folder = root / "trips"
    for month in ("2021-06", "2021-07", "2021-08"):
        demo.write_month(folder / f"fhv_tripdata_{month}.parquet", month, ROWS, part_rows=1_000)
    with_gaps(folder / "fhv_tripdata_2021-08.parquet")
    settings = Settings(home=root / "home", data_url=str(folder)).ensure_dirs()
    store = Store(settings.db_path)
    assert run_now(store, settings, date="2021-08-15", name="trained", clock=FakeClock()).state.value == "COMPLETED"
    yield settings, store, folder
    store.close()


def test_the_predictions_equal_the_course_scoring_steps_batch_by_batch(trained, monkeypatch):
    settings, store, folder = trained
    monkeypatch.setattr(features, "BATCH_ROWS", 1_000)  # several batches: ride ids count across them
    result = score_now(store, settings, date="2021-09-15", name="scored", clock=FakeClock())
    run = store.get_run(result.run_id)
    assert run["state"] == "COMPLETED", run["error"]
    held = store.champion(TRAINING_FLOW)
    files = champion.artifact_files(store, held["id"])
    expected = reference_score(folder / "fhv_tripdata_2021-08.parquet", files["vectorizer"]["path"],
                               files["model"]["path"], 2021, 8, held["id"])
    got = pd.read_parquet(run["metrics"]["output"])
    assert list(got.columns) == list(expected.columns)
    assert got.ride_id.tolist() == expected.ride_id.tolist()
    assert (got.pickup_datetime == expected.pickup_datetime).all()
    for zone in ("PUlocationID", "DOlocationID"):
        assert got[zone].astype(str).tolist() == expected[zone].tolist()
    for column in ("actual_duration", "predicted_duration", "diff"):
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-9, atol=1e-9)
    assert set(got.model_version.astype(str)) == {held["id"]}
    rmse = float(np.sqrt((expected["diff"] ** 2).mean()))
    assert run["metrics"]["rmse"] == pytest.approx(rmse, rel=1e-9)
    assert run["metrics"]["rows_scored"] == len(expected) and run["metrics"]["rows_read"] == ROWS


def test_rows_left_out_are_counted_by_reason_and_said_in_the_log(trained):
    settings, store, folder = trained
    run = store.get_run(score_now(store, settings, date="2021-09-15", name="counted", clock=FakeClock()).run_id)
    frame = pd.read_parquet(folder / "fhv_tripdata_2021-08.parquet")
    minutes = (frame.dropOff_datetime - frame.pickup_datetime).dt.total_seconds() / 60
    left = run["metrics"]["rows_left_out"]
    assert left == {"missing_times": int(minutes.isna().sum()), "under_1_min": int((minutes < 1).sum()),
                    "over_60_min": int((minutes > 60).sum())}
    assert left["missing_times"] == 5 and sum(left.values()) + run["metrics"]["rows_scored"] == ROWS
    said = [line["message"] for line in store.logs(run["id"]) if line["task"] == "score_month"]
    assert any(f"{left['under_1_min']:,} under 1 minute, {left['over_60_min']:,} over 60 minutes" in m for m in said)


def test_the_run_records_its_predicted_and_actual_durations_by_minute_as_the_predictions_file_has_them(trained):
    settings, store, _ = trained
    run = store.get_run(score_now(store, settings, date="2021-09-15", name="binned", clock=FakeClock()).run_id)
    got = pd.read_parquet(run["metrics"]["output"])
    shown = run["metrics"]["distribution"]
    for column, key in (("predicted_duration", "predicted"), ("actual_duration", "actual")):
        minute = np.clip(np.floor(got[column]) - 1, 0, 59).astype(int)
        assert shown[key] == np.bincount(minute, minlength=60).tolist()
    assert len(json.dumps(shown)) < 1_000  # small: kept in the run's metrics


def test_the_run_records_the_champion_it_scored_with_and_its_checksums(trained):
    settings, store, _ = trained
    run = store.get_run(score_now(store, settings, date="2021-09-15", name="versioned", clock=FakeClock()).run_id)
    version, held = run["metrics"]["model_version"], store.champion(TRAINING_FLOW)
    assert (version["run_id"], version["name"], version["train_month"]) == (held["id"], held["name"], "2021-06")
    assert {name: f["sha256"] for name, f in version["files"].items()} == \
        {name: a["sha256"] for name, a in champion.artifact_files(store, held["id"]).items()}
    assert [t["task"] for t in store.task_runs(run["id"])] == list(TASKS)


def test_without_a_champion_the_run_fails_with_one_sentence(tmp_path, trained):
    _, _, folder = trained
    settings = Settings(home=tmp_path / "home", data_url=str(folder)).ensure_dirs()
    store = Store(settings.db_path)
    result = score_now(store, settings, date="2021-09-15", name="lonely", clock=FakeClock())
    run = store.get_run(result.run_id)
    assert run["state"] == "FAILED" and run["error_task"] == "load_champion"
    assert run["error"] == ("There is no champion model to score 2021-08 with: train one first (python -m pipeline "
                            "run); the first completed training run becomes the champion.")
    assert not (settings.home / "predictions").exists() or not list((settings.home / "predictions").iterdir())


@pytest.mark.parametrize("output, expected", [
    (None, "home/predictions/fhv_predictions_2021-08.parquet"),
    ("out", "out/fhv_predictions_2021-08.parquet"),
    ("out/{month}/scores.parquet", "out/2021-08/scores.parquet"),
])
def test_the_predictions_go_to_a_folder_or_a_month_template_through_a_temporary_name(trained, tmp_path, monkeypatch,
                                                                                     output, expected):
    settings, store, _ = trained
    monkeypatch.chdir(tmp_path)
    settings = Settings(home=tmp_path / "home", data_url=settings.data_url).ensure_dirs()
    run = store.get_run(score_now(store, settings, date="2021-09-15", output=output, name="placed",
                                  clock=FakeClock()).run_id)
    assert run["state"] == "COMPLETED", run["error"]
    assert run["metrics"]["output"] == str(tmp_path / expected)
    assert sorted(p.name for p in (tmp_path / expected).parent.iterdir()) == [(tmp_path / expected).name]


def test_a_month_not_over_is_refused_with_one_sentence(trained):
    settings, store, _ = trained
    with pytest.raises(Exception, match=r"would score 2025-12, a month not over yet \(today is 2025-12-31\)"):
        score_now(store, settings, date="2026-01-15", name="early", clock=FakeClock(FakeClock().moment.replace(
            year=2025, month=12, day=31, hour=12)))


def test_score_json_carries_the_output_rows_version_rmse_and_drift(trained, monkeypatch, capsys):
    settings, store, folder = trained
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_DATA_URL", str(folder))
    assert main(["score", "--date", "2021-09-15", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"].endswith("fhv_predictions_2021-08.parquet") and summary["rows_scored"] > 3_000
    assert summary["model_version"]["run_id"] == store.champion(TRAINING_FLOW)["id"] and summary["rmse"] > 1
    drift = summary["drift_vs_champion"]
    assert (drift["reference"], drift["current"]) == ("2021-06", "2021-08") and drift["pickup"]["psi"] >= 0


def test_a_deployment_schedules_the_scoring_flow(trained):
    settings, store, _ = trained
    clock = FakeClock(dt.datetime(2021, 9, 1, tzinfo=dt.timezone.utc))
    spec = DeploymentSpec(name="monthly-scoring", flow=FLOW_NAME, schedule=CronSchedule("0 9 16 * *", "UTC"),
                          parameters={"output": str(settings.home / "scheduled")})
    row = register(store, spec, clock.now(), settings=settings)
    upcoming = [r for r in store.runs(deployment="monthly-scoring", states=["SCHEDULED"], limit=5)]
    assert upcoming and {r["flow"] for r in upcoming} == {FLOW_NAME} and row["flow"] == FLOW_NAME
    run_id = upcoming[-1]["id"]
    store.transition(run_id, "PENDING", now=clock.now())
    result = flow_entry(FLOW_NAME).load()(store, settings, run_id, clock=clock, await_policy=None,
                                          heartbeat_every=60)
    assert result.state.value == "COMPLETED", result.error
    assert (settings.home / "scheduled" / "fhv_predictions_2021-08.parquet").exists()


def test_a_scoring_run_is_not_the_latest_metrics_of_training(trained):
    settings, store, _ = trained
    score_now(store, settings, date="2021-09-15", name="not-training", clock=FakeClock())
    assert {row["name"] for row in store.metric_history(TRAINING_FLOW)} == {"trained"}


def test_the_champions_coefficients_are_kept_and_a_damaged_copy_is_built_again(trained):
    settings, store, _ = trained
    folder = settings.home / "models" / "coefficients"
    first = store.get_run(score_now(store, settings, date="2021-09-15", name="first", clock=FakeClock()).run_id)
    (kept,) = folder.glob("*.npz")
    kept.write_bytes(b"not a numpy file")
    again = store.get_run(score_now(store, settings, date="2021-09-15", name="again", clock=FakeClock()).run_id)
    third = store.get_run(score_now(store, settings, date="2021-09-15", name="third", clock=FakeClock()).run_id)
    said = {run["name"]: " ".join(line["message"] for line in store.logs(run["id"]) if line["task"] == "load_champion")
            for run in (again, third)}
    assert "from its pickles" in said["again"] and "kept from an earlier run" in said["third"]
    assert first["metrics"]["rmse"] == again["metrics"]["rmse"] == third["metrics"]["rmse"]


def champion_of_its_own(tmp_path, folder) -> tuple[Settings, Store, str, dict]:
    """A history of its own whose champion is a fresh training run: its settings, store, run id and model artifact."""
    settings = Settings(home=tmp_path / "home", data_url=str(folder)).ensure_dirs()
    store = Store(settings.db_path)
    run_id = run_now(store, settings, date="2021-08-15", name="own", clock=FakeClock()).run_id
    return settings, store, run_id, next(a for a in store.artifacts(run_id) if a["kind"] == "model")


def failed_scoring(store, settings) -> dict:
    run = store.get_run(score_now(store, settings, date="2021-09-15", name="unloadable", clock=FakeClock()).run_id)
    assert run["state"] == "FAILED" and run["error_task"] == "load_champion"
    return run


def test_a_champion_whose_pickles_do_not_load_fails_the_run_with_one_sentence(tmp_path, trained):
    settings, store, _, model = champion_of_its_own(tmp_path, trained[2])
    store.conn.execute("UPDATE artifacts SET sha256 = ? WHERE id = ?", ("0" * 64, model["id"]))
    run = failed_scoring(store, settings)
    assert "is neither at" in run["error"] and "\n" not in run["error"]


def test_a_score_with_kept_coefficients_imports_neither_pandas_nor_scikit_learn(trained):
    settings, store, folder = trained
    score_now(store, settings, date="2021-09-15", name="warm", clock=FakeClock())  # keeps the coefficients
    code = ("import sys; from pipeline.cli import main; code = main(['score', '--date', '2021-09-15', '--json']); "
            "print(code, sorted(m for m in ('pandas', 'sklearn') if m in sys.modules))")
    env = {**os.environ, "FHV_HOME": str(settings.home), "FHV_DATA_URL": str(folder), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr[-2000:]


def test_the_coefficients_read_without_scikit_learn_are_exactly_those_it_unpickles(trained):
    settings, store, _ = trained
    files = champion.artifact_files(store, store.champion(TRAINING_FLOW)["id"])
    found = pickles.weights(pickles.cached(settings.cache_dir), {k: champion.artifact_bytes(store, files[k])
                                                                 for k in pickles.KINDS})
    assert found is not None, "the training run kept how this scikit-learn pickles"
    read = zones.from_weights(found.vocabulary, found.coef, found.intercept, "the champion")
    unpickled = zones.from_pickles(*champion.load_model(store, store.champion(TRAINING_FLOW)["id"]), "the champion")
    assert read.intercept == unpickled.intercept
    assert np.array_equal(read.pu, unpickled.pu) and np.array_equal(read.do, unpickled.do)


def test_a_first_score_of_a_version_reads_its_pickles_without_importing_scikit_learn(trained):
    settings, store, folder = trained
    warm = store.get_run(score_now(store, settings, date="2021-09-15", name="warm", clock=FakeClock()).run_id)
    for kept in (settings.home / "models" / "coefficients").glob("*.npz"):
        kept.unlink()
    code = ("import sys; from pipeline.cli import main; code = main(['score', '--date', '2021-09-15', '--json']); "
            "print(code, 'sklearn' in sys.modules)")
    env = {**os.environ, "FHV_HOME": str(settings.home), "FHV_DATA_URL": str(folder), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 False", done.stderr[-2000:]
    cold = json.loads("\n".join(done.stdout.splitlines()[:-1]))
    assert cold["rmse"] == warm["metrics"]["rmse"]
    assert "from its pickles" in " ".join(line["message"] for line in store.logs(cold["run_id"]))


def test_a_champion_whose_pickle_is_not_one_fails_the_run_even_when_read_without_scikit_learn(tmp_path, trained):
    settings, store, run_id, model = champion_of_its_own(tmp_path, trained[2])
    Path(model["path"]).write_bytes(b"not a pickle")  # its file and the history's checksum agree: no pickle though
    store.conn.execute("UPDATE artifacts SET sha256 = ?, size = ? WHERE id = ?",
                       (hashlib.sha256(b"not a pickle").hexdigest(), 12, model["id"]))
    assert f"The model of run {run_id[:8]} does not unpickle" in failed_scoring(store, settings)["error"]


def test_a_zone_that_is_no_taxi_zone_fails_the_run_naming_the_file_and_the_count(trained, tmp_path, monkeypatch):
    settings, store, folder = trained
    monkeypatch.setattr(features, "BATCH_ROWS", 1_000)
    table = pq.read_table(folder / "fhv_tripdata_2021-08.parquet")
    zones = table.column("DOlocationID").to_pylist()
    for i in (10, 2_500, 3_999):
        zones[i] = 300.0
    table = table.set_column(table.schema.get_field_index("DOlocationID"), "DOlocationID", pa.array(zones, pa.float64()))
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(table, bad / "fhv_tripdata_2021-08.parquet", row_group_size=700)
    result = score_now(store, settings, date="2021-09-15", data_url=str(bad), output=str(tmp_path / "out"),
                       name="bad-zones", clock=FakeClock())
    run = store.get_run(result.run_id)
    assert run["state"] == "FAILED" and run["error_task"] == "score_month"
    assert run["error"] == ("fhv_tripdata_2021-08: column 'DOlocationID' has 3 value(s) that are not a taxi zone "
                            "number from 1 to 265 (for example 300).")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
