"""The store's SQL, checked as the suite sends it: every ORDER BY term that may meet a NULL says where NULLs go.

SQLite sorts NULL first going up and last going down, PostgreSQL the other way round. The store writes one
statement for both, so a term on a column that may be NULL must say ``NULLS FIRST`` or ``NULLS LAST``; a
term on a column the schema declares NOT NULL (or a primary key) in every table that has it need not.
``install()`` (from conftest) makes every statement the suite compiles pass this check, on both backends.
"""
from __future__ import annotations

import functools
import re
import sqlite3

from pipeline.store import sql as store_sql
from pipeline.store.migrations import MIGRATIONS, _statements, script

_ORDER_BY = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)
_CLAUSE_END = re.compile(r"\s+(LIMIT|OFFSET|FOR|FETCH)\b", re.IGNORECASE)
_NULLS = re.compile(r"\bNULLS\s+(FIRST|LAST)\s*$", re.IGNORECASE)
_DIRECTION = re.compile(r"\s+(ASC|DESC)\s*$", re.IGNORECASE)
_COLUMN = re.compile(r"^(?:\w+\.)?(\w+)$")
_COALESCE = re.compile(r"^COALESCE\((.*)\)$", re.IGNORECASE | re.DOTALL)


def unsaid_nulls(sql: str) -> list[str]:
    """The ORDER BY terms of ``sql`` that may meet a NULL and do not say where NULLs go."""
    terms = []
    for match in _ORDER_BY.finditer(sql):
        end = _clause_end(sql, match.end())
        terms += [term.strip() for term in _top_level_split(sql[match.end():end])]
    return [term for term in terms if not _NULLS.search(term) and not _never_null(term)]


def _never_null(term: str) -> bool:
    """A NOT NULL column, or a COALESCE whose last choice is one."""
    expression = _DIRECTION.sub("", term).strip()
    coalesce = _COALESCE.match(expression)
    if coalesce:
        expression = _top_level_split(coalesce.group(1))[-1].strip()
    column = _COLUMN.match(expression)
    return column is not None and column.group(1) in never_null_columns()


@functools.lru_cache(maxsize=1)
def never_null_columns() -> frozenset[str]:
    """Column names that are NOT NULL or a primary key in every table of the schema that has them."""
    conn = sqlite3.connect(":memory:")
    for name, migration in MIGRATIONS:
        for statement in _statements(script(name, migration, "sqlite")):
            conn.execute(statement)
    seen: dict[str, bool] = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        for _, column, _, notnull, _, pk in conn.execute(f"PRAGMA table_info({table})").fetchall():
            seen[column] = seen.get(column, True) and bool(notnull or pk)
    return frozenset(column for column, never in seen.items() if never)


def _clause_end(sql: str, index: int) -> int:
    """Where the ORDER BY that starts at ``index`` ends: a closing parenthesis, LIMIT, OFFSET, FOR or the end."""
    depth, quoted = 0, False
    for position in range(index, len(sql)):
        char = sql[position]
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return position
            depth -= 1
        elif depth == 0 and _CLAUSE_END.match(sql, position):
            return position
    return len(sql)


def _top_level_split(text: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    for position, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and depth == 0 and char == ",":
            parts.append(text[start:position])
            start = position + 1
    return parts + [text[start:]]


def install() -> None:
    """Check every text statement the store compiles (once per statement: the compilation is cached)."""
    original = store_sql._text.__wrapped__

    @functools.lru_cache(maxsize=4096)
    def checked(statement: str, dialect: str) -> str:
        unsaid = unsaid_nulls(statement)
        if unsaid:
            raise AssertionError(f"ORDER BY term(s) {unsaid} may meet a NULL and do not say NULLS FIRST/LAST "
                                 f"(SQLite and PostgreSQL disagree): {statement}")
        return original(statement, dialect)

    store_sql._text = checked
