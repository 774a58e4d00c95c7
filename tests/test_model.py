"""The one-hot encoding, the regression and the pickled artifacts."""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.utils.validation import check_is_fitted

from pipeline.training.features import Features
from pipeline.training.model import OneHot, evaluate, predict, save_artifacts, train

PU = np.array([-1, 1, 10, 2, -1, 265, 1])
DO = np.array([7, -1, 7, 100, 1, 2, 7])


def dicts(pu, do):
    return [{"PUlocationID": str(p), "DOlocationID": str(d)} for p, d in zip(pu, do)]


def features(pu, do, duration):
    return Features(np.asarray(pu), np.asarray(do), np.asarray(duration, np.float64), {})


def test_feature_names_are_sorted_as_strings_with_do_before_pu():
    assert OneHot.fit(PU, DO).feature_names == (
        "DOlocationID=-1", "DOlocationID=1", "DOlocationID=100", "DOlocationID=2", "DOlocationID=7",
        "PUlocationID=-1", "PUlocationID=1", "PUlocationID=10", "PUlocationID=2", "PUlocationID=265")


def test_feature_names_equal_dict_vectorizer_on_the_same_dicts():
    dv = DictVectorizer().fit(dicts(PU, DO))
    assert list(OneHot.fit(PU, DO).feature_names) == dv.feature_names_


def test_training_rows_have_exactly_two_non_zeros_equal_to_dict_vectorizer():
    ours = OneHot.fit(PU, DO).transform(PU, DO)
    theirs = DictVectorizer().fit_transform(dicts(PU, DO))
    assert ours.format == "csr" and ours.dtype == np.float64
    assert (ours != theirs).nnz == 0 and ours.getnnz(axis=1).tolist() == [2] * len(PU)


def test_unseen_categories_are_ignored_like_dict_vectorizer():
    pu, do = np.array([1, 3, 3, 265, 10**12, -5]), np.array([5, 7, 5, -1, -7, 10**12])
    onehot = OneHot.fit(PU, DO)
    ours = onehot.transform(pu, do)
    assert (ours != DictVectorizer().fit(dicts(PU, DO)).transform(dicts(pu, do))).nnz == 0
    assert ours.getnnz(axis=1).tolist() == [1, 1, 0, 2, 0, 0]


def test_to_dict_vectorizer_is_a_fitted_vectorizer_giving_our_matrix():
    onehot = OneHot.fit(PU, DO)
    dv = onehot.to_dict_vectorizer()
    check_is_fitted(dv)
    assert dv.get_feature_names_out().tolist() == list(onehot.feature_names)
    pu, do = np.array([2, 99, -1]), np.array([100, 7, 3])
    assert (dv.transform(dicts(pu, do)) != onehot.transform(pu, do)).nnz == 0


def test_evaluate_reports_mse_and_rmse_under_their_own_names():
    rng = np.random.default_rng(0)
    data = features(rng.integers(1, 5, 200), rng.integers(1, 5, 200), rng.uniform(1, 60, 200))
    result = evaluate(train(data), data)
    assert result["rows"] == 200
    assert result["rmse"] == pytest.approx(np.sqrt(result["mse"]))
    residual = data.duration - predict(train(data), data)
    assert result["mse"] == pytest.approx(np.mean(residual**2))


def test_the_regression_learns_zone_effects():
    data = features([1, 1, 2, 2], [-1, -1, -1, -1], [10.0, 10.0, 20.0, 20.0])
    np.testing.assert_allclose(predict(train(data), data), [10, 10, 20, 20], atol=1e-6)


def test_artifacts_have_the_course_file_names_and_their_sha256(tmp_path):
    model = train(features(PU, DO, np.arange(len(PU)) + 5.0))
    artifacts = save_artifacts(model, tmp_path / "runs" / "7", "2021-08-15")
    assert [a.path.name for a in artifacts] == ["dv-2021-08-15.b", "model-2021-08-15.bin"]
    for artifact in artifacts:
        content = artifact.path.read_bytes()
        assert artifact.sha256 == hashlib.sha256(content).hexdigest()
        assert artifact.size == len(content)
    assert sorted(p.name for p in (tmp_path / "runs" / "7").iterdir()) == [
        "dv-2021-08-15.b", "model-2021-08-15.bin"]


def test_pickled_artifacts_predict_like_the_pipeline_from_dicts(tmp_path):
    data = features(PU, DO, np.arange(len(PU)) + 5.0)
    model = train(data)
    dv_artifact, lr_artifact = save_artifacts(model, tmp_path, "2021-08-15")
    with open(dv_artifact.path, "rb") as dv_in, open(lr_artifact.path, "rb") as lr_in:
        dv, lr = pickle.load(dv_in), pickle.load(lr_in)
    np.testing.assert_allclose(lr.predict(dv.transform(dicts(PU, DO))), predict(model, data), rtol=1e-12)


@pytest.mark.parametrize("bad", [10**9, -2, 266])
def test_the_encoding_refuses_codes_that_are_not_zones_so_features_stay_bounded(bad):
    with pytest.raises(ValueError, match="zone codes must be -1"):
        OneHot.fit(np.array([5, bad]), np.array([1, 2]))


def test_every_possible_zone_gives_at_most_534_features():
    codes = np.arange(-1, 266)
    assert len(OneHot.fit(codes, codes).feature_names) == 2 * 267


def test_the_gram_matrix_by_pair_counting_equals_the_sparse_product():
    from pipeline.training.model import OneHot, _gram

    rng = np.random.default_rng(3)
    pu = np.where(rng.random(3000) < 0.8, -1, rng.integers(1, 40, 3000))
    do = rng.integers(1, 50, 3000)
    onehot = OneHot.fit(pu[:2000], do[:2000])
    matrix = onehot.transform(pu, do)  # rows 2000+ may have unseen zones: one non-zero
    np.testing.assert_array_equal(_gram(matrix), (matrix.T @ matrix).toarray())
