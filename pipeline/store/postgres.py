"""The history on PostgreSQL (psycopg 3): the ``Backend`` that runs the store's statements there.

The store writes one SQL for both backends (``:name`` binds, ISO text times, ``ON CONFLICT``,
``RETURNING``), which SQLAlchemy's PostgreSQL dialect compiles (``sql.py``); what the two spell
differently is a construct there, never a rewrite here. Rows read by index and by name, like
``sqlite3.Row``. Connection faults become a ``StorageError``; bad settings (wrong password,
missing database, old server) a ``ConfigError``; each one sentence naming the history.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Any, Iterable, Mapping

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads

from ..config import check_user_info, masked_url
from ..errors import ConfigError, HistoryUnreachable, StorageError
from .base import json_value
from .sql import compiled

MIN_SERVER_VERSION = 130000
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT_MS = 10_000  # like SQLite's busy timeout: a lock held longer is an error worth a sentence
MIGRATIONS_LOCK = 0x66687600  # the advisory lock that serializes migrations ('fhv\0')
TOPIC_LOCKS = 0x66687602  # the class of the advisory locks of ``serialize(topic)`` (two 32-bit keys)
DEFAULTS = {"connect_timeout": str(CONNECT_TIMEOUT_S), "keepalives": "1", "keepalives_idle": "10",
            "keepalives_interval": "5", "keepalives_count": "3", "tcp_user_timeout": "25000",
            "application_name": "fhv-pipeline"}


def shown(url: str) -> str:
    """The URL without its password, for sentences and logs."""
    try:
        check_user_info(url)
    except ConfigError:
        return masked_url(url).partition("?")[0]
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host') or 'localhost'}{port}/{info.get('dbname') or ''}"


# -- rows -------------------------------------------------------------------------------
class Row(tuple):
    """A row read by index or by column name, and ``dict(row)``, like ``sqlite3.Row``."""

    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: psycopg.Cursor) -> Any:
    """The row class of this result's columns (made once per set of names, read from the raw result)."""
    result = cursor.pgresult
    names = tuple(result.fname(i) or b"" for i in range(result.nfields)) if result is not None else ()
    return _row_class(names, cursor.connection.info.encoding)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[bytes, ...], encoding: str) -> type[Row]:
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name.decode(encoding), position)
    return type("Row", (Row,), {"_index": index, "__slots__": ()})


# -- connections --------------------------------------------------------------------------
_NONE: Mapping[str, Any] = {}


def _named(params: Any, statement: Any) -> Mapping[str, Any]:
    """The values of a statement, by name; {} (not None) when it has none, so that psycopg reads its '%%'."""
    if isinstance(params, Mapping):
        return params
    if params:
        raise TypeError(f"The store binds values by name (:name and a dict), not by position: {statement!r:.80}")
    return _NONE


class PgConnection:
    """One psycopg connection (autocommit; ``atomic`` opens the transactions) with the store's dialect."""

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection, url: str, readonly: bool):
        self.raw, self.url, self.readonly = raw, url, readonly
        self.history_path = shown(url)
        self.pid = os.getpid()  # a forked child must not use (or close) its parent's socket

    def execute(self, statement: Any, params: Mapping[str, Any] = _NONE) -> psycopg.Cursor:
        """Run a statement (text with ``:name`` binds, values in a dict) in PostgreSQL's spelling."""
        try:
            return self.raw.execute(compiled(statement, self.dialect), _named(params, statement))
        except psycopg.Error as error:
            raise self.fault(error) from error

    def executemany(self, statement: Any, rows: Iterable[Mapping[str, Any]]) -> psycopg.Cursor:
        rows = [_named(row, statement) for row in rows]
        try:
            with self.raw.cursor() as cursor:
                if rows:
                    cursor.executemany(compiled(statement, self.dialect), rows)
                return cursor
        except psycopg.Error as error:
            raise self.fault(error) from error

    def begin(self) -> None:
        """Open a transaction (rows lock as they are written; ``serialize`` orders what reads, then writes)."""
        self.execute("BEGIN", {})

    row_locks = True  # writers run side by side: a claim locks its queue's row, then its run's

    def lock_queue(self, work_queue: str, idle_timeout_ms: int) -> None:
        """Inside a claim's transaction: take the queue's row lock, which serialises the queue's claims. A
        claimer whose host goes silent while it holds the lock would block every claim of the queue until the
        server noticed (hours, for a cut network): the server ends such a session after ``idle_timeout_ms`` of
        silence inside the transaction (claims take milliseconds)."""
        self.execute("SELECT set_config('idle_in_transaction_session_timeout', :timeout, true), name "
                     "FROM work_queues WHERE name = :queue FOR UPDATE",
                     {"timeout": str(idle_timeout_ms), "queue": work_queue})

    def change_mark(self) -> str:
        """The server's write-ahead log insert position: it moves whenever the history does."""
        return self.execute("SELECT pg_current_wal_insert_lsn()::text", {}).fetchone()[0]

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def usable(self) -> bool:
        return self.pid == os.getpid() and not (self.raw.closed or self.raw.broken)

    def close(self) -> None:
        if self.pid == os.getpid():
            self.raw.close()

    def integrity_check(self) -> str:
        """'ok', or the indexes PostgreSQL marks invalid (a build that failed half-way)."""
        rows = self.execute("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                            "WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace", {}).fetchall()
        return "ok" if not rows else "invalid indexes: " + ", ".join(r[0] for r in rows)

    def has_table(self, name: str) -> bool:
        return self.execute("SELECT to_regclass(:name) IS NOT NULL", {"name": name}).fetchone()[0]

    def index_names(self) -> set[str]:
        rows = self.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()", {}).fetchall()
        return {row[0] for row in rows}

    def run_statements(self, statements: list[str]) -> None:
        """A migration's statements (no parameters) in one round trip, in the open transaction."""
        try:
            self.raw.execute(";\n".join(statements))
        except psycopg.Error as error:
            raise self.fault(error) from error

    def serialize_migrations(self) -> None:
        """Inside the migration transaction: one process migrates at a time, the others wait for it."""
        self.execute("SELECT pg_advisory_xact_lock(:key)", {"key": MIGRATIONS_LOCK})

    def serialize(self, topic: str) -> None:
        """Inside a transaction that reads, then writes what it read: one such transaction per ``topic`` at a
        time, until it ends (what BEGIN IMMEDIATE gives every transaction on SQLite)."""
        self.execute("SELECT pg_advisory_xact_lock(:kind, hashtext(:topic))", {"kind": TOPIC_LOCKS, "topic": topic})

    def fault(self, error: psycopg.Error) -> Exception:
        """The StorageError for a fault of the server or the connection, the ConfigError for a user without
        the rights it needs; any other error as it was."""
        if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)) or self.raw.broken:
            return fault_error(error, self.url)
        if isinstance(error, pg_errors.InsufficientPrivilege):
            user = self.raw.info.user
            return ConfigError(f"The PostgreSQL user {user!r} lacks a right the history {shown(self.url)} needs "
                               f"({_detail(error)}): make it the owner of the database (createdb -O {user} ...) or "
                               "grant it the rights, or let the owner open the history once to create its tables.")
        return error


def fault_error(error: psycopg.Error, url: str) -> StorageError:
    where = f"The history {shown(url)}"
    detail = _detail(error)
    if isinstance(error, pg_errors.LockNotAvailable):
        return StorageError(f"{where} is busy: another process held a lock for more than the lock timeout "
                            f"({LOCK_TIMEOUT_MS // 1000} s unless the URL sets lock_timeout); try again "
                            f"(PostgreSQL: {detail}).")
    if isinstance(error, (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)):
        return StorageError(f"{where} is busy: this change collided with another one; try again "
                            f"(PostgreSQL: {detail}).")
    if isinstance(error, pg_errors.DiskFull):
        return StorageError(f"{where} cannot grow because the server's disk is full; nothing was written: free "
                            f"some space on the server and try again (PostgreSQL: {detail}).")
    return HistoryUnreachable(f"{where} cannot be used: the connection to the PostgreSQL server failed or was "
                              f"lost; check that the server runs and is reachable, then try again (PostgreSQL: "
                              f"{detail}).")


def _detail(error: Exception) -> str:
    """PostgreSQL's own words: the server's primary message (no statement excerpt), else the driver's."""
    primary = getattr(getattr(error, "diag", None), "message_primary", None)
    return " ".join((primary or str(error)).split()).rstrip(".") or type(error).__name__


def connect(url: str, *, readonly: bool = False) -> PgConnection:
    """Open the history at ``url``; one sentence (ConfigError or StorageError) if that cannot be done."""
    check_user_info(url)
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise ConfigError(f"FHV_DATABASE_URL={shown(url)!r} is not a valid PostgreSQL URL ({_detail(error)}); "
                          "use postgresql://user@host:port/database.") from None
    options = {k: v for k, v in DEFAULTS.items() if k not in info}
    try:
        # No server-side prepared statements: a plan cached for "SELECT *" fails once a newer pipeline on
        # another host migrates the schema ("cached plan must not change result type"); SQLite re-prepares.
        raw = psycopg.connect(url, autocommit=True, row_factory=_row_factory, prepare_threshold=None, **options)
    except psycopg.OperationalError as error:
        raise connect_error(error, url, info) from None
    try:
        check_server_version(raw.info.server_version, url)
        if "lock_timeout" not in info.get("options", ""):  # the URL's options=-c lock_timeout=... wins
            raw.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
        raw.execute("SET TIME ZONE 'UTC'")
        set_json_loads(json_value, raw)
        if readonly:
            raw.execute("SET default_transaction_read_only = on")
    except psycopg.OperationalError as error:  # the server went away between the connection and its set-up
        raw.close()
        raise fault_error(error, url) from None
    except BaseException:
        raw.close()
        raise
    return PgConnection(raw, url, readonly)


def check_server_version(version: int, url: str) -> None:
    if version < MIN_SERVER_VERSION:
        raise ConfigError(f"The PostgreSQL server of the history {shown(url)} runs version {_version(version)}; "
                          "the pipeline needs PostgreSQL 13 or newer: upgrade the server or use another one.")


def _version(number: int) -> str:
    major = number // 10000
    return f"{major}.{number % 10000}" if major >= 10 else f"{major}.{number // 100 % 100}.{number % 100}"


def connect_error(error: psycopg.OperationalError, url: str, info: dict[str, Any]) -> Exception:
    """The sentence for a connection the server or the network refused."""
    text, where = _detail(error), shown(url)
    user, db = info.get("user") or "(your login name)", info.get("dbname") or info.get("user") or "?"
    if "password authentication failed" in text or "no password supplied" in text:
        return ConfigError(f"PostgreSQL refused the password of the user {user!r} for the history {where}: "
                           "check the password in FHV_DATABASE_URL (or in ~/.pgpass or PGPASSWORD).")
    if re.search(r'database "[^"]*" does not exist', text):
        return ConfigError(f"The database {db!r} of the history {where} does not exist on that PostgreSQL server: "
                           f"create it (createdb {db}) or fix FHV_DATABASE_URL.")
    if re.search(r'role "[^"]*" does not exist', text):
        return ConfigError(f"The PostgreSQL user {user!r} of the history {where} does not exist on that server: "
                           "create it (createuser) or fix FHV_DATABASE_URL.")
    if "pg_hba.conf" in text:
        return ConfigError(f"The PostgreSQL server of the history {where} does not let this host in as {user!r} "
                           f"(pg_hba.conf): allow it there or fix FHV_DATABASE_URL (PostgreSQL: {text}).")
    return HistoryUnreachable(f"The PostgreSQL server of the history {where} cannot be reached: check the host and "
                              f"port in FHV_DATABASE_URL and that the server runs and accepts TCP connections "
                              f"(PostgreSQL: {text}).")
