"""The notifications outbox: one row per (event, subject, target), each delivery attempt its own row.

The unique ``(event, subject, target_key)`` makes an event go to a target once, however many
schedulers or foreground runs notice it. ``target_key`` is a hash of the target's URL and ``target``
its masked form: the URLs themselves (they hold tokens) are only in ``notify_targets``, for the
deployments that add their own, and are never shown. ``notify_marks`` keeps how far the history
has been scanned for events.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable

from .base import _row, from_db, to_db
from .parts import StoreParts
from .sql import in_list
from .transitions import NOTIFICATIONS, move

OUTCOMES = ("sent", "failed", "timeout", "dropped")


class NotificationStore(StoreParts):
    """The outbox of notifications and the targets deployments add (mixed into ``Store``)."""

    # -- targets --------------------------------------------------------------------------
    def set_notify_targets(self, deployment_id: int, urls: Iterable[str]) -> None:
        """The deployment's own notification URLs, replacing the ones it had."""
        with self.atomic() as conn:
            conn.execute("DELETE FROM notify_targets WHERE deployment_id = :deployment", {"deployment": deployment_id})
            conn.executemany("INSERT INTO notify_targets (deployment_id, url) VALUES (:deployment, :url) "
                             "ON CONFLICT DO NOTHING", [{"deployment": deployment_id, "url": url} for url in urls])

    def notify_targets(self) -> dict[int, list[str]]:
        """Deployment id -> its own notification URLs (secrets included: never show them)."""
        targets: dict[int, list[str]] = {}
        for row in self._all("SELECT deployment_id, url FROM notify_targets ORDER BY id", {}):
            targets.setdefault(row["deployment_id"], []).append(row["url"])
        return targets

    def note_notify_targets(self, keys: Iterable[str], now: dt.datetime) -> dict[str, dt.datetime]:
        """When each target (by key) was first configured: ``now`` for one never seen before. A new target
        gets only the events from that moment on (the history before it is not replayed)."""
        keys = sorted(set(keys))
        seen = self._targets_seen(keys)
        new = [key for key in keys if key not in seen]
        if new:  # a scan every few seconds reads; only a target seen for the first time writes
            with self.atomic() as conn:
                conn.executemany("INSERT INTO notify_target_seen (target_key, first_seen) VALUES (:key, :now) "
                                 "ON CONFLICT DO NOTHING", [{"key": key, "now": to_db(now)} for key in new])
            seen = self._targets_seen(keys)
        return seen

    def _targets_seen(self, keys: list[str]) -> dict[str, dt.datetime]:
        if not keys:
            return {}
        listed, params = in_list("key", keys)
        rows = self._all(f"SELECT target_key, first_seen FROM notify_target_seen WHERE target_key IN ({listed})",
                         params)
        return {row["target_key"]: from_db(row["first_seen"]) for row in rows}

    # -- how far the history was scanned ------------------------------------------------------
    def notify_mark(self, name: str) -> str | None:
        row = self._one("SELECT value FROM notify_marks WHERE name = :name", {"name": name})
        return row["value"] if row else None

    def set_notify_mark(self, name: str, value: str) -> None:
        with self.atomic() as conn:
            conn.execute("INSERT INTO notify_marks (name, value) VALUES (:name, :value) "
                         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", {"name": name, "value": value})

    def runs_ended_since(self, since: dt.datetime) -> list[dict[str, Any]]:
        """Runs that ended COMPLETED, FAILED or CRASHED at or after ``since``, oldest first.

        The states are picked here, not in SQL: a condition on the state would lead SQLite to the state
        index and read every completed run (80 ms on 20,000 runs, 1 ms through the ``ended_at`` index)."""
        rows = self._all(
            "SELECT r.*, d.name AS deployment FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
            "WHERE r.ended_at >= :since ORDER BY r.ended_at NULLS FIRST", {"since": to_db(since)})
        return [row for row in rows if row["state"] in ("COMPLETED", "FAILED", "CRASHED")]

    def late_runs(self, *, due_before: dt.datetime) -> list[dict[str, Any]]:
        """LATE runs whose slot is at or before ``due_before``, oldest first."""
        return self._all(
            "SELECT r.*, d.name AS deployment FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
            "WHERE r.state = 'LATE' AND r.scheduled_time <= :due_before ORDER BY r.scheduled_time NULLS FIRST",
            {"due_before": to_db(due_before)})

    # -- the outbox -----------------------------------------------------------------------
    def add_notification(self, *, event: str, subject: str, run_id: str | None, target_key: str, target: str,
                         title: str, body: str, level: str, now: dt.datetime) -> int | None:
        """Queue one message for one target, due now; None when that event already went to that target."""
        with self.atomic() as conn:
            row = conn.execute(
                "INSERT INTO notifications (event, subject, run_id, target_key, target, title, body, level, "
                "next_attempt_at, created_at) VALUES (:event, :subject, :run_id, :target_key, :target, :title, :body, "
                ":level, :now, :now) ON CONFLICT DO NOTHING RETURNING id",
                {"event": event, "subject": subject, "run_id": run_id, "target_key": target_key, "target": target,
                 "title": title, "body": body, "level": level, "now": to_db(now)}).fetchone()
        return row[0] if row else None

    def known_notifications(self, subjects: list[str]) -> set[tuple[str, str, str]]:
        """The (event, subject, target_key) already in the outbox for these subjects."""
        found: set[tuple[str, str, str]] = set()
        for start in range(0, len(subjects), 500):
            listed, params = in_list("subject", subjects[start:start + 500])
            found |= {(r["event"], r["subject"], r["target_key"]) for r in self._all(
                f"SELECT event, subject, target_key FROM notifications WHERE subject IN ({listed})", params)}
        return found

    def due_notifications(self, now: dt.datetime, *, limit: int = 100,
                          skip_targets: Iterable[str] = ()) -> list[dict[str, Any]]:
        """PENDING messages whose next attempt is due, oldest first, but those to ``skip_targets`` (keys)."""
        listed, skip = in_list("skip", skip_targets)
        where = f"AND target_key NOT IN ({listed}) " if skip else ""
        return self._all(f"SELECT * FROM notifications WHERE state = 'PENDING' AND next_attempt_at <= :now {where}"
                         "ORDER BY next_attempt_at NULLS FIRST, id LIMIT :limit",
                         {**skip, "now": to_db(now), "limit": limit})

    def claim_notification(self, notification_id: int, *, attempts: int, now: dt.datetime,
                           until: dt.datetime) -> dict[str, Any] | None:
        """Take a due message for one attempt (no other sender takes it before ``until``); None if taken."""
        with self.atomic() as conn:
            row = conn.execute(
                "UPDATE notifications SET next_attempt_at = :until WHERE id = :id AND state = 'PENDING' "
                "AND attempts = :attempts AND next_attempt_at <= :now RETURNING *",
                {"until": to_db(until), "id": notification_id, "attempts": attempts, "now": to_db(now)}).fetchone()
        return _row(row)

    def record_notification_attempt(self, notification: dict[str, Any], *, outcome: str, detail: str | None,
                                    started: dt.datetime, ended: dt.datetime,
                                    retry_at: dt.datetime | None) -> bool:
        """Record one attempt and move the message on: SENT, PENDING again at ``retry_at``, or FAILED.

        One conditional UPDATE on the attempt count: a second sender recording the same attempt changes nothing.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown notification outcome {outcome!r}")
        attempt = notification["attempts"] + 1
        state = "SENT" if outcome == "sent" else ("PENDING" if retry_at is not None else "FAILED")
        with self.atomic() as conn:
            moved = move(conn, NOTIFICATIONS, state, where="id = :id AND attempts = :attempts", expect=("PENDING",),
                         params={"id": notification["id"], "attempts": notification["attempts"]}, returning=None,
                         sets={"attempts": attempt, "next_attempt_at": to_db(retry_at or ended),
                               "sent_at": to_db(ended) if state == "SENT" else None,
                               "last_error": None if state == "SENT" else detail}).rowcount
            if moved:
                conn.execute("INSERT INTO notification_attempts (notification_id, attempt, started_at, ended_at, "
                             "outcome, detail) VALUES (:id, :attempt, :started, :ended, :outcome, :detail)",
                             {"id": notification["id"], "attempt": attempt, "started": to_db(started),
                              "ended": to_db(ended), "outcome": outcome, "detail": detail})
        return bool(moved)

    def notifications(self, *, run_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Messages, newest first (one run's only, with ``run_id``), each with its ``attempts_made``."""
        where = "WHERE n.run_id = :run_id" if run_id else ""
        rows = self._all(
            "SELECT n.id, n.event, n.subject, n.run_id, r.name AS run_name, n.target, n.title, n.body, n.level, "
            "n.state, n.attempts, n.next_attempt_at, n.created_at, n.sent_at, n.last_error "
            f"FROM notifications n LEFT JOIN flow_runs r ON r.id = n.run_id {where} "
            "ORDER BY n.id DESC LIMIT :limit", {"run_id": run_id, "limit": limit})
        attempts = self._attempts_of([row["id"] for row in rows])
        return [{**row, "attempts_made": attempts.get(row["id"], [])} for row in rows]

    def _attempts_of(self, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        if not ids:
            return {}
        found: dict[int, list[dict[str, Any]]] = {}
        listed, params = in_list("id", ids)
        for row in self._all("SELECT notification_id, attempt, started_at, ended_at, outcome, detail "
                             f"FROM notification_attempts WHERE notification_id IN ({listed}) "
                             "ORDER BY notification_id, attempt", params):
            found.setdefault(row.pop("notification_id"), []).append(row)
        return found

    def notification_attempts(self, run_id: str) -> list[dict[str, Any]]:
        """Every delivery attempt of one run's messages, in order: event, masked target, outcome."""
        return self._all(
            "SELECT n.event, n.target, n.state, a.attempt, a.started_at, a.ended_at, a.outcome, a.detail "
            "FROM notification_attempts a JOIN notifications n ON n.id = a.notification_id "
            "WHERE n.run_id = :run_id ORDER BY a.started_at NULLS FIRST, a.id", {"run_id": run_id})

    def next_notification_due(self) -> dt.datetime | None:
        row = self.conn.execute("SELECT MIN(next_attempt_at) FROM notifications WHERE state = 'PENDING'", {}).fetchone()
        return from_db(row[0])
