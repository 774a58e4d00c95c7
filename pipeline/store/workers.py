"""Workers: processes on any host that claim due runs of their queues and run them.

A worker registers itself in ``workers`` (one row per worker process, keyed by its identity
``host:pid:tag``) and stamps ``heartbeat_at`` every few seconds; its ``stale_after`` says how long a
silence means it is gone. The scheduler's sweep reads these rows to judge runs claimed by a worker
on another host, where process ids mean nothing.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable

from .base import connect, to_db
from .parts import StoreParts
from .sql import in_list
from .transitions import ACTIVE

SCHEDULER_LOCK = 0x66687601  # the PostgreSQL advisory lock of the one scheduler of a history ('fhv\1')
# The server drops the lock's session, and so frees the lock, about 15 s after its host went silent
# (without these it would wait for the operating system's two-hour TCP keepalive).
LOCK_SESSION = ("SET tcp_keepalives_idle = 5", "SET tcp_keepalives_interval = 2", "SET tcp_keepalives_count = 3",
                "SET tcp_user_timeout = 15000")


class SessionLock:
    """An advisory lock held by a PostgreSQL session of its own: it ends with the session, so a scheduler
    whose host dies or whose network is cut loses it when the server drops the connection."""

    def __init__(self, conn: Any):
        self.conn = conn

    def held(self) -> bool:
        """Whether the session (and with it the lock) is still there."""
        try:
            return bool(self.conn.execute("SELECT 1", {}).fetchone())
        except Exception:  # noqa: BLE001 - any failure of the session means the lock is gone
            return False

    def release(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - a session already gone holds nothing
            pass


class WorkerStore(StoreParts):
    """Worker registration and heartbeats (mixed into ``Store``)."""

    def take_scheduler_lock(self) -> SessionLock | None:
        """PostgreSQL: try to become the one scheduler of the history, on a session of its own; None if another
        session holds the lock. (SQLite's schedulers lock a file next to the history instead.)"""
        conn = connect(self.location)
        try:
            for statement in LOCK_SESSION:
                conn.execute(statement, {})
            won = conn.execute("SELECT pg_try_advisory_lock(:lock)", {"lock": SCHEDULER_LOCK}).fetchone()[0]
        except BaseException:
            conn.close()
            raise
        if not won:
            conn.close()
            return None
        return SessionLock(conn)

    def register_worker(self, *, identity: str, hostname: str, pid: int, queues: Iterable[str], concurrency: int,
                        stale_after: float, now: dt.datetime) -> dict[str, Any]:
        """Record a starting worker (its identity is new: a pid and a random tag)."""
        with self.atomic() as conn:
            conn.execute("INSERT INTO workers (id, hostname, pid, queues, concurrency, stale_after, started_at, "
                         "heartbeat_at) VALUES (:id, :hostname, :pid, :queues, :concurrency, :stale_after, :now, :now)",
                         {"id": identity, "hostname": hostname, "pid": pid, "queues": json.dumps(sorted(set(queues))),
                          "concurrency": concurrency, "stale_after": stale_after, "now": to_db(now)})
        return self.worker(identity)

    def worker_heartbeat(self, identity: str, now: dt.datetime) -> bool:
        """Stamp the worker's heartbeat; False when its row is gone or marked stopped (it must stop)."""
        with self.atomic() as conn:
            return conn.execute("UPDATE workers SET heartbeat_at = :now WHERE id = :id AND stopped_at IS NULL",
                                {"now": to_db(now), "id": identity}).rowcount == 1

    def worker_stopped(self, identity: str, now: dt.datetime) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE workers SET stopped_at = :now, heartbeat_at = :now WHERE id = :id "
                         "AND stopped_at IS NULL", {"now": to_db(now), "id": identity})

    def worker_error(self, identity: str, message: str, now: dt.datetime) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE workers SET last_error = :message, last_error_at = :now WHERE id = :id",
                         {"message": message, "now": to_db(now), "id": identity})

    def worker(self, identity: str) -> dict[str, Any] | None:
        return _decoded(self._one("SELECT * FROM workers WHERE id = :id", {"id": identity}))

    def workers(self, *, live_only: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        """Workers, the most recently started first (``live_only``: those not stopped)."""
        where = "WHERE stopped_at IS NULL " if live_only else ""
        return [_decoded(row) for row in
                self._all(f"SELECT * FROM workers {where}ORDER BY started_at DESC NULLS LAST LIMIT :limit",
                          {"limit": limit})]

    def running_by_claimer(self) -> dict[str, int]:
        """How many runs each claimer has PENDING or RUNNING (a worker's current load)."""
        rows = self._all(f"SELECT claimed_by, COUNT(*) AS n FROM flow_runs WHERE state IN {ACTIVE} "
                         "AND claimed_by IS NOT NULL GROUP BY claimed_by", {})
        return {row["claimed_by"]: row["n"] for row in rows}

    def claimers(self, identities: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The worker rows of these claimers (identities that are no worker are left out)."""
        names, params = in_list("id", sorted({name for name in identities if name}))
        if not params:
            return {}
        rows = self._all(f"SELECT * FROM workers WHERE id IN ({names})", params)
        return {row["id"]: _decoded(row) for row in rows}


def _decoded(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None and isinstance(row.get("queues"), str):
        row["queues"] = json.loads(row["queues"])
    return row
