"""The clock seam: every decision of the orchestrator is a function of ``clock.now()``.

Tests pass a fake that only moves when told to (``tests/conftest.py::FakeClock``), so months of
schedule run in milliseconds without sleeping.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

UTC = dt.timezone.utc


class Clock(Protocol):
    """What the runtime and the scheduler need of time."""

    def now(self) -> dt.datetime:
        """The current moment, timezone-aware."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock advances instead)."""


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
