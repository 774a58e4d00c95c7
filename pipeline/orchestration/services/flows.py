"""The services a scheduler and a worker share over their own flow processes (``Supervisor``), and the
scheduler's notifications round."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ..notify import Notifier

if TYPE_CHECKING:
    from ..supervisor import Supervisor


class Reap:
    """Record what ended flow processes left unrecorded (``Supervisor.reap``)."""

    name = "reap"

    def __init__(self, flows: "Supervisor", interval: float):
        self.flows, self.interval = flows, interval

    def run_once(self, now: dt.datetime) -> None:
        self.flows.reap()


class Cancel:
    """SIGTERM own flows whose cancellation was asked, SIGKILL them after the grace (``Supervisor.cancel``)."""

    name = "cancel"

    def __init__(self, flows: "Supervisor", interval: float):
        self.flows, self.interval = flows, interval

    def run_once(self, now: dt.datetime) -> None:
        self.flows.cancel()


class Notify:
    """Start a notifications round (failures, lateness, data checks, promotions) in the notifier's own thread,
    at most every 5 s (``notify``)."""

    name = "notify"

    def __init__(self, notifier: Notifier, interval: float):
        self.notifier, self.interval = notifier, interval

    def run_once(self, now: dt.datetime) -> None:
        self.notifier.poke()
