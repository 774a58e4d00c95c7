"""Reading a month and preparing features: durations, the 1..60 filter, zones, clear errors."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import DataError
from pipeline.training.features import prepare_features, read_trips

T0 = np.datetime64("2021-01-01T08:00:00", "us")


def trips(seconds, pu=None, do=None, unit="us"):
    """A table of trips starting at T0 lasting ``seconds`` (None = null dropoff)."""
    n = len(seconds)
    ends = [None if s is None else T0 + np.timedelta64(round(s * 1e6), "us") for s in seconds]
    return pa.table({
        "pickup_datetime": pa.array([T0] * n, pa.timestamp("us")).cast(pa.timestamp(unit)),
        "dropOff_datetime": pa.array(ends, pa.timestamp("us")).cast(pa.timestamp(unit), safe=False),
        "PUlocationID": pa.array(pu if pu is not None else [1.0] * n, pa.float64()),
        "DOlocationID": pa.array(do if do is not None else [2.0] * n, pa.float64()),
    })


def test_durations_of_exactly_1_and_60_minutes_are_kept_and_just_outside_dropped():
    features = prepare_features(trips([59.999999, 60, 3600, 3600.000001, 30, 7200]), "jan")
    assert features.duration.tolist() == [1.0, 60.0]


def test_fractional_seconds_count_like_total_seconds():
    features = prepare_features(trips([90.5, 61.000001]), "jan")
    assert features.duration.tolist() == [90.5 / 60, 61.000001 / 60]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_every_timestamp_unit_gives_minutes(unit):
    assert prepare_features(trips([120], unit=unit), "jan").duration.tolist() == [2.0]


def test_a_trip_with_a_null_timestamp_is_dropped():
    features = prepare_features(trips([None, 300]), "jan")
    assert features.duration.tolist() == [5.0]
    assert features.stats["dropped"] == 1


def test_missing_locations_become_minus_one():
    features = prepare_features(trips([300, 300], pu=[None, 5.0], do=[float("nan"), None]), "jan")
    assert features.pu.tolist() == [-1, 5] and features.do.tolist() == [-1, -1]


def test_whole_float_zones_from_1_to_265_become_codes():
    features = prepare_features(trips([300, 300], pu=[7.0, 1.0], do=[265.0, None]), "jan")
    assert features.pu.tolist() == [7, 1] and features.do.tolist() == [265, -1]


@pytest.mark.parametrize("column, values, bad, example", [
    ("PUlocationID", [3.5, 1.0, None, 7.9], 2, "3.5"),
    ("DOlocationID", [0.0, 266.0, -1.0, 12.0], 3, "0"),
    ("PUlocationID", [1e12, float("inf"), float("-inf"), 265.0], 3, "1000000000000"),
    ("DOlocationID", [5.0, 1e300, 2.0, 3.0], 1, "1e+300"),
])
def test_values_that_are_not_zones_fail_naming_file_column_and_count(column, values, bad, example):
    table = trips([300] * len(values))
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.float64()))
    with pytest.raises(DataError) as caught:
        prepare_features(table, "fhv_tripdata_2021-01.parquet")
    assert str(caught.value) == (f"fhv_tripdata_2021-01.parquet: column {column!r} has {bad} value(s) that are "
                                 f"not a taxi zone number from 1 to 265 (for example {example}).")


@pytest.mark.parametrize("values", [[10**12, 3], [0, None], [-5, 2]])
def test_integer_zones_outside_1_to_265_fail_too(values):
    table = trips([300, 300]).set_column(2, "PUlocationID", pa.array(values, pa.int64()))
    with pytest.raises(DataError, match=r"jan: column 'PUlocationID' has 1 value\(s\) that are not a taxi zone"):
        prepare_features(table, "jan")


def test_a_hostile_month_of_a_million_distinct_zones_fails_at_once_without_building_features():
    rows = 1_000_000
    table = trips([300] * 2).take(pa.array(np.zeros(rows, np.int64)))
    table = table.set_column(3, "DOlocationID", pa.array(np.arange(rows, dtype=np.float64) + 0.5))
    with pytest.raises(DataError, match="'DOlocationID' has 1,000,000 value"):
        prepare_features(table, "fhv_tripdata_2021-01")


def test_integer_and_all_null_location_columns_are_accepted():
    table = trips([300, 300]).set_column(2, "PUlocationID", pa.array([3, None], pa.int64()))
    table = table.set_column(3, "DOlocationID", pa.nulls(2))
    features = prepare_features(table, "jan")
    assert features.pu.tolist() == [3, -1] and features.do.tolist() == [-1, -1]


def test_stats_describe_the_raw_and_the_filtered_month():
    stats = prepare_features(trips([60, 600, 7200, None], pu=[None, None, 1.0, 2.0]), "jan").stats
    assert (stats["raw_rows"], stats["rows"], stats["dropped"]) == (4, 2, 2)
    assert stats["dropped_share"] == 0.5 and stats["pu_missing_share"] == 0.5
    assert stats["mean_duration"] == 5.5 and stats["median_duration"] == 5.5
    assert stats["mean_duration_raw"] == pytest.approx((1 + 10 + 120) / 3)
    assert (stats["pu_distinct"], stats["do_distinct"]) == (2, 1)


def test_a_month_with_every_trip_filtered_out_fails_naming_it():
    with pytest.raises(DataError, match=r"fhv_tripdata_2021-01 has no trips with a duration "
                                        r"between 1 and 60 minutes \(3 rows read\)"):
        prepare_features(trips([10, 7200, None]), "fhv_tripdata_2021-01")


def test_an_empty_month_fails_naming_it():
    with pytest.raises(DataError, match="fhv_tripdata_2021-02 has no trips"):
        prepare_features(trips([]), "fhv_tripdata_2021-02")


def test_a_missing_column_fails_naming_the_file(tmp_path):
    path = tmp_path / "fhv_tripdata_2021-01.parquet"
    pq.write_table(trips([300]).drop_columns(["DOlocationID"]), path)
    with pytest.raises(DataError, match="fhv_tripdata_2021-01.parquet has no column 'DOlocationID'"):
        read_trips(path)


def test_a_wrongly_typed_column_fails_naming_the_label(tmp_path):
    path = tmp_path / "month.parquet"
    pq.write_table(trips([300]).set_column(0, "pickup_datetime", pa.array(["08:00"])), path)
    with pytest.raises(DataError, match="fhv_tripdata_2021-03: column 'pickup_datetime' has type string"):
        read_trips(path, "fhv_tripdata_2021-03")


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"not parquet at all"])
def test_a_truncated_or_corrupt_file_fails_naming_the_file(tmp_path, damage):
    path = tmp_path / "fhv_tripdata_2021-04.parquet"
    pq.write_table(trips([300] * 100), path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match="fhv_tripdata_2021-04.parquet"):
        read_trips(path)


def test_read_trips_reads_only_the_four_needed_columns(tmp_path):
    path = tmp_path / "month.parquet"
    pq.write_table(trips([300]).append_column("SR_Flag", pa.nulls(1)), path)
    assert read_trips(path).column_names == [
        "pickup_datetime", "dropOff_datetime", "PUlocationID", "DOlocationID"]


def test_timestamps_with_a_time_zone_and_mixed_units_give_minutes():
    table = trips([150]).set_column(0, "pickup_datetime", pa.array(
        [T0], pa.timestamp("us")).cast(pa.timestamp("s", "UTC")))
    assert prepare_features(table, "jan").duration.tolist() == [2.5]


def test_timestamps_too_far_apart_for_nanoseconds_fail_naming_the_label():
    far = pa.array([np.datetime64("9000-01-01T00:00:00", "s")], pa.timestamp("s"))
    table = trips([300], unit="ns").set_column(0, "pickup_datetime", far)
    with pytest.raises(DataError, match="fhv_tripdata_2021-05: a trip's timestamps are out of range"):
        prepare_features(table, "fhv_tripdata_2021-05")
