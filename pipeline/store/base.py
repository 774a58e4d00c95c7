"""Connections, the transaction helper, migrations and the conversions every part of the store shares."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..orchestration.states import State
from .migrations import MIGRATIONS, _statements

UTC = dt.timezone.utc
BUSY_TIMEOUT_MS = 10_000

RUN_JSON_FIELDS = ("parameters", "metrics")


def to_db(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the store only takes aware datetimes")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_db(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_run_id() -> str:
    return str(uuid.uuid4())


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the history with WAL, a busy timeout and foreign keys (autocommit mode)."""
    if readonly:
        conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    for key in RUN_JSON_FIELDS + ("schedule", "tags"):
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


def _rows(rows: Iterable[sqlite3.Row]) -> list[dict[str, Any]]:
    return [_row(r) for r in rows]


class BaseStore:
    """Connections, transactions and migrations. One instance per process; one connection per thread."""

    def __init__(self, path: Path | str, *, readonly: bool = False, migrate: bool = True):
        self.path = Path(path)
        self.readonly = readonly
        self._local = threading.local()
        if migrate and not readonly:
            self.migrate()

    # -- connection and transactions -------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, readonly=self.readonly)
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK and re-raise. Nested calls join the outer one."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        return _row(self.conn.execute(sql, tuple(params)).fetchone())

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return _rows(self.conn.execute(sql, tuple(params)).fetchall())

    # -- migrations -----------------------------------------------------------------
    def migrate(self, upto: int | None = None) -> list[str]:
        """Apply the migrations not yet recorded, in order; returns the names applied."""
        applied: list[str] = []
        with self.atomic() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
            for name, sql in MIGRATIONS[:upto]:
                if name not in done:
                    for statement in _statements(sql):
                        conn.execute(statement)
                    conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, to_db(dt.datetime.now(UTC))))
                    applied.append(name)
        return applied

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self._all("SELECT name FROM migrations ORDER BY name")]

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]


def _db_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return to_db(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, State):
        return value.value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return value
