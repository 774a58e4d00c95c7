"""The helper process of a run on big months: scikit-learn is imported there, not on the run's path.

Importing scikit-learn takes about 2 s of a cold process. Once a run of the history has learned how
this scikit-learn pickles the two estimators (``pickles``), runs need neither it nor this helper.
Until then, a run on big months starts this helper
while it reads the months (``ArtifactWriter.start_for``); the helper imports scikit-learn meanwhile,
then answers, one JSON line each:

- ``write``: pickle the fitted weights as a real ``DictVectorizer`` and ``LinearRegression`` (the same
  objects, byte for byte, as this process would write);
- ``predict``: unpickle the champion's two artifacts (their bytes, checked by the run) and predict
  once per zone pair of the validation month, so the run scores the champion exactly without
  importing scikit-learn itself. A pickle that does not load is reported as such, with the error.

Requests and answers are JSON lines on the helper's stdin and stdout; a helper that died is replaced
by doing the same work in the run's own process.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import model, pickles
from .schema import DO, PU

log = logging.getLogger("pipeline.training.model")
ARTIFACTS = ("vectorizer", "model")


class Unloadable(Exception):
    """The helper could not unpickle an artifact (``name``) or predict with it; ``detail`` says why."""

    def __init__(self, name: str, detail: str):
        super().__init__(detail)
        self.name, self.detail = name, detail


class ArtifactWriter:
    """How a run pickles its model and scores the champion without importing scikit-learn: by the
    ``layout`` a run of this history learned (``pickles``, kept in ``cache``) when there is one, else by
    a helper process that imports scikit-learn (about 2 s of a cold process) while big months are read,
    then pickles the one model it is sent (learning the layout) and scores the champion on request.

    The helper is started only for months worth it (``start_for``): for small ones the import takes as
    long here, and a second interpreter would only add its memory.
    """

    WORTH_BYTES = 100_000_000  # two files of this size together take about a second to read

    def __init__(self, cache: Path | None = None) -> None:
        self.process: subprocess.Popen | None = None
        self.cache = cache
        self.layout = pickles.cached(cache)

    def start_for(self, paths) -> None:
        """Start the helper if the files are big enough, no layout is known and scikit-learn is not
        imported here yet."""
        if self.layout is None and sum(Path(path).stat().st_size for path in paths) >= self.WORTH_BYTES:
            self.start()

    def start(self, *, only_if_cold: bool = True) -> None:
        """Start the helper (once); nothing when scikit-learn is here already (a preloaded worker)."""
        if self.process is not None or (only_if_cold and "sklearn.linear_model" in sys.modules):
            return
        path = os.pathsep.join(filter(None, (str(model.ROOT), os.environ.get("PYTHONPATH"))))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from pipeline.training.helper import serve; serve()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "PYTHONPATH": path})
        except OSError as exc:
            log.warning("No helper process for the artifacts (%s); they are written here.", exc)

    @property
    def started(self) -> bool:
        return self.process is not None

    def write(self, trained: model.TrainedModel, paths: tuple[Path, Path]) -> list[model.Artifact]:
        """Send the weights, read back the artifacts; SubprocessError if the helper died."""
        reply = self._ask({"op": "write", "names": list(trained.onehot.feature_names),
                           "coef": trained.coef.tolist(), "intercept": trained.intercept,
                           "paths": [str(p) for p in paths], "cache": str(self.cache) if self.cache else None})
        return [model.Artifact(a["name"], Path(a["path"]), a["sha256"], a["size"]) for a in reply]

    def predict(self, payloads: dict[str, bytes], pu: np.ndarray, do: np.ndarray) -> np.ndarray:
        """The pickled model's prediction for each (pickup, drop-off) pair; Unloadable when a pickle does
        not load or predict, SubprocessError if the helper died."""
        reply = self._ask({"op": "predict", "pu": pu.tolist(), "do": do.tolist(),
                           **{name: base64.b64encode(payloads[name]).decode() for name in ARTIFACTS}})
        if "failed" in reply:
            raise Unloadable(reply["failed"], reply["detail"])
        return np.asarray(reply["predicted"], dtype=np.float64)

    def _ask(self, request: dict[str, Any]) -> Any:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            _, err = self.process.communicate()
            raise subprocess.SubprocessError((err.strip().splitlines() or [f"exit {self.process.returncode}"])[-1])
        return json.loads(reply)

    def close(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def pair_matrix(dv: Any, pu: np.ndarray, do: np.ndarray) -> Any:
    """``dv.transform([{PU: str(p), DO: str(d)}, ...])`` for many pairs: the vectorizer itself maps each
    distinct zone to its column (a few hundred dicts, not one per pair); zones it never saw get none."""
    from scipy import sparse

    columns = []
    for key, zones in ((PU, pu), (DO, do)):
        distinct, inverse = np.unique(zones, return_inverse=True)
        known = dv.transform([{key: str(zone)} for zone in distinct.tolist()]).tocsr()
        column = np.full(len(distinct), -1, dtype=np.int64)
        has = np.diff(known.indptr) > 0
        column[has] = known.indices[known.indptr[:-1][has]]
        columns.append(column[inverse])
    both = np.stack(columns, axis=1)  # one row per pair: its PU column, then its DO column (-1: unseen)
    kept = both >= 0
    indptr = np.concatenate(([0], np.cumsum(kept.sum(axis=1))))
    return sparse.csr_matrix((np.ones(int(kept.sum())), both[kept], indptr), shape=(len(both), len(dv.vocabulary_)))


def predict_pairs(dv: Any, regression: Any, pu: np.ndarray, do: np.ndarray) -> np.ndarray:
    """A pickled vectorizer and regression's predictions for zone pairs (codes, -1 for missing)."""
    return regression.predict(pair_matrix(dv, pu, do)) if len(pu) else np.zeros(0)


# -- the helper's side -------------------------------------------------------------------------------
def serve() -> None:
    """The helper process: import scikit-learn at once, then answer each request line until stdin ends."""
    import sklearn.feature_extraction  # noqa: F401  (the slow part, while the parent reads)
    import sklearn.linear_model  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        answer = _predict(request) if request.get("op") == "predict" else _write(request)
        print(json.dumps(answer), flush=True)
    os._exit(0)  # the files are written, synced and renamed: skip tearing down scikit-learn (0.3 s)


def _write(request: dict[str, Any]) -> list[dict[str, Any]]:
    written = model._artifacts(request["names"], model.linear_regression(request["coef"], request["intercept"]),
                               tuple(Path(p) for p in request["paths"]),
                               Path(request["cache"]) if request.get("cache") else None)
    return [{"name": a.name, "path": str(a.path), "sha256": a.sha256, "size": a.size} for a in written]


def _predict(request: dict[str, Any]) -> dict[str, Any]:
    loaded = {}
    for name in ARTIFACTS:
        try:
            loaded[name] = pickle.loads(base64.b64decode(request[name]))
        except Exception as error:  # noqa: BLE001 - pickle.loads may raise any error: that is the answer
            return {"failed": name, "detail": f"{type(error).__name__}: {error}"}
    try:
        predicted = predict_pairs(loaded["vectorizer"], loaded["model"], np.asarray(request["pu"], dtype=np.int64),
                                  np.asarray(request["do"], dtype=np.int64))
    except (AttributeError, ValueError, TypeError) as error:
        return {"failed": "predict", "detail": str(error)}
    return {"predicted": predicted.tolist()}
