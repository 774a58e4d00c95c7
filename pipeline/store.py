"""The run history in SQLite. This module owns every SQL statement of the product.

One ``connect()`` sets WAL, busy_timeout and foreign keys; one connection per thread; one
transaction helper (``atomic``); ordered, named migrations recorded in the database.
Times are stored as UTC text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` so that they sort as strings.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import NotFound
from .states import ACTIVE_STATES, WAITING_STATES, State, check_transition

UTC = dt.timezone.utc
BUSY_TIMEOUT_MS = 10_000

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_runs_tasks_logs_artifacts", """
CREATE TABLE flow_runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    flow TEXT NOT NULL,
    state TEXT NOT NULL,
    state_message TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    run_date TEXT, train_month TEXT, val_month TEXT,
    data_source TEXT,
    synthetic INTEGER NOT NULL DEFAULT 0,
    trigger TEXT NOT NULL DEFAULT 'manual',
    scheduled_time TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT, ended_at TEXT, heartbeat_at TEXT,
    pid INTEGER, hostname TEXT,
    metrics TEXT, error TEXT, error_task TEXT
);
CREATE INDEX flow_runs_state ON flow_runs(state, scheduled_time);
CREATE INDEX flow_runs_created ON flow_runs(created_at);
CREATE TABLE task_runs (
    id INTEGER PRIMARY KEY,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    position INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    started_at TEXT, ended_at TEXT,
    error TEXT,
    UNIQUE (flow_run_id, task, attempt)
);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs(id) ON DELETE CASCADE,
    task_run_id INTEGER REFERENCES task_runs(id) ON DELETE CASCADE,
    ts TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX logs_run ON logs(flow_run_id, id);
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
"""),
    ("0002_deployments_queues_scheduler", """
CREATE TABLE work_queues (
    name TEXT PRIMARY KEY,
    concurrency_limit INTEGER,
    paused INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
INSERT INTO work_queues (name, concurrency_limit, created_at)
    VALUES ('default', 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    flow TEXT NOT NULL,
    schedule TEXT,
    schedule_fingerprint TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    work_queue TEXT NOT NULL DEFAULT 'default' REFERENCES work_queues(name),
    catchup TEXT NOT NULL DEFAULT 'latest',
    max_lateness REAL,
    active INTEGER NOT NULL DEFAULT 1,
    description TEXT,
    source_file TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
ALTER TABLE flow_runs ADD COLUMN deployment_id INTEGER REFERENCES deployments(id) ON DELETE SET NULL;
ALTER TABLE flow_runs ADD COLUMN work_queue TEXT;
ALTER TABLE flow_runs ADD COLUMN schedule_fingerprint TEXT;
ALTER TABLE flow_runs ADD COLUMN claimed_by TEXT;
ALTER TABLE flow_runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flow_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flow_runs ADD COLUMN next_attempt_at TEXT;
ALTER TABLE flow_runs ADD COLUMN late_reason TEXT;
CREATE UNIQUE INDEX flow_runs_slot ON flow_runs(deployment_id, schedule_fingerprint, scheduled_time)
    WHERE schedule_fingerprint IS NOT NULL;
CREATE INDEX flow_runs_deployment ON flow_runs(deployment_id, scheduled_time);
CREATE TABLE schedulers (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER,
    hostname TEXT,
    started_at TEXT,
    heartbeat_at TEXT,
    stopped_at TEXT
);
"""),
    ("0003_scheduler_watermarks_and_errors", """
ALTER TABLE deployments ADD COLUMN schedule_since TEXT;
ALTER TABLE schedulers ADD COLUMN stale_after REAL;
ALTER TABLE schedulers ADD COLUMN last_error TEXT;
ALTER TABLE schedulers ADD COLUMN last_error_at TEXT;
CREATE INDEX flow_runs_run_date ON flow_runs(deployment_id, run_date);
CREATE INDEX flow_runs_deployment_state ON flow_runs(deployment_id, state, scheduled_time);
"""),
]

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


class Store:
    """The run history. One instance per process; one connection per thread."""

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

    # -- flow runs ------------------------------------------------------------------
    def create_run(self, *, flow: str, name: str, state: State, now: dt.datetime,
                   parameters: dict | None = None, **fields: Any) -> str:
        """Insert one flow run and return its id. ``fields`` are flow_runs columns."""
        run_id = fields.pop("id", None) or new_run_id()
        row = {"id": run_id, "name": name, "flow": flow, "state": State(state).value,
               "parameters": json.dumps(parameters or {}, default=str), "created_at": to_db(now),
               **{k: _db_value(v) for k, v in fields.items()}}
        sql = f"INSERT INTO flow_runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
        with self.atomic() as conn:
            conn.execute(sql, tuple(row.values()))
        return run_id

    def insert_scheduled_runs(self, runs: list[dict[str, Any]], now: dt.datetime) -> int:
        """Insert SCHEDULED runs, skipping slots that exist already; returns how many were new."""
        created = 0
        with self.atomic() as conn:
            for run in runs:
                row = {"id": new_run_id(), "state": State.SCHEDULED.value, "created_at": to_db(now),
                       "trigger": "schedule", **{k: _db_value(v) for k, v in run.items()}}
                sql = (f"INSERT OR IGNORE INTO flow_runs ({', '.join(row)}) "
                       f"VALUES ({', '.join('?' * len(row))})")
                created += conn.execute(sql, tuple(row.values())).rowcount
        return created

    def get_run(self, run_id: str) -> dict[str, Any]:
        run = self._one("SELECT * FROM flow_runs WHERE id = ?", (run_id,))
        if run is None:
            run = self._find_by_prefix(run_id)
        return run

    def _find_by_prefix(self, prefix: str) -> dict[str, Any]:
        rows = self._all("SELECT * FROM flow_runs WHERE id LIKE ? OR name = ? LIMIT 2",
                         (prefix.replace("%", "") + "%", prefix))
        if len(rows) != 1:
            what = "matches several runs" if rows else "matches no run"
            raise NotFound(f"The run id {prefix!r} {what} in the history.")
        return rows[0]

    def transition(self, run_id: str, new: State, *, now: dt.datetime,
                   message: str | None = None, **fields: Any) -> dict[str, Any]:
        """Move a run to ``new`` after checking the transition; returns the updated row."""
        with self.atomic() as conn:
            current = self.get_run(run_id)
            check_transition(current["state"], new)
            updates = {"state": State(new).value, "state_message": message,
                       **{k: _db_value(v) for k, v in fields.items()}}
            if State(new).is_final:
                updates.setdefault("ended_at", to_db(now))
            assignments = ", ".join(f"{k} = ?" for k in updates)
            conn.execute(f"UPDATE flow_runs SET {assignments} WHERE id = ?",
                         (*updates.values(), current["id"]))
            return self.get_run(current["id"])

    def start_run(self, run_id: str, *, now: dt.datetime, pid: int) -> dict[str, Any]:
        return self.transition(run_id, State.RUNNING, now=now, started_at=now, heartbeat_at=now,
                               pid=pid, hostname=socket.gethostname(), ended_at=None,
                               error=None, error_task=None)

    def record_data_source(self, run_id: str, data_source: str, synthetic: bool) -> None:
        """The data source a run really reads, known once it starts (the executing process decides)."""
        with self.atomic() as conn:
            conn.execute("UPDATE flow_runs SET data_source = ?, synthetic = ? WHERE id = ?",
                         (data_source, int(synthetic), run_id))

    def heartbeat_run(self, run_id: str, now: dt.datetime) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE flow_runs SET heartbeat_at = ? WHERE id = ?", (to_db(now), run_id))

    def claim_due_run(self, *, now: dt.datetime, work_queue: str, claimer: str) -> dict[str, Any] | None:
        """Atomically move the oldest due waiting run of a queue to PENDING; None if none is due.

        The WHERE on the state makes the claim safe against a second scheduler: the row is
        claimed once, whoever comes second updates nothing.
        """
        waiting = tuple(s.value for s in WAITING_STATES)
        due = to_db(now)
        with self.atomic() as conn:
            row = conn.execute(
                f"""UPDATE flow_runs SET state = 'PENDING', claimed_by = ?, state_message = NULL,
                        attempts = attempts + 1
                    WHERE id = (SELECT id FROM flow_runs
                                WHERE state IN ({', '.join('?' * len(waiting))}) AND work_queue = ?
                                  AND COALESCE(next_attempt_at, scheduled_time) <= ?
                                  AND cancel_requested = 0
                                ORDER BY COALESCE(next_attempt_at, scheduled_time), created_at LIMIT 1)
                      AND state IN ({', '.join('?' * len(waiting))})
                    RETURNING *""",
                (claimer, *waiting, work_queue, due, *waiting)).fetchone()
            return _row(row)

    def request_cancel(self, run_id: str, *, now: dt.datetime) -> dict[str, Any]:
        """Cancel a waiting run at once; flag a pending or running one for the scheduler."""
        run = self.get_run(run_id)
        state = State(run["state"])
        if state in WAITING_STATES:
            return self.transition(run["id"], State.CANCELLED, now=now, message="Cancelled before it started.")
        if state in ACTIVE_STATES:
            with self.atomic() as conn:
                conn.execute("UPDATE flow_runs SET cancel_requested = 1 WHERE id = ?", (run["id"],))
            return self.get_run(run["id"])
        check_transition(state, State.CANCELLED)  # a finished run cannot be cancelled: this raises
        return run

    def active_runs(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM flow_runs WHERE state IN ('PENDING', 'RUNNING') ORDER BY started_at")

    def running_count(self, work_queue: str) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM flow_runs WHERE state IN ('PENDING', 'RUNNING') AND work_queue = ?",
            (work_queue,)).fetchone()[0]

    def runs(self, *, states: Iterable[str] | None = None, deployment: str | None = None,
             since: dt.datetime | None = None, until: dt.datetime | None = None,
             search: str | None = None, limit: int = 50, offset: int = 0,
             order: str = "recent") -> list[dict[str, Any]]:
        """Flow runs, newest first by their start or scheduled time, filtered."""
        where, params = _run_filters(states, deployment, since, until, search)
        direction = "ASC" if order == "upcoming" else "DESC"
        sql = (f"SELECT r.*, d.name AS deployment FROM flow_runs r "
               f"LEFT JOIN deployments d ON d.id = r.deployment_id {where} "
               f"ORDER BY COALESCE(r.started_at, r.scheduled_time, r.created_at) {direction} "
               f"LIMIT ? OFFSET ?")
        return self._all(sql, (*params, limit, offset))

    def count_runs(self, **filters: Any) -> int:
        where, params = _run_filters(**filters)
        sql = f"SELECT COUNT(*) FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id {where}"
        return self.conn.execute(sql, params).fetchone()[0]

    def count_by_state(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, COUNT(*) FROM flow_runs GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    def metric_history(self, limit: int = 500) -> list[dict[str, Any]]:
        """Completed runs with their metrics, oldest first (for trends)."""
        rows = self._all(
            "SELECT id, name, run_date, train_month, val_month, synthetic, data_source, started_at, "
            "ended_at, metrics FROM flow_runs WHERE state = 'COMPLETED' AND metrics IS NOT NULL "
            "ORDER BY run_date DESC, ended_at DESC LIMIT ?", (limit,))
        return rows[::-1]

    # -- task runs, logs, artifacts ---------------------------------------------------
    def create_task_run(self, run_id: str, task: str, *, position: int, attempt: int,
                        state: State, now: dt.datetime | None) -> int:
        with self.atomic() as conn:
            cursor = conn.execute(
                "INSERT INTO task_runs (flow_run_id, task, position, attempt, state, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", (run_id, task, position, attempt, State(state).value, to_db(now)))
            return cursor.lastrowid

    def finish_task_run(self, task_run_id: int, state: State, *, now: dt.datetime,
                        error: str | None = None) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE task_runs SET state = ?, ended_at = ?, error = ? WHERE id = ?",
                         (State(state).value, to_db(now), error, task_run_id))

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM task_runs WHERE flow_run_id = ? ORDER BY position, attempt", (run_id,))

    def add_log(self, run_id: str, *, level: str, message: str, ts: dt.datetime,
                task_run_id: int | None = None) -> None:
        with self.atomic() as conn:
            conn.execute("INSERT INTO logs (flow_run_id, task_run_id, ts, level, message) VALUES (?, ?, ?, ?, ?)",
                         (run_id, task_run_id, to_db(ts), level, message))

    def logs(self, run_id: str, *, levels: Iterable[str] | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT l.*, t.task FROM logs l LEFT JOIN task_runs t ON t.id = l.task_run_id "
               "WHERE l.flow_run_id = ?")
        params: list[Any] = [run_id]
        if levels:
            levels = list(levels)
            sql += f" AND l.level IN ({', '.join('?' * len(levels))})"
            params += levels
        return self._all(sql + " ORDER BY l.id", params)

    def add_artifact(self, run_id: str, *, name: str, path: str, sha256: str, size: int,
                     now: dt.datetime, kind: str | None = None) -> None:
        with self.atomic() as conn:
            conn.execute("INSERT INTO artifacts (flow_run_id, name, kind, path, sha256, size, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, name, kind, path, sha256, size, to_db(now)))

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM artifacts WHERE flow_run_id = ? ORDER BY id", (run_id,))

    # -- deployments, work queues and the scheduler -----------------------------------
    def ensure_work_queue(self, name: str, *, now: dt.datetime) -> dict[str, Any]:
        """The work queue ``name``, created without a concurrency limit if it does not exist."""
        with self.atomic() as conn:
            conn.execute("INSERT OR IGNORE INTO work_queues (name, concurrency_limit, created_at) VALUES (?, NULL, ?)",
                         (name, to_db(now)))
        return self.work_queue(name)

    def upsert_work_queue(self, name: str, *, concurrency_limit: int | None, now: dt.datetime) -> dict[str, Any]:
        """Create the work queue ``name`` or set its concurrency limit (None: no limit)."""
        with self.atomic() as conn:
            conn.execute("INSERT INTO work_queues (name, concurrency_limit, created_at) VALUES (?, ?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET concurrency_limit = excluded.concurrency_limit",
                         (name, concurrency_limit, to_db(now)))
        return self.work_queue(name)

    def set_work_queue_paused(self, name: str, paused: bool) -> dict[str, Any]:
        self.work_queue(name)
        with self.atomic() as conn:
            conn.execute("UPDATE work_queues SET paused = ? WHERE name = ?", (int(paused), name))
        return self.work_queue(name)

    def work_queue(self, name: str) -> dict[str, Any]:
        row = self._one("SELECT * FROM work_queues WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"There is no work queue named {name!r}; see: python -m pipeline work-queue ls.")
        return {**row, "paused": bool(row["paused"])}

    def work_queues(self) -> list[dict[str, Any]]:
        """Every work queue with how many of its runs are running, scheduled, late and awaiting data."""
        rows = self._all(
            "SELECT q.name, q.concurrency_limit, q.paused, q.created_at, COALESCE(c.running, 0) AS running, "
            "COALESCE(c.scheduled, 0) AS scheduled, COALESCE(c.late, 0) AS late, "
            "COALESCE(c.awaiting, 0) AS awaiting FROM work_queues q LEFT JOIN ("
            "  SELECT work_queue, SUM(state IN ('PENDING', 'RUNNING')) AS running, "
            "  SUM(state = 'SCHEDULED') AS scheduled, SUM(state = 'LATE') AS late, "
            "  SUM(state = 'AWAITING_RETRY') AS awaiting FROM flow_runs "
            "  WHERE state IN ('PENDING', 'RUNNING', 'SCHEDULED', 'LATE', 'AWAITING_RETRY') GROUP BY work_queue"
            ") c ON c.work_queue = q.name ORDER BY q.name")
        return [{**row, "paused": bool(row["paused"])} for row in rows]

    def upsert_deployment(self, fields: dict[str, Any], *, now: dt.datetime) -> tuple[dict[str, Any], bool]:
        """Insert or update the deployment ``fields['name']``; also say whether its upcoming runs are stale.

        A new deployment or a new schedule starts counting slots at ``now`` (``schedule_since``).
        ``active`` is only set on insert: pausing and resuming go through ``set_deployment_active``.
        """
        with self.atomic() as conn:
            old = self._one("SELECT * FROM deployments WHERE name = ?", (fields["name"],))
            if old is None:
                row = {**fields, "schedule_since": now, "created_at": now, "updated_at": now}
                self._insert(conn, "deployments", row)
                return self.get_deployment(fields["name"]), True
            stale = any(old[k] != fields.get(k) for k in ("schedule_fingerprint", "parameters", "work_queue", "flow"))
            updates = {k: v for k, v in fields.items() if k not in ("name", "active")} | {"updated_at": now}
            if old["schedule_fingerprint"] != fields.get("schedule_fingerprint"):
                updates["schedule_since"] = now
            values = {k: _db_value(v) for k, v in updates.items()}
            conn.execute(f"UPDATE deployments SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                         (*values.values(), old["id"]))
        return self.get_deployment(fields["name"]), stale

    @staticmethod
    def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
        values = {k: _db_value(v) for k, v in row.items()}
        conn.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                     tuple(values.values()))

    def deployments(self) -> list[dict[str, Any]]:
        """Every deployment (schedule, tags and parameters decoded) with its next and last run."""
        return [self._deployment_row(row) for row in self._all(self._DEPLOYMENTS + " ORDER BY d.name")]

    _DEPLOYMENTS = (
        "SELECT d.*, (SELECT MIN(r.scheduled_time) FROM flow_runs r WHERE r.deployment_id = d.id "
        "  AND r.state = 'SCHEDULED') AS next_run_time, "
        "(SELECT r.state FROM flow_runs r WHERE r.deployment_id = d.id AND r.started_at IS NOT NULL "
        "  ORDER BY r.started_at DESC LIMIT 1) AS last_run_state FROM deployments d")

    def get_deployment(self, name: str) -> dict[str, Any]:
        """One deployment, like ``deployments()``; NotFound names it."""
        row = self._one(self._DEPLOYMENTS + " WHERE d.name = ?", (name,))
        if row is None:
            raise NotFound(f"There is no deployment named {name!r}; see: python -m pipeline deployment ls.")
        return self._deployment_row(row)

    @staticmethod
    def _deployment_row(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "active": bool(row["active"])}

    def set_deployment_active(self, name: str, active: bool, now: dt.datetime) -> dict[str, Any]:
        """Pause (drop upcoming scheduled runs, cancel due ones) or resume (slots count from ``now``)."""
        with self.atomic() as conn:
            deployment = self.get_deployment(name)
            if deployment["active"] == bool(active):
                return deployment
            if active:
                conn.execute("UPDATE deployments SET active = 1, schedule_since = ?, updated_at = ? WHERE id = ?",
                             (to_db(now), to_db(now), deployment["id"]))
            else:
                conn.execute("UPDATE deployments SET active = 0, updated_at = ? WHERE id = ?",
                             (to_db(now), deployment["id"]))
                self.drop_upcoming_runs(deployment["id"], now)
                for run in self.missed_runs(deployment["id"], after=None, until=now):
                    self.transition(run["id"], State.CANCELLED, now=now,
                                    message="Cancelled: its deployment was paused before it started.")
        return self.get_deployment(name)

    def drop_upcoming_runs(self, deployment_id: int, now: dt.datetime) -> int:
        """Delete the not-yet-due scheduled runs of a deployment (they are made again from its schedule)."""
        with self.atomic() as conn:
            return conn.execute(
                "DELETE FROM flow_runs WHERE deployment_id = ? AND trigger = 'schedule' AND state = 'SCHEDULED' "
                "AND attempts = 0 AND scheduled_time > ?", (deployment_id, to_db(now))).rowcount

    def slot_watermark(self, deployment_id: int, fingerprint: str) -> dt.datetime | None:
        """The latest slot made for this deployment and schedule, or None."""
        row = self.conn.execute("SELECT MAX(scheduled_time) FROM flow_runs WHERE deployment_id = ? "
                                "AND schedule_fingerprint = ?", (deployment_id, fingerprint)).fetchone()
        return from_db(row[0])

    def missed_runs(self, deployment_id: int, *, after: dt.datetime | None,
                    until: dt.datetime) -> list[dict[str, Any]]:
        """Scheduled runs of a deployment, never started, whose slot is in (after, until], oldest first."""
        sql = ("SELECT * FROM flow_runs WHERE deployment_id = ? AND trigger = 'schedule' AND attempts = 0 "
               "AND state IN ('SCHEDULED', 'LATE') AND cancel_requested = 0 AND scheduled_time <= ?")
        params: list[Any] = [deployment_id, to_db(until)]
        if after is not None:
            sql += " AND scheduled_time > ?"
            params.append(to_db(after))
        return self._all(sql + " ORDER BY scheduled_time", params)

    def due_runs(self, *, due_by: dt.datetime) -> list[dict[str, Any]]:
        """Waiting runs due by ``due_by``, oldest first, with their deployment's name and max lateness."""
        return self._all(
            "SELECT r.*, d.name AS deployment, d.max_lateness FROM flow_runs r "
            "LEFT JOIN deployments d ON d.id = r.deployment_id "
            "WHERE r.state IN ('SCHEDULED', 'LATE', 'AWAITING_RETRY') "
            "AND COALESCE(r.next_attempt_at, r.scheduled_time) <= ? "
            "ORDER BY COALESCE(r.next_attempt_at, r.scheduled_time)", (to_db(due_by),))

    def next_due_time(self, *, after: dt.datetime) -> dt.datetime | None:
        """When the next waiting run falls due, if later than ``after`` (the scheduler wakes up then)."""
        row = self.conn.execute(
            "SELECT MIN(COALESCE(next_attempt_at, scheduled_time)) FROM flow_runs "
            "WHERE state IN ('SCHEDULED', 'LATE', 'AWAITING_RETRY') AND COALESCE(next_attempt_at, scheduled_time) > ?",
            (to_db(after),)).fetchone()
        return from_db(row[0])

    def upcoming_runs(self, *, until: dt.datetime, work_queue: str | None = None,
                      limit: int = 500) -> list[dict[str, Any]]:
        """Waiting runs due by ``until`` (late ones first), with their deployment's name."""
        sql = ("SELECT r.*, d.name AS deployment FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
               "WHERE r.state IN ('SCHEDULED', 'LATE', 'AWAITING_RETRY') "
               "AND COALESCE(r.next_attempt_at, r.scheduled_time) <= ?")
        params: list[Any] = [to_db(until)]
        if work_queue:
            sql += " AND r.work_queue = ?"
            params.append(work_queue)
        return self._all(sql + " ORDER BY COALESCE(r.next_attempt_at, r.scheduled_time) LIMIT ?", (*params, limit))

    def mark_late(self, run_id: str, reason: str, now: dt.datetime) -> dict[str, Any]:
        return self.transition(run_id, State.LATE, now=now, late_reason=reason)

    def set_late_reason(self, run_id: str, reason: str) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE flow_runs SET late_reason = ? WHERE id = ?", (reason, run_id))

    def runs_on_dates(self, deployment_id: int, dates: Iterable[dt.date]) -> list[dict[str, Any]]:
        """Runs of a deployment for these run dates (any trigger), newest first."""
        days = [d.isoformat() for d in dates]
        if not days:
            return []
        return self._all(
            f"SELECT id, name, state, run_date, trigger, created_at FROM flow_runs WHERE deployment_id = ? "
            f"AND run_date IN ({', '.join('?' * len(days))}) ORDER BY created_at DESC", (deployment_id, *days))

    def scheduler_started(self, *, pid: int, hostname: str, now: dt.datetime,
                          stale_after: float) -> dict[str, Any] | None:
        """Record this process as the scheduler; returns the previous scheduler's row, if any."""
        with self.atomic() as conn:
            previous = self.scheduler_status()
            conn.execute(
                "INSERT INTO schedulers (id, pid, hostname, started_at, heartbeat_at, stale_after) "
                "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET pid = excluded.pid, "
                "hostname = excluded.hostname, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, "
                "stale_after = excluded.stale_after, stopped_at = NULL, last_error = NULL, last_error_at = NULL",
                (pid, hostname, to_db(now), to_db(now), stale_after))
        return previous

    def scheduler_heartbeat(self, now: dt.datetime) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE schedulers SET heartbeat_at = ? WHERE id = 1", (to_db(now),))

    def scheduler_stopped(self, now: dt.datetime) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE schedulers SET stopped_at = ?, heartbeat_at = ? WHERE id = 1",
                         (to_db(now), to_db(now)))

    def scheduler_error(self, message: str, now: dt.datetime) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE schedulers SET last_error = ?, last_error_at = ? WHERE id = 1", (message, to_db(now)))

    def scheduler_status(self) -> dict[str, Any] | None:
        """The scheduler's pid, host, start, last heartbeat and stop time (None if none ever ran)."""
        return self._one("SELECT pid, hostname, started_at, heartbeat_at, stopped_at, stale_after, last_error, "
                         "last_error_at FROM schedulers WHERE id = 1")
    # (end of deployments, work queues and the scheduler)

    # -- dashboard reads -------------------------------------------------------------
    def run_timeline(self, *, limit: int = 2000, **filters: Any) -> list[dict[str, Any]]:
        """Started runs, newest first, with only the columns the runs-over-time chart needs."""
        where, params = _run_filters(**filters)
        started = "r.started_at IS NOT NULL"
        where = f"{where} AND {started}" if where else f"WHERE {started}"
        return self._all(
            "SELECT r.id, r.name, r.state, r.run_date, r.train_month, r.val_month, r.started_at, "
            "r.ended_at FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
            f"{where} ORDER BY r.started_at DESC LIMIT ?", (*params, limit))

    def task_counts(self, run_ids: Iterable[str]) -> dict[str, int]:
        """How many task runs each of these flow runs has (attempts and not-run tasks included)."""
        ids = list(run_ids)
        if not ids:
            return {}
        rows = self.conn.execute(
            f"SELECT flow_run_id, COUNT(*) FROM task_runs WHERE flow_run_id IN ({', '.join('?' * len(ids))}) "
            "GROUP BY flow_run_id", ids).fetchall()
        return {run_id: count for run_id, count in rows}

    def run_with_deployment(self, run_id: str) -> dict[str, Any]:
        """One run with the name of its deployment (None for a manual run)."""
        run = self.get_run(run_id)
        row = self.conn.execute("SELECT name FROM deployments WHERE id = ?",
                                (run.get("deployment_id"),)).fetchone()
        return {**run, "deployment": row[0] if row else None}

    def synthetic_counts(self) -> tuple[int, int]:
        """(runs on synthetic data, all runs) among the completed runs."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(COALESCE(json_extract(metrics, '$.synthetic'), synthetic)), 0), COUNT(*) "
            "FROM flow_runs WHERE state = 'COMPLETED'").fetchone()
        return row[0], row[1]

    def log_level_counts(self, run_id: str) -> dict[str, int]:
        rows = self.conn.execute("SELECT level, COUNT(*) FROM logs WHERE flow_run_id = ? GROUP BY level",
                                 (run_id,)).fetchall()
        return {level: count for level, count in rows}
    # (end of dashboard reads)


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


def _run_filters(states: Iterable[str] | None = None, deployment: str | None = None,
                 since: dt.datetime | None = None, until: dt.datetime | None = None,
                 search: str | None = None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if states:
        states = [State(s).value for s in states]
        clauses.append(f"r.state IN ({', '.join('?' * len(states))})")
        params += states
    if deployment:
        clauses.append("d.name = ?")
        params.append(deployment)
    moment = "COALESCE(r.started_at, r.scheduled_time, r.created_at)"
    if since:
        clauses.append(f"{moment} >= ?")
        params.append(to_db(since))
    if until:
        clauses.append(f"{moment} < ?")
        params.append(to_db(until))
    if search:
        clauses.append("(r.name LIKE ? OR r.id LIKE ? OR r.run_date LIKE ?)")
        params += [f"%{search}%", f"{search}%", f"%{search}%"]
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
