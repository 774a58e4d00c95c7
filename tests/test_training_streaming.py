"""Months read batch by batch into sums, against the in-memory path and the course's steps.

Files with several row groups, read in batches that cross them; both months at once; progress
in the log; a bad file stopping the other reader; the flow end to end on a local folder.
"""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import Settings
from pipeline.errors import DataError
from pipeline.training import data, demo, features, helper, model
from pipeline.training.flow import run_now
from tests.conftest import FakeClock
from tests.reference import reference_run
from tests.test_parity import make_month

ROWS = 6_000


def with_row_groups(path, rows_per_group: int):
    """Rewrite ``path`` with row groups of ``rows_per_group`` rows."""
    pq.write_table(pq.read_table(path), path, row_group_size=rows_per_group)
    assert pq.ParquetFile(path).metadata.num_row_groups > 1
    return path


@pytest.fixture
def months(tmp_path, monkeypatch):
    """A training and a validation month of several row groups, read in batches that cross them."""
    monkeypatch.setattr(features, "BATCH_ROWS", 700)
    train = with_row_groups(make_month(tmp_path / "train.parquet", ROWS, 31, ("us", "ns")), 1_000)
    val = with_row_groups(make_month(tmp_path / "val.parquet", ROWS, 32, training=False), 1_500)
    return train, val


def in_memory(path):
    return features.prepare_features(features.read_trips(path), path.name)


def test_a_streamed_month_has_the_figures_of_the_in_memory_path(months):
    for path in months:
        streamed, whole = features.read_month(path, path.name).stats, in_memory(path).stats
        for key in ("raw_rows", "rows", "dropped", "median_duration", "pu_distinct", "do_distinct",
                    "pu_missing_share", "do_missing_share"):
            assert streamed[key] == whole[key], key
        for key in ("mean_duration", "mean_duration_raw", "dropped_share"):
            assert streamed[key] == pytest.approx(whole[key], rel=1e-12), key


def test_the_model_from_sums_equals_the_model_from_the_matrix_and_the_course(months):
    train_path, val_path = months
    train, val = data.read_months(list(months), ["train", "val"])
    trained = model.fit(model.design(train.summary))
    matrix_model = model.train(in_memory(train_path))
    assert trained.onehot.feature_names == matrix_model.onehot.feature_names
    np.testing.assert_allclose(trained.regression.coef_, matrix_model.regression.coef_, rtol=1e-9, atol=1e-9)
    assert trained.regression.intercept_ == pytest.approx(matrix_model.regression.intercept_, rel=1e-12)
    for month, path in ((train, train_path), (val, val_path)):
        ours, theirs = model.evaluate_summary(trained, month.summary), model.evaluate(matrix_model, in_memory(path))
        assert ours["rows"] == theirs["rows"] and ours["mse"] == pytest.approx(theirs["mse"], rel=1e-12)
    ref = reference_run(train_path, val_path)
    assert model.evaluate_summary(trained, val.summary)["mse"] == pytest.approx(ref["val_mse"], rel=1e-6)
    assert len(trained.onehot.feature_names) == ref["feature_count"]


def test_kept_trips_are_kept_in_memory_only_when_asked_for(months):
    streamed = features.read_month(months[0], "train", keep_trips=True)
    whole = in_memory(months[0])
    assert np.array_equal(streamed.trips.duration, whole.duration)
    assert np.array_equal(streamed.trips.pu, whole.pu) and np.array_equal(streamed.trips.do, whole.do)
    assert features.read_month(months[0], "train").trips is None


@pytest.mark.parametrize("unit, step_us", [("s", 1_000_000), ("ms", 1_000), ("us", 1_000)])
def test_the_median_is_exact_to_the_millisecond(tmp_path, monkeypatch, unit, step_us):
    monkeypatch.setattr(features, "BATCH_ROWS", 333)
    rng = np.random.default_rng(5)
    micros = rng.integers(50_000_000, 3_700_000_000, 2_001) // step_us * step_us
    start = np.datetime64("2021-01-01T00:00:00", "us")
    table = pa.table({
        "pickup_datetime": pa.array(np.full(len(micros), start)).cast(pa.timestamp(unit)),
        "dropOff_datetime": pa.array(start + micros.astype("timedelta64[us]")).cast(pa.timestamp(unit)),
        "PUlocationID": pa.nulls(len(micros), pa.float64()), "DOlocationID": pa.array(np.ones(len(micros))),
    })
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=500)
    streamed = features.read_month(tmp_path / "m.parquet", "m").summary
    assert streamed.median() == np.median(in_memory(tmp_path / "m.parquet").duration)


def test_reading_logs_row_groups_done_out_of_total(months, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.training.data"):
        data.read_months(list(months), ["fhv_tripdata_2021-01", "fhv_tripdata_2021-02"])
    lines = [r.getMessage() for r in caplog.records if "row groups read" in r.getMessage()]
    assert "fhv_tripdata_2021-01: 6 of 6 row groups read (6,000 of 6,000 rows)." in lines
    assert "fhv_tripdata_2021-02: 4 of 4 row groups read (6,000 of 6,000 rows)." in lines
    assert len(lines) <= 2 * 10


def test_bad_zones_anywhere_in_a_month_fail_with_the_count_of_the_whole_file(months):
    train_path, val_path = months
    table = pq.read_table(val_path)
    do = table["DOlocationID"].to_numpy(zero_copy_only=False).copy()
    do[[10, 2_000, 5_399]] = [0.5, 266.0, 1e12]
    table = table.set_column(table.schema.get_field_index("DOlocationID"), "DOlocationID", pa.array(do))
    pq.write_table(table, val_path, row_group_size=1_500)
    with pytest.raises(DataError) as caught:
        data.read_months([train_path, val_path], ["fhv_tripdata_2021-01", "fhv_tripdata_2021-02"])
    assert str(caught.value) == ("fhv_tripdata_2021-02: column 'DOlocationID' has 3 value(s) that are not a taxi "
                                 "zone number from 1 to 265 (for example 0.5).")


def test_a_file_that_breaks_midway_fails_naming_it(months):
    train_path, val_path = months
    val_path.write_bytes(val_path.read_bytes()[:3_000] + val_path.read_bytes()[-2_000:])
    with pytest.raises(DataError, match="fhv_tripdata_2021-02"):
        data.read_months([train_path, val_path], ["fhv_tripdata_2021-01", "fhv_tripdata_2021-02"])


def test_a_download_logs_its_progress_with_bytes_rate_and_time_left(tmp_path, http_server, caplog):
    body = (tmp_path / "m.parquet")
    demo.write_month(body, "2021-01", 2_000)
    http_server.route("/fhv_tripdata_2021-01.parquet", body=body.read_bytes())
    settings = Settings(home=tmp_path / "home", data_url=http_server.url("/fhv_tripdata_{month}.parquet"))
    with caplog.at_level(logging.INFO, logger="pipeline.training.data"):
        data.fetch_month(settings, "2021-01")
    last = [r.getMessage() for r in caplog.records][-1]
    size = body.stat().st_size / 1e6
    assert last.startswith(f"fhv_tripdata_2021-01: 100 % downloaded ({size:.1f} of {size:.1f} MB, ")
    assert last.endswith(" MB/s, done).")


def test_download_progress_is_logged_at_every_tenth(caplog):
    now = [0.0]
    report = data.DownloadLog("fhv_tripdata_2018-11", 200_000_000, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="pipeline.training.data"):
        for received in range(0, 200_000_001, 5_000_000):
            now[0] = received / 10e6  # 10 MB a second
            report.update(received)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[3] == "fhv_tripdata_2018-11: 40 % downloaded (80.0 of 200.0 MB, 10.0 MB/s, about 12 s left)."


# --- the flow, on a local folder ------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "trips"
    for month in ("2021-06", "2021-07"):
        demo.write_month(folder / f"fhv_tripdata_{month}.parquet", month, 4_000, part_rows=1_000)
    return folder


@pytest.mark.parametrize("solver", ["exact", "lsqr"])
def test_the_flow_reads_both_months_in_sums_and_logs_progress_in_the_run(folder, store, tmp_path, solver):
    settings = Settings(home=tmp_path / "home", data_url=str(folder), solver=solver).ensure_dirs()
    result = run_now(store, settings, date="2021-08-15", name="streamed", clock=FakeClock())
    run = store.get_run(result.run_id)
    assert run["state"] == "COMPLETED", run["error"]
    paths = [folder / f"fhv_tripdata_{month}.parquet" for month in ("2021-06", "2021-07")]
    ref = reference_run(*paths)  # the course's lsqr: ours to 1e-9; the closed form: the in-memory one's
    matrix_model = model.train(in_memory(paths[0]), solver)
    expected = {"train_mse": model.evaluate(matrix_model, in_memory(paths[0]))["mse"],
                "val_mse": model.evaluate(matrix_model, in_memory(paths[1]))["mse"]}
    for key in ("train_rows", "val_rows", "feature_count"):
        assert run["metrics"][key] == ref[key]
    for key in ("train_mse", "val_mse"):
        assert run["metrics"][key] == pytest.approx(expected[key], rel=1e-9)
        assert run["metrics"][key] == pytest.approx(ref[key], rel=1e-9 if solver == "lsqr" else 1e-5)
    progress = [entry for entry in store.logs(result.run_id) if "row groups read" in entry["message"]]
    assert {entry["task"] for entry in progress} == {"read_data"}
    assert any(entry["message"].endswith("4 of 4 row groups read (4,000 of 4,000 rows).") for entry in progress)


def test_bad_zones_fail_the_run_with_one_sentence(folder, store, tmp_path):
    path = folder / "fhv_tripdata_2021-06.parquet"
    table = pq.read_table(path)
    table = table.set_column(3, "PUlocationID", pa.array(np.full(table.num_rows, 3.5)))
    pq.write_table(table, path, row_group_size=1_000)
    settings = Settings(home=tmp_path / "home", data_url=str(folder)).ensure_dirs()
    run = store.get_run(run_now(store, settings, date="2021-08-15", name="bad", clock=FakeClock()).run_id)
    assert run["state"] == "FAILED" and run["error_task"] == "read_data"
    assert run["error"] == ("fhv_tripdata_2021-06: column 'PUlocationID' has 4,000 value(s) that are not a "
                            "taxi zone number from 1 to 265 (for example 3.5).")


def test_a_month_without_a_trip_of_1_to_60_minutes_fails_in_prepare_features(folder, store, tmp_path):
    path = folder / "fhv_tripdata_2021-07.parquet"
    table = pq.read_table(path)
    table = table.set_column(2, "dropOff_datetime", table["pickup_datetime"])
    pq.write_table(table, path)
    settings = Settings(home=tmp_path / "home", data_url=str(folder)).ensure_dirs()
    run = store.get_run(run_now(store, settings, date="2021-08-15", name="short", clock=FakeClock()).run_id)
    assert run["state"] == "FAILED" and run["error_task"] == "prepare_features"
    assert run["error"] == ("fhv_tripdata_2021-07 has no trips with a duration between 1 and 60 minutes "
                            "(4000 rows read).")


# --- the helper process that writes the pickles ----------------------------------------------------

@pytest.fixture
def trained(months):
    return model.fit(model.design(features.read_month(months[0], "train").summary))


def test_the_helper_process_writes_the_same_pickles_as_this_process(trained, tmp_path):
    here = model.save_artifacts(trained, tmp_path / "here", "2021-08-15")
    writer = helper.ArtifactWriter()
    writer.start(only_if_cold=False)
    try:
        there = model.save_artifacts(trained, tmp_path / "there", "2021-08-15", writer)
    finally:
        writer.close()
    assert [(a.name, a.path.name, a.sha256, a.size) for a in there] == [
        (a.name, a.path.name, a.sha256, a.size) for a in here]
    assert all(a.path.read_bytes() == b.path.read_bytes() for a, b in zip(here, there))


def test_a_helper_process_that_died_is_replaced_by_writing_here(trained, tmp_path, caplog):
    writer = helper.ArtifactWriter()
    writer.start(only_if_cold=False)
    writer.process.kill()
    writer.process.wait()
    with caplog.at_level(logging.WARNING, logger="pipeline.training.model"):
        written = model.save_artifacts(trained, tmp_path, "2021-08-15", writer)
    writer.close()
    assert [a.path.name for a in written] == ["dv-2021-08-15.b", "model-2021-08-15.bin"]
    assert "writing them here" in caplog.text


def test_the_helper_process_starts_only_for_months_big_enough(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(helper.ArtifactWriter, "start", lambda self, **options: started.append(options))
    month = tmp_path / "fhv_tripdata_2021-01.parquet"
    month.write_bytes(b"x" * 1_000)
    helper.ArtifactWriter().start_for([month, month])
    assert started == []
    monkeypatch.setattr(helper.ArtifactWriter, "WORTH_BYTES", 2_000)
    helper.ArtifactWriter().start_for([month, month])
    assert started == [{}]
