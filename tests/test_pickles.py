"""The artifacts pickled and a champion scored without importing scikit-learn (issue 20): the same bytes and
the same predictions as scikit-learn's own, and anything else left to scikit-learn."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.config import Settings
from pipeline.store import Store
from pipeline.training import champion, features, flow, helper, model, pickles
from pipeline.training.demo import generate_month

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted([f"DOlocationID={z}" for z in (-1, 1, 7, 42, 265)] + [f"PUlocationID={z}" for z in (-1, 3, 42, 200)])


@pytest.fixture
def fitted():
    coef = np.random.default_rng(7).normal(10, 4, len(NAMES))
    dv, lr = model.dict_vectorizer(NAMES), model.linear_regression(coef, 13.25)
    return dv, lr, {"vectorizer": pickle.dumps(dv), "model": pickle.dumps(lr)}


@pytest.fixture
def layout(tmp_path, fitted):
    pickles.remember(tmp_path, *fitted)
    return pickles.cached(tmp_path)


def test_the_pickles_written_without_scikit_learn_are_scikit_learns_own_bytes(layout, fitted):
    dv, lr, written = fitted
    assert layout is not None and layout.version == pickles.installed_version()
    assert pickles.artifact_bytes(layout, NAMES, lr.coef_, lr.intercept_) == written


def test_a_champions_pickles_predict_without_scikit_learn_exactly_as_with_it(layout, fitted):
    dv, lr, written = fitted
    zones = np.array([-1, 1, 3, 7, 42, 99, 200, 265])
    pu, do = np.repeat(zones, len(zones)), np.tile(zones, len(zones))
    found = pickles.weights(layout, written)
    assert np.array_equal(pickles.predict_pairs(found, pu, do), helper.predict_pairs(dv, lr, pu, do))


def test_pickles_of_another_version_class_or_shape_are_left_to_scikit_learn(layout, fitted):
    dv, lr, written = fitted
    older = layout.version.translate(str.maketrans("0123456789", "9876543210"))  # as long: the pickle stays whole
    other_version = written["model"].replace(layout.version.encode(), older.encode())
    lr.rank_ = 3  # an attribute a run never writes
    assert pickles.weights(layout, {**written, "model": other_version}) is None
    assert pickles.weights(layout, {**written, "model": pickle.dumps(lr)}) is None
    assert pickles.weights(layout, {**written, "vectorizer": pickle.dumps({"vocabulary_": {}})}) is None
    assert pickles.weights(None, written) is None


def test_a_layout_is_kept_only_when_it_writes_scikit_learns_own_bytes(tmp_path, fitted):
    dv, lr, written = fitted
    pickles.remember(tmp_path, dv, lr, {**written, "model": written["model"] + b"."})
    assert pickles.cached(tmp_path) is None and not list(tmp_path.iterdir())
    pickles.remember(tmp_path, dv, lr, written)
    version = pickles.installed_version()
    assert json.loads(pickles.layout_path(tmp_path, version).read_text())["version"] == version


def test_a_run_after_the_first_pickles_and_scores_the_champion_without_importing_scikit_learn(tmp_path):
    """The first run of a history imports scikit-learn (here, and learns its layout); the next, in a process of
    its own, never does, and scores the champion exactly as scikit-learn does."""
    folder = tmp_path / "months"
    folder.mkdir()
    for month in ("2021-01", "2021-02", "2021-03"):
        pq.write_table(generate_month(month, 3000), folder / f"fhv_tripdata_{month}.parquet")
    settings = Settings(home=tmp_path / "fhv", data_url=str(folder)).ensure_dirs()
    store = Store(settings.db_path)
    first = flow.run_now(store, settings, date="2021-03-15", name="first")
    script = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from pipeline.config import Settings\n"
        "from pipeline.store import Store\n"
        "from pipeline.training import flow\n"
        f"settings = Settings(home=Path({str(settings.home)!r}), data_url={str(folder)!r})\n"
        "run = flow.run_now(Store(settings.db_path), settings, date='2021-04-15', name='second')\n"
        "print(json.dumps([run.state.value, any(m.startswith(('sklearn', 'scipy')) for m in sys.modules)]))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert json.loads(done.stdout or "null") == ["COMPLETED", False], done.stderr[-2000:]
    [second] = [run for run in store.runs(limit=2) if run["name"] == "second"]
    summary = features.read_month(folder / f"fhv_tripdata_{second['val_month']}.parquet", "val").summary
    expected = champion.score_on_summary(*champion.load_model(store, first.run_id), summary)["rmse"]
    assert second["metrics"]["promotion"]["champion_rmse"] == expected
    store.close()


def test_a_cache_folder_that_cannot_be_written_leaves_the_run_to_scikit_learn_without_failing(tmp_path, fitted):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the folder should be")
    pickles.remember(blocked, *fitted)
    assert pickles.cached(blocked) is None
