"""What every part of ``Store`` uses from the core (``BaseStore``), declared rather than assumed.

``Store`` is composed of parts (``RunStore``, ``SchedulingStore``, ``WorkerStore``, ...), each one module.
Each part subclasses ``StoreParts``, which names what the core gives them all: the connection, the
transaction helper, the row readers and the one dialect question. A part that uses another part's method
declares it in its own class body, naming that part; ``tests/test_store_interfaces.py`` fails on any other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ContextManager


class StoreParts:
    """The core every part of the store shares (defined by ``BaseStore``); annotations only."""

    location: Path | str  # what ``connect()`` opens: a SQLite file, or a PostgreSQL URL
    path: Path | str  # what sentences name: the file, or the URL without its password
    readonly: bool
    conn: Any  # this thread's connection: a ``backend.Backend`` (``HistoryConnection``, ``postgres.PgConnection``)
    dialect: str  # 'sqlite' or 'postgresql': the few statements that differ ask
    atomic: Callable[[], ContextManager[Any]]
    _one: Callable[..., dict[str, Any] | None]
    _all: Callable[..., list[dict[str, Any]]]
    row_locks: Callable[[], bool]  # whether claims lock rows themselves (PostgreSQL)
    lock_queue: Callable[[Any, str], None]  # PostgreSQL: the queue's row lock, inside a claim's transaction
