"""The store's SQL through SQLAlchemy Core: one statement, each backend's spelling.

Every statement the store sends is a SQLAlchemy construct compiled by the backend's dialect: plain
text (``text()`` with ``:name`` binds, for the standard SQL both backends read alike) or a Core
expression. What the two backends spell differently (JSON fields, day arithmetic, merging JSON) is a
construct below with one compilation per dialect (``sqlalchemy.ext.compiler``), so no statement is
rewritten after it is written. SQLAlchemy compiles; the store's own connections execute (as
encode/databases does): their transactions (``BEGIN IMMEDIATE``, advisory locks) and the sentences
for storage faults stay theirs. Compilations are cached: a statement is compiled once per dialect.

A third backend: add its SQLAlchemy dialect to ``DIALECTS``, a ``@compiles`` for each construct
below, its migrations' DDL, and a connection with ``execute``/``executemany``/``begin``.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ClauseElement, ColumnElement

DIALECTS: dict[str, Any] = {  # only compile: a user's environment may bring its own SQLAlchemy 1.4 (prefect2/lent.py)
    "sqlite": sqlite.dialect(paramstyle="named"),  # sqlite3 binds ':name' from a dict
    "postgresql": postgresql.dialect(),  # psycopg binds '%(name)s' from a dict
}
Params = Mapping[str, Any]


def compiled(statement: str | ClauseElement, dialect: str) -> str:
    """The statement in ``dialect``'s spelling (text: ``:name`` binds become the driver's)."""
    if isinstance(statement, str):
        return _text(statement, dialect)
    return _core(statement, dialect)


@functools.lru_cache(maxsize=4096)
def _text(sql: str, dialect: str) -> str:
    return str(sa.text(sql).compile(dialect=DIALECTS[dialect]))


@functools.lru_cache(maxsize=1024)
def _core(statement: ClauseElement, dialect: str) -> str:
    return str(statement.compile(dialect=DIALECTS[dialect], compile_kwargs={"literal_binds": True}))


def fragment(element: ClauseElement, dialect: str) -> str:
    """A construct as SQL text in ``dialect``'s spelling, to put into a text statement (not cached: the
    text statement it goes into is)."""
    return str(element.compile(dialect=DIALECTS[dialect]))


def in_list(name: str, values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
    """``:name_0, :name_1, ...`` and their values, for ``IN (...)`` (an empty list: ``NULL``, which
    matches nothing)."""
    params = {f"{name}_{i}": value for i, value in enumerate(values)}
    return (", ".join(f":{key}" for key in params) or "NULL"), params


# -- what the backends spell differently ------------------------------------------------
_NAME = re.compile(r"^\w+$")
_COLUMN = re.compile(r"^(\w+\.)?\w+$")


def _checked(pattern: re.Pattern[str], text: str, what: str) -> str:
    if not pattern.match(text):
        raise ValueError(f"{what} {text!r} is not a plain SQL name")
    return text


class _JsonPath(ColumnElement):
    """A top-level key of a JSON column (``column`` is 'alias.name' or 'name'; ``key`` a plain name)."""

    inherit_cache = False

    def __init__(self, column: str, key: str):
        self.column = _checked(_COLUMN, column, "The JSON column")
        self.key = _checked(_NAME, key, "The JSON key")


class json_get(_JsonPath):
    """The JSON value at ``key`` as SQL reads it (a number sorts as a number); JSON null is SQL NULL."""


class json_text(_JsonPath):
    """The JSON value at ``key`` as text."""


class json_true(_JsonPath):
    """Whether the JSON value at ``key`` is ``true`` (a condition)."""


class json_merge(ColumnElement):
    """The JSON object in ``column`` with the keys of the JSON object bound as ``:param`` put in (a key
    whose new value is null is removed)."""

    inherit_cache = False

    def __init__(self, column: str, param: str):
        self.column = _checked(_COLUMN, column, "The JSON column")
        self.param = _checked(_NAME, param, "The parameter")


class epoch_days(ColumnElement):
    """An ISO time text column as days since an epoch (a fraction), for differences of times."""

    inherit_cache = False

    def __init__(self, column: str):
        self.column = _checked(_COLUMN, column, "The time column")


class json_array_values(ColumnElement):
    """A FROM item: one row per element of the JSON array in ``column``, its text as ``json_each.value``."""

    inherit_cache = False

    def __init__(self, column: str):
        self.column = _checked(_COLUMN, column, "The JSON column")


@compiles(json_get, "sqlite")
def _json_get_sqlite(element: json_get, compiler: Any, **kw: Any) -> str:
    return f"json_extract({element.column}, '$.{element.key}')"


@compiles(json_get, "postgresql")
def _json_get_postgresql(element: json_get, compiler: Any, **kw: Any) -> str:
    return f"NULLIF(({element.column})::jsonb -> '{element.key}', 'null'::jsonb)"


@compiles(json_text, "sqlite")
def _json_text_sqlite(element: json_text, compiler: Any, **kw: Any) -> str:
    return f"CAST(json_extract({element.column}, '$.{element.key}') AS TEXT)"


@compiles(json_text, "postgresql")
def _json_text_postgresql(element: json_text, compiler: Any, **kw: Any) -> str:
    return f"(({element.column})::jsonb ->> '{element.key}')"


@compiles(json_true, "sqlite")
def _json_true_sqlite(element: json_true, compiler: Any, **kw: Any) -> str:
    return f"json_extract({element.column}, '$.{element.key}') IS TRUE"


@compiles(json_true, "postgresql")
def _json_true_postgresql(element: json_true, compiler: Any, **kw: Any) -> str:
    return f"((({element.column})::jsonb -> '{element.key}') = 'true'::jsonb) IS TRUE"


@compiles(json_merge, "sqlite")
def _json_merge_sqlite(element: json_merge, compiler: Any, **kw: Any) -> str:
    return f"json_patch({element.column}, :{element.param})"


@compiles(json_merge, "postgresql")
def _json_merge_postgresql(element: json_merge, compiler: Any, **kw: Any) -> str:
    return f"jsonb_strip_nulls(({element.column})::jsonb || (:{element.param})::jsonb)"


@compiles(epoch_days, "sqlite")
def _epoch_days_sqlite(element: epoch_days, compiler: Any, **kw: Any) -> str:
    return f"julianday({element.column})"


@compiles(epoch_days, "postgresql")
def _epoch_days_postgresql(element: epoch_days, compiler: Any, **kw: Any) -> str:
    return f"(EXTRACT(EPOCH FROM ({element.column})::timestamptz) / 86400.0)"


@compiles(json_array_values, "sqlite")
def _json_array_values_sqlite(element: json_array_values, compiler: Any, **kw: Any) -> str:
    return f"json_each({element.column})"


@compiles(json_array_values, "postgresql")
def _json_array_values_postgresql(element: json_array_values, compiler: Any, **kw: Any) -> str:
    return f"jsonb_array_elements_text(({element.column})::jsonb) AS json_each(value)"
