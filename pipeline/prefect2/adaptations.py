"""What scikit-learn removed since 1.0, given back to the course's files while their flows run.

Files of 2022 call ``mean_squared_error(y, y_pred, squared=False)``; scikit-learn 1.6 removed
``squared``. Inside a user's flow process only (a scheduled run, a script), and only when the
installed scikit-learn lacks them, these names of ``sklearn.metrics`` and the vectorizer take their
old arguments again and say so once in the run's log:

- ``mean_squared_error(..., squared=False)`` is ``root_mean_squared_error(...)`` (removed in 1.6);
- ``mean_squared_log_error(..., squared=False)`` is ``root_mean_squared_log_error(...)`` (removed in 1.6);
- ``DictVectorizer.get_feature_names()`` is ``list(get_feature_names_out())`` (removed in 1.2).

When the scope ends, scikit-learn is as it was. A scikit-learn old enough to have them is left alone.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.util
import inspect
import logging
import sys
from typing import Any, Callable, Iterator

from ..orchestration.runtime import run_context

logger = logging.getLogger("pipeline.prefect2")
_SAID: set[tuple[str, str]] = set()  # (run id, adaptation): said once per run


def say_once(what: str, sentence: str) -> None:
    """Log ``sentence`` (a warning) once per run and adaptation."""
    context = run_context()
    key = (context.run_id if context else "", what)
    if key not in _SAID:
        _SAID.add(key)
        logger.warning("%s", sentence)


def _squared(original: Callable[..., Any], root: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def adapted(*args: Any, squared: bool = True, **kwargs: Any) -> Any:
        if squared:
            return original(*args, **kwargs)
        say_once(name, f"{name}(..., squared=False) computed as the RMSE with {root.__name__}: scikit-learn 1.6 "
                         "removed squared=.")
        return root(*args, **kwargs)
    adapted.__fhv_adapted__ = original  # type: ignore[attr-defined]
    return adapted


def _get_feature_names(self: Any) -> list[str]:
    say_once("get_feature_names", f"{type(self).__name__}.get_feature_names() answered with "
                                    "get_feature_names_out(): scikit-learn 1.2 removed get_feature_names.")
    return list(self.get_feature_names_out())


def _patch_metrics(module: Any, undo: list[Callable[[], None]]) -> None:
    for name, root in (("mean_squared_error", "root_mean_squared_error"),
                       ("mean_squared_log_error", "root_mean_squared_log_error")):
        original = getattr(module, name, None)
        if original is None or not hasattr(module, root) or "squared" in inspect.signature(original).parameters:
            continue
        setattr(module, name, _squared(original, getattr(module, root), name))
        undo.append(functools.partial(setattr, module, name, original))


def _patch_vectorizer(module: Any, undo: list[Callable[[], None]]) -> None:
    vectorizer = getattr(module, "DictVectorizer", None)
    if vectorizer is None or hasattr(vectorizer, "get_feature_names"):
        return
    vectorizer.get_feature_names = _get_feature_names
    undo.append(lambda: delattr(vectorizer, "get_feature_names"))


_PATCHES = {"sklearn.metrics": _patch_metrics, "sklearn.feature_extraction": _patch_vectorizer}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Adapts a module of ``_PATCHES`` right after its first import inside the scope."""

    def __init__(self, undo: list[Callable[[], None]]):
        self.undo, self.busy = undo, False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _PATCHES or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_and_adapt(module: Any) -> None:
            execute(module)
            _PATCHES[fullname](module, self.undo)
        spec.loader.exec_module = exec_and_adapt  # type: ignore[method-assign]
        return spec


@contextlib.contextmanager
def adapted_libraries() -> Iterator[None]:
    """Inside: the removed scikit-learn arguments work again (see the module's note)."""
    undo: list[Callable[[], None]] = []
    for name, patch in _PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name], undo)
    finder = _PatchOnImport(undo)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for step in reversed(undo):
            step()
