"""The one-hot encoding of the two zones and the linear regression on it.

``OneHot`` gives exactly the matrix the course's ``DictVectorizer`` gives on the dicts
``{'PUlocationID': str(pu), 'DOlocationID': str(do)}``: one column per ``name=value`` seen in
training, sorted as strings (so every ``DOlocationID=`` column comes before ``PUlocationID=``),
unseen values ignored. It is built from integer codes with lookup tables, not from dicts.
Codes are -1 (missing) or a zone 0..265 (``features.location_codes`` refuses anything else), so
there are at most 2 x 267 features whatever a file holds.
The artifacts are a real fitted ``DictVectorizer`` and ``LinearRegression``, pickled.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, root_mean_squared_error

from .features import Features
from .schema import DO, PU

FIRST_CODE, LAST_CODE = -1, 265
SLOTS = LAST_CODE - FIRST_CODE + 1  # one slot per possible code: slot = code + 1


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

    def to_dict_vectorizer(self) -> DictVectorizer:
        """A fitted DictVectorizer whose ``transform(dicts)`` equals ``transform(pu, do)``."""
        dv = DictVectorizer()
        dv.feature_names_ = [str(name) for name in self.feature_names]
        dv.vocabulary_ = {name: i for i, name in enumerate(dv.feature_names_)}
        return dv


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


def _csr(columns: np.ndarray, found: np.ndarray, width: int) -> sp.csr_matrix:
    """CSR from an (n, 2) array of columns (DO, PU: already in column order) and its mask."""
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
    onehot: OneHot
    regression: LinearRegression


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    sha256: str
    size: int


SOLVERS = ("exact", "lsqr")


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
        return TrainedModel(onehot, LinearRegression().fit(matrix, features.duration))
    return TrainedModel(onehot, fit_exact(matrix, features.duration))


def fit_exact(matrix: sp.csr_matrix, y: np.ndarray, rcond: float = 1e-10) -> LinearRegression:
    """Minimum-norm least squares with an intercept, via the eigen-decomposition of the centred Gram matrix."""
    rows = matrix.shape[0]
    means, y_mean = np.asarray(matrix.sum(axis=0)).ravel() / rows, float(y.mean())
    gram = _gram(matrix) - rows * np.outer(means, means)
    moment = matrix.T @ y - rows * means * y_mean
    values, vectors = np.linalg.eigh(gram)
    keep = values > rcond * values.max()
    coef = vectors[:, keep] @ ((vectors[:, keep].T @ moment) / values[keep])
    regression = LinearRegression()
    regression.coef_, regression.intercept_ = coef, y_mean - float(means @ coef)
    regression.n_features_in_ = matrix.shape[1]
    return regression


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
    return model.regression.predict(model.onehot.transform(features.pu, features.do))


def evaluate(model: TrainedModel, features: Features) -> dict:
    """MSE and RMSE (the course printed the RMSE and called it MSE) and the row count."""
    predicted = predict(model, features)
    return {
        "mse": float(mean_squared_error(features.duration, predicted)),
        "rmse": float(root_mean_squared_error(features.duration, predicted)),
        "rows": len(features.duration),
    }


def save_artifacts(model: TrainedModel, folder, run_date: str) -> list[Artifact]:
    """Pickle the vectorizer (``dv-DATE.b``) and the regression (``model-DATE.bin``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        _write_pickle("vectorizer", folder / f"dv-{run_date}.b", model.onehot.to_dict_vectorizer()),
        _write_pickle("model", folder / f"model-{run_date}.bin", model.regression),
    ]


def _write_pickle(name: str, path: Path, value) -> Artifact:
    """Write atomically: a temp file in the same folder, fsync, then os.replace."""
    payload = pickle.dumps(value)
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
