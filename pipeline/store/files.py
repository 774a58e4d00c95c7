"""The SQLite file under the history: which file it is, whether it is sound, and what a process does once
it was deleted, replaced or damaged (a PostgreSQL history is no file: these do nothing there).

A history file moved or copied over while a process uses it must get nothing more from that process:
its old write-ahead log (``-wal``, ``-shm``, found by name) would carry the old history's pages into
the new file. ``FileStore.abandon`` refuses every further statement and keeps the connections open
until the process ends with ``os._exit`` (closing the last one would checkpoint the old log into the
new file); ``drop_old_log`` removes that log once no flow of the process can write to it.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any, Callable

from ..errors import HistoryDamaged, StorageError
from .migrations import tables
from .parts import StoreParts

# Connections of a history file that was deleted or replaced: kept open until the process ends, because closing
# the last one makes SQLite checkpoint its log into whatever file now bears the name (``BaseStore.abandon``).
ABANDONED: list[sqlite3.Connection] = []


def missing_table(path: Path | str, table: str) -> HistoryDamaged:
    return HistoryDamaged(f"The history {path} has no table {table}: it was dropped or the file is damaged; move "
                          "the file aside to start a new history, or put back a copy.")


class FileStore(StoreParts):
    """The history's file (mixed into ``BaseStore``): empty, abandoned, damaged, checkpointed, reachable."""

    _connections: list[Any]  # from BaseStore: every thread's connection
    applied_migrations: Callable[[], list[str]]  # from BaseStore
    abandoned: str | None = None
    on_damage: Callable[[HistoryDamaged], None] | None = None  # told of a damaged history (a flow process exits)

    def _empty_file(self) -> bool:
        """A SQLite history file of 0 bytes: no history (even one whose pages are all in its log has a first page),
        but maybe one truncated by accident, so making a new one in it is said, not silent."""
        if self.dialect != "sqlite":
            return False
        try:
            return Path(self.location).stat().st_size == 0
        except OSError:
            return False

    def abandon(self, reason: str) -> None:
        """Write nothing more to a history file that was deleted or replaced: every statement of this store
        raises HistoryFileLost(``reason``) from now on, and its connections stay open until the process ends
        (``ABANDONED``): closing the last one would make SQLite checkpoint the old history's log into whatever
        file now bears the name. The process then ends with ``os._exit`` (``pipeline/__main__.py``)."""
        if self.dialect != "sqlite" or self.abandoned:
            return
        self.abandoned = reason
        for conn in self._connections:
            conn.lost = reason
        ABANDONED.extend(self._connections)

    def drop_old_log(self) -> list[Path]:
        """Delete the ``-wal`` and ``-shm`` files next to an abandoned history if they are still the ones this
        process has open (the old history's): left there, SQLite would read the old history's pages into a new
        file of that name. Call it once no other process of ours (a flow) can write to them. Returns what went."""
        if not self.abandoned:
            return []
        ours, dropped = _open_files(), []
        for log in (Path(f"{self.location}-wal"), Path(f"{self.location}-shm")):
            if file_identity(log) in ours:
                with contextlib.suppress(OSError):
                    log.unlink()
                    dropped.append(log)
        return dropped

    def check_damage(self, *, thorough: bool = False) -> None:
        """HistoryDamaged if a table of the schema is missing or (``thorough``: SQLite's ``quick_check``,
        which reads every page) a page is damaged. PostgreSQL: nothing to check here."""
        if self.conn.dialect != "sqlite":
            return
        found = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'", {}).fetchall()}
        applied = self.applied_migrations() if "migrations" in found else []
        missing = sorted(tables(len(applied)) - found)
        if missing:
            raise missing_table(self.path, missing[0])
        if thorough:
            problems = [r["quick_check"] for r in self._all("PRAGMA quick_check(3)", {})]
            if problems != ["ok"]:
                raise HistoryDamaged(f"The history {self.path} is damaged: the file is corrupt; move it aside to "
                                     f"start a new history, or put back a copy (SQLite: {'; '.join(problems)}).")

    def ping(self) -> None:
        """Reach the history once (a server back after an outage: a connection it dropped is opened anew)."""
        try:
            self.conn.execute("SELECT 1", {}).fetchone()
        except StorageError:
            if self.conn.dialect == "sqlite":
                raise
            self.conn.execute("SELECT 1", {}).fetchone()  # the first attempt found the old session gone

    def checkpoint(self) -> None:
        """Copy what the write-ahead log holds into the SQLite file, as far as readers allow (PostgreSQL: nothing)."""
        if self.conn.dialect == "sqlite":
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)", {}).fetchall()


def file_identity(path: Path | str) -> tuple[int, int] | None:
    """A file's (device, inode), None if there is no such file."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _open_files() -> set[tuple[int, int]]:
    """The (device, inode) of every file this process has open (Linux; elsewhere none is known)."""
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                stat = os.stat(f"/proc/self/fd/{fd}")
                found.add((stat.st_dev, stat.st_ino))
    return found


def identity_in_file(path: Path) -> str | None:
    """The history's id as its file holds it, read past its write-ahead log (``immutable``); None if the file
    holds none (not a history, or its id still only in the log). A file copied over the history has another id,
    although the old history's log, still next to it, would show the old one to a normal connection."""
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT id FROM history_identity LIMIT 1", {}).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return row[0] if row else None


