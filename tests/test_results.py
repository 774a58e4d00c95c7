"""A run's results typed per flow, and the one presenter of each that ``runs show`` and the run page print."""
from __future__ import annotations

import pytest

from pipeline.scoring import results as scoring
from pipeline.training import results as training

TRAINED = {"train_mse": 110.25, "val_mse": 121.0, "train_rmse": 10.5, "val_rmse": 11.0, "train_rows": 1200,
           "val_rows": 1300, "train_month": "2021-06", "val_month": "2021-07", "train_mean_duration": 16.25,
           "val_mean_duration": 17.5, "feature_count": 525, "data": {"train": {}}, "synthetic": False}
SCORED = {"rows_scored": 1000, "rows_read": 1040, "rmse": 11.2, "month": "2021-07", "mean_predicted": 15.1,
          "mean_actual": 16.2, "rows_left_out": {"missing_times": 5, "under_1_min": 0, "over_60_min": 35},
          "model_version": {"run_id": "abcdef0123456789", "name": "steady-run", "train_month": "2021-05"},
          "output": "/h/predictions/fhv_predictions_2021-07.parquet", "drift_vs_champion": None}


def test_a_training_runs_metrics_are_its_typed_results_and_its_lines():
    found = training.TrainingResults.of(TRAINED)
    assert (found.val_rmse, found.train_rows, found.feature_count) == (11.0, 1200, 525)
    lines = dict(training.present({"metrics": TRAINED}))
    assert lines["Validation RMSE"] == "11.0000 min" and lines["Validation MSE"] == "121.0000 min²"
    assert lines["Training trips"] == "1,200 of 2021-06, mean 16.25 min"


@pytest.mark.parametrize("metrics", [None, {}, {"data": {}, "drift": {}, "warnings": ["The gate ..."]}])
def test_a_run_without_results_presents_nothing(metrics):
    assert training.TrainingResults.of(metrics) is None and training.present({"metrics": metrics}) == []
    assert scoring.ScoringResults.of(metrics) is None and scoring.present({"metrics": metrics}) == []


def test_a_scoring_runs_lines_say_the_rows_left_out_by_reason_and_the_model_it_used():
    lines = dict(scoring.present({"metrics": SCORED}))
    assert lines["Trips scored"] == "1,000 of 1,040 read" and lines["Scored month"] == "2021-07"
    assert lines["Left out"] == "5 missing a timestamp · 35 over 60 minutes"
    assert lines["Model"] == "steady-run (abcdef01), trained on 2021-05"
    assert lines["Champion's RMSE on the month"] == "11.2000 min"
    assert scoring.ScoringResults.of({**SCORED, "rows_left_out": {}}).left_out() == "none"
