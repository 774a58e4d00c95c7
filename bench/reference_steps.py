"""The course's steps as a standalone script: the baseline the benchmark times.

    python bench/reference_steps.py train.parquet val.parquet

Prints one JSON line: rows, feature count, MSE and RMSE for train and validation, and the wall
time of each step in seconds. A copy of tests/reference.py's logic (bench must not import tests,
and neither depends on pipeline/): pd.read_parquet, total_seconds() / 60, the 1..60 filter,
fillna(-1).astype(int).astype(str), to_dict(orient="records"), DictVectorizer, LinearRegression.
"""
from __future__ import annotations

import json
import sys
import time

import pandas as pd
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, root_mean_squared_error

CATEGORICAL = ["PUlocationID", "DOlocationID"]


def read_dataframe(path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    df["duration"] = df.dropOff_datetime - df.pickup_datetime
    df["duration"] = df.duration.dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
    df[CATEGORICAL] = df[CATEGORICAL].fillna(-1).astype("int").astype("str")
    return df


def metrics(prefix, y, predicted) -> dict:
    return {f"{prefix}_mse": mean_squared_error(y, predicted),
            f"{prefix}_rmse": root_mean_squared_error(y, predicted)}


def run(train_path, val_path) -> dict:
    clock = {"start": time.perf_counter()}
    df_train, df_val = read_dataframe(train_path), read_dataframe(val_path)
    clock["read_prepare"] = time.perf_counter()
    dv = DictVectorizer()
    X_train = dv.fit_transform(df_train[CATEGORICAL].to_dict(orient="records"))
    lr = LinearRegression().fit(X_train, df_train.duration.values)
    clock["train"] = time.perf_counter()
    X_val = dv.transform(df_val[CATEGORICAL].to_dict(orient="records"))
    result = {"train_rows": len(df_train), "val_rows": len(df_val),
              "feature_count": len(dv.feature_names_)}
    result.update(metrics("train", df_train.duration.values, lr.predict(X_train)))
    result.update(metrics("val", df_val.duration.values, lr.predict(X_val)))
    clock["evaluate"] = time.perf_counter()
    return result | _timings(clock)


def _timings(clock: dict) -> dict:
    marks = list(clock.items())
    steps = {f"{name}_seconds": round(t - marks[i][1], 4) for i, (name, t) in enumerate(marks[1:])}
    return steps | {"seconds": round(marks[-1][1] - marks[0][1], 4)}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python bench/reference_steps.py train.parquet val.parquet", file=sys.stderr)
        return 2
    print(json.dumps(run(*argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
