"""Copy a SQLite history into an empty PostgreSQL database (``history copy --to URL``).

Every table the migrations made is copied (runs, task runs, logs, deployments, work queues,
artifacts and their bytes, and whatever later migrations add), parents before children, in one
transaction on the target: either everything arrives or nothing does. The target keeps its own
``history_identity`` (it is another history). Identity sequences continue after the copied ids.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import BaseStore

SEEDED = {"history_identity", "migrations"}  # rows the target's own migrations made, kept as they are


def copy_history(source: BaseStore, target: BaseStore) -> dict[str, int]:
    """Copy ``source`` (SQLite, migrated) into ``target`` (PostgreSQL, empty); returns rows per table."""
    refuse_non_empty(target)
    target.migrate()
    tables = copy_order(source)
    counts: dict[str, int] = {}
    with target.atomic() as conn:
        conn.execute("DELETE FROM work_queues", {})  # the seeded 'default' queue comes with the copy
        for table in tables:
            counts[table] = _copy_table(source, conn, table)
        _advance_identities(conn)
    return counts


def refuse_non_empty(target: BaseStore) -> None:
    """A target with any row of its own (a seeded, just-migrated history is empty) is refused with a sentence."""
    tables = _target_tables(target.conn)
    if tables and "migrations" not in tables:
        raise ConfigError(f"The database {target.path} already has tables that are not a history "
                          f"({', '.join(sorted(tables)[:5])}); copy into an empty database.")
    for table in sorted(tables - SEEDED):
        extra = " WHERE name <> 'default'" if table == "work_queues" else ""
        rows = target.conn.execute(f"SELECT COUNT(*) FROM {table}{extra}", {}).fetchone()[0]
        if rows:
            raise ConfigError(f"The history {target.path} is not empty (its table {table} has {rows} rows); "
                              "copy into an empty database, so that no run is mixed with another history's.")


def _target_tables(conn: Any) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                        "AND table_type = 'BASE TABLE'", {}).fetchall()
    return {row[0] for row in rows}


def copy_order(source: BaseStore) -> list[str]:
    """The source's tables (not the migrations' own), each after the tables its foreign keys point to."""
    names = [row[0] for row in source.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name", {}).fetchall()
        if row[0] not in SEEDED]
    parents = {name: {row["table"] for row in source.conn.execute(f"PRAGMA foreign_key_list({name})", {}).fetchall()}
               - {name} for name in names}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:  # a cycle of foreign keys: no migration makes one, but never loop forever
            ready = [n for n in names if n not in ordered]
        ordered += ready
    return ordered


def _copy_table(source: BaseStore, conn: Any, table: str) -> int:
    mine = [row[1] for row in source.conn.execute(f"PRAGMA table_info({table})", {}).fetchall()]
    theirs = {row[0] for row in conn.execute("SELECT column_name FROM information_schema.columns "
                                             "WHERE table_schema = current_schema() AND table_name = :table",
                                             {"table": table}).fetchall()}
    columns = [c for c in mine if c in theirs]
    count = 0
    with conn.raw.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in source.conn.execute(f"SELECT {', '.join(columns)} FROM {table}", {}):
            copy.write_row(tuple(row))
            count += 1
    return count


def _advance_identities(conn: Any) -> None:
    """New rows get ids after the copied ones (COPY wrote the ids; the sequences did not move)."""
    for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND is_identity = 'YES'", {}).fetchall():
        conn.execute(f"SELECT setval(pg_get_serial_sequence(:table, :column), COALESCE(MAX({column}), 0) + 1, false) "
                     f"FROM {table}", {"table": table, "column": column})


def open_source(path: Path) -> Path:
    """The SQLite history to copy; a sentence when there is none."""
    if not path.is_file():
        raise ConfigError(f"There is no history at {path} to copy; set FHV_HOME to the folder of the history, "
                          "or name the file with --from.")
    return path
