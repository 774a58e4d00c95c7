"""Model versions and the champion: the promotion events of each flow.

Every completed run of a flow that trains a model is a model version. The champion (the model in
use) is the run of the latest *effective* event: the event with the highest ``seq`` of its flow whose run has
completed (a run promotes itself in its last task, so its event takes effect when it completes).
Each change is one conditional INSERT: it names the ``seq`` it expects to follow, and the unique
``(flow, seq)`` makes the loser of a race insert nothing. ``undo_to`` is the event a rollback
returns to, so rollbacks walk back through the champions one by one.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from .base import _db_value, from_db, to_db
from .parts import StoreParts
from .rows import RunRow

ACTIONS = ("promoted", "rollback", "manual")

_EFFECTIVE = ("FROM model_events e JOIN flow_runs r ON r.id = e.run_id "
              "WHERE e.flow = :flow AND r.state = 'COMPLETED'")

_HOLDER = ("SELECT r.*, e.id AS event_id, e.seq AS event_seq, e.action AS event_action, e.actor AS event_actor, "
           "e.at AS event_at, e.reason AS event_reason, e.undo_to AS event_undo_to")

_ACCEPTED = ("SELECT a.*, r.name AS blocked_run_name, r.metrics AS metrics, r.fields AS fields FROM data_acceptances a "
             "JOIN flow_runs r ON r.id = a.blocked_run_id")

_EVENTS = ("SELECT e.id, e.run_id, e.action, e.actor, e.at, e.reason, e.flow, e.seq, e.undo_to, "
           "r.name AS run_name, r.run_date, r.fields, r.state AS run_state "
           "FROM model_events e JOIN flow_runs r ON r.id = e.run_id")


class ModelStore(StoreParts):
    """Model versions, the champion and its promotion events (mixed into ``Store``)."""

    def champion(self, flow: str) -> RunRow | None:
        """The run whose model is in use (with its metrics and the event that made it champion)."""
        return self._one(f"{_HOLDER} {_EFFECTIVE} ORDER BY e.seq DESC LIMIT 1", {"flow": flow})

    def contender(self, flow: str, *, besides: str | None = None) -> RunRow | None:
        """What a finishing run is judged against: the champion, or a newer event's run that promoted itself
        and is still RUNNING (about to complete), other than ``besides``; as ``champion`` returns it."""
        return self._one(
            f"{_HOLDER} FROM model_events e JOIN flow_runs r ON r.id = e.run_id WHERE e.flow = :flow "
            "AND (r.state = 'COMPLETED' OR (r.state = 'RUNNING' AND r.id <> :besides)) ORDER BY e.seq DESC LIMIT 1",
            {"flow": flow, "besides": besides or ""})

    def promotion_events(self, after_id: int = 0, *, flow: str | None = None,
                         limit: int = 1000) -> list[dict[str, Any]]:
        """Promotion events with an id above ``after_id``, oldest first; ``at`` is a datetime."""
        where = "WHERE e.id > :after_id" + ("" if flow is None else " AND e.flow = :flow")
        rows = self._all(f"{_EVENTS} {where} ORDER BY e.id LIMIT :limit",
                         {"after_id": after_id, "flow": flow, "limit": limit})
        return [{**row, "at": from_db(row["at"])} for row in rows]

    def model_event(self, event_id: int) -> dict[str, Any] | None:
        """One promotion event (``at`` a datetime), with its run's name, or None."""
        row = self._one(f"{_EVENTS} WHERE e.id = :id", {"id": event_id})
        return None if row is None else {**row, "at": from_db(row["at"])}

    def last_model_seq(self, flow: str) -> int:
        """The ``seq`` of the flow's latest event, effective or not (0: none): what the next change follows."""
        row = self.conn.execute("SELECT MAX(seq) FROM model_events WHERE flow = :flow", {"flow": flow}).fetchone()
        return row[0] or 0

    def record_model_event(self, *, flow: str, run_id: str, action: str, actor: str, reason: str,
                           now: dt.datetime, after_seq: int, undo_to: int | None) -> int | None:
        """Append one event if the flow's latest event is still ``after_seq``; its id, or None if it lost a race
        (another change came first, or this run was promoted automatically already)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown promotion action {action!r}")
        with self.atomic() as conn:
            row = conn.execute(
                "INSERT INTO model_events (flow, seq, run_id, action, actor, at, reason, undo_to) "
                "SELECT :flow, :seq, :run_id, :action, :actor, :at, :reason, :undo_to WHERE NOT EXISTS (SELECT 1 "
                "FROM model_events WHERE flow = :flow AND seq > :after_seq) ON CONFLICT DO NOTHING RETURNING id",
                {"flow": flow, "seq": after_seq + 1, "run_id": run_id, "action": action, "actor": actor,
                 "at": to_db(now), "reason": reason, "undo_to": undo_to, "after_seq": after_seq}).fetchone()
        return row[0] if row else None

    def model_versions(self, flow: str, *, limit: int = 200) -> list[RunRow]:
        """Completed runs of the flow (each one a model version), newest first, with their metrics."""
        return self._all(
            "SELECT r.*, d.name AS deployment FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
            "WHERE r.flow = :flow AND r.state = 'COMPLETED' AND r.metrics IS NOT NULL "
            "ORDER BY r.ended_at DESC NULLS LAST LIMIT :limit", {"flow": flow, "limit": limit})

    # -- data accepted after a lasting shift ------------------------------------------------------
    # An acceptance's ``subject`` names what was accepted, as its flow composes it (subjects sort as text, the
    # newest last); the rows carry the blocked run's fields and metrics.
    def record_acceptance(self, *, flow: str, blocked_run_id: str, subject: str, actor: str,
                          reason: str, now: dt.datetime) -> int | None:
        """Record that ``actor`` accepted a blocked run's data; its id, or None if that run was accepted already."""
        with self.atomic() as conn:
            row = conn.execute(
                "INSERT INTO data_acceptances (flow, blocked_run_id, subject, actor, at, reason) "
                "VALUES (:flow, :blocked_run_id, :subject, :actor, :at, :reason) ON CONFLICT DO NOTHING RETURNING id",
                {"flow": flow, "blocked_run_id": blocked_run_id, "subject": subject, "actor": actor, "at": to_db(now),
                 "reason": reason}).fetchone()
        return row[0] if row else None

    def set_acceptance_rerun(self, acceptance_id: int, rerun_id: str) -> bool:
        with self.atomic() as conn:
            return conn.execute("UPDATE data_acceptances SET rerun_id = :rerun_id WHERE id = :id AND rerun_id IS NULL",
                                {"rerun_id": rerun_id, "id": acceptance_id}).rowcount == 1

    def acceptance(self, *, flow: str, blocked_run_id: str | None = None,
                   subject: str | None = None) -> dict[str, Any] | None:
        """The acceptance of a blocked run, or the latest one of this subject; ``at`` a datetime."""
        if blocked_run_id is not None:
            row = self._one(f"{_ACCEPTED} WHERE a.blocked_run_id = :run_id", {"run_id": blocked_run_id})
        else:
            row = self._one(f"{_ACCEPTED} WHERE a.flow = :flow AND a.subject = :subject ORDER BY a.id DESC LIMIT 1",
                            {"flow": flow, "subject": subject})
        return None if row is None else {**row, "at": from_db(row["at"])}

    def deployment_name(self, deployment_id: int | None) -> str | None:
        """The name of the deployment a run belongs to (None: a foreground run, or a deleted deployment)."""
        row = self._one("SELECT name FROM deployments WHERE id = :id", {"id": deployment_id}) if deployment_id else None
        return row["name"] if row else None

    def newest_acceptance(self, flow: str) -> dict[str, Any] | None:
        """The acceptance of the newest subject, with the blocked run's fields and metrics."""
        row = self._one(f"{_ACCEPTED} WHERE a.flow = :flow ORDER BY a.subject DESC, a.id DESC LIMIT 1", {"flow": flow})
        return None if row is None else {**row, "at": from_db(row["at"])}

    def keep_blocked_checks(self, run_id: str, checks: dict[str, Any], *, task: str) -> bool:
        """A run that FAILED in ``task`` keeps what that task measured (``checks``) as its metrics, set after its
        final state, which records no metrics for a failed run; only on such a run, once."""
        with self.atomic() as conn:
            return conn.execute("UPDATE flow_runs SET metrics = :metrics WHERE id = :id AND state = 'FAILED' "
                                "AND error_task = :task AND metrics IS NULL",
                                {"metrics": _db_value(dict(checks)), "id": run_id, "task": task}).rowcount == 1
