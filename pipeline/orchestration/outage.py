"""Riding out a database outage: the history's server away for seconds or minutes (a restart, a failover,
a cut network) stops neither the scheduler nor a worker.

While the history cannot be reached, a supervisor runs none of its jobs: it logs one line when the
server goes away, tries again after 1, 2, 4 ... up to 30 s (``Outage``), and logs one line when it is
back, saying for how long it was away. Time spent alive but cut off is no downtime: the scheduler's
catch-up policy applies only to slots that passed while no scheduler ran (``Scheduler.back``), and it
judges other processes by their heartbeats only once they have had a stale time to beat again.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from ..formatting import duration_text, utc_text

logger = logging.getLogger("pipeline.orchestration.scheduler")
FIRST_RETRY, LAST_RETRY = 1.0, 30.0  # seconds between attempts to reach the history: doubling, capped


@dataclass
class Outage:
    """Whether the history is out of reach, since when, and when to try again."""

    role: str
    since: dt.datetime | None = None
    next_try: dt.datetime | None = None
    delay: float = FIRST_RETRY

    @property
    def active(self) -> bool:
        return self.since is not None

    def begin(self, error: Exception, now: dt.datetime) -> None:
        """The history went away: one line (not one per failing job), then attempts with backoff."""
        if self.active:
            return
        self.since, self.delay = now, FIRST_RETRY
        self.next_try = now + dt.timedelta(seconds=self.delay)
        logger.warning("%s The %s keeps running and tries again with backoff (after %g s at first, at most every "
                       "%g s).", error, self.role, FIRST_RETRY, LAST_RETRY)

    def due(self, now: dt.datetime) -> bool:
        return self.next_try is not None and now >= self.next_try

    def wait(self, now: dt.datetime) -> float:
        """Seconds until the next attempt."""
        return 0.0 if self.next_try is None else max(0.0, (self.next_try - now).total_seconds())

    def failed(self, now: dt.datetime) -> None:
        self.delay = min(self.delay * 2, LAST_RETRY)
        self.next_try = now + dt.timedelta(seconds=self.delay)

    def end(self, now: dt.datetime) -> float:
        """The history answers again: one line; returns how long it was away (seconds)."""
        away = (now - self.since).total_seconds() if self.since else 0.0
        logger.warning("The history can be reached again, after %s away (since %s); the %s goes on.",
                       duration_text(away), utc_text(self.since), self.role)
        self.since = self.next_try = None
        return away
