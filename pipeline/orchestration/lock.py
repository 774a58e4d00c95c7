"""One scheduler per history: a lock for a quick answer, a lease in the history as the authority.

``exclusive`` holds ``$FHV_HOME/scheduler.lock`` with flock (the OS releases it even on kill -9) so
a second scheduler on this host is told at once which process holds it. The lock file can be
deleted, though, so the history itself holds the lease (``schedulers.owner``): it is taken in one
transaction only when the last holder stopped or its process is gone, and every heartbeat renews
it conditionally; a scheduler that finds the lease taken by another stops.

On PostgreSQL the lock is an advisory lock held by a session of the scheduler's own
(``Store.take_scheduler_lock``): schedulers on other hosts see it, and a scheduler whose host dies
or whose network is cut loses it with its session; ``LockWatch`` stops a scheduler that lost it.

``HistoryWatch`` notices when the history file is deleted or replaced under a running scheduler.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

from ..config import Settings
from ..errors import HistoryFileLost, HistoryLost, HistoryUnreachable, SchedulerLocked
from ..store import Store
from ..store.base import is_database_url
from ..store.files import file_identity, identity_in_file
from ..store.workers import SessionLock


@contextlib.contextmanager
def exclusive(settings: Settings, store: Store) -> Iterator[SessionLock | None]:
    """Hold the history's scheduler lock: an advisory lock on PostgreSQL (yielded), else a lock file (flock)."""
    if store.dialect == "postgresql":
        with _advisory(settings, store) as lock:
            yield lock
        return
    settings.lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd, store)
        os.close(fd)
        raise SchedulerLocked(f"Another scheduler {holder} already runs on {settings.history_label}; "
                              "stop it first, or use another FHV_HOME.") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield None
    finally:
        os.close(fd)


@contextlib.contextmanager
def _advisory(settings: Settings, store: Store) -> Iterator[SessionLock]:
    lock = store.take_scheduler_lock()
    if lock is None:
        row = store.scheduler_status() or {}
        holder = f"pid {row.get('pid') or '?'} on {row.get('hostname') or '?'}, last heartbeat " \
                 f"{row.get('heartbeat_at') or '-'}"
        raise SchedulerLocked(f"Another scheduler ({holder}) holds the lock of {settings.history_label}; stop it "
                              "first, or use another database.")
    try:
        yield lock
    finally:
        lock.release()


class LockWatch:
    """Tells the scheduler (HistoryUnreachable) when its PostgreSQL session, and with it the history's lock, is
    gone; ``reacquire`` takes the lock again once the server answers, or stops the scheduler (HistoryLost) if
    another scheduler took it meanwhile."""

    def __init__(self, lock: SessionLock, label: str):
        self.lock, self.label = lock, label

    def check(self) -> None:
        if not self.lock.held():
            raise HistoryUnreachable(f"The scheduler lost its connection to {self.label}, and with it the history's "
                                     "lock.")

    def reacquire(self, store: Store) -> None:
        if self.lock.held():
            return
        taken = store.take_scheduler_lock()
        if taken is None:
            raise HistoryLost(f"Another scheduler took the lock of {self.label} while this one could not reach the "
                              "server; this one stops so that only one serves the history.")
        self.lock.release()
        self.lock.conn = taken.conn  # the lock ``exclusive`` releases at the end is this new session's


def _holder(fd: int, store: Store) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").split()
    for _ in range(20):  # the holder writes its pid just after taking the lock
        if text:
            break
        time.sleep(0.05)
        text = os.pread(fd, 200, 0).decode(errors="replace").split()
    pid = text[0] if text else "?"
    row = store.scheduler_status() or {}
    beat = f", last heartbeat {row.get('heartbeat_at') or '-'}" if str(row.get("pid")) == pid else ""
    return f"(pid {pid}{' on ' + text[1] if len(text) > 1 else ''}{beat})"


def lease_refused(path: Path, holder: dict) -> SchedulerLocked:
    """The sentence for a scheduler that found the history's lease held by a live scheduler."""
    return SchedulerLocked(f"Another scheduler (pid {holder.get('pid')} on {holder.get('hostname')}, last heartbeat "
                           f"{holder.get('heartbeat_at') or '-'}) already runs on {path}, although its lock file "
                           "is missing; stop it first, or use another FHV_HOME.")


class HistoryWatch:
    """Remembers which file the history is (its inode and the random id inside it) to notice it being
    deleted or replaced: an open connection would go on writing to the old file, unseen, and through the
    old file's write-ahead log (``-wal``, ``-shm``, found by name) into the new one. The id is read from the
    file itself, past that log (``identity_in_file``), so a file copied over the history is seen too."""

    def __init__(self, path: Path | str, role: str = "scheduler"):
        self.role = role
        # A database on a PostgreSQL server is no file: it cannot be deleted or swapped under an open connection.
        self.path = path if is_database_url(path) else Path(path)
        self.identity = None if is_database_url(path) else file_identity(self.path)
        self.token = None if self.identity is None else _settled_token(self.path)

    def check(self) -> None:
        """Raise HistoryFileLost with a sentence if the history file is gone or is another file now."""
        if self.identity is None:
            return
        if file_identity(self.path) is None:
            raise HistoryFileLost(f"The history {self.path} was deleted while the {self.role} ran; it stops so that "
                                  "nothing is written to a file nobody reads, and its flows stop unrecorded. Restore "
                                  "the file, then start it again.")
        if file_identity(self.path) != self.identity or self._other_token():
            raise HistoryFileLost(f"The history {self.path} was replaced by another file while the {self.role} ran; "
                                  "it stops rather than mix two histories, writes nothing more, and its flows stop "
                                  "unrecorded. Start it again to serve the new file.")

    def explain(self, damage: Exception, sleep: Callable[[float], None]) -> Exception:
        """A history that looks damaged may be a file being copied over it: after a moment for the copy to end,
        HistoryFileLost if the file is another one now (its id), else ``damage`` as it was."""
        if self.identity is None:
            return damage
        sleep(0.5)
        found = identity_in_file(self.path)
        if file_identity(self.path) != self.identity or (found is not None and found != self.token):
            try:
                self.check()
            except HistoryFileLost as lost:
                return lost
        return damage

    def _other_token(self) -> bool:
        """Whether the file now holds another history's id (asked twice: a read can meet a page being written)."""
        if self.token is None:
            self.token = _settled_token(self.path)
            return False
        return all(identity_in_file(self.path) != self.token for _ in range(2))


def _settled_token(path: Path) -> str | None:
    """The history's id once its file holds it: a checkpoint first copies it there from the log."""
    with contextlib.suppress(Exception):
        store = Store(path, migrate=False)
        try:
            store.checkpoint()
        finally:
            store.close()
    return identity_in_file(path)
