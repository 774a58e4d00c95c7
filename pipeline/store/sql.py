"""The store's SQL through SQLAlchemy Core: one statement, each backend's spelling.

Every statement the store sends is compiled by the backend's SQLAlchemy dialect (``dialects.py``):
plain text with ``:name`` binds, for the standard SQL both backends read alike, with what the two
spell differently (JSON fields, day arithmetic, merging JSON) put in as a construct below, which has
one compilation per dialect. No statement is rewritten after it is written. SQLAlchemy compiles; the
store's own connections execute (as encode/databases does): their transactions (``BEGIN IMMEDIATE``,
advisory locks) and the sentences for storage faults stay theirs.

A compilation is remembered, as Python keeps bytecode: for the process, and in a file beside this
module's bytecode (``__pycache__/sql-*.json``, keyed by the SQLAlchemy and ``dialects.py`` it came
from), so that a command, a flow process or the dashboard compiles nothing it compiled before and
does not even import SQLAlchemy (a tenth of a second). ``FHV_SQL_CACHE`` names another folder for
that file; ``off`` keeps compilations in memory only.
"""
from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, NamedTuple

DIALECT_NAMES = ("sqlite", "postgresql")
MAX_REMEMBERED = 5000  # statements in the cache file: those built from many values (IN lists) stay bounded


def compiled(statement: Any, dialect: str) -> str:
    """The statement in ``dialect``'s spelling (text: ``:name`` binds become the driver's)."""
    if isinstance(statement, str):
        return _text(statement, dialect)
    from . import dialects  # a Core expression: compiled each time it is built (not cached)

    return dialects.compile_statement(statement, dialect)


@functools.lru_cache(maxsize=4096)
def _text(sql: str, dialect: str) -> str:
    return _remembered(f"{dialect}\0{sql}", lambda dialects: dialects.compile_text(sql, dialect))


class Construct(NamedTuple):
    """What the backends spell differently, for ``fragment``: a kind of ``dialects.CONSTRUCTS`` and its names."""

    kind: str
    args: tuple[str, ...]


def fragment(construct: Construct, dialect: str) -> str:
    """A construct as SQL text in ``dialect``'s spelling, to put into a text statement."""
    return _fragment(construct, dialect)


@functools.lru_cache(maxsize=1024)
def _fragment(construct: Construct, dialect: str) -> str:
    key = f"{dialect}\0{construct.kind}\0" + "\0".join(construct.args)
    return _remembered(key, lambda dialects: dialects.compile_construct(construct.kind, construct.args, dialect))


def in_list(name: str, values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
    """``:name_0, :name_1, ...`` and their values, for ``IN (...)`` (an empty list: ``NULL``, which
    matches nothing)."""
    params = {f"{name}_{i}": value for i, value in enumerate(values)}
    return (", ".join(f":{key}" for key in params) or "NULL"), params


# -- what the backends spell differently --------------------------------------------------
_NAME = re.compile(r"^\w+$")
_COLUMN = re.compile(r"^(\w+\.)?\w+$")


def _checked(pattern: re.Pattern[str], text: str, what: str) -> str:
    if not isinstance(text, str) or not pattern.fullmatch(text):
        raise ValueError(f"{what} {text!r} is not a plain SQL name")
    return text


def _json_key(column: str, key: str) -> tuple[str, str]:
    return _checked(_COLUMN, column, "The JSON column"), _checked(_NAME, key, "The JSON key")


def json_get(column: str, key: str) -> Construct:
    """The JSON value at ``key`` of ``column`` ('alias.name' or 'name') as SQL reads it: a number sorts as a
    number; JSON null is SQL NULL."""
    return Construct("json_get", _json_key(column, key))


def json_text(column: str, key: str) -> Construct:
    """The JSON value at ``key`` as text (what runs are grouped and looked up by; an indexed expression)."""
    return Construct("json_text", _json_key(column, key))


def json_true(column: str, key: str) -> Construct:
    """Whether the JSON value at ``key`` is ``true`` (a condition)."""
    return Construct("json_true", _json_key(column, key))


def json_merge(column: str, param: str) -> Construct:
    """The JSON object in ``column`` with the keys of the JSON object bound as ``:param`` put in (a key whose
    new value is null is removed)."""
    return Construct("json_merge", (_checked(_COLUMN, column, "The JSON column"),
                                    _checked(_NAME, param, "The parameter")))


def epoch_days(column: str) -> Construct:
    """An ISO time text column as days since an epoch (a fraction), for differences of times."""
    return Construct("epoch_days", (_checked(_COLUMN, column, "The time column"),))


def json_array_values(column: str) -> Construct:
    """A FROM item: one row per element of the JSON array in ``column``, its text as ``json_each.value``."""
    return Construct("json_array_values", (_checked(_COLUMN, column, "The JSON column"),))


# -- compilations remembered across processes ------------------------------------------------
class _Remembered:
    """The compilations in the cache file, loaded at the first statement; new ones written at exit."""

    def __init__(self) -> None:
        self.file: Path | None = None
        self.known: dict[str, str] = {}
        self.new: dict[str, str] = {}
        self.loaded = False

    def load(self) -> None:
        self.loaded = True
        self.file = _cache_file()
        if self.file is None:
            return
        try:
            found = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # none yet, unreadable or half-written by a process that died: compiled again
        if isinstance(found, dict) and len(found) <= MAX_REMEMBERED:  # past the cap: the file starts anew
            self.known = {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}

    def save(self) -> None:
        """Merge this process's new compilations into the file (atomically: a reader sees one whole file)."""
        if self.file is None or not self.new:
            return
        merged = {**self.known, **self.new}
        try:
            current = json.loads(self.file.read_text(encoding="utf-8"))
            if isinstance(current, dict) and len(current) + len(self.new) <= MAX_REMEMBERED:
                merged = {**current, **merged}
        except (OSError, ValueError):
            pass
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.file.parent, prefix=".sql-", suffix=".tmp")
            os.chmod(temporary, 0o644)  # readable by every user of the install, as its bytecode is
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(merged, out)
            os.replace(temporary, self.file)
        except OSError:  # a folder this user may not write (an installed package): in memory only
            return
        self.known, self.new = merged, {}


_MEMORY = _Remembered()


def _remembered(key: str, compile_with: Any) -> str:
    if not _MEMORY.loaded:
        _MEMORY.load()
    found = _MEMORY.known.get(key)
    if found is None:
        from . import dialects

        found = _MEMORY.new[key] = _MEMORY.known[key] = compile_with(dialects)
        if len(_MEMORY.new) == 1:
            atexit.register(_MEMORY.save)
    return found


def _cache_file() -> Path | None:
    """The cache file for this SQLAlchemy and this ``dialects.py``, or None (``FHV_SQL_CACHE=off``, or no
    SQLAlchemy to key it by)."""
    folder = os.environ.get("FHV_SQL_CACHE") or str(Path(__file__).with_name("__pycache__"))
    if folder == "off":
        return None
    spec = importlib.util.find_spec("sqlalchemy")
    if spec is None or not spec.origin:
        return None
    marks = []
    for source in (Path(spec.origin), Path(__file__).with_name("dialects.py")):
        try:
            found = source.stat()
        except OSError:
            return None
        marks.append(f"{found.st_mtime_ns:x}{found.st_size:x}")
    return Path(folder) / f"sql-{'-'.join(marks)}.json"
