"""Delivery: one attempt at a time per message, in a thread of its own, recorded; retries with backoff."""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ...config import Settings
from ...errors import ConfigError
from ...formatting import seconds_words
from ...formatting import utc_text as _when
from ...store.interfaces import Notifications
from ..clock import SYSTEM_CLOCK, Clock
from .targets import Target, Targets, _instantiate, scrub

logger = logging.getLogger("pipeline.orchestration.notify")
SENDERS = 8  # messages sent at the same time


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


def deliver_due(store: Notifications, targets: Targets, policy: RetryPolicy, clock: Clock = SYSTEM_CLOCK, *,
                most: int = 1000, budget: float | None = None, stop: threading.Event | None = None) -> int:
    """Make one attempt at each due message, ``SENDERS`` at a time; returns how many were sent.

    A target that timed out gets no more attempts this round (its messages stay due), so a hanging
    receiver costs a round one timeout, not one per message. At most ``most`` attempts; with
    ``budget`` (seconds), no new batch starts after that long: the rest stay due for the next round;
    nor once ``stop`` is set (a scheduler stopping lets the batch on the wire finish and be recorded).
    """
    by_key, stalled, sent, tried, began = targets.by_key(), set(), 0, 0, time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(SENDERS, thread_name_prefix="notify") as pool:
        while tried < most and (budget is None or time.monotonic() - began < budget) and \
                not (stop is not None and stop.is_set()):
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


def _attempt_closing(store: Notifications, row: dict[str, Any], item: Target | None, policy: RetryPolicy,
                     clock: Clock) -> Outcome | None:
    try:
        return attempt(store, row, item, policy, clock)
    finally:
        store.close()  # this worker thread's connection


def attempt(store: Notifications, row: dict[str, Any], item: Target | None, policy: RetryPolicy,
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
