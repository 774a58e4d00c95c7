"""The fast path (pyarrow + codes + sparse) against the course's pandas + DictVectorizer steps."""
from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.training.features import prepare_features, read_trips
from pipeline.training.model import evaluate, predict, save_artifacts, train
from tests.reference import CATEGORICAL, read_dataframe, reference_run

ZONES = np.arange(1, 266)
NEVER_IN_TRAINING = {"PUlocationID": [103, 104, 105, 199], "DOlocationID": [103, 104, 199]}
BOUNDARY_SECONDS = [60, 3600, 59.999999, 3600.000001, 59, 3601, 0, -30]
START = np.datetime64("2021-01-01T00:00:00", "us")


def _zones(rng, rows, missing_share, unseen):
    values = rng.choice(ZONES, size=rows).astype(np.float64)
    if unseen is not None:
        values[np.isin(values, unseen)] = 1.0
    values[rng.random(rows) < missing_share] = np.nan
    return pa.array(values, pa.float64(), from_pandas=True)


def _durations_us(rng, rows, pu, do):
    """Right-skewed minutes that depend on the zones, a few absurd, some boundaries exact."""
    effect = 1 + 0.6 * np.sin(np.nan_to_num(pu, nan=7.0)) + 0.4 * np.cos(np.nan_to_num(do, nan=3.0))
    minutes = rng.lognormal(np.log(12.0), 0.6, rows) * effect
    minutes[rng.random(rows) < 0.002] = rng.uniform(1_000, 400_000)
    micros = np.round(minutes * 60e6).astype(np.int64)
    count = min(len(BOUNDARY_SECONDS), rows)
    micros[:count] = np.round(np.array(BOUNDARY_SECONDS[:count]) * 1e6).astype(np.int64)
    return micros


def _timestamps(values, mask, unit):
    return pa.array(values, pa.timestamp("us"), mask=mask).cast(pa.timestamp(unit), safe=False)


def make_month(path, rows, seed, units=("us", "us"), training=True):
    """A small FHV month with the real schema: nulls, unseen zones, boundary durations."""
    rng = np.random.default_rng(seed)
    pu = _zones(rng, rows, 0.8, NEVER_IN_TRAINING["PUlocationID"] if training else None)
    do = _zones(rng, rows, 0.14, NEVER_IN_TRAINING["DOlocationID"] if training else None)
    pickup = START + rng.integers(0, 31 * 86400, rows).astype("timedelta64[s]")
    dropoff = pickup + _durations_us(rng, rows, pu.to_numpy(zero_copy_only=False),
                                     do.to_numpy(zero_copy_only=False)).astype("timedelta64[us]")
    pickup_mask, dropoff_mask = rng.random(rows) < 0.001, rng.random(rows) < 0.001
    table = pa.table({
        "dispatching_base_num": pa.array([f"B0{n:04d}" for n in rng.integers(0, 600, rows)]),
        "pickup_datetime": _timestamps(pickup, pickup_mask, units[0]),
        "dropOff_datetime": _timestamps(dropoff, dropoff_mask, units[1]),
        "PUlocationID": pu, "DOlocationID": do,
        "SR_Flag": pa.nulls(rows, pa.int32()),
        "Affiliated_base_number": pa.array(["B00001"] * rows),
    })
    pq.write_table(table, path)
    return path


def fast_run(train_path, val_path, solver="exact"):
    train_features = prepare_features(read_trips(train_path), "train")
    val_features = prepare_features(read_trips(val_path), "val")
    model = train(train_features, solver)
    return model, val_features, evaluate(model, train_features), evaluate(model, val_features)


CASES = [(5_000, 1, ("us", "us")), (20_000, 2, ("ns", "ns")), (50_000, 3, ("us", "us")),
         (20_000, 4, ("ms", "ms")), (20_000, 5, ("ms", "ns"))]


@pytest.mark.parametrize("solver, rel", [("exact", 1e-6), ("lsqr", 1e-9)])
@pytest.mark.parametrize("rows, seed, units", CASES)
def test_fast_path_equals_the_course_steps(tmp_path, rows, seed, units, solver, rel):
    """lsqr is the course's own solver on our matrix: equal to 1e-9. The closed form solves the
    same problem exactly, while the course's lsqr stops at its tolerance (1e-6): equal to 1e-6."""
    train_path = make_month(tmp_path / "train.parquet", rows, seed, units)
    val_path = make_month(tmp_path / "val.parquet", rows * 9 // 10, seed + 100, units, training=False)
    model, _, ours_train, ours_val = fast_run(train_path, val_path, solver)
    ref = reference_run(train_path, val_path)
    assert (ours_train["rows"], ours_val["rows"]) == (ref["train_rows"], ref["val_rows"])
    assert len(model.onehot.feature_names) == ref["feature_count"]
    assert list(model.onehot.feature_names) == ref["dv"].feature_names_
    for key in ("mse", "rmse"):
        assert ours_train[key] == pytest.approx(ref[f"train_{key}"], rel=rel)
        assert ours_val[key] == pytest.approx(ref[f"val_{key}"], rel=rel)


def _centred_lstsq(ref, train_path):
    """The minimum-norm least-squares solution by dense SVD on the DictVectorizer matrix."""
    frame = read_dataframe(train_path)
    dense = ref["dv"].transform(frame[CATEGORICAL].to_dict(orient="records")).toarray()
    y = frame.duration.to_numpy()
    means = dense.mean(axis=0)
    coef = np.linalg.lstsq(dense - means, y - y.mean(), rcond=None)[0]
    return coef, y.mean() - means @ coef


@pytest.mark.parametrize("seed", [21, 22])
def test_the_closed_form_is_the_minimum_norm_least_squares_solution(tmp_path, seed):
    train_path = make_month(tmp_path / "train.parquet", 6_000, seed)
    val_path = make_month(tmp_path / "val.parquet", 6_000, seed + 1, training=False)
    model, _, ours_train, _ = fast_run(train_path, val_path, "exact")
    ref = reference_run(train_path, val_path)
    coef, intercept = _centred_lstsq(ref, train_path)
    np.testing.assert_allclose(model.regression.coef_, coef, rtol=1e-7, atol=1e-8)
    assert model.regression.intercept_ == pytest.approx(intercept, rel=1e-9)
    assert ours_train["mse"] <= ref["train_mse"] * (1 + 1e-12)  # never worse than lsqr on its own objective


def test_saved_artifacts_reproduce_our_predictions_from_dicts(tmp_path):
    train_path = make_month(tmp_path / "train.parquet", 10_000, 7)
    val_path = make_month(tmp_path / "val.parquet", 10_000, 8, training=False)
    model, val_features, _, _ = fast_run(train_path, val_path)
    dv_artifact, model_artifact = save_artifacts(model, tmp_path / "out", "2021-03-15")
    dv = pickle.loads(dv_artifact.path.read_bytes())
    lr = pickle.loads(model_artifact.path.read_bytes())
    dicts = read_dataframe(val_path)[CATEGORICAL].to_dict(orient="records")
    matrix = dv.transform(dicts)
    assert (matrix != model.onehot.transform(val_features.pu, val_features.do)).nnz == 0
    np.testing.assert_allclose(lr.predict(matrix), predict(model, val_features), rtol=1e-9, atol=0)


def test_validation_zones_unseen_in_training_are_ignored_like_dict_vectorizer(tmp_path):
    train_path = make_month(tmp_path / "train.parquet", 5_000, 11)
    val_path = make_month(tmp_path / "val.parquet", 5_000, 12, training=False)
    model, val_features, _, _ = fast_run(train_path, val_path)
    assert "PUlocationID=103" not in model.onehot.feature_names
    assert np.isin(val_features.pu, [103, 104, 105, 199]).any()
    ref = reference_run(train_path, val_path)
    dicts = read_dataframe(val_path)[CATEGORICAL].to_dict(orient="records")
    ours = model.onehot.transform(val_features.pu, val_features.do)
    assert (ours != ref["dv"].transform(dicts)).nnz == 0
    assert ours.getnnz(axis=1).min() < 2


def four_trips(path):
    """The course's unit-test case: two trips survive, ('-1', '-1', 8.0) and ('1', '1', 8.0)."""
    t = lambda text: np.datetime64(f"2021-01-01T{text}", "us")  # noqa: E731
    table = pa.table({
        "dispatching_base_num": ["B1"] * 4,
        "pickup_datetime": pa.array([t("01:02"), t("01:02"), t("01:02:00"), t("01:02")]),
        "dropOff_datetime": pa.array([t("01:10"), t("01:10"), t("01:02:50"), t("02:02:01")]),
        "PUlocationID": pa.array([None, 1.0, 1.0, 1.0]),
        "DOlocationID": pa.array([None, 1.0, 1.0, 1.0]),
        "SR_Flag": pa.nulls(4, pa.int32()),
        "Affiliated_base_number": ["B1"] * 4,
    })
    pq.write_table(table, path)
    return path


def test_the_four_trip_case_from_the_course(tmp_path):
    path = four_trips(tmp_path / "four.parquet")
    features = prepare_features(read_trips(path), "four")
    assert features.pu.tolist() == [-1, 1] and features.do.tolist() == [-1, 1]
    assert features.duration.tolist() == [8.0, 8.0]
    expected = read_dataframe(path)
    assert expected[CATEGORICAL].values.tolist() == [["-1", "-1"], ["1", "1"]]
    model, _, ours, _ = fast_run(path, path)
    ref = reference_run(path, path)
    assert list(model.onehot.feature_names) == ref["dv"].feature_names_
    assert ours["mse"] == pytest.approx(ref["train_mse"], abs=1e-12)


@pytest.mark.parametrize("units", [("us", "us"), ("ns", "ms"), ("s", "us")])
def test_durations_and_zone_codes_match_pandas_bit_for_bit(tmp_path, units):
    path = make_month(tmp_path / "month.parquet", 20_000, 21, units)
    features = prepare_features(read_trips(path), "month")
    expected = read_dataframe(path)
    assert np.array_equal(features.duration, expected.duration.to_numpy())
    assert features.pu.astype(str).tolist() == expected.PUlocationID.tolist()
    assert features.do.astype(str).tolist() == expected.DOlocationID.tolist()
    assert features.stats["dropped"] == 20_000 - len(expected)
