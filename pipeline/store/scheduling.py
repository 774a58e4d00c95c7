"""Deployments, work queues and the scheduler's own row."""
from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any, Callable, Iterable

from ..errors import NotFound
from ..orchestration.states import State
from .base import _db_value, from_db, to_db
from .parts import StoreParts
from .sql import in_list
from .transitions import ACTIVE, LIVE, WAITING


class SchedulingStore(StoreParts):
    """What the scheduler reads and writes (mixed into ``Store``)."""

    transition: Callable[..., dict[str, Any] | None]  # from RunStore: the one guarded state change

    # -- deployments, work queues and the scheduler -----------------------------------
    def ensure_work_queue(self, name: str, *, now: dt.datetime) -> dict[str, Any]:
        """The work queue ``name``, created without a concurrency limit if it does not exist."""
        with self.atomic() as conn:
            conn.execute("INSERT INTO work_queues (name, concurrency_limit, created_at) VALUES (:name, NULL, :now) "
                         "ON CONFLICT DO NOTHING",
                         {"name": name, "now": to_db(now)})
        return self.work_queue(name)

    def upsert_work_queue(self, name: str, *, concurrency_limit: int | None, now: dt.datetime) -> dict[str, Any]:
        """Create the work queue ``name`` or set its concurrency limit (None: no limit)."""
        with self.atomic() as conn:
            conn.execute("INSERT INTO work_queues (name, concurrency_limit, created_at) VALUES (:name, :limit, :now) "
                         "ON CONFLICT(name) DO UPDATE SET concurrency_limit = excluded.concurrency_limit",
                         {"name": name, "limit": concurrency_limit, "now": to_db(now)})
        return self.work_queue(name)

    def set_work_queue_paused(self, name: str, paused: bool) -> dict[str, Any]:
        self.work_queue(name)
        with self.atomic() as conn:
            conn.execute("UPDATE work_queues SET paused = :paused WHERE name = :name",
                         {"paused": int(paused), "name": name})
        return self.work_queue(name)

    def work_queue(self, name: str) -> dict[str, Any]:
        row = self._one("SELECT * FROM work_queues WHERE name = :name", {"name": name})
        if row is None:
            raise NotFound(f"There is no work queue named {name!r}; see: python -m pipeline work-queue ls.")
        return {**row, "paused": bool(row["paused"])}

    def work_queues(self) -> list[dict[str, Any]]:
        """Every work queue with how many of its runs are running, scheduled, late and awaiting data."""
        rows = self._all(
            "SELECT q.name, q.concurrency_limit, q.paused, q.created_at, COALESCE(c.running, 0) AS running, "
            "COALESCE(c.scheduled, 0) AS scheduled, COALESCE(c.late, 0) AS late, "
            "COALESCE(c.awaiting, 0) AS awaiting FROM work_queues q LEFT JOIN ("
            f"  SELECT work_queue, COUNT(CASE WHEN state IN {ACTIVE} THEN 1 END) AS running, "
            "  COUNT(CASE WHEN state = 'SCHEDULED' THEN 1 END) AS scheduled, "
            "  COUNT(CASE WHEN state = 'LATE' THEN 1 END) AS late, "
            "  COUNT(CASE WHEN state = 'AWAITING_RETRY' THEN 1 END) AS awaiting FROM flow_runs "
            f"  WHERE state IN {LIVE} GROUP BY work_queue"
            ") c ON c.work_queue = q.name ORDER BY q.name", {})
        return [{**row, "paused": bool(row["paused"])} for row in rows]

    def upsert_deployment(self, fields: dict[str, Any], *, now: dt.datetime) -> tuple[dict[str, Any], bool]:
        """Insert or update the deployment ``fields['name']``; also say whether its upcoming runs are stale.

        A new deployment or a new schedule starts counting slots at ``now`` (``schedule_since``).
        ``active`` is only set on insert: pausing and resuming go through ``set_deployment_active``.
        """
        with self.atomic() as conn:
            conn.serialize(f"deployment:{fields['name']}")  # two hosts registering it at once: one inserts
            old = self._one("SELECT * FROM deployments WHERE name = :name", {"name": fields["name"]})
            if old is None:
                row = {**fields, "schedule_since": now, "created_at": now, "updated_at": now}
                self._insert(conn, "deployments", row)
                return self.get_deployment(fields["name"]), True
            stale = any(old[k] != fields.get(k) for k in ("schedule_fingerprint", "parameters", "work_queue", "flow"))
            updates = {k: v for k, v in fields.items() if k not in ("name", "active")} | {"updated_at": now}
            if old["schedule_fingerprint"] != fields.get("schedule_fingerprint"):
                updates["schedule_since"] = now
            values = {k: _db_value(v) for k, v in updates.items()}
            conn.execute(f"UPDATE deployments SET {', '.join(f'{k} = :{k}' for k in values)} WHERE id = :row_id",
                         {**values, "row_id": old["id"]})
        return self.get_deployment(fields["name"]), stale

    @staticmethod
    def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
        values = {k: _db_value(v) for k, v in row.items()}
        conn.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(f':{k}' for k in values)})",
                     values)

    def deployments(self) -> list[dict[str, Any]]:
        """Every deployment (schedule, tags and parameters decoded) with its next and last run."""
        return [self._deployment_row(row) for row in self._all(self._DEPLOYMENTS + " ORDER BY d.name", {})]

    _DEPLOYMENTS = (
        "SELECT d.*, (SELECT MIN(r.scheduled_time) FROM flow_runs r WHERE r.deployment_id = d.id "
        "  AND r.state = 'SCHEDULED') AS next_run_time, "
        "(SELECT r.state FROM flow_runs r WHERE r.deployment_id = d.id AND r.started_at IS NOT NULL "
        "  ORDER BY r.started_at DESC NULLS LAST LIMIT 1) AS last_run_state, "
        "(SELECT COALESCE(SUM(s.count), 0) FROM skipped_slots s WHERE s.deployment_id = d.id) AS skipped_slots, "
        "CASE WHEN d.active = 0 THEN (SELECT COUNT(*) FROM flow_runs r WHERE r.deployment_id = d.id "
        f"  AND r.state IN {WAITING}) ELSE 0 END AS held_runs "
        "FROM deployments d")

    def get_deployment(self, name: str) -> dict[str, Any]:
        """One deployment, like ``deployments()``; NotFound names it."""
        row = self._one(self._DEPLOYMENTS + " WHERE d.name = :name", {"name": name})
        if row is None:
            raise NotFound(f"There is no deployment named {name!r}; see: python -m pipeline deployment ls.")
        return self._deployment_row(row)

    @staticmethod
    def _deployment_row(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "active": bool(row["active"])}

    def set_deployment_active(self, name: str, active: bool, now: dt.datetime) -> dict[str, Any]:
        """Pause or resume a deployment: one conditional UPDATE; its runs stay as they are.

        A paused deployment starts nothing (the claim skips its runs, scheduled or not) and makes no
        new slots; its runs keep their ids and names. On resume, its slots count from ``now``.
        """
        with self.atomic() as conn:
            deployment = self.get_deployment(name)
            conn.execute("UPDATE deployments SET active = :active, updated_at = :now, schedule_since = CASE WHEN "
                         ":active = 1 THEN :now ELSE schedule_since END WHERE id = :id AND active = :was",
                         {"active": int(active), "now": to_db(now), "id": deployment["id"], "was": int(not active)})
        return self.get_deployment(name)

    def drop_upcoming_runs(self, deployment_id: int, now: dt.datetime) -> int:
        """Delete the not-yet-due scheduled runs of a deployment (they are made again from its schedule)."""
        with self.atomic() as conn:
            return conn.execute(
                "DELETE FROM flow_runs WHERE deployment_id = :deployment AND trigger = 'schedule' "
                "AND state = 'SCHEDULED' AND attempts = 0 AND scheduled_time > :now",
                {"deployment": deployment_id, "now": to_db(now)}).rowcount

    def slot_watermark(self, deployment_id: int, fingerprint: str) -> dt.datetime | None:
        """The latest slot made for this deployment and schedule, or None."""
        row = self.conn.execute("SELECT MAX(scheduled_time) FROM flow_runs WHERE deployment_id = :deployment "
                                "AND schedule_fingerprint = :fingerprint",
                                {"deployment": deployment_id, "fingerprint": fingerprint}).fetchone()
        return from_db(row[0])

    def missed_runs(self, deployment_id: int, *, after: dt.datetime | None,
                    until: dt.datetime) -> list[dict[str, Any]]:
        """Scheduled runs of a deployment, never started, whose slot is in (after, until], oldest first."""
        sql = ("SELECT * FROM flow_runs WHERE deployment_id = :deployment AND trigger = 'schedule' AND attempts = 0 "
               "AND state IN ('SCHEDULED', 'LATE') AND cancel_requested = 0 AND scheduled_time <= :until")
        params: dict[str, Any] = {"deployment": deployment_id, "until": to_db(until)}
        if after is not None:
            sql += " AND scheduled_time > :after"
            params["after"] = to_db(after)
        return self._all(sql + " ORDER BY scheduled_time NULLS FIRST", params)

    def due_runs(self, *, due_by: dt.datetime) -> list[dict[str, Any]]:
        """Waiting runs due by ``due_by``, oldest first, with their deployment's name and max lateness."""
        return self._all(
            "SELECT r.*, d.name AS deployment, d.max_lateness, COALESCE(d.active, 1) AS deployment_active "
            "FROM flow_runs r "
            "LEFT JOIN deployments d ON d.id = r.deployment_id "
            f"WHERE r.state IN {WAITING} "
            "AND COALESCE(r.next_attempt_at, r.scheduled_time) <= :due_by "
            "ORDER BY COALESCE(r.next_attempt_at, r.scheduled_time) NULLS FIRST", {"due_by": to_db(due_by)})

    def next_due_time(self, *, after: dt.datetime) -> dt.datetime | None:
        """When the next waiting run falls due, if later than ``after`` (the scheduler wakes up then)."""
        row = self.conn.execute(
            "SELECT MIN(COALESCE(next_attempt_at, scheduled_time)) FROM flow_runs "
            f"WHERE state IN {WAITING} AND COALESCE(next_attempt_at, scheduled_time) > :after",
            {"after": to_db(after)}).fetchone()
        return from_db(row[0])

    def upcoming_runs(self, *, until: dt.datetime, work_queue: str | None = None,
                      limit: int = 500) -> list[dict[str, Any]]:
        """Waiting runs due by ``until`` (late ones first), with their deployment's name."""
        sql = ("SELECT r.*, d.name AS deployment FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
               f"WHERE r.state IN {WAITING} "
               "AND COALESCE(r.next_attempt_at, r.scheduled_time) <= :until")
        params: dict[str, Any] = {"until": to_db(until), "limit": limit}
        if work_queue:
            sql += " AND r.work_queue = :work_queue"
            params["work_queue"] = work_queue
        return self._all(sql + " ORDER BY COALESCE(r.next_attempt_at, r.scheduled_time) NULLS FIRST LIMIT :limit",
                         params)

    def mark_late(self, run_id: str, reason: str, now: dt.datetime) -> dict[str, Any] | None:
        """SCHEDULED -> LATE with the reason; None if the run was claimed or cancelled meanwhile."""
        return self.transition(run_id, State.LATE, now=now, expect=(State.SCHEDULED,), late_reason=reason)

    def set_late_reason(self, run_id: str, reason: str) -> None:
        with self.atomic() as conn:
            conn.execute(f"UPDATE flow_runs SET late_reason = :reason WHERE id = :id AND state IN {WAITING}",
                         {"reason": reason, "id": run_id})

    def runs_on_dates(self, deployment_id: int, dates: Iterable[dt.date]) -> list[dict[str, Any]]:
        """Runs of a deployment for these run dates (any trigger), newest first."""
        days, params = in_list("day", [d.isoformat() for d in dates])
        if not params:
            return []
        return self._all(
            f"SELECT id, name, state, run_date, trigger, created_at FROM flow_runs WHERE deployment_id = :deployment "
            f"AND run_date IN ({days}) ORDER BY created_at DESC", {**params, "deployment": deployment_id})

    def take_scheduler_lease(self, *, owner: str, pid: int, hostname: str, now: dt.datetime, stale_after: float,
                             holder_gone: Callable[[dict[str, Any]], bool]) -> tuple[bool, dict[str, Any] | None]:
        """Become the one scheduler of this history, unless another one still holds it.

        The lease is free when no scheduler ever ran, the last one stopped, or ``holder_gone(row)``
        says its process is gone. One transaction reads and writes it, so of two schedulers
        starting at once exactly one wins. Returns (won, the previous holder's row).
        """
        with self.atomic() as conn:
            previous = self.scheduler_status()
            if previous and previous["owner"] and not previous["stopped_at"] and not holder_gone(previous):
                return False, previous
            conn.execute(
                "INSERT INTO schedulers (id, owner, pid, hostname, started_at, heartbeat_at, stale_after) "
                "VALUES (1, :owner, :pid, :hostname, :now, :now, :stale_after) ON CONFLICT(id) DO UPDATE SET "
                "owner = excluded.owner, pid = excluded.pid, hostname = excluded.hostname, started_at = "
                "excluded.started_at, heartbeat_at = excluded.heartbeat_at, stale_after = excluded.stale_after, "
                "stopped_at = NULL, last_error = NULL, last_error_at = NULL",
                {"owner": owner, "pid": pid, "hostname": hostname, "now": to_db(now), "stale_after": stale_after})
        return True, previous

    def scheduler_heartbeat(self, now: dt.datetime, *, owner: str) -> bool:
        """Stamp the lease of ``owner``; False when another scheduler holds it now (this one must stop)."""
        with self.atomic() as conn:
            return conn.execute("UPDATE schedulers SET heartbeat_at = :now WHERE id = 1 AND owner = :owner "
                                "AND stopped_at IS NULL", {"now": to_db(now), "owner": owner}).rowcount == 1

    def scheduler_stopped(self, now: dt.datetime, *, owner: str) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE schedulers SET stopped_at = :now, heartbeat_at = :now WHERE id = 1 AND owner = :owner",
                         {"now": to_db(now), "owner": owner})

    def scheduler_error(self, message: str, now: dt.datetime) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE schedulers SET last_error = :message, last_error_at = :now WHERE id = 1",
                         {"message": message, "now": to_db(now)})

    def scheduler_status(self) -> dict[str, Any] | None:
        """The scheduler's pid, host, start, last heartbeat and stop time (None if none ever ran)."""
        return self._one("SELECT owner, pid, hostname, started_at, heartbeat_at, stopped_at, stale_after, last_error, "
                         "last_error_at FROM schedulers WHERE id = 1", {})

    def history_identity(self) -> str | None:
        """The random id this history got when it was made: another file has another one."""
        row = self.conn.execute("SELECT id FROM history_identity LIMIT 1", {}).fetchone()
        return row[0] if row else None

    # -- what went wrong with a deployment, and slots it never made ----------------------
    def set_deployment_error(self, deployment_id: int, message: str, now: dt.datetime) -> None:
        with self.atomic() as conn:
            conn.execute("UPDATE deployments SET last_error = :message, last_error_at = :now WHERE id = :id",
                         {"message": message, "now": to_db(now), "id": deployment_id})

    def clear_deployment_error(self, deployment_id: int) -> None:
        """Forget a deployment's error once its jobs work again (writes only when there was one)."""
        with self.atomic() as conn:
            conn.execute("UPDATE deployments SET last_error = NULL, last_error_at = NULL "
                         "WHERE id = :id AND last_error IS NOT NULL", {"id": deployment_id})

    def record_skipped_slots(self, deployment_id: int, *, first: dt.datetime, last: dt.datetime, count: int,
                             at_least: bool, reason: str, now: dt.datetime) -> None:
        with self.atomic() as conn:
            conn.execute("INSERT INTO skipped_slots (deployment_id, first_slot, last_slot, count, count_is_floor, "
                         "reason, recorded_at) VALUES (:deployment, :first, :last, :count, :at_least, :reason, :now)",
                         {"deployment": deployment_id, "first": to_db(first), "last": to_db(last), "count": count,
                          "at_least": int(at_least), "reason": reason, "now": to_db(now)})

    def skipped_slots(self, deployment_id: int | None = None, *, limit: int = 50) -> list[dict[str, Any]]:
        """Slots never made into runs (the catch-up cap), newest record first, with the deployment's name."""
        sql = ("SELECT s.*, d.name AS deployment FROM skipped_slots s JOIN deployments d ON d.id = s.deployment_id"
               + (" WHERE s.deployment_id = :deployment" if deployment_id is not None else "")
               + " ORDER BY s.id DESC LIMIT :limit")
        return self._all(sql, {"deployment": deployment_id, "limit": limit})
    # (end of deployments, work queues and the scheduler)
