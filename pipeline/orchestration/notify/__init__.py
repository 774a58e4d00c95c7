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
carry ``warnings``), ``gate_blocked`` (FAILED by a gate, as its flow classifies it), ``gave_up`` (a scheduled month still
not published after its give-up time), ``promoted`` and ``rolled_back`` (promotion events), and
``test`` (``notify test``). A run FAILED by a gate or by giving up is told as that, not also as
``failed``.

Targets are Apprise URLs: ``FHV_NOTIFY`` for every event, and a deployment's ``notify`` for the
events of its runs. URLs hold tokens: the history keeps only a hash of each (``target_key``) and
its masked form (Apprise's privacy mode, without the query string), and deployments' own URLs in
``notify_targets``, which nothing displays.

Modules: ``targets`` (the URLs), ``events`` (what the history says, queued in the outbox),
``delivery`` (the attempts); this one runs them: ``Notifier`` in the scheduler, ``after_run`` after
a foreground run, ``send_test`` for ``notify test``.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from typing import Callable

from ...config import Settings
from ...formatting import utc_text as _when
from ...store import Store
from ..clock import SYSTEM_CLOCK, Clock
from .delivery import SENDERS, Outcome, RetryPolicy, attempt, deliver_due, send
from .events import EVENTS, LOOKBACK, Event, event_id, find_events, queue, run_events, scan, with_id
from .targets import Target, Targets, deployment_targets, mask, scrub, settings_targets, target

__all__ = ["EVENTS", "LOOKBACK", "SENDERS", "Event", "Notifier", "Outcome", "RetryPolicy", "Target", "Targets",
           "after_run", "attempt", "deliver_due", "deployment_targets", "event_id", "find_events", "mask", "note_targets",
           "queue", "run_events", "scan", "scrub", "send", "send_test", "settings_targets", "target", "with_id"]
logger = logging.getLogger("pipeline.orchestration.notify")


class Notifier:
    """The scheduler's notifications: ``poke()`` (every step) starts a scan and a delivery round in a
    background thread when ``every`` seconds have passed and no round is running; it never waits."""

    def __init__(self, store: Store, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, every: float = 5.0,
                 policy: RetryPolicy | None = None):
        self.store, self.settings, self.clock, self.every = store, settings, clock, every
        self.policy = policy or RetryPolicy.for_settings(settings)
        settings_targets(settings)  # a bad FHV_NOTIFY stops the scheduler at start-up, with its sentence
        note_targets(store, settings, clock.now())  # a new target gets what happens from now on
        self._thread: threading.Thread | None = None
        self._last: dt.datetime | None = None
        self._stop = threading.Event()

    def poke(self) -> None:
        now = self.clock.now()
        if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
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
                deliver_due(self.store, targets, self.policy, self.clock, stop=self._stop)
        except Exception as error:  # noqa: BLE001 - notifications never stop the scheduler
            logger.warning("Notifications: %s: %s", type(error).__name__, error)
        finally:
            self.store.close()  # this thread's connection

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the running round (tests, and a clean stop)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def finish(self) -> None:
        """On a clean stop: start nothing more, and let the messages on the wire be answered and recorded
        (each attempt ``timeout`` seconds at most), so a stop does not make them go again later."""
        self._stop.set()
        self.wait(self.policy.timeout + 2.0)


def note_targets(store: Store, settings: Settings, now: dt.datetime) -> dict[str, dt.datetime]:
    """Record when each configured target was first seen (``now`` for a new one); key -> that moment."""
    return store.note_notify_targets([item.key for item in Targets.load(store, settings).all()], now)


def after_run(store: Store, settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> None:
    """After a foreground run's final state is recorded: queue its events and try each due message once,
    starting new batches for ``notify_timeout`` seconds (so at most twice that); the scheduler retries the rest."""
    try:
        targets = Targets.load(store, settings)
        if targets:
            scan(store, settings, targets, clock.now())
            deliver_due(store, targets, RetryPolicy.for_settings(settings), clock, budget=settings.notify_timeout)
    except Exception as error:  # noqa: BLE001 - the run is recorded; telling about it must not fail the command
        logger.warning("Notifications: %s: %s", type(error).__name__, error)


def send_test(store: Store, settings: Settings, *, clock: Clock = SYSTEM_CLOCK,
              on_result: Callable[[Target, Outcome], None] | None = None) -> list[tuple[Target, Outcome]]:
    """Send a test message to every configured target, one attempt each, recorded like any message."""
    targets, now = Targets.load(store, settings), clock.now()
    subject = f"test:{uuid.uuid4().hex[:12]}"
    body = with_id(f"A test message from the FHV training pipeline, sent at {_when(now)}.", event_id("test", subject))
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
