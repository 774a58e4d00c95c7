"""The synthetic months: the real FHV schema, determinism, and statistics close to shared/FACTS.md."""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import root_mean_squared_error

from pipeline.training import demo

EXPECTED_SCHEMA = [
    ("dispatching_base_num", pa.string()),
    ("pickup_datetime", pa.timestamp("us")),
    ("dropOff_datetime", pa.timestamp("us")),
    ("PUlocationID", pa.float64()),
    ("DOlocationID", pa.float64()),
    ("SR_Flag", pa.int32()),
    ("Affiliated_base_number", pa.string()),
]


def minutes(table: pa.Table) -> np.ndarray:
    pickup = table["pickup_datetime"].to_numpy().astype("int64")
    dropoff = table["dropOff_datetime"].to_numpy().astype("int64")
    return (dropoff - pickup) / 60e6


def zones(table: pa.Table, column: str) -> np.ndarray:
    return table[column].to_numpy(zero_copy_only=False)


@pytest.fixture(scope="module")
def full_month() -> pa.Table:
    return demo.generate_month("2021-01")


@pytest.mark.parametrize("rows", [10, 537, 5_000])
def test_a_month_has_exactly_the_real_columns_in_order_with_their_types(rows):
    table = demo.generate_month("2021-01", rows)
    assert [(f.name, f.type) for f in table.schema] == EXPECTED_SCHEMA
    assert table.num_rows == rows


def test_the_same_month_and_size_give_the_same_file_twice(tmp_path):
    first = demo.write_month(tmp_path / "a.parquet", "2021-03", 2_000)
    second = demo.write_month(tmp_path / "b.parquet", "2021-03", 2_000)
    assert first.read_bytes() == second.read_bytes()
    assert pq.read_table(first).equals(demo.generate_month("2021-03", 2_000))


def test_different_months_give_different_trips():
    january, february = demo.generate_month("2021-01", 2_000), demo.generate_month("2021-02", 2_000)
    assert not np.array_equal(minutes(january), minutes(february))


def test_writing_a_month_leaves_only_the_finished_file(tmp_path):
    path = demo.write_month(tmp_path / "nested" / "fhv_tripdata_2021-01.parquet", "2021-01", 100)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_pickups_fall_on_many_days_of_their_month():
    pickups = demo.generate_month("2021-02", 5_000)["pickup_datetime"].to_pylist()
    assert {p.month for p in pickups} == {2}
    assert len({p.day for p in pickups}) == 28


def test_a_handful_of_trips_last_exactly_one_and_sixty_minutes():
    durations = minutes(demo.generate_month("2021-05", 1_000))
    assert (durations == 1.0).sum() >= 5
    assert (durations == 60.0).sum() >= 5


def test_text_columns_carry_the_quirks_of_the_real_files():
    table = demo.generate_month("2021-01", 50_000)
    bases = set(table["dispatching_base_num"].to_pylist())
    affiliated = table["Affiliated_base_number"]
    assert any(b.endswith(" ") for b in bases) and all(b.strip().startswith("B") for b in bases)
    assert affiliated.null_count > 0 and "" in affiliated.to_pylist()
    assert table["SR_Flag"].null_count == table.num_rows


def test_some_bases_round_their_clocks_to_the_minute():
    seconds = pc.second(demo.generate_month("2021-01", 5_000)["pickup_datetime"]).to_numpy()
    assert 0.1 < (seconds == 0).mean() < 0.5


def test_a_full_month_is_generated_and_written_within_seconds(tmp_path):
    demo.generate_month("2021-04", 1_000)  # warm up imports
    start = time.perf_counter()
    demo.write_month(tmp_path / "full.parquet", "2021-04")
    assert time.perf_counter() - start < 4.0  # about 0.7 s on the development machine


def test_a_full_month_has_the_size_and_missing_shares_of_january_2021(full_month):
    pu, do = zones(full_month, "PUlocationID"), zones(full_month, "DOlocationID")
    assert full_month.num_rows == demo.FULL_ROWS
    assert np.isnan(pu).mean() == pytest.approx(0.83, abs=0.01)
    assert np.isnan(do).mean() == pytest.approx(0.14, abs=0.01)
    assert pc.count_distinct(full_month["dispatching_base_num"]).as_py() == 537


def test_a_full_month_uses_almost_every_zone_but_never_a_few(full_month):
    pu, do = zones(full_month, "PUlocationID"), zones(full_month, "DOlocationID")
    pu_seen, do_seen = set(pu[~np.isnan(pu)].astype(int)), set(do[~np.isnan(do)].astype(int))
    assert 258 <= len(pu_seen) <= 263 and 259 <= len(do_seen) <= 264
    assert pu_seen <= set(range(1, 266)) and do_seen <= set(range(1, 266))
    assert not pu_seen & {103, 104, 105, 199}


def test_a_full_month_has_a_right_skewed_duration_with_a_few_absurd_trips(full_month):
    durations = minutes(full_month)
    kept = durations[(durations >= 1) & (durations <= 60)]
    assert 1 - len(kept) / len(durations) == pytest.approx(0.0384, abs=0.005)
    assert np.median(durations) == pytest.approx(13.4, abs=0.6)
    assert durations.mean() == pytest.approx(19.17, abs=1.0)
    assert np.median(kept) == pytest.approx(13.23, abs=0.6) and kept.std() == pytest.approx(11.55, abs=0.6)
    assert (durations > 60).mean() == pytest.approx(0.022, abs=0.006) and durations.max() > 1440


def test_a_location_only_linear_model_explains_a_sixth_of_the_variance(full_month):
    durations = minutes(full_month)
    keep = np.flatnonzero((durations >= 1) & (durations <= 60))
    sample = np.random.default_rng(0).choice(keep, 150_000, replace=False)
    pu = np.nan_to_num(zones(full_month, "PUlocationID")[sample], nan=-1).astype(int).astype(str)
    do = np.nan_to_num(zones(full_month, "DOlocationID")[sample], nan=-1).astype(int).astype(str)
    X = DictVectorizer().fit_transform([{"PUlocationID": p, "DOlocationID": d} for p, d in zip(pu, do)])
    y = durations[sample]
    rmse = root_mean_squared_error(y, LinearRegression().fit(X, y).predict(X))
    assert 10.3 <= rmse <= 12.0
    assert 0.12 <= 1 - rmse**2 / y.var() <= 0.25


def test_summer_months_run_a_little_longer_than_january():
    january, july = minutes(demo.generate_month("2021-01", 50_000)), minutes(demo.generate_month("2021-07", 50_000))
    assert 1.0 < np.median(july) / np.median(january) < 1.2
