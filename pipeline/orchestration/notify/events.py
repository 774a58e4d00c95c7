"""Events read from the history: ended runs, LATE runs and promotion events, queued once per target."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from ...config import Settings
from ...errors import ConfigError
from ...formatting import seconds_words
from ...formatting import utc_text as _when
from ...store import Store, from_db, to_db
from ..registry import flow_entry
from ..states import ACTIVE_STATES
from .targets import Targets

logger = logging.getLogger("pipeline.orchestration.notify")
LOOKBACK = dt.timedelta(minutes=15)  # each scan looks this far behind the last one (slow commits)
RUNS_MARK, PROMOTIONS_MARK = "runs_scanned_until", "promotions_settled_until"
LEVELS = {"failed": "failure", "crashed": "failure", "gate_blocked": "failure", "gave_up": "failure",
          "late": "warning", "gate_warned": "warning", "rolled_back": "warning", "promoted": "success",
          "test": "info"}
EVENTS = tuple(LEVELS)
WAITED_TRIGGERS = ("schedule", "backfill")  # the runs that wait for an unpublished month (AwaitData)


@dataclass(frozen=True)
class Event:
    kind: str
    subject: str
    run_id: str | None
    deployment_id: int | None
    title: str
    body: str
    at: dt.datetime | None = None  # when it happened: a target configured later does not get it

    @property
    def level(self) -> str:
        return LEVELS[self.kind]

    @property
    def event_id(self) -> str:
        """Stable across repeats (the outbox's unique key less the target): receivers deduplicate on it."""
        return event_id(self.kind, self.subject)


def event_id(kind: str, subject: str) -> str:
    return f"fhv:{kind}:{subject}"


def run_events(run: dict[str, Any]) -> list[Event]:
    """The events a run that ended says: its failure (one kind) and its data checks' warnings."""
    events = []
    kind = _failure_kind(run)
    if kind:
        events.append(_event(kind, run, _failure_text(kind, run)))
    warnings = [str(w) for w in ((run.get("metrics") or {}).get("warnings") or [])]
    if warnings:
        events.append(_event("gate_warned", run, f"Run {_who(run)} {run['state']} with {len(warnings)} data-check "
                                                 "warning(s): " + " ".join(warnings)))
    return events


def _failure_kind(run: dict[str, Any]) -> str | None:
    if run["state"] == "CRASHED":
        return "crashed"
    if run["state"] != "FAILED":
        return None
    kind = flow_failure(run)
    if kind == "gate":
        return "gate_blocked"
    if kind == "not_published" and run.get("trigger") in WAITED_TRIGGERS:
        return "gave_up"  # a manual run does not wait for its data: that is "failed"
    return "failed"


def flow_failure(run: dict[str, Any]) -> str:
    """How the run's flow classifies its failure (``FlowEntry.failure_kind``); "failed" for a flow this
    process does not know, or whose classification fails (logged: the other events still go out)."""
    try:
        return flow_entry(run["flow"]).failure_kind(run)
    except ConfigError:
        return "failed"
    except Exception:  # noqa: BLE001 - a flow's own code: one bad classifier must not stop every notification
        logger.exception("The flow %r could not classify the failure of run %s.", run["flow"], run["id"][:8])
        return "failed"


def _failure_text(kind: str, run: dict[str, Any]) -> str:
    where = f" in {run['error_task']}" if run.get("error_task") else ""
    error = run.get("error") or "no error was recorded."
    if kind == "gate_blocked":
        return f"Run {_who(run)} was stopped by a data check and FAILED: {error}"
    if kind == "gave_up":
        return f"Run {_who(run)} gave up waiting for its data and FAILED: {error}"
    return f"Run {_who(run)} {run['state']}{where}: {error}"


def late_event(run: dict[str, Any], now: dt.datetime, late_after: float = 0.0) -> Event:
    slot = from_db(run["scheduled_time"])
    why = f" ({run['late_reason']})" if run.get("late_reason") else ""
    return _event("late", run, f"Run {_who(run)} is LATE: its slot {_when(run['scheduled_time'])} passed "
                               f"{seconds_words((now - slot).total_seconds())} ago and it has not started{why}.",
                  at=slot + dt.timedelta(seconds=late_after))


def promotion_event(row: dict[str, Any], deployment_id: int | None) -> Event:
    kind = "rolled_back" if row["action"] == "rollback" else "promoted"
    how = {"promoted": "was promoted automatically", "manual": f"was promoted by {row['actor']}",
           "rollback": f"is the model again: {row['actor']} rolled back to it"}[row["action"]]
    month = _what(row)
    body = f"The model of run {row['run_name']} ({row['run_id'][:8]}){month} {how}: {row['reason']}"
    title = "FHV model rolled back" if kind == "rolled_back" else "FHV model promoted"
    return Event(kind, f"model_event:{row['id']}", row["run_id"], deployment_id, title, body, row["at"])


def _what(row: dict[str, Any]) -> str:
    """What a promoted run covered, by the field its flow's trend is drawn by: `` (Validation month 2021-07)``."""
    try:
        entry = flow_entry(row["flow"])
    except ConfigError:
        return ""
    field = entry.field(entry.trend.by) if entry and entry.trend and entry.trend.by else None
    value = (row.get("fields") or {}).get(field.name) if field else None
    return f" ({field.label} {value})" if value else ""


def _event(kind: str, run: dict[str, Any], body: str, at: dt.datetime | None = None) -> Event:
    title = {"failed": "FAILED", "crashed": "CRASHED", "late": "LATE", "gate_warned": "data-check warning",
             "gate_blocked": "blocked by a data check", "gave_up": "gave up waiting for data"}[kind]
    return Event(kind, f"run:{run['id']}", run["id"], run.get("deployment_id"), f"FHV run {run['name']}: {title}",
                 body, at or from_db(run.get("ended_at")))


def _who(run: dict[str, Any]) -> str:
    deployment = f" of {run['deployment']}" if run.get("deployment") else ""
    date = f" for {run['run_date']}" if run.get("run_date") else ""
    return f"{run['name']} ({run['id'][:8]}){deployment}{date}"


def find_events(store: Store, settings: Settings, now: dt.datetime) -> list[Event]:
    """Every event in the history since the last scan (minus LOOKBACK), the LATE runs, the promotions."""
    mark = from_db(store.notify_mark(RUNS_MARK)) or now
    events = [e for run in store.runs_ended_since(min(mark, now) - LOOKBACK) for e in run_events(run)]
    late_by = now - dt.timedelta(seconds=settings.notify_late_after)
    events += [late_event(run, now, settings.notify_late_after) for run in store.late_runs(due_before=late_by)]
    return events + _promotions(store, now)


def _promotions(store: Store, now: dt.datetime) -> list[Event]:
    """Promotion events whose run completed (a run promotes itself in its last task); the mark stops at a
    run still running, so its event is read again until the run ends. The first scan starts LOOKBACK ago."""
    mark = store.notify_mark(PROMOTIONS_MARK)
    settled = int(mark) if mark is not None else _promotions_before(store, now - LOOKBACK)
    events, waiting, first = [], False, settled
    for row in store.promotion_events(settled):
        if row["run_state"] in {s.value for s in ACTIVE_STATES}:
            waiting = True
        elif row["run_state"] == "COMPLETED" or row["action"] != "promoted":
            events.append(promotion_event(row, store.get_run(row["run_id"]).get("deployment_id")))
        if not waiting:
            settled = row["id"]
    if mark is None or settled != first:
        store.set_notify_mark(PROMOTIONS_MARK, str(settled))
    return events


def _promotions_before(store: Store, moment: dt.datetime) -> int:
    """The id of the last promotion event before ``moment``: history when notifications start."""
    return max((row["id"] for row in store.promotion_events(0) if row["at"] < moment), default=0)


def queue(store: Store, events: Iterable[Event], targets: Targets, now: dt.datetime) -> int:
    """Add each event for each of its targets to the outbox, but not to a target first configured after the
    event happened (``Store.note_notify_targets``); returns how many were new. Each body ends with the
    event's id, the same in every repeat of it."""
    events = list(events)
    known, added = store.known_notifications([event.subject for event in events]), 0
    since = store.note_notify_targets([item.key for item in targets.all()], now)
    for event in events:
        for item in targets.for_deployment(event.deployment_id):
            if (event.kind, event.subject, item.key) in known or before(event, since.get(item.key)):
                continue  # a read spares a write; the unique constraint still decides
            added += store.add_notification(event=event.kind, subject=event.subject, run_id=event.run_id,
                                            target_key=item.key, target=item.label, title=event.title,
                                            body=with_id(event.body, event.event_id), level=event.level,
                                            now=now) is not None
    return added


def before(event: Event, first_seen: dt.datetime | None) -> bool:
    """Whether the event happened before its target was first configured (then it is not sent)."""
    return event.at is not None and first_seen is not None and event.at < first_seen


def with_id(body: str, identifier: str) -> str:
    return f"{body}\n\nEvent id: {identifier} (a repeat of this message carries the same id)."


def scan(store: Store, settings: Settings, targets: Targets, now: dt.datetime) -> int:
    """Find the events and queue them; the scan mark moves to ``now``. Returns how many messages were new."""
    added = queue(store, find_events(store, settings, now), targets, now)
    store.set_notify_mark(RUNS_MARK, to_db(now))
    return added
