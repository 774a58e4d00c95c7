"""A flow's parameters cast to its type hints, as Prefect 2.0 beta did with pydantic.

Deployments, triggers and backfills pass parameters as JSON (``"2021-08-15"``); a flow declared
``def main(date: datetime = None)`` receives a ``datetime``, ``n: int`` an int, ``path: Path`` a Path,
``Optional[...]`` and ``X | None`` their inner type or None. A value that cannot be cast fails the
run with one sentence naming the parameter. Parameters without a hint, or with a hint of a class
this module does not know, are passed as they are.
"""
from __future__ import annotations

import datetime as dt
import inspect
import json
import types
import typing
from pathlib import Path, PurePath
from typing import Any, Callable

from ..errors import ConfigError

_TRUE, _FALSE = {"true", "1", "yes", "on", "t", "y"}, {"false", "0", "no", "off", "f", "n"}
_EXAMPLES = {dt.datetime: "like 2021-08-15 or 2021-08-15T09:00:00", dt.date: "like 2021-08-15",
             int: "a whole number", float: "a number", bool: "true or false"}


def cast_parameters(fn: Callable[..., Any], flow: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` cast to ``fn``'s hints; ConfigError names the first one that cannot be."""
    hints = _hints(fn)
    signature = inspect.signature(fn).parameters
    out = {}
    for name, value in parameters.items():
        default = signature[name].default if name in signature else inspect.Parameter.empty
        try:
            out[name] = cast(value, hints.get(name, Any), none_ok=default is None)
        except (TypeError, ValueError, OverflowError) as error:
            raise ConfigError(f"The parameter {name!r} of the flow {flow} is {value!r}, which is not "
                              f"{_describe(hints.get(name))}: {error}") from None
    return out


def cast(value: Any, hint: Any, *, none_ok: bool = False) -> Any:
    """``value`` as ``hint`` says; TypeError or ValueError when it cannot be."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, (str, typing.TypeVar)):
        return value
    if origin is typing.Union or origin is types.UnionType:
        return _union(value, typing.get_args(hint), none_ok)
    if value is None:
        if none_ok or hint is type(None):
            return None
        raise ValueError("a value is required")
    if origin is not None:
        return _container(value, origin)
    caster = _CASTERS.get(hint)
    if caster is not None:
        return caster(value)
    if isinstance(hint, type) and issubclass(hint, PurePath):
        return hint(value)
    return value


def _union(value: Any, options: tuple[Any, ...], none_ok: bool) -> Any:
    if value is None and (type(None) in options or none_ok):
        return None
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return cast(value, option)
        except (TypeError, ValueError) as error:
            errors.append(str(error))
    raise ValueError("; ".join(errors) or "a value is required")


def _container(value: Any, origin: Any) -> Any:
    if isinstance(value, str) and origin in (list, dict, tuple, set):
        value = json.loads(value)
    if origin in (list, tuple, set) and isinstance(value, (list, tuple, set)):
        return origin(value)
    if origin is dict and isinstance(value, dict):
        return value
    if isinstance(origin, type) and not isinstance(value, origin):
        raise TypeError(f"expected a {origin.__name__}")
    return value


def _datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return dt.datetime.fromisoformat(_text(value).replace("Z", "+00:00"))


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = _text(value)
    return dt.datetime.fromisoformat(text).date() if len(text) > 10 else dt.date.fromisoformat(text)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not a whole number")
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    number = float(value) if isinstance(value, str) else value
    if isinstance(number, float) and not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("not a number")
    return float(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError("not true or false")


def _str(value: Any) -> str:
    if isinstance(value, (str, int, float, PurePath)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} is not text")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a {type(value).__name__} is not a date")
    return value.strip()


_CASTERS: dict[Any, Callable[[Any], Any]] = {dt.datetime: _datetime, dt.date: _date, int: _int, float: _float,
                                             bool: _bool, str: _str, Path: Path}


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an unresolvable hint (a forward reference) is passed as it is
        return {}


def _describe(hint: Any) -> str:
    options = [o for o in typing.get_args(hint) if o is not type(None)] or [hint]
    names = [getattr(o, "__name__", str(o)) for o in options]
    words = [f"{'an' if n[:1] in 'aeiou' else 'a'} {n}" + (f" ({_EXAMPLES[o]})" if o in _EXAMPLES else "")
             for n, o in zip(names, options)]
    return " or ".join(words)
