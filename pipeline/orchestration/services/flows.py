"""The services a scheduler and a worker share over their own flow processes (``Supervisor``), and the
scheduler's notifications round."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ..notify import Notifier

if TYPE_CHECKING:
    from ..supervisor import Supervisor


class OwnFlows:
    """One of the supervisor's rounds over its own flow processes, by name: ``reap`` records what ended
    flow processes left unrecorded, ``cancel`` SIGTERMs those whose cancellation was asked (SIGKILL after
    the grace)."""

    def __init__(self, flows: "Supervisor", name: str, interval: float):
        self.flows, self.name, self.interval = flows, name, interval
        self._round = getattr(flows, name)

    def run_once(self, now: dt.datetime) -> None:
        self._round()


class Notify:
    """Start a notifications round (failures, lateness, data checks, promotions) in the notifier's own thread,
    at most every 5 s (``notify``)."""

    name = "notify"

    def __init__(self, notifier: Notifier, interval: float):
        self.notifier, self.interval = notifier, interval

    def run_once(self, now: dt.datetime) -> None:
        self.notifier.poke()
