"""The run's two artifacts as scikit-learn pickles them, written and read without importing it.

Importing scikit-learn costs a fresh process about 2 s and 100 MiB (it brings scipy and pandas): more
than a whole run on two months of a million trips. The artifacts are a fitted ``DictVectorizer`` and
``LinearRegression`` whose pickles hold only their class, their parameters, the fitted attributes the
run sets and scikit-learn's version. Given the *layout* of the installed scikit-learn (each class's
module and name and its parameters' defaults), ``artifact_bytes`` writes the very bytes that
``pickle.dumps`` of the real objects gives, and ``weights`` reads a champion's weights back from its
pickles (an unpickler that accepts those two classes and numpy's arrays, nothing else).

The layout is learned from scikit-learn itself the first time a run of the history imports it for its
artifacts (``remember``, in the run or its helper process), and kept in ``cache/`` only if the bytes
written from it equal scikit-learn's own. It is keyed by scikit-learn's version, read from its files
without importing it. Anything else (another version's pickle, another class, other attributes): None,
and the caller asks scikit-learn itself, which loads the pickle or says why not.
"""
from __future__ import annotations

import copyreg
import importlib.util
import io
import json
import logging
import os
import pickle
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .schema import DO, PU

log = logging.getLogger("pipeline.training.model")
KINDS = ("vectorizer", "model")
FITTED = {"vectorizer": ("feature_names_", "vocabulary_"), "model": ("coef_", "intercept_", "n_features_in_")}
VERSION_KEY = "_sklearn_version"  # what scikit-learn's BaseEstimator.__getstate__ adds
ARRAYS = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy", "float64"),
          ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}


def installed_version() -> str | None:
    """scikit-learn's ``__version__`` as its ``__init__.py`` sets it (read, not imported: that is the 2 s)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.origin:
        return None
    found = re.search(r"^__version__ = [\"']([^\"']+)[\"']", Path(spec.origin).read_text(), re.M)
    return found.group(1) if found else None


class _StandIn:
    """Stands for a scikit-learn class in a pickle: the reduction BaseEstimator gives, without the class."""

    def __reduce_ex__(self, protocol: int) -> tuple:
        return copyreg.__newobj__, (type(self),), self.__dict__


@dataclass(frozen=True)
class Layout:
    """How the installed scikit-learn pickles the two estimators: module and name, parameters in order."""

    version: str
    classes: dict[str, tuple[str, str]]
    params: dict[str, tuple[tuple[str, Any], ...]]

    def stand_in(self, kind: str) -> type:
        module, name = self.classes[kind]
        return type(name, (_StandIn,), {"__module__": module, "__qualname__": name})

    def state(self, kind: str, fitted: dict[str, Any]) -> dict[str, Any]:
        return {**dict(self.params[kind]), **fitted, VERSION_KEY: self.version}

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "classes": self.classes,
                "params": {kind: [[k, _encode(v)] for k, v in items] for kind, items in self.params.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Layout":
        return cls(data["version"], {kind: tuple(data["classes"][kind]) for kind in KINDS},
                   {kind: tuple((sys.intern(k), _decode(v)) for k, v in data["params"][kind]) for kind in KINDS})


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type) and issubclass(value, np.generic) and getattr(np, value.__name__, None) is value:
        return {"numpy": value.__name__}
    raise TypeError(f"a parameter of type {type(value).__name__} has no layout")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return getattr(np, value["numpy"])
    return sys.intern(value) if isinstance(value, str) else value


# -- writing ----------------------------------------------------------------------------------------
class _Pickler(pickle._Pickler):  # the pure-Python pickler: it writes what the C one writes, and can be told
    def save_global(self, obj: Any, name: str | None = None) -> None:  # where a stand-in's class lives
        if isinstance(obj, type) and issubclass(obj, _StandIn):
            self.save(obj.__module__)
            self.save(obj.__qualname__)
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def artifact_bytes(layout: Layout, feature_names, coef, intercept: float) -> dict[str, bytes]:
    """The pickles of the fitted vectorizer and regression (``model.dict_vectorizer``, ``linear_regression``)."""
    names = [str(name) for name in feature_names]
    coef = np.asarray(coef, np.float64)
    fitted = {"vectorizer": {"feature_names_": names, "vocabulary_": {n: i for i, n in enumerate(names)}},
              "model": {"coef_": coef, "intercept_": float(intercept), "n_features_in_": len(coef)}}
    return {kind: _dumps(layout, kind, fitted[kind]) for kind in KINDS}


def _dumps(layout: Layout, kind: str, fitted: dict[str, Any]) -> bytes:
    cls = layout.stand_in(kind)
    stand_in = cls.__new__(cls)
    stand_in.__dict__.update(layout.state(kind, fitted))
    out = io.BytesIO()
    _Pickler(out, max(pickle.DEFAULT_PROTOCOL, 4)).dump(stand_in)
    return out.getvalue()


# -- reading a champion's weights ---------------------------------------------------------------------
class _Unpickler(pickle.Unpickler):
    def __init__(self, payload: bytes, classes: dict[tuple[str, str], type]):
        super().__init__(io.BytesIO(payload))
        self.classes = classes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.classes:
            return self.classes[module, name]
        if (module, name) in ARRAYS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not read without scikit-learn")


@dataclass(frozen=True)
class Weights:
    """A pickled vectorizer's columns and regression's weights, as its ``predict`` uses them."""

    vocabulary: dict[str, int]
    coef: np.ndarray
    intercept: float


def weights(layout: Layout | None, payloads: dict[str, bytes]) -> Weights | None:
    """The weights in pickles this layout writes (this scikit-learn's, default parameters); else None."""
    if layout is None:
        return None
    classes = {layout.classes[kind]: layout.stand_in(kind) for kind in KINDS}
    try:
        loaded = {kind: _Unpickler(payloads[kind], classes).load() for kind in KINDS}
    except Exception:  # noqa: BLE001 - any odd pickle: scikit-learn itself then loads it or says why not
        return None
    if not all(_as_written(layout, kind, loaded[kind], classes) for kind in KINDS):
        return None
    return _checked(loaded["vectorizer"].__dict__, loaded["model"].__dict__)


def _as_written(layout: Layout, kind: str, value: Any, classes: dict[tuple[str, str], type]) -> bool:
    """The object is the stand-in of ``kind`` with exactly the state ``artifact_bytes`` writes."""
    if type(value) is not classes[layout.classes[kind]]:
        return False
    state, params = value.__dict__, dict(layout.params[kind])
    expected = [*params, *FITTED[kind], VERSION_KEY]
    return list(state) == expected and state[VERSION_KEY] == layout.version and \
        all(type(state[k]) is type(v) and state[k] == v for k, v in params.items())


def _checked(vectorizer: dict[str, Any], regression: dict[str, Any]) -> Weights | None:
    vocabulary, coef, intercept = vectorizer["vocabulary_"], regression["coef_"], regression["intercept_"]
    width = len(vectorizer["feature_names_"])
    if not (isinstance(vocabulary, dict) and all(type(k) is str and type(v) is int for k, v in vocabulary.items())
            and sorted(vocabulary.values()) == list(range(width)) and isinstance(coef, np.ndarray)
            and coef.dtype == np.float64 and coef.shape == (width,) and type(intercept) is float
            and regression["n_features_in_"] == width):
        return None
    return Weights(vocabulary, coef, intercept)


def predict_pairs(found: Weights, pu: np.ndarray, do: np.ndarray) -> np.ndarray:
    """What ``regression.predict(dv.transform(...))`` gives for each (pickup, drop-off) pair (codes, -1 for
    missing), computed as scikit-learn does: the one-hot row's weights summed from 0, then the intercept;
    a zone the vectorizer never saw adds nothing. Bit for bit: two terms from 0 add up in any order alike."""
    total = np.zeros(len(pu))
    for key, zones in ((PU, pu), (DO, do)):
        distinct, inverse = np.unique(np.asarray(zones, np.int64), return_inverse=True)
        columns = np.array([found.vocabulary.get(f"{key}={zone}", -1) for zone in distinct.tolist()], np.int64)
        column = columns[inverse]
        total += np.where(column >= 0, found.coef[np.maximum(column, 0)], 0.0)
    return total + found.intercept


# -- the layout, learned once per history and scikit-learn version -----------------------------------
def layout_path(cache: Path, version: str) -> Path:
    return Path(cache) / f"sklearn-pickles-{version}.json"


def cached(cache: Path | None) -> Layout | None:
    """The layout learned for the installed scikit-learn, if a run of this history learned it."""
    version = installed_version() if cache is not None else None
    if version is None:
        return None
    try:
        layout = Layout.from_json(json.loads(layout_path(cache, version).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return layout if layout.version == version else None


def learn(vectorizer: Any, regression: Any) -> Layout:
    """The layout of these scikit-learn objects' classes (in a process that imported scikit-learn)."""
    import sklearn

    values = dict(zip(KINDS, (vectorizer, regression)))
    return Layout(sklearn.__version__, {kind: (type(v).__module__, type(v).__qualname__) for kind, v in values.items()},
                  {kind: tuple((k, x) for k, x in type(v)().__getstate__().items() if k != VERSION_KEY)
                   for kind, v in values.items()})


def remember(cache: Path | None, vectorizer: Any, regression: Any, written: dict[str, bytes]) -> None:
    """Keep the layout of these objects if what it writes equals ``written`` (their own pickles)."""
    layout = learn(vectorizer, regression) if cache is not None else None
    if layout is None or layout.version != installed_version():
        return
    try:
        text = json.dumps(layout.to_json(), indent=1)
    except TypeError:  # a parameter that is not a plain value: this version is left to scikit-learn
        return
    read_back = Layout.from_json(json.loads(text))  # as a later run reads it
    if artifact_bytes(read_back, vectorizer.feature_names_, regression.coef_, regression.intercept_) != written:
        return
    try:
        _write_atomically(layout_path(cache, layout.version), text)
    except OSError as error:  # the run goes on; the next one imports scikit-learn again
        log.warning("How scikit-learn pickles the model could not be kept in %s: %s", cache, error)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
