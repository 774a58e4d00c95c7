"""The course's steps as a standalone script: the baseline the benchmark times.

    python bench/reference_steps.py train.parquet val.parquet [--save FOLDER]

Prints one JSON line: rows, feature count, MSE and RMSE for train and validation, and the wall
time of each step in seconds. The steps are the oracle's (tests/reference.py, independent of
pipeline/): pd.read_parquet, total_seconds() / 60, the 1..60 filter,
fillna(-1).astype(int).astype(str), to_dict(orient="records"), DictVectorizer, LinearRegression.
``--save FOLDER`` also pickles the fitted vectorizer and model there (``dv.b``, ``lr.bin``), so a
benchmark can compare them with the pipeline's artifacts.
"""
from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.feature_extraction import DictVectorizer  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.metrics import mean_squared_error, root_mean_squared_error  # noqa: E402

from tests.reference import CATEGORICAL, read_dataframe  # noqa: E402  (the oracle's own steps)


def metrics(prefix, y, predicted) -> dict:
    return {f"{prefix}_mse": mean_squared_error(y, predicted),
            f"{prefix}_rmse": root_mean_squared_error(y, predicted)}


def run(train_path, val_path, save: Path | None = None) -> dict:
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
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        (save / "dv.b").write_bytes(pickle.dumps(dv))
        (save / "lr.bin").write_bytes(pickle.dumps(lr))
    return result | _timings(clock)


def _timings(clock: dict) -> dict:
    marks = list(clock.items())
    steps = {f"{name}_seconds": round(t - marks[i][1], 4) for i, (name, t) in enumerate(marks[1:])}
    return steps | {"seconds": round(marks[-1][1] - marks[0][1], 4)}


def main(argv: list[str]) -> int:
    save = None
    if len(argv) == 4 and argv[2] == "--save":
        argv, save = argv[:2], Path(argv[3])
    if len(argv) != 2:
        print("usage: python bench/reference_steps.py train.parquet val.parquet [--save FOLDER]", file=sys.stderr)
        return 2
    print(json.dumps(run(*argv, save=save)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
