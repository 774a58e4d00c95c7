"""The course's steps in plain pandas + DictVectorizer: the oracle for the fast path.

Deliberately independent of ``pipeline/``: it reads, filters and encodes the way the
MLOps Zoomcamp notebook did (shared/FACTS.md, "The reference steps"), dicts and all.
bench/reference_steps.py times these same steps as a whole process.
"""
from __future__ import annotations

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


def reference_run(train_path, val_path) -> dict:
    df_train, df_val = read_dataframe(train_path), read_dataframe(val_path)
    dv = DictVectorizer()
    X_train = dv.fit_transform(df_train[CATEGORICAL].to_dict(orient="records"))
    X_val = dv.transform(df_val[CATEGORICAL].to_dict(orient="records"))
    y_train, y_val = df_train.duration.values, df_val.duration.values
    lr = LinearRegression()
    lr.fit(X_train, y_train)
    train_pred, val_pred = lr.predict(X_train), lr.predict(X_val)
    return {
        "train_rows": len(df_train), "val_rows": len(df_val),
        "feature_count": len(dv.feature_names_),
        "train_mse": mean_squared_error(y_train, train_pred),
        "train_rmse": root_mean_squared_error(y_train, train_pred),
        "val_mse": mean_squared_error(y_val, val_pred),
        "val_rmse": root_mean_squared_error(y_val, val_pred),
        "dv": dv, "lr": lr,
    }
