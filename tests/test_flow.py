"""The training flow end to end: real downloads from 127.0.0.1, real SQLite, real artifacts."""
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import Settings
from pipeline.training.demo import generate_month
from pipeline.training.flow import TASKS, run_now
from pipeline.orchestration.states import State
from tests.conftest import FakeClock
from tests.reference import CATEGORICAL, read_dataframe

ROOT = Path(__file__).resolve().parents[1]
ROWS = 3000


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture
def mirror(http_server, tmp_path):
    """Settings whose data come from a real HTTP server serving demo months."""
    template = http_server.url("/trip-data/fhv_tripdata_{month}.parquet")
    for month in ("2021-06", "2021-07"):
        http_server.route(f"/trip-data/fhv_tripdata_{month}.parquet", body=parquet_bytes(generate_month(month, ROWS)))
    return Settings(home=tmp_path / "home", data_url=template).ensure_dirs()


def test_a_run_downloads_trains_and_records_everything(mirror, store):
    result = run_now(store, mirror, date="2021-08-15", name="brave-owl", clock=FakeClock())
    run = store.get_run(result.run_id)
    assert run["state"] == "COMPLETED" and (run["train_month"], run["val_month"]) == ("2021-06", "2021-07")
    assert [t["task"] for t in store.task_runs(run["id"])] == list(TASKS)
    assert run["metrics"]["val_rmse"] ** 2 == pytest.approx(run["metrics"]["val_mse"])
    assert not run["synthetic"] and run["metrics"]["feature_count"] > 400


def test_the_saved_artifacts_reproduce_the_runs_predictions(mirror, store, http_server):
    result = run_now(store, mirror, date="2021-08-15", name="brave-owl", clock=FakeClock())
    files = {a["name"]: Path(a["path"]) for a in store.artifacts(result.run_id)}
    assert {p.name for p in files.values()} == {"dv-2021-08-15.b", "model-2021-08-15.bin"}
    dv, lr = (pickle.loads(files[k].read_bytes()) for k in ("vectorizer", "model"))
    cached = next(mirror.cache_dir.rglob("fhv_tripdata_2021-07.parquet"))
    frame = read_dataframe(cached)
    predictions = lr.predict(dv.transform(frame[CATEGORICAL].to_dict(orient="records")))
    mse = float(((frame.duration.to_numpy() - predictions) ** 2).mean())
    assert mse == pytest.approx(store.get_run(result.run_id)["metrics"]["val_mse"], rel=1e-9)


def test_an_unpublished_month_fails_the_run_with_a_plain_sentence(mirror, store, http_server):
    http_server.route("/trip-data/fhv_tripdata_2021-07.parquet", status=404)
    result = run_now(store, mirror, date="2021-08-15", name="brave-owl", clock=FakeClock())
    run = store.get_run(result.run_id)
    assert run["state"] == "FAILED" and run["error_task"] == "read_data"
    assert run["error"].startswith("fhv_tripdata_2021-07 is not published yet (TLC publishes with about two months' delay)")
    states = [(t["task"], t["state"]) for t in store.task_runs(run["id"])]
    assert states == [("read_data", "FAILED"), *((task, "NOT_RUN") for task in TASKS[1:])]


def test_a_server_error_is_retried_with_a_delay_then_succeeds(mirror, store, http_server):
    body = parquet_bytes(generate_month("2021-06", ROWS))
    http_server.route("/trip-data/fhv_tripdata_2021-06.parquet", body=body, fail_times=2)
    clock = FakeClock()
    result = run_now(store, mirror, date="2021-08-15", name="brave-owl", clock=clock)
    assert result.state is State.COMPLETED
    assert clock.sleeps == [5.0, 5.0]
    attempts = [(t["attempt"], t["state"]) for t in store.task_runs(result.run_id) if t["task"] == "read_data"]
    assert attempts == [(1, "FAILED"), (2, "FAILED"), (3, "COMPLETED")]


def test_a_corrupt_file_is_not_retried_and_leaves_no_cached_garbage(mirror, store, http_server):
    http_server.route("/trip-data/fhv_tripdata_2021-06.parquet", body=b"PAR1 this is not parquet")
    clock = FakeClock()
    result = run_now(store, mirror, date="2021-08-15", name="brave-owl", clock=clock)
    run = store.get_run(result.run_id)
    assert run["state"] == "FAILED" and clock.sleeps == []
    assert "fhv_tripdata_2021-06" in run["error"]
    assert not list(mirror.cache_dir.rglob("*2021-06*"))


def test_a_month_with_no_usable_trip_fails_naming_the_month(mirror, store, http_server):
    empty = generate_month("2021-06", ROWS).slice(0, 0)
    http_server.route("/trip-data/fhv_tripdata_2021-06.parquet", body=parquet_bytes(empty))
    result = run_now(store, mirror, date="2021-08-15", name="brave-owl", clock=FakeClock())
    run = store.get_run(result.run_id)
    assert run["state"] == "FAILED" and run["error_task"] == "read_data"
    assert "fhv_tripdata_2021-06" in run["error"] and "has no trips (0 rows)" in run["error"]
    assert not list(mirror.cache_dir.rglob("*2021-06*"))  # a zero-row file is never cached


def test_failed_runs_leave_the_history_intact(mirror, store, http_server):
    good = run_now(store, mirror, date="2021-08-15", name="first", clock=FakeClock())
    http_server.route("/trip-data/fhv_tripdata_2021-06.parquet", status=404)
    mirror_cache = next(mirror.cache_dir.rglob("fhv_tripdata_2021-06.parquet"))
    mirror_cache.unlink()
    bad = run_now(store, mirror, date="2021-08-15", name="second", clock=FakeClock())
    assert store.get_run(good.run_id)["state"] == "COMPLETED" and store.get_run(bad.run_id)["state"] == "FAILED"
    assert store.integrity_check() == "ok"


def cli(*args, home, data_url="demo:3000"):
    env = {**os.environ, "FHV_HOME": str(home), "FHV_DATA_URL": data_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_the_cli_run_prints_one_json_object_and_exits_zero(tmp_path):
    done = cli("run", "--date", "2021-03-15", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    expected = {"run_id", "state", "run_date", "train_month", "val_month", "train_rows", "val_rows", "feature_count",
                "train_mse", "val_mse", "train_rmse", "val_rmse", "artifacts", "synthetic"}
    assert expected <= set(payload)
    assert (payload["state"], payload["train_month"], payload["val_month"]) == ("COMPLETED", "2021-01", "2021-02")
    assert payload["synthetic"] is True and len(payload["artifacts"]) == 2


def test_the_cli_exits_non_zero_when_the_run_fails(tmp_path):
    done = cli("run", "--date", "2021-03-15", "--json", home=tmp_path, data_url=str(tmp_path))
    assert done.returncode == 1
    assert json.loads(done.stdout)["state"] == "FAILED"
    listed = json.loads(cli("runs", "ls", "--json", home=tmp_path).stdout)
    assert [r["state"] for r in listed] == ["FAILED"]
    assert listed[0]["error"].startswith("fhv_tripdata_2021-01 is not in the data folder yet: there is no file")


def test_the_cli_refuses_a_bad_date_with_a_sentence(tmp_path):
    done = cli("run", "--date", "2021-02-30", home=tmp_path)
    assert done.returncode == 2
    assert "The date '2021-02-30' is not a valid date" in done.stderr


def test_runs_show_lists_tasks_and_logs_of_a_run(tmp_path):
    run_id = json.loads(cli("run", "--date", "2021-03-15", "--json", home=tmp_path).stdout)["run_id"]
    shown = cli("runs", "show", run_id[:8], home=tmp_path)
    assert shown.returncode == 0
    for text in ("read_data", "run_model", "synthetic demo data", "Validation: MSE"):
        assert text in shown.stdout


def test_a_run_records_the_data_source_it_really_read(mirror, store):
    """A run enqueued by one process may execute in another with its own FHV_DATA_URL."""
    run_id = store.create_run(flow="fhv-duration-training", name="queued", state=State.PENDING,
                              now=FakeClock().now(), parameters={"date": "2021-08-15"},
                              data_source="demo", synthetic=True)
    from pipeline.training.flow import execute

    execute(store, mirror, run_id, clock=FakeClock())
    run = store.get_run(run_id)
    assert run["state"] == "COMPLETED"
    assert (run["data_source"], run["synthetic"]) == (mirror.data_url, 0)


def test_the_cli_refuses_a_run_date_that_would_validate_on_a_future_month(tmp_path):
    done = cli("run", "--date", "2099-01-15", home=tmp_path)
    assert done.returncode == 2
    assert "The run date 2099-01-15 would validate on 2098-12, a month in the future" in done.stderr
    assert json.loads(cli("runs", "ls", "--json", home=tmp_path).stdout) == []
