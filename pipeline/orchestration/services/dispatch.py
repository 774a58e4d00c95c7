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
        if queue["paused"]:
            return 0
        limit = queue["concurrency_limit"]
        free = UNLIMITED if limit is None else limit - queue["running"]
        return claim_and_start(self.flows, queue["name"], free, skip_deployments=held)


def claim_and_start(flows: "Supervisor", queue: str, free: int, **claim: Any) -> int:
    """Claim due runs of one queue and start them, at most ``free`` and none once stopping; how many started
    (the claim is one statement that honours the queue's limit across every scheduler and worker)."""
    started = 0
    while started < free and not flows.stopping.is_set():
        run = flows.store.claim_due_run(now=flows.clock.now(), work_queue=queue, claimer=flows.identity,
                                        within_limit=True, **claim)
        if run is None:
            break
        flows.start_flow(run)
        started += 1
    return started
