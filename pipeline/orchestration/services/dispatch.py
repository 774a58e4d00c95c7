"""The scheduler's dispatch: claim due runs, queue by queue, up to each queue's concurrency limit, and start them.

Not in a ``scheduler --no-execute``: there only workers claim. Runs of deployments whose catch-up fails are
held (``FailingDeployments.held``).
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from .guard import FailingDeployments

if TYPE_CHECKING:
    from ..supervisor import Supervisor

UNLIMITED = 1_000


class Dispatch:
    """Claim and start due runs; returns how many it started."""

    name = "dispatch"

    def __init__(self, flows: "Supervisor", failing: FailingDeployments, interval: float):
        self.flows, self.failing, self.interval = flows, failing, interval

    def run_once(self, now: dt.datetime) -> int:
        if self.flows.stopping.is_set():
            return 0
        held = tuple(self.failing.held())
        return sum(self._fill(queue, held) for queue in self.flows.store.work_queues())

    def _fill(self, queue: dict[str, Any], held: tuple[int, ...]) -> int:
        """Start the queue's due runs while it has free slots; how many started."""
        flows, limit = self.flows, queue["concurrency_limit"]
        free = UNLIMITED if limit is None else limit - queue["running"]
        started = 0
        while not queue["paused"] and started < free and not flows.stopping.is_set():
            run = flows.store.claim_due_run(now=flows.clock.now(), work_queue=queue["name"], claimer=flows.identity,
                                            skip_deployments=held, within_limit=True)
            if run is None:
                break
            flows.start_flow(run)
            started += 1
        return started
