"""Why each due run still waits, and which of them are LATE.

LATE means the scheduler could have started the run and did not (it is stopping, the run's queue does not
exist, its deployment's catch-up cannot be applied yet). A run waiting for a free slot in its queue, or held
by a paused queue or deployment, stays SCHEDULED with that reason. Without local execution, a run whose queue
no live worker serves is LATE too.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from ...store import RunRow
from ..liveness import worker_alive
from ..states import State
from .guard import FailingDeployments

if TYPE_CHECKING:
    from ..supervisor import Supervisor


class MarkLate:
    """Say why each run still waits ``late_after`` past its time; returns how many runs it looked at."""

    name = "mark_late"

    def __init__(self, flows: "Supervisor", failing: FailingDeployments, *, late_after: float, execute: bool,
                 interval: float):
        self.flows, self.failing, self.late_after, self.execute = flows, failing, late_after, execute
        self.interval = interval

    def run_once(self, now: dt.datetime) -> int:
        store = self.flows.store
        queues = self._queues(now)
        in_line: dict[str, int] = {}
        runs = store.due_runs(due_by=now - dt.timedelta(seconds=self.late_after))
        for run in runs:
            late, reason = self.why_waiting(run, queues.get(run["work_queue"]), in_line)
            if late and run["state"] == State.SCHEDULED:
                store.mark_late(run["id"], reason, now)
            elif reason != run["late_reason"] and run["state"] != State.AWAITING_RETRY:
                store.set_late_reason(run["id"], reason)
        return len(runs)

    def _queues(self, now: dt.datetime) -> dict[str, dict[str, Any]]:
        """The history's work queues by name; without local execution, each says whether no live worker serves it."""
        queues = {q["name"]: q for q in self.flows.store.work_queues()}
        if self.execute:
            return queues
        served = served_by_workers(self.flows.store.workers(live_only=True), now)
        return {name: {**q, "unserved": served is not None and name not in served} for name, q in queues.items()}

    def why_waiting(self, run: RunRow, queue: dict[str, Any] | None, in_line: dict[str, int]) -> tuple[bool, str]:
        """(is it late, why it waits) for a due run that was not claimed."""
        held = self.failing.held()
        if self.flows.stopping.is_set():
            return True, "the scheduler is stopping"
        if run["deployment_id"] in held:
            return True, f"its deployment {run['deployment']} waits until its catch-up can be applied " \
                         f"({held[run['deployment_id']]})"
        if not run.get("deployment_active", 1):
            return False, f"held: its deployment {run['deployment']} is paused"
        if queue is None:
            return True, f"its work queue '{run['work_queue']}' does not exist"
        if queue["paused"]:
            return False, f"held: its work queue '{queue['name']}' is paused"
        if queue.get("unserved"):
            return True, f"no live worker serves its work queue '{queue['name']}'"
        place = in_line[queue["name"]] = in_line.get(queue["name"], 0) + 1
        return False, (f"waiting for a free slot: {ordinal(place)} in line in '{queue['name']}' "
                       f"({queue['running']} of {queue['concurrency_limit']} running)")


def served_by_workers(workers: list[dict[str, Any]], now: dt.datetime) -> set[str] | None:
    """The queues that live workers serve (None: every queue, a worker serves them all)."""
    served: set[str] = set()
    for worker in workers:
        if worker_alive(worker, now=now):
            if not worker["queues"]:
                return None
            served.update(worker["queues"])
    return served


def ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"
