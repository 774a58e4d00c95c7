"""The run history, in SQLite or PostgreSQL. This package owns every SQL statement of the product.

One ``connect()`` sets WAL, busy_timeout and foreign keys; one connection per thread; one
transaction helper (``atomic``); ordered, named migrations recorded in the database.
Times are stored as UTC text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` so that they sort as strings.
Each part of ``Store`` lives in its own module (``runs``, ``scheduling``, ``dashboard``, ...) and declares
what it uses from the others (``parts``); ``interfaces`` says what each consumer uses (``Recorder``,
``Claims``, ``DashboardReads``, ``ModelRegistry``, ...), all of them together ``History``.
"""
from __future__ import annotations

from .artifacts import ArtifactStore
from .base import BUSY_TIMEOUT_MS, UTC, BaseStore, connect, from_db, new_run_id, to_db
from .dashboard import DashboardStore
from .migrations import MIGRATIONS
from .models import ModelStore
from .notifications import NotificationStore
from .rows import DeploymentRow, RunRow
from .runs import RunStore
from .scheduling import SchedulingStore
from .triggers import TriggerStore
from .workers import WorkerStore

__all__ = ["BUSY_TIMEOUT_MS", "MIGRATIONS", "UTC", "DeploymentRow", "RunRow", "Store", "connect", "from_db",
           "new_run_id", "to_db"]


class Store(RunStore, SchedulingStore, WorkerStore, DashboardStore, ModelStore, NotificationStore, ArtifactStore,
            TriggerStore, BaseStore):
    """The run history (``interfaces.History``) on SQLite or PostgreSQL. One instance per process; one connection
    per thread."""
