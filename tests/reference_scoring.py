"""The course's week-4 scoring steps in plain pandas + pickle: the oracle for the scoring flow.

Deliberately independent of ``pipeline/``: read the month with pandas, keep trips of 1 to 60 minutes,
number the rides by their index in the file, then ``df.to_dict``, ``dv.transform`` and ``lr.predict``
with the pickled vectorizer and model, as ``score.py`` of the MLOps Zoomcamp did.
bench/scoring_vs_reference.py times these same steps as a whole process.
"""
from __future__ import annotations

import pickle

import pandas as pd

CATEGORICAL = ["PUlocationID", "DOlocationID"]


def read_dataframe(path, year: int, month: int) -> pd.DataFrame:
    df = pd.read_parquet(path)
    df["duration"] = df.dropOff_datetime - df.pickup_datetime
    df["duration"] = df.duration.dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
    df["ride_id"] = f"{year:04d}/{month:02d}_" + df.index.astype("str")
    df[CATEGORICAL] = df[CATEGORICAL].fillna(-1).astype("int").astype("str")
    return df


def score(path, dv_path, model_path, year: int, month: int, run_id: str) -> pd.DataFrame:
    """The predictions frame of the course's ``apply_model``."""
    with open(dv_path, "rb") as f_in:
        dv = pickle.load(f_in)
    with open(model_path, "rb") as f_in:
        lr = pickle.load(f_in)
    df = read_dataframe(path, year, month)
    y_pred = lr.predict(dv.transform(df[CATEGORICAL].to_dict(orient="records")))
    result = pd.DataFrame()
    result["ride_id"] = df["ride_id"]
    result["pickup_datetime"] = df["pickup_datetime"]
    result["PUlocationID"] = df["PUlocationID"]
    result["DOlocationID"] = df["DOlocationID"]
    result["actual_duration"] = df["duration"]
    result["predicted_duration"] = y_pred
    result["diff"] = result["actual_duration"] - result["predicted_duration"]
    result["model_version"] = run_id
    return result.reset_index(drop=True)
