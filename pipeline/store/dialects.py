"""SQLAlchemy Core, compiling the store's statements for each backend (imported only on a cache miss: ``sql.py``).

A text statement is ``sqlalchemy.text()`` compiled by the dialect (its ``:name`` binds become the
driver's, its ``%`` signs escaped for psycopg); what the backends spell differently is a construct
below with one ``@compiles`` per dialect (``sqlalchemy.ext.compiler``). Only compilation is used:
the dialects are never connected, so SQLAlchemy 1.4, which a user's environment may bring
(``prefect2/lent.py``), compiles the same text.
"""
from __future__ import annotations

from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement

DIALECTS: dict[str, Any] = {
    "sqlite": sqlite.dialect(paramstyle="named"),  # sqlite3 binds ':name' from a dict
    "postgresql": postgresql.dialect(),  # psycopg binds '%(name)s' from a dict
}


def compile_text(sql: str, dialect: str) -> str:
    return str(sa.text(sql).compile(dialect=DIALECTS[dialect]))


def compile_statement(statement: Any, dialect: str) -> str:
    """A Core expression, its literal values written into it."""
    return str(statement.compile(dialect=DIALECTS[dialect], compile_kwargs={"literal_binds": True}))


def compile_construct(kind: str, args: tuple[str, ...], dialect: str) -> str:
    return str(CONSTRUCTS[kind](*args).compile(dialect=DIALECTS[dialect]))


class _Construct(ColumnElement):
    inherit_cache = False

    def __init__(self, *args: str):
        self.args = args


class JsonGet(_Construct):
    """The JSON value at a key as SQL reads it (a number sorts as a number); JSON null is SQL NULL."""


class JsonText(_Construct):
    """The JSON value at a key as text."""


class JsonTrue(_Construct):
    """Whether the JSON value at a key is ``true`` (a condition)."""


class JsonMerge(_Construct):
    """The JSON object in a column with the keys of the JSON object bound as a parameter put in (a key whose
    new value is null is removed)."""


class EpochDays(_Construct):
    """An ISO time text column as days since an epoch (a fraction), for differences of times."""


class JsonArrayValues(_Construct):
    """A FROM item: one row per element of a JSON array column, its text as ``json_each.value``."""


CONSTRUCTS: dict[str, type[_Construct]] = {"json_get": JsonGet, "json_text": JsonText, "json_true": JsonTrue,
                                           "json_merge": JsonMerge, "epoch_days": EpochDays,
                                           "json_array_values": JsonArrayValues}
SPELLINGS: dict[tuple[type[_Construct], str], Callable[..., str]] = {
    (JsonGet, "sqlite"): lambda column, key: f"json_extract({column}, '$.{key}')",
    (JsonGet, "postgresql"): lambda column, key: f"NULLIF(({column})::jsonb -> '{key}', 'null'::jsonb)",
    (JsonText, "sqlite"): lambda column, key: f"CAST(json_extract({column}, '$.{key}') AS TEXT)",
    (JsonText, "postgresql"): lambda column, key: f"(({column})::jsonb ->> '{key}')",
    (JsonTrue, "sqlite"): lambda column, key: f"json_extract({column}, '$.{key}') IS TRUE",
    (JsonTrue, "postgresql"): lambda column, key: f"((({column})::jsonb -> '{key}') = 'true'::jsonb) IS TRUE",
    (JsonMerge, "sqlite"): lambda column, param: f"json_patch({column}, :{param})",
    (JsonMerge, "postgresql"): lambda column, param: f"jsonb_strip_nulls(({column})::jsonb || (:{param})::jsonb)",
    (EpochDays, "sqlite"): lambda column: f"julianday({column})",
    (EpochDays, "postgresql"): lambda column: f"(EXTRACT(EPOCH FROM ({column})::timestamptz) / 86400.0)",
    (JsonArrayValues, "sqlite"): lambda column: f"json_each({column})",
    (JsonArrayValues, "postgresql"):
        lambda column: f"jsonb_array_elements_text(({column})::jsonb) AS json_each(value)",
}


def _register(construct: type[_Construct], dialect: str, spell: Callable[..., str]) -> None:
    @compiles(construct, dialect)
    def _spelled(element: _Construct, compiler: Any, **kw: Any) -> str:
        return spell(*element.args)


for (_construct, _dialect), _spell in SPELLINGS.items():
    _register(_construct, _dialect, _spell)
