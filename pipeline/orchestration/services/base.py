"""What a service is, and the step: services run one after another.

A service does one round of its work in ``run_once(now)`` and returns what it did (a count, or None); its
process runs it every ``interval`` seconds (the ``schedule`` library sets the cadence) and once per ``tick``,
each in a guard (``Supervisor.run``). The services of a step run in their order, every tick, and at once
when a run falls due, so that it starts on time.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Iterable, Protocol


class Service(Protocol):
    """One housekeeping job of a scheduler or a worker (Prefect's ``LoopService``)."""

    name: str  # how its failures are logged and recorded
    interval: float  # seconds between two rounds

    def run_once(self, now: dt.datetime) -> object:
        """Do one round of the work due at ``now``; return what was done (a count, or None)."""
        ...


class Step:
    """Services run in their order, each in the process's guard: reap before claiming, claim before marking
    what still waits LATE. ``last`` is when it last ran (a run falling due since then calls for a step). A part
    that finds the history out of reach ends the step: no claim follows a catch-up that could not be applied."""

    name = "step"

    def __init__(self, interval: float, parts: Iterable[Service], run: Callable[[Service], bool]):
        self.interval, self.parts, self.run = interval, list(parts), run
        self.last: dt.datetime | None = None

    def run_once(self, now: dt.datetime) -> None:
        self.last = now
        for part in self.parts:
            if not self.run(part):
                return
