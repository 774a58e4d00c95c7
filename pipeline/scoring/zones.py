"""The champion as coefficients by zone: what its pickles compute, on arrays.

The course's model is a DictVectorizer one-hot of two categorical zones and a LinearRegression, so a
trip's prediction ``lr.predict(dv.transform([{PU: p, DO: d}]))`` is ``intercept + coef[PU=p] +
coef[DO=d]``, a zone the vectorizer never saw adding 0. ``ZoneModel`` keeps one coefficient per zone
slot (code + 1, slot 0 the missing zone ``-1``) for each side, so a batch of trips is scored by two
array lookups and two additions, without dicts or a sparse matrix. They are kept under
``$FHV_HOME/models/coefficients/``, named by the SHA-256 of the pickles they come from, so only the
first run with a version reads its pickles (without scikit-learn when they are as the installed
scikit-learn writes them: ``training/pickles.py``).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import logging

from ..errors import DataError
from ..training.schema import DO, LAST_ZONE, PU, SLOTS

log = logging.getLogger("pipeline.scoring.zones")


@dataclass(frozen=True, eq=False)
class ZoneModel:
    """Intercept and coefficients by zone slot for pickup and drop-off zones."""

    intercept: float
    pu: np.ndarray
    do: np.ndarray

    def predict(self, pu_slots: np.ndarray, do_slots: np.ndarray) -> np.ndarray:
        """Predicted minutes for trips given by zone slots (``schema.zone_slots``)."""
        predicted = self.do[do_slots]
        predicted += self.pu[pu_slots]
        predicted += self.intercept
        return predicted


def from_pickles(dv: Any, lr: Any, label: str) -> ZoneModel:
    """The ZoneModel of a fitted DictVectorizer and LinearRegression; DataError names ``label`` when they
    are not the course's model (a feature that is not a zone, coefficients that do not match)."""
    coef = np.asarray(getattr(lr, "coef_", None), dtype=np.float64).ravel()
    vocabulary = getattr(dv, "vocabulary_", None)
    if not isinstance(vocabulary, dict) or coef.ndim != 1 or len(coef) != len(vocabulary):
        raise DataError(f"The model of {label} is not a DictVectorizer and LinearRegression of the same features.")
    return from_weights(vocabulary, coef, float(np.ravel(lr.intercept_)[0]), label)


def from_weights(vocabulary: dict[str, int], coef: np.ndarray, intercept: float, label: str) -> ZoneModel:
    """The ZoneModel of a vectorizer's columns and a regression's weights (read by ``training.pickles``
    without scikit-learn, or taken from the unpickled objects)."""
    sides = {PU: np.zeros(SLOTS), DO: np.zeros(SLOTS)}
    for feature, column in vocabulary.items():
        key, slot = _zone_feature(feature, label)
        if slot is not None:
            sides[key][slot] = coef[column]
    return ZoneModel(intercept, sides[PU], sides[DO])


def _zone_feature(feature: str, label: str) -> tuple[str, int | None]:
    """('PUlocationID', slot) of 'PUlocationID=132'; slot None for a zone no file can hold (never matched)."""
    key, _, value = str(feature).partition("=")
    if key not in (PU, DO):
        raise DataError(f"The model of {label} has the feature {feature!r}, which is not a pickup or drop-off zone.")
    try:
        code = int(value)
    except ValueError:
        return key, None
    return key, code + 1 if -1 <= code <= LAST_ZONE and code != 0 else None


# -- kept by the champion's checksums, so that scoring needs no scikit-learn once a version is known -------

def cached(folder: Path, files: dict[str, dict[str, Any]], build: Callable[[], ZoneModel]) -> tuple[ZoneModel, bool]:
    """The ZoneModel of the version whose artifacts are ``files`` (their SHA-256 name it): read from
    ``folder`` when kept there, else ``build()`` (which unpickles, so importing scikit-learn) and kept.
    Returns it and whether it was read from the folder."""
    path = folder / f"{files['vectorizer']['sha256'][:20]}-{files['model']['sha256'][:20]}.npz"
    try:
        with np.load(path) as kept:
            model = ZoneModel(float(kept["intercept"]), kept["pu"].astype(np.float64), kept["do"].astype(np.float64))
        if model.pu.shape == model.do.shape == (SLOTS,):
            return model, True
    except (OSError, ValueError, KeyError, TypeError, EOFError):  # not there, or not a whole file: built again
        pass
    model = build()
    _keep(path, model)
    return model, False


def _keep(path: Path, model: ZoneModel) -> None:
    """Write the coefficients under a temporary name, then rename (a reader never sees half a file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            np.savez(out, intercept=model.intercept, pu=model.pu, do=model.do)
        os.replace(name, path)
    except OSError as error:  # a folder that cannot be written: the next run unpickles again
        log.warning("The champion's coefficients could not be kept in %s: %s.", path.parent, error)
