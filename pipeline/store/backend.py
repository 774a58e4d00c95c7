"""The one interface a backend implements: a connection that runs the store's statements.

The store's parts write their SQL once (``sql.py``: text with ``:name`` binds, constructs for what
backends spell differently, compiled by SQLAlchemy's dialect named ``dialect``); everything else that
differs between backends is a method here: how a transaction starts and takes its locks, what a fault
of the storage becomes (one sentence naming the history), how the schema is read and migrated, and
what changes when the history does. SQLite's is ``base.HistoryConnection``, PostgreSQL's
``postgres.PgConnection``.

A third backend (a SQLAlchemy dialect exists for most databases):
1. a class implementing ``Backend`` (its driver's connection in autocommit mode, so that ``begin`` opens
   the transactions), and a ``connect(location, readonly=...)`` for it, added to ``base.connect``;
2. its SQLAlchemy dialect in ``dialects.DIALECTS`` (its name in ``sql.DIALECT_NAMES``), and a spelling
   of each construct in ``dialects.SPELLINGS``;
3. the migrations' DDL in its spelling (as ``migrations_postgres.py`` does for PostgreSQL);
4. the contract suite: ``class TestMyStore(StoreContract)`` with a fixture that makes a fresh history
   (``tests/store_contract.py``; ``tests/test_backend.py`` checks the class has every member below).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """A connection to the history, one per thread, in autocommit mode (``begin`` opens transactions)."""

    dialect: str  # the SQLAlchemy dialect that compiles its statements ('sqlite', 'postgresql')
    history_path: Any  # what sentences name: the file, or the URL without its password
    readonly: bool
    row_locks: bool  # whether writers run side by side, so that a claim must lock its rows

    # statements and transactions
    def execute(self, statement: Any, params: Mapping[str, Any] = ...) -> Any:
        """Run one statement (``sql.compiled`` in this dialect); a storage fault raises ``fault(error)``."""
    def executemany(self, statement: Any, rows: Iterable[Mapping[str, Any]]) -> Any: ...
    def begin(self) -> None:
        """Open a transaction; ``BaseStore.atomic`` commits or rolls it back."""
    @property
    def in_transaction(self) -> bool: ...
    def serialize(self, topic: str) -> None:
        """Inside a transaction that reads, then writes what it read: one such transaction per ``topic``."""
    def lock_queue(self, work_queue: str, idle_timeout_ms: int) -> None:
        """Inside a claim's transaction, where ``row_locks``: serialise the queue's claims."""
    def fault(self, error: Exception) -> Exception:
        """The ``StorageError`` (one sentence naming the history) for a fault of the storage; else ``error``."""

    # the schema
    def has_table(self, name: str) -> bool: ...
    def index_names(self) -> set[str]: ...
    def serialize_migrations(self) -> None:
        """Inside the migration transaction: one process migrates at a time."""
    def run_statements(self, statements: list[str]) -> None:
        """A migration's statements (no parameters), in the open transaction."""

    # the history as a whole
    def integrity_check(self) -> str:
        """'ok', or what is damaged."""
    def change_mark(self) -> Any:
        """A value that changes whenever the history does (the dashboard's cache key)."""
    @property
    def usable(self) -> bool:
        """False once the connection cannot be used any more (the store opens another)."""
    def close(self) -> None: ...
