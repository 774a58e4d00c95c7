"""Connections, the transaction helper, migrations and the conversions every part of the store shares."""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import re
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..errors import ConfigError, HistoryDamaged, HistoryFileLost, StorageError
from ..orchestration.states import State
from .files import FileStore, file_identity, missing_table
from .migrations import MIGRATIONS, _statements, script, tables
from .sql import compiled

UTC = dt.timezone.utc
logger = logging.getLogger("pipeline.store")
BUSY_TIMEOUT_MS = 10_000

RUN_JSON_FIELDS = ("parameters", "metrics", "fields")
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


def is_database_url(location: Any) -> bool:
    """A PostgreSQL URL (the history on a server) rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def connect(path: Path | str, *, readonly: bool = False, create: bool = True) -> Any:
    """Open the history with WAL, a busy timeout and foreign keys (autocommit mode).

    Storage faults (corrupt, read-only, full, I/O) come out as a ``StorageError`` naming the file.
    ``create`` False: a SQLite file that is gone is not made anew (a store's later connections, so
    that a thread of a process whose history was deleted never leaves an empty history behind).
    A ``postgresql://`` URL opens the history on that server instead (``postgres.connect``).
    """
    if is_database_url(path):
        try:
            from . import postgres
        except ImportError as error:
            raise ConfigError(f"A history on PostgreSQL needs psycopg 3 ({error}): install the requirements "
                              "(pip install -r requirements.txt).") from None
        return postgres.connect(path, readonly=readonly)
    conn = _open(Path(path), readonly, create)
    try:
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _open(path: Path, readonly: bool, create: bool = True) -> "HistoryConnection":
    options = dict(isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000,
                   factory=HistoryConnection)
    try:
        if readonly:  # a URI, percent-encoded: a folder may contain '#', '?', '%' or spaces
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, **options)
        elif not create and str(path) != ":memory:":
            if not path.exists():
                raise StorageError(f"The history {path} is gone: it was deleted or moved while this process "
                                   "used it; nothing was written.")
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, **options)
        else:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), **options)
    except OSError as error:
        raise StorageError(f"The folder of the history {path} cannot be created: {error.strerror or error}.") from None
    except sqlite3.Error as error:
        raise storage_error(error, path) from error
    conn.history_path, conn.readonly = path, readonly
    conn.row_factory = sqlite3.Row
    return conn


class HistoryConnection(sqlite3.Connection):
    """A connection whose statements turn storage faults into a ``StorageError`` naming the file."""

    history_path: Path = Path("history.db")
    readonly = False
    dialect = "sqlite"
    usable = True
    lost: str | None = None  # why the history file may not be written any more (``BaseStore.abandon``)
    on_damage: Callable[[HistoryDamaged], None] | None = None  # told of a damaged history (a flow process exits)

    def execute(self, statement: Any, params: Any = ()) -> sqlite3.Cursor:
        """Run a statement (text with ``:name`` binds, or a SQLAlchemy construct) in SQLite's spelling."""
        if self.lost is not None:
            raise HistoryFileLost(self.lost)
        try:
            return super().execute(compiled(statement, "sqlite"), params)
        except sqlite3.Error as error:
            raise self.fault(error) from error

    def executemany(self, statement: Any, rows: Iterable[Any]) -> sqlite3.Cursor:
        if self.lost is not None:
            raise HistoryFileLost(self.lost)
        try:
            return super().executemany(compiled(statement, "sqlite"), rows)
        except sqlite3.Error as error:
            raise self.fault(error) from error

    def begin(self) -> None:
        """Open a transaction that takes the write lock at once: one writer at a time, waiting its turn."""
        self.execute("BEGIN IMMEDIATE")

    row_locks = False  # one writer at a time: a claim needs no row lock

    def lock_queue(self, work_queue: str, idle_timeout_ms: int) -> None:
        """Nothing to do: BEGIN IMMEDIATE already serialises every claim."""

    def change_mark(self) -> tuple[int, ...]:
        """The file's and its log's modification times and sizes: they change whenever the history does."""
        marks: list[int] = []
        for name in (Path(self.history_path), Path(f"{self.history_path}-wal")):
            try:
                found = name.stat()
                marks += [found.st_mtime_ns, found.st_size]
            except OSError:
                marks += [0, 0]
        return tuple(marks)

    def integrity_check(self) -> str:
        """SQLite's own check of the file: 'ok', or what is damaged."""
        return self.execute("PRAGMA integrity_check").fetchone()[0]

    def fault(self, error: sqlite3.Error) -> Exception:
        """The StorageError for a storage fault; any other error (a constraint, a bug) as it was."""
        if self.readonly and _code(error) == sqlite3.SQLITE_READONLY:
            return error  # writing through a read-only store is a bug in the caller, not a fault of the disk
        missing = re.match(r"no such table: (?:main\.)?(\w+)", str(error))
        if missing and missing.group(1) in tables() and not self.readonly:  # a writable store migrated it: damage
            fault: Exception = missing_table(self.history_path, missing.group(1))
        else:
            fault = storage_error(error, self.history_path) if _code(error) in FAULTS else error
        if isinstance(fault, HistoryDamaged) and self.on_damage is not None:
            self.on_damage(fault)
        return fault

    def has_table(self, name: str) -> bool:
        found = self.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name",
                             {"name": name}).fetchone()
        return found is not None

    def index_names(self) -> set[str]:
        return {row[0] for row in self.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()}

    def serialize_migrations(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already lets one writer in at a time."""

    def serialize(self, topic: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already lets one writer in at a time (PostgreSQL: an advisory lock)."""

    def run_statements(self, statements: list[str]) -> None:
        """A migration's statements, in the open transaction (``executescript`` would commit it)."""
        for statement in statements:
            self.execute(statement)


# SQLite's primary result code -> what it means for the history (the end of a sentence naming the file)
FAULTS = {
    sqlite3.SQLITE_NOTADB: "is not a SQLite database: the file is corrupt or truncated; move it aside to start "
                           "a new history, or put back a copy",
    sqlite3.SQLITE_CORRUPT: "is damaged: the file is corrupt or truncated; move it aside to start a new history, "
                            "or put back a copy",
    sqlite3.SQLITE_READONLY: "cannot be written: check the permissions of the file and its folder, and whether "
                             "the disk is mounted read-only",
    sqlite3.SQLITE_PERM: "cannot be written: check the permissions of the file and its folder",
    sqlite3.SQLITE_CANTOPEN: "cannot be opened: check that its folder exists, that this user may write in it and "
                             "that its disk is not mounted read-only",
    sqlite3.SQLITE_FULL: "cannot grow because the disk is full; nothing was written: free some space and try again",
    sqlite3.SQLITE_IOERR: "could not be read or written: check the disk it is on, and whether it is full",
}
# Not faults of the file, so the store leaves them to its callers; the command line words them too.
BUSY = {
    sqlite3.SQLITE_BUSY: f"is busy: another process kept it locked for more than {BUSY_TIMEOUT_MS // 1000} s; "
                         "try again",
    sqlite3.SQLITE_LOCKED: "is locked by another statement; try again",
}


def _code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


DAMAGE = (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


def storage_error(error: sqlite3.Error, path: Path | str) -> StorageError:
    """One sentence naming the history file, what went wrong (SQLite's own words) and what to do."""
    fault = FAULTS.get(_code(error)) or BUSY.get(_code(error), "cannot be used")
    kind = HistoryDamaged if _code(error) in DAMAGE else StorageError
    return kind(f"The history {path} {fault} (SQLite: {error}).")


def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    for key in _JSON_COLUMNS:
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = json_value(value) if key == "fields" else json.loads(value)
            except ValueError:  # text that is not JSON stays text: the row's checks name it
                pass
    fields = out.get("fields")
    if isinstance(fields, dict):  # a run's flow fields, also flattened (the core's columns win)
        out.update((key, value) for key, value in fields.items() if key not in out)
    return out


_JSON_COLUMNS = RUN_JSON_FIELDS + ("schedule", "tags")


def json_value(text: bytes | str) -> Any:
    """JSON text as Python, decoded once however many rows share it (a run's fields: a month, a source; also
    PostgreSQL's JSONB values); a copy each time, so a caller may change what it got."""
    value = _decoded(text)
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=4096)
def _decoded(text: bytes | str) -> Any:
    return json.loads(text)


def _rows(rows: Iterable[sqlite3.Row]) -> list[dict[str, Any]]:
    return [_row(r) for r in rows]


class BaseStore(FileStore):
    """Connections, transactions and migrations. One instance per process; one connection per thread."""

    index_fields: Callable[[Iterable[Any]], list[str]]  # from DashboardStore: indexes of the flows' indexed fields

    def __init__(self, path: Path | str, *, readonly: bool = False, migrate: bool = True):
        self.location = path if is_database_url(path) else Path(path)  # what connect() opens
        self.path = shown_location(path)  # what sentences name: the file, or the URL without its password
        self.readonly = readonly
        self._opened = False  # a first connection was made: later ones never create the file again
        self._local = threading.local()
        self._connections: list[Any] = []  # every thread's, so that ``abandon`` reaches them all
        self._file: tuple[int, int] | None = None  # the SQLite file's (device, inode) when first opened
        if migrate and not readonly:
            empty = self._empty_file()
            self.migrate()
            self._index_fields()
            if empty:
                logger.warning("The history %s was an empty file (0 bytes), so a new history was made in it; if it "
                               "held runs, stop every process using it and put back a copy.", self.path)

    def _index_fields(self) -> None:
        """Index the registered flows' indexed fields; a user who may not create them reads without (a warning)."""
        try:
            self.index_fields(registered_flows())
        except ConfigError as error:
            logger.warning("The flows' fields of the history %s are not indexed: %s", self.path, error)

    # -- connection and transactions -------------------------------------------------
    @property
    def dialect(self) -> str:
        """'postgresql' for a history on a server, else 'sqlite' (the few statements that differ ask)."""
        return "postgresql" if is_database_url(self.location) else "sqlite"

    def row_locks(self) -> bool:
        """Whether claims lock rows themselves (PostgreSQL); SQLite's one writer at a time needs no row lock."""
        return self.conn.row_locks

    claim_idle_timeout_ms = 5000  # a claimer silent this long inside its claim loses its session (and the lock)

    def lock_queue(self, conn: Any, work_queue: str) -> None:
        """Inside a claim's transaction, where rows lock: take the queue's lock (``Backend.lock_queue``)."""
        conn.lock_queue(work_queue, self.claim_idle_timeout_ms)

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.usable:  # a PostgreSQL connection the server dropped: open another
            self.close()
            conn = None
        if conn is None:
            if self.abandoned:
                raise HistoryFileLost(self.abandoned)
            self._check_same_file()
            conn = self._local.conn = connect(self.location, readonly=self.readonly, create=not self._opened)
            conn.on_damage = self.on_damage
            self._opened = True
            self._connections.append(conn)
            if self._file is None and self.dialect == "sqlite":
                self._file = file_identity(self.location)
            if self.readonly:
                self._check_schema_or_close()
        return conn

    def _check_same_file(self) -> None:
        """A later connection must open the file the first one did, never one moved over it since: even
        opening and closing it could let SQLite checkpoint the old history's log into it. (A read-only store,
        the dashboard, writes nothing and checkpoints nothing: it may read a file put back from a copy.)"""
        if self.readonly:
            return
        if self._file is not None and file_identity(self.location) not in (self._file, None):
            raise HistoryFileLost(f"The history {self.path} was replaced by another file while this process "
                                  "used it; nothing more is written to it.")

    def _check_schema_or_close(self) -> None:
        try:
            self.check_schema()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self.abandoned:
            self._local.conn = None
            self._connections.remove(conn)
            conn.close()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK and re-raise. Nested calls join the outer one."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.begin()
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _one(self, sql: Any, params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        cursor = self.conn.execute(sql, params or {})
        with self._faults():
            return _row(cursor.fetchone())

    def _all(self, sql: Any, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params or {})
        with self._faults():
            return _rows(cursor.fetchall())

    @contextlib.contextmanager
    def _faults(self) -> Iterator[None]:
        """Reading rows can meet a damaged page too: the same sentence as a statement would give."""
        try:
            yield
        except sqlite3.Error as error:
            raise self.conn.fault(error) from error

    # -- migrations -----------------------------------------------------------------
    def migrate(self, upto: int | None = None) -> list[str]:
        """Apply the migrations not yet recorded, in order; returns the names applied."""
        applied: list[str] = []
        with self.atomic() as conn:
            conn.serialize_migrations()
            if not conn.has_table("migrations"):  # no DDL at all when the schema is current (a user may lack CREATE)
                conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)", {})
            done = {r[0] for r in conn.execute("SELECT name FROM migrations", {}).fetchall()}
            check_schema(self.path, done)
            for name, sql in MIGRATIONS[:upto]:
                if name not in done:
                    conn.run_statements(_statements(script(name, sql, conn.dialect)))
                    conn.execute("INSERT INTO migrations VALUES (:name, :at)",
                                 {"name": name, "at": to_db(dt.datetime.now(UTC))})
                    applied.append(name)
        return applied

    def check_schema(self) -> None:
        """Refuse a history written by a newer version of the pipeline (a read-only store cannot migrate)."""
        if self.conn.has_table("migrations"):
            check_schema(self.path, {r["name"] for r in self._all("SELECT name FROM migrations", {})})

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self._all("SELECT name FROM migrations ORDER BY name", {})]

    def change_mark(self) -> Any:
        """A value that changes whenever the history does (the dashboard's cache key)."""
        return self.conn.change_mark()

    def integrity_check(self) -> str:
        """The backend's own check of the history: 'ok', or what is wrong."""
        return self.conn.integrity_check()


def registered_flows() -> list[Any]:
    """The flows this process registered (their indexed fields get an index where a writer opens the history)."""
    from ..orchestration.registry import flow_entry, flow_names  # the registry imports the store's rows
    return [flow_entry(name) for name in flow_names()]


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is left: after a full disk or an I/O error SQLite may have rolled back already."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error, StorageError):
            conn.execute("ROLLBACK")


def schema_version(names: Iterable[str]) -> int:
    """The number of the newest migration among ``names`` ('0004_run_moment_index' -> 4)."""
    numbers = [int(name.split("_", 1)[0]) for name in names if name.split("_", 1)[0].isdigit()]
    return max(numbers, default=0)


SCHEMA_VERSION = schema_version(name for name, _ in MIGRATIONS)


def shown_location(location: Path | str) -> Path | str:
    """The history as sentences name it: the file, or the URL without its password."""
    if is_database_url(location):
        from .postgres import shown
        return shown(location)
    return Path(location)


def check_schema(path: Path | str, applied: set[str]) -> None:
    """A history with a migration this code does not know was written by a newer pipeline: refuse it."""
    unknown = sorted(applied - {name for name, _ in MIGRATIONS})
    if not unknown:
        return
    theirs = schema_version(applied)
    elsewhere = "point FHV_DATABASE_URL at another database" if is_database_url(str(path)) else \
        "set FHV_HOME to another folder"
    if theirs > SCHEMA_VERSION:
        raise StorageError(f"The history {path} was written by schema version {theirs}; this version of the "
                           f"pipeline knows up to {SCHEMA_VERSION}: upgrade the pipeline, or {elsewhere}.")
    raise StorageError(f"The history {path} has the schema change {unknown[0]!r}, which this version of the "
                       f"pipeline does not know (it knows up to schema version {SCHEMA_VERSION}): upgrade the "
                       f"pipeline, or {elsewhere}.")


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
