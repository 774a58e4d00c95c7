"""The one-hot encoding of the two zones and the linear regression on it.

``OneHot`` gives exactly the matrix the course's ``DictVectorizer`` gives on the dicts
``{'PUlocationID': str(pu), 'DOlocationID': str(do)}``: one column per ``name=value`` seen in
training, sorted as strings (so every ``DOlocationID=`` column comes before ``PUlocationID=``),
unseen values ignored. It is built from integer codes with lookup tables, not from dicts.
Codes are -1 (missing) or a zone 1..265 (``schema.zone_slots`` refuses anything else), and the
encoding takes nothing outside -1..265, so there are at most 2 x 267 features whatever a file holds.
The artifacts are a real fitted ``DictVectorizer`` and ``LinearRegression``, pickled.

The exact solver needs no matrix: ``design`` builds the normal equations (X'X, X'y) from a
month's ``MonthSummary`` (trips and summed minutes per zone pair), and ``evaluate_summary`` the
MSE of the fitted weights from the same sums. ``FHV_SOLVER=lsqr`` fits scikit-learn's
``LinearRegression`` on the full sparse matrix of the kept trips instead.
scikit-learn is imported when a regression or a vectorizer is made, not with this module; a
run on big months hides that import (2 s) in ``helper.ArtifactWriter``, a helper process that
imports it while the months are read, then pickles the fitted weights and scores the champion.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

try:
    from threadpoolctl import threadpool_limits  # installed with scikit-learn
except ImportError:  # pragma: no cover - then BLAS picks its own number of threads
    def threadpool_limits(limits):  # noqa: ARG001
        return contextlib.nullcontext()

from . import pickles
from .features import Features, MonthSummary
from .schema import DO, PU, SLOTS

if TYPE_CHECKING:
    import scipy.sparse as sp
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression

FIRST_CODE, LAST_CODE = -1, SLOTS - 2  # one slot per possible code: slot = code + 1
ROOT = Path(__file__).resolve().parents[2]  # the folder holding the ``pipeline`` package

log = logging.getLogger("pipeline.training.model")


@dataclass(frozen=True, eq=False)
class OneHot:
    """For each code slot (code + 1), its matrix column, or -1 if the code was not seen in training."""

    do_columns: np.ndarray
    pu_columns: np.ndarray
    feature_names: tuple[str, ...]

    @classmethod
    def fit(cls, pu: np.ndarray, do: np.ndarray) -> "OneHot":
        return cls.from_counts(slot_counts(pu), slot_counts(do))

    @classmethod
    def from_counts(cls, pu_counts: np.ndarray, do_counts: np.ndarray) -> "OneHot":
        """The encoding of the codes whose slot count is positive (as ``slot_counts`` gives)."""
        do_values, pu_values = np.flatnonzero(do_counts) - 1, np.flatnonzero(pu_counts) - 1
        names = [f"{DO}={v}" for v in do_values] + [f"{PU}={v}" for v in pu_values]
        order = sorted(range(len(names)), key=names.__getitem__)
        columns = np.empty(len(names), np.int32)
        columns[order] = np.arange(len(names), dtype=np.int32)
        split = len(do_values)
        return cls(_slot_table(do_values, columns[:split]), _slot_table(pu_values, columns[split:]),
                   tuple(names[i] for i in order))

    @property
    def do_values(self) -> np.ndarray:
        return np.flatnonzero(self.do_columns >= 0) - 1

    @property
    def pu_values(self) -> np.ndarray:
        return np.flatnonzero(self.pu_columns >= 0) - 1

    def transform(self, pu: np.ndarray, do: np.ndarray) -> sp.csr_matrix:
        """CSR float64 one-hot rows; a code not seen in training adds no non-zero."""
        do_col, pu_col = _lookup(self.do_columns, do), _lookup(self.pu_columns, pu)
        return _csr(np.column_stack((do_col, pu_col)), np.column_stack((do_col >= 0, pu_col >= 0)),
                    len(self.feature_names))

    def to_dict_vectorizer(self) -> "DictVectorizer":
        """A fitted DictVectorizer whose ``transform(dicts)`` equals ``transform(pu, do)``."""
        return dict_vectorizer(self.feature_names)


def dict_vectorizer(feature_names) -> "DictVectorizer":
    """A fitted DictVectorizer with these feature names, in this order."""
    from sklearn.feature_extraction import DictVectorizer

    dv = DictVectorizer()
    dv.feature_names_ = [str(name) for name in feature_names]
    dv.vocabulary_ = {name: i for i, name in enumerate(dv.feature_names_)}
    return dv


def linear_regression(coef: np.ndarray, intercept: float) -> "LinearRegression":
    """A fitted LinearRegression with these weights."""
    from sklearn.linear_model import LinearRegression

    regression = LinearRegression()
    regression.coef_, regression.intercept_ = np.asarray(coef, np.float64), float(intercept)
    regression.n_features_in_ = len(regression.coef_)
    return regression


def slot_counts(codes: np.ndarray) -> np.ndarray:
    """How often each code occurs, by slot (code + 1); ValueError for a code outside -1..265."""
    if len(codes) and (codes.min() < FIRST_CODE or codes.max() > LAST_CODE):
        raise ValueError(f"zone codes must be -1 (missing) or 0..265, not {codes.min()}..{codes.max()}")
    return np.bincount(np.asarray(codes, np.int64) - FIRST_CODE, minlength=SLOTS)


def _slot_table(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    table = np.full(SLOTS, -1, np.int32)
    table[values - FIRST_CODE] = columns
    return table


def _lookup(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The column of each code, -1 for a code not seen in training (or outside -1..265)."""
    slots = np.asarray(codes, np.int64) - FIRST_CODE
    inside = (slots >= 0) & (slots < SLOTS)
    return np.where(inside, table[np.where(inside, slots, 0)], -1).astype(np.int32, copy=False)


def _csr(columns: np.ndarray, found: np.ndarray, width: int) -> "sp.csr_matrix":
    """CSR from an (n, 2) array of columns (DO, PU: already in column order) and its mask."""
    import scipy.sparse as sp

    rows = len(columns)
    if found.all():
        indices, indptr = columns.ravel(), np.arange(0, 2 * rows + 1, 2, dtype=np.int64)
    else:
        indices = columns[found]
        indptr = np.concatenate(([0], np.cumsum(found.sum(axis=1))))
    index_type = np.int32 if 2 * rows < 2**31 else np.int64
    data = np.ones(len(indices), np.float64)
    return sp.csr_matrix((data, indices.astype(index_type, copy=False),
                          indptr.astype(index_type, copy=False)),
                         shape=(rows, width))


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """The encoding and the weights; ``fitted`` is scikit-learn's own fit when it made one (lsqr)."""

    onehot: OneHot
    coef: np.ndarray
    intercept: float
    fitted: "LinearRegression | None" = None

    @property
    def regression(self) -> "LinearRegression":
        return self.fitted if self.fitted is not None else linear_regression(self.coef, self.intercept)


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    sha256: str
    size: int


SOLVERS = ("exact", "lsqr")


@dataclass(frozen=True, eq=False)
class Design:
    """A training month as least squares sees it: the encoding and the normal equations."""

    onehot: OneHot
    gram: np.ndarray  # X'X
    moment: np.ndarray  # X'y
    column_sums: np.ndarray  # ones in each column of X
    rows: int
    y_sum: float


def design(summary: MonthSummary) -> Design:
    """The encoding of the zones seen in ``summary`` and X'X, X'y from its per-pair sums.

    Every kept trip has exactly one drop-off and one pickup column, so X'X holds the zone counts
    on its diagonal and the pair counts between the two blocks; X'y holds the summed minutes.
    """
    trips = summary.cell_trips.reshape(SLOTS, SLOTS)  # pickup slot x drop-off slot
    minutes = summary.cell_minutes.reshape(SLOTS, SLOTS)
    onehot = OneHot.from_counts(trips.sum(axis=1), trips.sum(axis=0))
    pu, do = np.flatnonzero(onehot.pu_columns >= 0), np.flatnonzero(onehot.do_columns >= 0)
    pu_cols, do_cols = onehot.pu_columns[pu], onehot.do_columns[do]
    width = len(onehot.feature_names)
    gram = np.zeros((width, width))
    gram[np.ix_(pu_cols, do_cols)] = trips[np.ix_(pu, do)]
    gram += gram.T
    sums, moment = np.zeros(width), np.zeros(width)
    sums[pu_cols], sums[do_cols] = trips.sum(axis=1)[pu], trips.sum(axis=0)[do]
    moment[pu_cols], moment[do_cols] = minutes.sum(axis=1)[pu], minutes.sum(axis=0)[do]
    gram[np.diag_indices(width)] = sums
    return Design(onehot, gram, moment, sums, summary.rows, float(summary.cell_minutes.sum()))


def fit(design: Design, solver: str = "exact", trips: Features | None = None) -> TrainedModel:
    """The exact closed form from the normal equations, or scikit-learn's lsqr on ``trips``."""
    if solver == "lsqr":
        return train(trips, "lsqr")
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is not one of {', '.join(SOLVERS)}")
    return TrainedModel(design.onehot, *_solve(design.gram, design.moment, design.column_sums, design.rows,
                                               design.y_sum))


def train(features: Features, solver: str = "exact") -> TrainedModel:
    """One-hot the training zones and fit a LinearRegression (intercept, no regularisation).

    ``lsqr`` is scikit-learn's own ``LinearRegression().fit`` on the sparse matrix (iterative;
    seconds on a full month). ``exact`` solves the same least-squares problem in closed form
    on the 525 x 525 centred Gram matrix and takes the minimum-norm solution, which is the
    solution lsqr converges to: the same predictions and errors, in milliseconds.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is not one of {', '.join(SOLVERS)}")
    onehot = OneHot.fit(features.pu, features.do)
    matrix = onehot.transform(features.pu, features.do)
    if solver == "lsqr":
        from sklearn.linear_model import LinearRegression

        fitted = LinearRegression().fit(matrix, features.duration)
        return TrainedModel(onehot, fitted.coef_, float(fitted.intercept_), fitted)
    return TrainedModel(onehot, *fit_exact(matrix, features.duration))


def fit_exact(matrix: "sp.csr_matrix", y: np.ndarray, rcond: float = 1e-10) -> tuple[np.ndarray, float]:
    """Minimum-norm least squares with an intercept, from the matrix itself: the weights and the intercept."""
    sums = np.asarray(matrix.sum(axis=0)).ravel()
    return _solve(_gram(matrix), matrix.T @ y, sums, matrix.shape[0], float(y.sum()), rcond)


def _solve(gram: np.ndarray, moment: np.ndarray, sums: np.ndarray, rows: int, y_sum: float,
           rcond: float = 1e-10) -> tuple[np.ndarray, float]:
    """Minimum-norm least squares with an intercept, via the eigen-decomposition of the centred Gram matrix."""
    means, y_mean = sums / rows, y_sum / rows
    centred = gram - rows * np.outer(means, means)
    with threadpool_limits(1):  # 525 x 525: one thread is as fast, and never spins against busy cores
        values, vectors = np.linalg.eigh(centred)
        keep = values > rcond * values.max()
        coef = vectors[:, keep] @ ((vectors[:, keep].T @ (moment - rows * means * y_mean)) / values[keep])
    return coef, y_mean - float(means @ coef)


def _gram(matrix: sp.csr_matrix) -> np.ndarray:
    """X'X of a one-hot matrix (at most two ones a row) by counting column pairs."""
    width, lengths = matrix.shape[1], np.diff(matrix.indptr)
    if lengths.max(initial=0) > 2 or not np.all(matrix.data == 1):
        return (matrix.T @ matrix).toarray()
    starts = matrix.indptr[:-1][lengths == 2]
    pairs = matrix.indices[starts].astype(np.int64) * width + matrix.indices[starts + 1]
    cross = np.bincount(pairs, minlength=width * width).reshape(width, width)
    gram = (cross + cross.T).astype(np.float64)
    gram[np.diag_indices(width)] += np.bincount(matrix.indices, minlength=width)
    return gram


def predict(model: TrainedModel, features: Features) -> np.ndarray:
    """What ``LinearRegression.predict`` gives on the one-hot rows."""
    return model.onehot.transform(features.pu, features.do) @ model.coef + model.intercept


def evaluate(model: TrainedModel, features: Features) -> dict:
    """MSE and RMSE (the course printed the RMSE and called it MSE) and the row count."""
    mse = float(np.mean((features.duration - predict(model, features)) ** 2))
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "rows": len(features.duration)}


def evaluate_summary(model: TrainedModel, summary: MonthSummary) -> dict:
    """``evaluate`` from a month's sums: the prediction is one number per zone pair, so
    sum (y - p)^2 = sum y^2 - 2 sum_pairs p * (sum of y) + sum_pairs p^2 * trips."""
    predicted = cell_predictions(model)
    squared = (summary.squared_minutes - 2 * float(np.einsum("i,i->", predicted, summary.cell_minutes))
               + float(np.einsum("i,i,i->", predicted, predicted, summary.cell_trips)))
    mse = max(squared, 0.0) / summary.rows
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "rows": summary.rows}


def cell_predictions(model: TrainedModel) -> np.ndarray:
    """The prediction for each (pickup slot, drop-off slot) pair, flat as ``MonthSummary`` cells."""
    coef, onehot = model.coef, model.onehot

    def by_slot(columns: np.ndarray) -> np.ndarray:
        return np.where(columns >= 0, coef[np.maximum(columns, 0)], 0.0)

    grid = by_slot(onehot.pu_columns)[:, None] + by_slot(onehot.do_columns)[None, :]
    return (grid + model.intercept).ravel()


def save_artifacts(model: TrainedModel, folder, run_date: str,
                   writer: "helper.ArtifactWriter | None" = None) -> list[Artifact]:
    """Pickle the vectorizer (``dv-DATE.b``) and the regression (``model-DATE.bin``): without scikit-learn when
    ``writer`` knows how this scikit-learn pickles them (``pickles``), else by ``writer``'s helper process
    when it runs and the model is just weights, else (or if the helper fails) here."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / f"dv-{run_date}.b", folder / f"model-{run_date}.bin")
    if writer is not None and writer.layout is not None and model.fitted is None:
        payloads = pickles.artifact_bytes(writer.layout, model.onehot.feature_names, model.coef, model.intercept)
        return [_write_payload(kind, path, payloads[kind]) for kind, path in zip(pickles.KINDS, paths)]
    if writer is not None and writer.started and model.fitted is None:
        try:
            return writer.write(model, paths)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning("The helper process could not write the artifacts (%s); writing them here.", exc)
    return _artifacts(model.onehot.feature_names, model.regression, paths, writer.cache if writer else None)


def _artifacts(feature_names, regression: "LinearRegression", paths: tuple[Path, Path],
               cache: Path | None = None) -> list[Artifact]:
    """Pickle them with scikit-learn, and keep its layout in ``cache`` for the next runs (``pickles.remember``)."""
    vectorizer = dict_vectorizer(feature_names)
    payloads = {"vectorizer": pickle.dumps(vectorizer), "model": pickle.dumps(regression)}
    pickles.remember(cache, vectorizer, regression, payloads)
    return [_write_payload(kind, path, payloads[kind]) for kind, path in zip(pickles.KINDS, paths)]


def _write_payload(name: str, path: Path, payload: bytes) -> Artifact:
    """Write atomically: a temp file in the same folder, fsync, then os.replace."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return Artifact(name, path, hashlib.sha256(payload).hexdigest(), len(payload))
