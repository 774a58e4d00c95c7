"""The scheduler's lease on its history, and the service that renews it.

``Lease.take`` makes this scheduler the history's one scheduler (the ``schedulers`` row), unless a live one
holds it, and notes since when no scheduler ran (the catch-up policies count from there). ``Heartbeat`` renews
it every ``heartbeat`` seconds: a scheduler whose lease another took, or whose history file was deleted or
replaced, stops (HistoryLost); then it kills its own flows whose run heartbeat went stale.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
from typing import TYPE_CHECKING, Any

from ...errors import HistoryLost
from ...store import from_db
from ...store.interfaces import SchedulerLease
from ..liveness import identity_alive, visible_pid
from ..lock import HistoryWatch, LockWatch, lease_refused

if TYPE_CHECKING:
    from ..supervisor import Supervisor


class Lease:
    """This scheduler's hold on the history: who it is, since when it runs, when the previous one last ran."""

    def __init__(self, store: SchedulerLease, identity: str, *, stale_after: float,
                 watch: HistoryWatch | LockWatch | None = None, holds_lock: bool = False):
        self.store, self.identity, self.stale_after = store, identity, stale_after
        self.watch = watch
        self.holds_lock = holds_lock  # it holds the history's session lock (PostgreSQL): any earlier holder is gone
        self.last_alive: dt.datetime | None = None  # when the previous scheduler was last known to run
        self.started_at: dt.datetime | None = None

    def take(self, now: dt.datetime) -> None:
        """Become the history's scheduler (SchedulerLocked naming the live holder if another one is)."""
        won, previous = self.store.take_scheduler_lease(
            owner=self.identity, pid=os.getpid(), hostname=socket.gethostname(), now=now,
            stale_after=self.stale_after, holder_gone=lambda row: self.holder_gone(row, now))
        if not won:
            raise lease_refused(self.store.path, previous or {})
        self.last_alive = from_db(previous["heartbeat_at"]) if previous else None
        self.started_at = now

    def holder_gone(self, row: dict[str, Any], now: dt.datetime) -> bool:
        """Whether the scheduler holding the lease is gone: its process (this host) or its heartbeat (elsewhere)."""
        owner = row.get("owner") or ""
        if self.holds_lock:
            return True
        if visible_pid(owner) == os.getpid():
            return True  # this very process: an earlier Scheduler object of it (one process runs one scheduler)
        alive = identity_alive(owner, since=from_db(row.get("started_at")))
        if alive is not None:
            return not alive
        beat = from_db(row.get("heartbeat_at"))
        return beat is None or (now - beat).total_seconds() > (row.get("stale_after") or self.stale_after)

    def renew(self, now: dt.datetime) -> None:
        """Stamp the lease, or HistoryLost: the history file was deleted or replaced, or another scheduler took it."""
        if self.watch is not None:
            self.watch.check()
        if not self.store.scheduler_heartbeat(now, owner=self.identity):
            holder = self.store.scheduler_status() or {}
            raise HistoryLost(f"Another scheduler ({holder.get('owner') or 'unknown'}) took over {self.store.path}; "
                              "this one stops so that only one serves the history.")

    def reacquire(self) -> None:
        """After an outage: take the history's lock again (PostgreSQL: it went with the session)."""
        if isinstance(self.watch, LockWatch):
            self.watch.reacquire(self.store)

    def release(self, now: dt.datetime) -> None:
        self.store.scheduler_stopped(now, owner=self.identity)


class Heartbeat:
    """Renew the lease, then kill own flows whose run heartbeat went stale (``Supervisor.kill_hung``)."""

    name = "heartbeat"

    def __init__(self, lease: Lease, flows: "Supervisor", interval: float):
        self.lease, self.flows, self.interval = lease, flows, interval

    def run_once(self, now: dt.datetime) -> None:
        self.lease.renew(now)
        self.flows.kill_hung()
