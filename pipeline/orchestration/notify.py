"""Notifications: events read from the history, an outbox, and delivery through Apprise with retries.

Nothing here runs inside a flow run, so sending never blocks or fails one: the events are found in
what the history already recorded (a run's final state, its metrics' ``warnings``, a LATE run past
``notify_late_after``, the promotion events), after the state change. Each (event, subject,
target) becomes one outbox row, unique in the history, so an event reaches a target once however
often the history is scanned, by however many schedulers or foreground runs. A sender takes due
rows one attempt at a time (a conditional UPDATE), gives each attempt ``timeout`` seconds in a
thread of its own (a receiver that hangs holds nothing up), records every attempt and retries with
backoff up to ``RetryPolicy.attempts``.

Events: ``failed``, ``crashed``, ``late``, ``gate_warned`` (a completed or failed run whose metrics
carry ``warnings``), ``gate_blocked`` (FAILED in ``check_data``), ``gave_up`` (a scheduled month still
not published after its give-up time), ``promoted`` and ``rolled_back`` (promotion events), and
``test`` (``notify test``). A run FAILED by a gate or by giving up is told as that, not also as
``failed``.

Targets are Apprise URLs: ``FHV_NOTIFY`` for every event, and a deployment's ``notify`` for the
events of its runs. URLs hold tokens: the history keeps only a hash of each (``target_key``) and
its masked form (Apprise's privacy mode, without the query string), and deployments' own URLs in
``notify_targets``, which nothing displays.
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..config import Settings
from ..errors import ConfigError
from ..formatting import seconds_words
from ..formatting import utc_text as _when
from ..store import Store, from_db, to_db
from .clock import SYSTEM_CLOCK, Clock
from .states import ACTIVE_STATES

logger = logging.getLogger("pipeline.orchestration.notify")
SENDERS = 8  # messages sent at the same time
LOOKBACK = dt.timedelta(minutes=15)  # each scan looks this far behind the last one (slow commits)
RUNS_MARK, PROMOTIONS_MARK = "runs_scanned_until", "promotions_settled_until"
LEVELS = {"failed": "failure", "crashed": "failure", "gate_blocked": "failure", "gave_up": "failure",
          "late": "warning", "gate_warned": "warning", "rolled_back": "warning", "promoted": "success",
          "test": "info"}
EVENTS = tuple(LEVELS)
_GAVE_UP = re.compile(r"fhv_tripdata_\S+ is not (published yet|in the data folder yet)")
WAITED_TRIGGERS = ("schedule", "backfill")  # the runs that wait for an unpublished month (AwaitData)


# -- targets ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One Apprise URL: ``url`` holds secrets; ``label`` is safe to show and store; ``key`` is unique."""

    url: str
    label: str
    key: str

    def __repr__(self) -> str:
        return f"Target({self.label!r})"


def target(url: str, where: str = "FHV_NOTIFY") -> Target:
    """Check one Apprise URL; a ConfigError names where it came from and its scheme, never its secrets."""
    plugin = _instantiate(url)
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else url[:12]
        raise ConfigError(f"The notification URL {scheme}://… in {where} is not one Apprise can send to: check "
                          "its scheme and required parts (see https://github.com/caronc/apprise/wiki).")
    return Target(url=url, label=mask(plugin), key=hashlib.sha256(url.encode()).hexdigest()[:32])


def _instantiate(url: str) -> Any:
    import apprise  # imported only where notifications are used (about 0.2 s)

    return apprise.Apprise.instantiate(url.strip(), suppress_exceptions=True) if url.strip() else None


def mask(plugin: Any) -> str:
    """Apprise's privacy rendering of the URL, without the query string (it may carry tokens in headers)."""
    return plugin.url(privacy=True).split("?", 1)[0].rstrip("/")


def settings_targets(settings: Settings) -> list[Target]:
    return [target(url, "FHV_NOTIFY") for url in settings.notify]


def deployment_targets(urls: Iterable[str], deployment: str) -> list[Target]:
    return [target(url, f"the notify list of {deployment!r}") for url in urls]


class Targets:
    """Every target, for every event (FHV_NOTIFY) and per deployment (its ``notify``)."""

    def __init__(self, everywhere: list[Target], by_deployment: dict[int, list[Target]]):
        self.everywhere, self.by_deployment = everywhere, by_deployment

    @classmethod
    def load(cls, store: Store, settings: Settings) -> "Targets":
        own: dict[int, list[Target]] = {}
        for deployment_id, urls in store.notify_targets().items():
            own[deployment_id] = [t for t in (_stored_target(url, deployment_id) for url in urls) if t]
        return cls(settings_targets(settings), own)

    def for_deployment(self, deployment_id: int | None) -> list[Target]:
        seen, out = set(), []
        for item in self.everywhere + self.by_deployment.get(deployment_id, []):
            if item.key not in seen:
                seen.add(item.key)
                out.append(item)
        return out

    def all(self) -> list[Target]:
        """Every target once: FHV_NOTIFY's, then the deployments' own."""
        unique: dict[str, Target] = {}
        for item in self.everywhere + [t for own in self.by_deployment.values() for t in own]:
            unique.setdefault(item.key, item)
        return list(unique.values())

    def by_key(self) -> dict[str, Target]:
        return {t.key: t for t in self.all()}

    def __bool__(self) -> bool:
        return bool(self.everywhere or any(self.by_deployment.values()))


def _stored_target(url: str, deployment_id: int) -> Target | None:
    try:
        return target(url, f"deployment {deployment_id}")
    except ConfigError as error:  # checked when registered; an Apprise upgrade may still drop a scheme
        logger.warning("%s", error)
        return None


# -- events ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    kind: str
    subject: str
    run_id: str | None
    deployment_id: int | None
    title: str
    body: str

    @property
    def level(self) -> str:
        return LEVELS[self.kind]


def run_events(run: dict[str, Any]) -> list[Event]:
    """The events a run that ended says: its failure (one kind) and its gates' warnings."""
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
    if run.get("error_task") == "check_data":
        return "gate_blocked"
    if run.get("trigger") in WAITED_TRIGGERS and _GAVE_UP.search(run.get("error") or ""):
        return "gave_up"
    return "failed"


def _failure_text(kind: str, run: dict[str, Any]) -> str:
    where = f" in {run['error_task']}" if run.get("error_task") else ""
    error = run.get("error") or "no error was recorded."
    if kind == "gate_blocked":
        return f"Run {_who(run)} was stopped by a data check and FAILED: {error}"
    if kind == "gave_up":
        return f"Run {_who(run)} gave up waiting for its data and FAILED: {error}"
    return f"Run {_who(run)} {run['state']}{where}: {error}"


def late_event(run: dict[str, Any], now: dt.datetime) -> Event:
    waited = (now - from_db(run["scheduled_time"])).total_seconds()
    why = f" ({run['late_reason']})" if run.get("late_reason") else ""
    return _event("late", run, f"Run {_who(run)} is LATE: its slot {_when(run['scheduled_time'])} passed "
                               f"{seconds_words(waited)} ago and it has not started{why}.")


def promotion_event(row: dict[str, Any], deployment_id: int | None) -> Event:
    kind = "rolled_back" if row["action"] == "rollback" else "promoted"
    how = {"promoted": "was promoted automatically", "manual": f"was promoted by {row['actor']}",
           "rollback": f"is the model again: {row['actor']} rolled back to it"}[row["action"]]
    month = f" (validated on {row['val_month']})" if row.get("val_month") else ""
    body = f"The model of run {row['run_name']} ({row['run_id'][:8]}){month} {how}: {row['reason']}"
    title = "FHV model rolled back" if kind == "rolled_back" else "FHV model promoted"
    return Event(kind, f"model_event:{row['id']}", row["run_id"], deployment_id, title, body)


def _event(kind: str, run: dict[str, Any], body: str) -> Event:
    title = {"failed": "FAILED", "crashed": "CRASHED", "late": "LATE", "gate_warned": "data-check warning",
             "gate_blocked": "blocked by a data check", "gave_up": "gave up waiting for data"}[kind]
    return Event(kind, f"run:{run['id']}", run["id"], run.get("deployment_id"), f"FHV run {run['name']}: {title}",
                 body)


def _who(run: dict[str, Any]) -> str:
    deployment = f" of {run['deployment']}" if run.get("deployment") else ""
    date = f" for {run['run_date']}" if run.get("run_date") else ""
    return f"{run['name']} ({run['id'][:8]}){deployment}{date}"


def find_events(store: Store, settings: Settings, now: dt.datetime) -> list[Event]:
    """Every event in the history since the last scan (minus LOOKBACK), the LATE runs, the promotions."""
    mark = from_db(store.notify_mark(RUNS_MARK)) or now
    events = [e for run in store.runs_ended_since(min(mark, now) - LOOKBACK) for e in run_events(run)]
    late_by = now - dt.timedelta(seconds=settings.notify_late_after)
    events += [late_event(run, now) for run in store.late_runs(due_before=late_by)]
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
    """Add each event for each of its targets to the outbox; returns how many were new."""
    events = list(events)
    known, added = store.known_notifications([event.subject for event in events]), 0
    for event in events:
        for item in targets.for_deployment(event.deployment_id):
            if (event.kind, event.subject, item.key) in known:
                continue  # a read spares a write; the unique constraint still decides
            added += store.add_notification(event=event.kind, subject=event.subject, run_id=event.run_id,
                                            target_key=item.key, target=item.label, title=event.title,
                                            body=event.body, level=event.level, now=now) is not None
    return added


def scan(store: Store, settings: Settings, targets: Targets, now: dt.datetime) -> int:
    """Find the events and queue them; the scan mark moves to ``now``. Returns how many messages were new."""
    added = queue(store, find_events(store, settings, now), targets, now)
    store.set_notify_mark(RUNS_MARK, to_db(now))
    return added


# -- delivery --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a message is sent: ``attempts`` at most, ``backoff`` seconds before the
    second, times ``factor`` before each next one, each attempt ``timeout`` seconds at most."""

    attempts: int = 5
    backoff: float = 30.0
    factor: float = 4.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or not 1 <= self.attempts <= 20:
            raise ConfigError(f"The notification attempts {self.attempts!r} must be a whole number from 1 to 20.")
        for name in ("backoff", "factor", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"The notification {name} {value!r} must be a positive number.")

    def retry_at(self, attempts_made: int, now: dt.datetime) -> dt.datetime | None:
        """When to try again after ``attempts_made`` attempts failed; None when they are all used."""
        if attempts_made >= self.attempts:
            return None
        return now + dt.timedelta(seconds=self.backoff * self.factor ** (attempts_made - 1))

    @classmethod
    def for_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(timeout=settings.notify_timeout)


@dataclass(frozen=True)
class Outcome:
    outcome: str  # sent, failed, timeout, dropped
    detail: str | None = None


def send(item: Target, *, title: str, body: str, level: str, timeout: float) -> Outcome:
    """One attempt through Apprise, in a thread of its own: ``timeout`` seconds at most, whatever the receiver does."""
    box: dict[str, Any] = {}
    worker = threading.Thread(target=_send_in_thread, args=(item, title, body, level, timeout, box),
                              name=f"notify {item.label[:40]}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return Outcome("timeout", f"no answer within {seconds_words(timeout)}")
    if box.get("sent"):
        return Outcome("sent")
    detail = box.get("error") or " ".join(box.get("log", [])) or "Apprise could not send it."
    return Outcome("failed", scrub(detail, item))


def scrub(text: str, item: Target) -> str:
    """``text`` without any part of the target's URL that its masked label hides (tokens, passwords, keys)."""
    for part in sorted(set(re.split(r"[/:@?&=#,+]+", item.url)), key=len, reverse=True):
        if len(part) >= 4 and part not in item.label:
            text = text.replace(part, "****")
    return text


def _send_in_thread(item: Target, title: str, body: str, level: str, timeout: float, box: dict[str, Any]) -> None:
    capture = _ThreadWarnings(threading.get_ident())
    apprise_logger = logging.getLogger("apprise")
    apprise_logger.addHandler(capture)
    try:
        plugin = _instantiate(item.url)
        if hasattr(plugin, "socket_read_timeout"):  # the thread outlives the attempt by a second at most
            plugin.socket_read_timeout = plugin.socket_connect_timeout = timeout + 1.0
        box["sent"] = bool(plugin.notify(body=body, title=title, notify_type=level))
    except Exception as error:  # noqa: BLE001 - a plugin's error is this attempt's outcome
        box["error"] = f"{type(error).__name__}: {error}"
    finally:
        apprise_logger.removeHandler(capture)
        box["log"] = capture.messages


class _ThreadWarnings(logging.Handler):
    """Apprise's warnings of one thread: why an attempt failed, in Apprise's words (its logs mask secrets)."""

    def __init__(self, thread: int):
        super().__init__(logging.WARNING)
        self.thread, self.messages = thread, []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage().strip())


def deliver_due(store: Store, targets: Targets, policy: RetryPolicy, clock: Clock = SYSTEM_CLOCK, *,
                most: int = 1000) -> int:
    """Make one attempt at each due message (``most`` at most), ``SENDERS`` at a time; returns how many were sent.

    A target that timed out gets no more attempts this round (its messages stay due), so a hanging
    receiver costs a round one timeout, not one per message.
    """
    by_key, stalled, sent, tried = targets.by_key(), set(), 0, 0
    with concurrent.futures.ThreadPoolExecutor(SENDERS, thread_name_prefix="notify") as pool:
        while tried < most:
            batch = store.due_notifications(clock.now(), limit=SENDERS, skip_targets=stalled)
            if not batch:
                break
            results = pool.map(lambda row: _attempt_closing(store, row, by_key.get(row["target_key"]), policy, clock),
                               batch)
            for row, result in zip(batch, results):
                tried += 1
                sent += result is not None and result.outcome == "sent"
                if result is not None and result.outcome == "timeout":
                    stalled.add(row["target_key"])
    return sent


def _attempt_closing(store: Store, row: dict[str, Any], item: Target | None, policy: RetryPolicy,
                     clock: Clock) -> Outcome | None:
    try:
        return attempt(store, row, item, policy, clock)
    finally:
        store.close()  # this worker thread's connection


def attempt(store: Store, row: dict[str, Any], item: Target | None, policy: RetryPolicy,
            clock: Clock) -> Outcome | None:
    """Claim one due message, try it once, record the attempt; its outcome, or None if another sender had it."""
    now = clock.now()
    claimed = store.claim_notification(row["id"], attempts=row["attempts"], now=now,
                                       until=now + dt.timedelta(seconds=policy.timeout + 60))
    if claimed is None:
        return None
    if item is None:
        result = Outcome("dropped", "its target is no longer configured (FHV_NOTIFY or the deployment's notify)")
    else:
        result = send(item, title=claimed["title"], body=claimed["body"], level=claimed["level"],
                      timeout=policy.timeout)
    ended = clock.now()
    retry = None if result.outcome in ("sent", "dropped") else policy.retry_at(claimed["attempts"] + 1, ended)
    store.record_notification_attempt(claimed, outcome=result.outcome, detail=result.detail, started=now,
                                      ended=ended, retry_at=retry)
    _log_attempt(claimed, result, retry)
    return result


def _log_attempt(row: dict[str, Any], result: Outcome, retry: dt.datetime | None) -> None:
    if row["event"] == "test":
        return  # ``notify test`` prints its own outcome
    if result.outcome == "sent":
        logger.info("Notified %s of %s (%s).", row["target"], row["event"], row["subject"])
        return
    then = f"next attempt at {_when(retry)}" if retry else "no attempt left"
    logger.warning("Could not notify %s of %s (%s): %s, %s; %s.", row["target"], row["event"], row["subject"],
                   result.outcome, (result.detail or "").rstrip("."), then)


# -- the two ways it runs --------------------------------------------------------------------------

class Notifier:
    """The scheduler's notifications: ``poke()`` (every step) starts a scan and a delivery round in a
    background thread when ``every`` seconds have passed and no round is running; it never waits."""

    def __init__(self, store: Store, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, every: float = 5.0,
                 policy: RetryPolicy | None = None):
        self.store, self.settings, self.clock, self.every = store, settings, clock, every
        self.policy = policy or RetryPolicy.for_settings(settings)
        settings_targets(settings)  # a bad FHV_NOTIFY stops the scheduler at start-up, with its sentence
        self._thread: threading.Thread | None = None
        self._last: dt.datetime | None = None

    def poke(self) -> None:
        now = self.clock.now()
        if self._thread is not None and self._thread.is_alive():
            return
        if self._last is not None and (now - self._last).total_seconds() < self.every:
            return
        self._last = now
        if self.settings.notify or self.store.notify_targets():  # nothing to tell, no thread
            self._thread = threading.Thread(target=self.round, name="notifications", daemon=True)
            self._thread.start()

    def round(self) -> None:
        """Scan the history and make one attempt at each due message; errors are logged, never raised."""
        try:
            targets = Targets.load(self.store, self.settings)
            if targets:
                scan(self.store, self.settings, targets, self.clock.now())
                deliver_due(self.store, targets, self.policy, self.clock)
        except Exception as error:  # noqa: BLE001 - notifications never stop the scheduler
            logger.warning("Notifications: %s: %s", type(error).__name__, error)
        finally:
            self.store.close()  # this thread's connection

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the running round (tests, and a clean stop)."""
        if self._thread is not None:
            self._thread.join(timeout)


def after_run(store: Store, settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> None:
    """After a foreground run's final state is recorded: queue its events and try each due message once
    (``notify_timeout`` seconds at most for up to ``SENDERS`` messages); what fails is retried by the scheduler."""
    try:
        targets = Targets.load(store, settings)
        if targets:
            scan(store, settings, targets, clock.now())
            deliver_due(store, targets, RetryPolicy.for_settings(settings), clock)
    except Exception as error:  # noqa: BLE001 - the run is recorded; telling about it must not fail the command
        logger.warning("Notifications: %s: %s", type(error).__name__, error)


def send_test(store: Store, settings: Settings, *, clock: Clock = SYSTEM_CLOCK,
              on_result: Callable[[Target, Outcome], None] | None = None) -> list[tuple[Target, Outcome]]:
    """Send a test message to every configured target, one attempt each, recorded like any message."""
    targets, now = Targets.load(store, settings), clock.now()
    subject = f"test:{uuid.uuid4().hex[:12]}"
    body = f"A test message from the FHV training pipeline, sent at {_when(now)}."
    once, results = RetryPolicy(attempts=1, timeout=settings.notify_timeout), []
    for item in targets.all():
        queued = store.add_notification(event="test", subject=subject, run_id=None, target_key=item.key,
                                        target=item.label, title="FHV pipeline: test message", body=body,
                                        level="info", now=now)
        result = attempt(store, {"id": queued, "attempts": 0}, item, once, clock) or Outcome("failed", "taken")
        results.append((item, result))
        if on_result is not None:
            on_result(item, result)
    return results
