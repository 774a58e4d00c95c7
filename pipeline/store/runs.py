"""Flow runs, task runs, logs and artifacts."""
from __future__ import annotations

import datetime as dt
import json
import socket
from typing import Any, Callable, Iterable

from ..errors import InvalidTransition, NotFound
from ..orchestration.states import ACTIVE_STATES, WAITING_STATES, State
from .base import _db_value, _row, new_run_id, to_db
from .parts import StoreParts
from .rows import RUN_COLUMNS
from .sql import fragment, in_list, json_merge
from .transitions import ACTIVE, FLOW_RUNS, TASK_RUNS, Sql, When, move

_WAITING = tuple(s.value for s in WAITING_STATES)
_WAITING_BINDS, _WAITING_PARAMS = in_list("waiting", _WAITING)
_MERGE_FIELDS = "UPDATE flow_runs SET fields = {merge} WHERE id = :id"


class RunStore(StoreParts):
    """Flow runs and what they record (mixed into ``Store``)."""

    put_artifact_blob: Callable[..., bool]  # from ArtifactStore: an artifact's bytes, kept once

    # -- flow runs ------------------------------------------------------------------
    def create_run(self, *, flow: str, name: str, state: State, now: dt.datetime,
                   parameters: dict | None = None, **fields: Any) -> str | None:
        """Insert one flow run and return its id. ``fields``: flow_runs columns, and the run's flow fields
        (any other name, kept in its ``fields``).

        A run with an ``enqueue_key`` that a live run (waiting, running or completed) already has
        is not inserted: the unique index decides, and None says so.
        """
        run_id = fields.pop("id", None) or new_run_id()
        row = {"id": run_id, "name": name, "flow": flow, "state": State(state).value,
               "parameters": json.dumps(parameters or {}, default=str), "created_at": to_db(now),
               **run_columns(fields)}
        sql = f"INSERT INTO flow_runs ({', '.join(row)}) VALUES ({_binds(row)}) ON CONFLICT DO NOTHING"
        with self.atomic() as conn:
            inserted = conn.execute(sql, row).rowcount
        return run_id if inserted else None

    def insert_scheduled_runs(self, runs: list[dict[str, Any]], now: dt.datetime) -> int:
        """Insert SCHEDULED runs, skipping slots that exist already; returns how many were new."""
        created = 0
        with self.atomic() as conn:
            for run in runs:
                row = {"id": new_run_id(), "state": State.SCHEDULED.value, "created_at": to_db(now),
                       "trigger": "schedule", **run_columns(run)}
                sql = (f"INSERT INTO flow_runs ({', '.join(row)}) VALUES ({_binds(row)}) "
                       "ON CONFLICT (deployment_id, schedule_fingerprint, scheduled_time) "
                       "WHERE schedule_fingerprint IS NOT NULL DO NOTHING")
                created += conn.execute(sql, row).rowcount
        return created

    def get_run(self, run_id: str) -> dict[str, Any]:
        run = self._one("SELECT * FROM flow_runs WHERE id = :id", {"id": run_id})
        if run is None:
            run = self._find_by_prefix(run_id)
        return run

    def _find_by_prefix(self, prefix: str) -> dict[str, Any]:
        """The one run whose id starts with ``prefix`` (taken literally) or whose name it is."""
        rows = [] if not prefix else self._all(
            "SELECT * FROM flow_runs WHERE substr(id, 1, :length) = :prefix OR name = :prefix "
            "ORDER BY created_at DESC, id LIMIT 6", {"length": len(prefix), "prefix": prefix})
        if not rows:
            raise NotFound(f"The run id {prefix!r} matches no run in the history.")
        if len(rows) > 1:
            shown = ", ".join(f"{r['id'][:8]} ({r['name']})" for r in rows[:5]) + (" and more" if len(rows) > 5 else "")
            raise NotFound(f"The run id {prefix!r} matches several runs: {shown}; give more of the id.")
        return rows[0]

    def transition(self, run_id: str, new: State, *, now: dt.datetime, message: str | None = None,
                   expect: Iterable[State] | None = None, **fields: Any) -> dict[str, Any] | None:
        """Move run ``run_id`` (its full id) to ``new`` in one conditional UPDATE.

        The UPDATE only applies while the run is in a state that may move to ``new`` (and, with
        ``expect``, in one of those states). Returns the updated row, or None when the run had
        moved on already: losing a race is a normal outcome, not an error.
        """
        updates = {"state_message": message, **{k: _db_value(v) for k, v in fields.items()}}
        if State(new).is_final:
            updates.setdefault("ended_at", to_db(now))
        with self.atomic() as conn:
            row = move(conn, FLOW_RUNS, State(new), params={"id": run_id}, sets=updates, expect=expect).fetchone()
        return _row(row)

    claimer: str | None = None  # a flow process started for a claim: only that claim may start its run

    def start_run(self, run_id: str, *, now: dt.datetime, pid: int) -> dict[str, Any] | None:
        """PENDING -> RUNNING for the process that executes it; None if the run is no longer PENDING.

        In a flow process started for a claim (``claimer`` set), the run must still be claimed by that
        claimer: a run handed back to the queue and claimed again elsewhere is not started twice.
        """
        where = "id = :id AND claimed_by = :claimer" if self.claimer else "id = :id"
        params = {"id": run_id, "claimer": self.claimer} if self.claimer else {"id": run_id}
        sets = {"state_message": None, "started_at": to_db(now), "heartbeat_at": to_db(now), "pid": pid,
                "hostname": socket.gethostname(), "ended_at": None, "error": None, "error_task": None,
                "late_reason": None}
        with self.atomic() as conn:
            row = move(conn, FLOW_RUNS, State.RUNNING, where=where, params=params, sets=sets,
                       expect=(State.PENDING,)).fetchone()
        return _row(row)

    def requeue_unstarted(self, run_id: str, *, reason: str, now: dt.datetime,
                          cancelled: str = "Cancelled on request before it started.") -> dict[str, Any] | None:
        """A claimed run whose process never began goes back to the queue (LATE), as if never claimed; one
        whose cancel was asked meanwhile ends CANCELLED with the message ``cancelled`` (claims skip it)."""
        asked = "cancel_requested = 1"
        sets = {"claimed_by": None, "attempts": Sql("CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"),
                "late_reason": Sql(f"CASE WHEN {asked} THEN NULL ELSE :reason END", {"reason": reason}),
                "state_message": Sql(f"CASE WHEN {asked} THEN :cancelled ELSE :reason END",
                                     {"cancelled": cancelled, "reason": reason}),
                "ended_at": Sql(f"CASE WHEN {asked} THEN :now ELSE ended_at END", {"now": to_db(now)})}
        with self.atomic() as conn:
            row = move(conn, FLOW_RUNS, When(asked, State.CANCELLED, State.LATE),
                       where="id = :id AND started_at IS NULL", params={"id": run_id}, sets=sets,
                       expect=(State.PENDING,)).fetchone()
        return _row(row)

    def reword_cancel(self, run_id: str, message: str) -> bool:
        """A run that recorded itself "Cancelled on request" when it was stopped for another reason: say that
        reason instead (the flow process cannot tell one SIGTERM from another)."""
        with self.atomic() as conn:
            return conn.execute("UPDATE flow_runs SET state_message = :message, error = :message WHERE id = :id "
                                "AND state = 'CANCELLED' AND state_message LIKE 'Cancelled on request%'",
                                {"message": message, "id": run_id}).rowcount == 1

    def end_dead_run(self, run_id: str, *, message: str, now: dt.datetime, retries: int = 0,
                     name: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
        """A run whose process is gone: CANCELLED if its cancel was asked, else CRASHED.

        A crashed run of a deployment with ``retries`` left gets a new run (trigger 'retry'), due
        now, in the same transaction; the key ``retry:<id>`` makes that happen once. Returns the
        ended row (None: the run had moved on) and the id of the retry, if one was made.
        """
        with self.atomic():
            run = self._one("SELECT * FROM flow_runs WHERE id = :id", {"id": run_id})
            cancelled = bool(run and run["cancel_requested"])
            final, text = (State.CANCELLED, f"Cancelled on request. {message}") if cancelled else (State.CRASHED, message)
            ended = self.transition(run_id, final, now=now, expect=ACTIVE_STATES, message=text, error=text)
            if ended is None or final is State.CANCELLED or ended["retry_number"] >= retries:
                return ended, None
            return ended, self._retry_of(ended, now=now, name=name or ended["name"])

    def _retry_of(self, run: dict[str, Any], *, now: dt.datetime, name: str) -> str | None:
        return self.create_run(flow=run["flow"], name=name, state=State.SCHEDULED, now=now,
                               parameters=run["parameters"], trigger="retry", scheduled_time=now,
                               retry_of=run["id"], retry_number=run["retry_number"] + 1,
                               enqueue_key=f"retry:{run['id']}", deployment_id=run["deployment_id"],
                               work_queue=run["work_queue"], run_date=run["run_date"], fields=run.get("fields") or {})

    def update_fields(self, run_id: str, values: dict[str, Any]) -> bool:
        """Merge ``values`` into a run's flow fields (a None removes one): what a run learns once it starts,
        such as the data source it really reads. One UPDATE; False when there is no such run."""
        with self.atomic() as conn:
            merge = fragment(json_merge("fields", "values"), conn.dialect)
            return conn.execute(_MERGE_FIELDS.format(merge=merge),
                                {"values": fields_json(values), "id": run_id}).rowcount == 1

    def heartbeat_run(self, run_id: str, now: dt.datetime) -> bool:
        """Stamp a running run's heartbeat; True when its cancellation has been asked for."""
        with self.atomic() as conn:
            row = conn.execute(f"UPDATE flow_runs SET heartbeat_at = :now WHERE id = :id AND state IN {ACTIVE} "
                               "RETURNING cancel_requested", {"now": to_db(now), "id": run_id}).fetchone()
        return bool(row and row[0])

    def claim_due_run(self, *, now: dt.datetime, work_queue: str, claimer: str,
                      skip_deployments: tuple[int, ...] = (), within_limit: bool = False,
                      slots: bool = True) -> dict[str, Any] | None:
        """Atomically move the oldest due waiting run of a queue to PENDING; None if none is due.

        One conditional UPDATE, safe against any number of schedulers and workers claiming at once:
        the row is claimed once, whoever comes second updates nothing. With ``within_limit`` (the
        scheduler's dispatch and the workers) the queue's pause and concurrency limit hold across all
        claimers together, because claims of one queue are serialised (SQLite: the write transaction;
        PostgreSQL: the queue's row ``FOR UPDATE``, then the candidate run ``FOR UPDATE SKIP LOCKED``),
        and the runs of a deployment whose catch-up fails (its error says ``catch-up: ...``) wait.
        Runs of ``skip_deployments`` and of paused deployments wait; without ``slots``, so do the runs
        of scheduled slots (a worker while no scheduler runs: the catch-up policy decides them).
        """
        skipped, params = in_list("skip", skip_deployments)
        skip = f"AND COALESCE(r.deployment_id, -1) NOT IN ({skipped})" if skip_deployments else ""
        held = " OR last_error LIKE 'catch-up:%'" if within_limit else ""
        skip += (" AND (r.deployment_id IS NULL OR r.deployment_id NOT IN (SELECT id FROM deployments WHERE active = 0"
                 f"{held}))" + ("" if slots else " AND r.trigger <> 'schedule'"))
        locks = self.row_locks()
        with self.atomic() as conn:
            if locks:
                self.lock_queue(conn, work_queue)
            row = move(conn, FLOW_RUNS, State.PENDING, expect=_WAITING, where=f"""id = (
                SELECT r.id FROM flow_runs r LEFT JOIN work_queues q ON q.name = r.work_queue
                 WHERE r.state IN ({_WAITING_BINDS}) AND r.work_queue = :queue
                   AND COALESCE(r.next_attempt_at, r.scheduled_time) <= :now
                   AND r.cancel_requested = 0 {skip}
                   AND (:limited = 0 OR q.paused = 0 AND (q.concurrency_limit IS NULL
                        OR q.concurrency_limit > (SELECT COUNT(*) FROM flow_runs a
                        WHERE a.work_queue = :queue AND a.state IN {ACTIVE})))
                 ORDER BY COALESCE(r.next_attempt_at, r.scheduled_time) NULLS FIRST, r.created_at LIMIT 1
                 {'FOR UPDATE OF r SKIP LOCKED' if locks else ''})""",
                       params={**_WAITING_PARAMS, **params, "queue": work_queue, "now": to_db(now),
                               "limited": int(within_limit)},
                       sets={"claimed_by": claimer, "state_message": None, "attempts": Sql("attempts + 1")}).fetchone()
            return _row(row)

    def request_cancel(self, run_id: str, *, now: dt.datetime) -> dict[str, Any]:
        """Cancel a waiting run at once; flag a pending or running one for the scheduler.

        Both are one guarded UPDATE each, so a scheduler claiming the run at the same moment
        either sees it CANCELLED or finds the flag set: never a live process marked CANCELLED.
        """
        run = self.get_run(run_id)
        active, params = in_list("active", (s.value for s in ACTIVE_STATES))
        with self.atomic() as conn:
            cancelled = move(conn, FLOW_RUNS, State.CANCELLED, params={"id": run["id"]}, expect=_WAITING,
                             returning=None,
                             sets={"state_message": "Cancelled before it started.", "ended_at": to_db(now)}).rowcount
            flagged = cancelled or conn.execute(
                f"UPDATE flow_runs SET cancel_requested = 1 WHERE id = :id AND state IN ({active})",
                {**params, "id": run["id"]}).rowcount
        if not flagged:
            raise InvalidTransition(f"The run {run['name']} ({run['id'][:8]}) is already {run['state']}: "
                                    "there is nothing left to cancel.")
        return self.get_run(run["id"])

    _WITH_RETRIES = ("SELECT r.*, COALESCE(d.retries, 0) AS deployment_retries FROM flow_runs r "
                     "LEFT JOIN deployments d ON d.id = r.deployment_id")

    def active_runs(self) -> list[dict[str, Any]]:
        """PENDING and RUNNING runs, with how many crash retries their deployment allows."""
        return self._all(f"{self._WITH_RETRIES} WHERE r.state IN {ACTIVE} ORDER BY r.started_at NULLS FIRST", {})

    def run_for_sweep(self, run_id: str) -> dict[str, Any]:
        """One run (by its full id), with how many crash retries its deployment allows."""
        run = self._one(f"{self._WITH_RETRIES} WHERE r.id = :id", {"id": run_id})
        if run is None:
            raise NotFound(f"The run {run_id!r} is not in the history.")
        return run

    def running_count(self, work_queue: str) -> int:
        return self.conn.execute(
            f"SELECT COUNT(*) FROM flow_runs WHERE state IN {ACTIVE} AND work_queue = :queue",
            {"queue": work_queue}).fetchone()[0]

    def runs(self, *, states: Iterable[str] | None = None, deployment: str | None = None,
             since: dt.datetime | None = None, until: dt.datetime | None = None,
             search: str | None = None, limit: int = 50, offset: int = 0,
             order: str = "recent", flow: str | None = None) -> list[dict[str, Any]]:
        """Flow runs (of ``flow``, or of every flow), newest first by their start or scheduled time, filtered."""
        where, params = _run_filters(states, deployment, since, until, search, flow)
        direction = "ASC" if order == "upcoming" else "DESC"
        sql = (f"SELECT r.*, d.name AS deployment FROM flow_runs r "
               f"LEFT JOIN deployments d ON d.id = r.deployment_id {where} "
               f"ORDER BY COALESCE(r.started_at, r.scheduled_time, r.created_at) {direction} "
               f"LIMIT :limit OFFSET :offset")
        return self._all(sql, {**params, "limit": limit, "offset": offset})

    def count_runs(self, **filters: Any) -> int:
        where, params = _run_filters(**filters)
        sql = f"SELECT COUNT(*) FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id {where}"
        return self.conn.execute(sql, params).fetchone()[0]

    def count_by_state(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, COUNT(*) FROM flow_runs GROUP BY state", {}).fetchall()
        return {state: count for state, count in rows}

    def metric_history(self, flow: str, limit: int = 500) -> list[dict[str, Any]]:
        """Completed runs of ``flow`` with their fields and metrics, oldest first (for trends)."""
        order = "ORDER BY r.run_date DESC NULLS LAST, r.ended_at DESC NULLS LAST"  # the runs first, then only their metrics are read
        rows = self._all(
            "SELECT r.id, r.name, r.run_date, r.fields, r.started_at, r.ended_at, r.metrics FROM (SELECT r.id AS "
            "page_id FROM flow_runs r WHERE r.state = 'COMPLETED' AND r.metrics IS NOT NULL AND r.flow = :flow "
            f"{order} LIMIT :limit) page JOIN flow_runs r ON r.id = page.page_id {order}",
            {"flow": flow, "limit": limit})
        return rows[::-1]

    # -- task runs, logs, artifacts ---------------------------------------------------
    def create_task_run(self, run_id: str, task: str, *, position: int, attempt: int,
                        state: State, now: dt.datetime | None) -> int:
        with self.atomic() as conn:
            return conn.execute(
                "INSERT INTO task_runs (flow_run_id, task, position, attempt, state, started_at) "
                "VALUES (:run_id, :task, :position, :attempt, :state, :now) RETURNING id",
                {"run_id": run_id, "task": task, "position": position, "attempt": attempt,
                 "state": State(state).value, "now": to_db(now)}).fetchone()[0]

    def finish_task_run(self, task_run_id: int, state: State, *, now: dt.datetime,
                        error: str | None = None) -> bool:
        """A task run ends in ``state``; False when it had ended already (the first ending stays)."""
        with self.atomic() as conn:
            return move(conn, TASK_RUNS, State(state), params={"id": task_run_id}, returning=None,
                        sets={"ended_at": to_db(now), "error": error}).rowcount == 1

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM task_runs WHERE flow_run_id = :run_id ORDER BY position, attempt",
                         {"run_id": run_id})

    def add_log(self, run_id: str, *, level: str, message: str, ts: dt.datetime,
                task_run_id: int | None = None) -> None:
        with self.atomic() as conn:
            conn.execute("INSERT INTO logs (flow_run_id, task_run_id, ts, level, message) "
                         "VALUES (:run_id, :task_run_id, :ts, :level, :message)",
                         {"run_id": run_id, "task_run_id": task_run_id, "ts": to_db(ts), "level": level,
                          "message": message})

    def logs(self, run_id: str, *, levels: Iterable[str] | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT l.*, t.task FROM logs l LEFT JOIN task_runs t ON t.id = l.task_run_id "
               "WHERE l.flow_run_id = :run_id")
        params: dict[str, Any] = {"run_id": run_id}
        if levels:
            listed, chosen = in_list("level", levels)
            sql += f" AND l.level IN ({listed})"
            params.update(chosen)
        return self._all(sql + " ORDER BY l.id", params)

    def add_artifact(self, run_id: str, *, name: str, path: str, sha256: str, size: int,
                     now: dt.datetime, kind: str | None = None, data: bytes | None = None) -> None:
        """Record an artifact; with ``data`` (its bytes, checked against ``sha256``) the history keeps them too."""
        with self.atomic() as conn:
            conn.execute("INSERT INTO artifacts (flow_run_id, name, kind, path, sha256, size, created_at) "
                         "VALUES (:run_id, :name, :kind, :path, :sha256, :size, :now)",
                         {"run_id": run_id, "name": name, "kind": kind, "path": path, "sha256": sha256, "size": size,
                          "now": to_db(now)})
            if data is not None:
                self.put_artifact_blob(sha256, data, now=now)

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        """A run's artifacts; ``stored`` says whether the history holds their bytes (``read_artifact``)."""
        return self._all("SELECT a.*, CASE WHEN EXISTS (SELECT 1 FROM artifact_blobs b WHERE b.sha256 = a.sha256) "
                         "THEN 1 ELSE 0 END AS stored FROM artifacts a WHERE a.flow_run_id = :run_id ORDER BY a.id",
                         {"run_id": run_id})


def run_columns(values: dict[str, Any]) -> dict[str, Any]:
    """A run's values as flow_runs columns: the core's own, and every other one in ``fields`` (JSON)."""
    extra = {k: v for k, v in values.items() if k not in RUN_COLUMNS}
    columns = {k: _db_value(v) for k, v in values.items() if k in RUN_COLUMNS and k != "fields"}
    fields = {k: v for k, v in {**(values.get("fields") or {}), **extra}.items() if v is not None}
    return {**columns, "fields": fields_json(fields)}


def fields_json(values: dict[str, Any]) -> str:
    """A run's flow fields as the JSON the store keeps (dates as ISO text, flags as true/false)."""
    return json.dumps({k: v if isinstance(v, (bool, dict, list)) else _db_value(v) for k, v in values.items()},
                      default=str)


def _run_filters(states: Iterable[str] | None = None, deployment: str | None = None,
                 since: dt.datetime | None = None, until: dt.datetime | None = None,
                 search: str | None = None, flow: str | None = None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of a runs read (``r``: flow_runs, ``d``: deployments) and its parameters."""
    clauses, params = [], {}
    if flow:
        clauses.append("r.flow = :flow")
        params["flow"] = flow
    if states:
        listed, chosen = in_list("state", (State(s).value for s in states))
        clauses.append(f"r.state IN ({listed})")
        params.update(chosen)
    if deployment:
        clauses.append("d.name = :deployment")
        params["deployment"] = deployment
    moment = "COALESCE(r.started_at, r.scheduled_time, r.created_at)"
    if since:
        clauses.append(f"{moment} >= :since")
        params["since"] = to_db(since)
    if until:
        clauses.append(f"{moment} < :until")
        params["until"] = to_db(until)
    if search:
        clauses.append("(r.name LIKE :anywhere OR r.id LIKE :start OR r.run_date LIKE :anywhere)")
        params.update(anywhere=f"%{search}%", start=f"{search}%")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _binds(row: dict[str, Any]) -> str:
    """``:a, :b, ...`` for the values of an INSERT of ``row`` (its keys are the columns)."""
    return ", ".join(f":{column}" for column in row)
