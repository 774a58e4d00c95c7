"""Fakes of the orchestrator's seams, honouring the same contracts (tests/test_scheduler.py).

``FakeExecutor`` runs a stand-in of the training flow in this process, at once, through the real
runtime, so scheduler tests on a fake clock cover months in milliseconds.
"""
from __future__ import annotations

import itertools
import signal
from typing import Any, Callable

from pipeline.errors import DataError, NotPublishedError
from pipeline.orchestration.clock import SYSTEM_CLOCK, Clock
from pipeline.orchestration.executor import AwaitData, Exit
from pipeline.orchestration.runtime import flow, run_flow, task
from pipeline.orchestration.states import State
from pipeline.store import RunRow, Store
from pipeline.training.job import FLOW_NAME
from pipeline.training.months import months_for, parse_date


class FakeExecutor:
    """Runs in this process, at once, through the real runtime with a stand-in flow; for fast tests.

    ``behaviour(run)`` says what the "process" does: ``complete``, ``fail`` or ``not_published``
    (the stand-in flow runs to its end in ``start``), ``hang`` (RUNNING until signalled), ``stubborn``
    (like hang, but ignores SIGTERM) or ``crash`` (RUNNING, then exit code 1 with nothing recorded).
    Fake pids do not exist on the machine.
    """

    PIDS = 4_000_000  # above Linux's pid_max, so no real process has them

    def __init__(self, store: Store, *, clock: Clock = SYSTEM_CLOCK, await_data: AwaitData = AwaitData(),
                 behaviour: Callable[[dict[str, Any]], str] = lambda run: "complete"):
        self.store, self.clock, self.await_data, self.behaviour = store, clock, await_data, behaviour
        self.processes: dict[str, dict[str, Any]] = {}
        self.started: list[str] = []
        self._pids = itertools.count(self.PIDS)

    def start(self, run: RunRow) -> int:
        pid, kind = next(self._pids), self.behaviour(run)
        self.processes[run["id"]] = {"pid": pid, "kind": kind, "exitcode": None}
        self.started.append(run["id"])
        if kind in ("hang", "stubborn", "crash"):
            self.store.start_run(run["id"], now=self.clock.now(), pid=pid)
            self.processes[run["id"]]["task"] = self.store.create_task_run(
                run["id"], "read_data", position=0, attempt=1, state=State.RUNNING, now=self.clock.now())
            self.processes[run["id"]]["exitcode"] = 1 if kind == "crash" else None
        else:
            policy = self.await_data.policy_for(self.store.get_run(run["id"]))
            run_flow(self.store, _stand_in(kind), run["id"], dict(run["parameters"]), clock=self.clock,
                     heartbeat_every=3600, await_policy=policy)
            self.processes[run["id"]]["exitcode"] = 0
        return pid

    def running(self) -> dict[str, int]:
        return {run_id: p["pid"] for run_id, p in self.processes.items()}

    def poll(self) -> list[Exit]:
        ended = [run_id for run_id, p in self.processes.items() if p["exitcode"] is not None]
        return [Exit(run_id, self.processes[run_id]["pid"], self.processes.pop(run_id)["exitcode"]) for run_id in ended]

    def signal(self, run_id: str, signum: int) -> bool:
        process = self.processes.get(run_id)
        if process is None or process["exitcode"] is not None:
            return False
        if signum == signal.SIGKILL:
            process["exitcode"] = -signal.SIGKILL
        elif signum == signal.SIGTERM and process["kind"] != "stubborn":
            self.store.finish_task_run(process["task"], State.CANCELLED, now=self.clock.now(), error="Cancelled.")
            self.store.transition(run_id, State.CANCELLED, now=self.clock.now(), message="Cancelled on request.",
                                  expect=(State.RUNNING,), error="Cancelled on request.")
            process["exitcode"] = 0
        return True

    def warm_up(self, wait: bool = False) -> None:
        """Nothing to prepare in-process."""

    def close(self) -> None:
        for run_id in list(self.processes):
            self.signal(run_id, signal.SIGKILL)
        self.poll()


def _stand_in(kind: str) -> Any:
    """A one-task flow that behaves like the training flow would with such data."""
    @task(name="read_data")
    def read_data(train_month: str, val_month: str) -> int:
        if kind == "not_published":
            raise NotPublishedError(train_month)
        if kind == "fail":
            raise DataError(f"fhv_tripdata_{train_month} is not a readable parquet file (a stand-in failure).")
        return 0

    @flow(FLOW_NAME, tasks=("read_data",))
    def stand_in(*, date: str, **_: Any) -> dict[str, Any]:
        read_data(*months_for(parse_date(date)))
        return {"run_date": date, "stand_in": True}

    return stand_in


class InlineExecutor(FakeExecutor):
    """Runs each run's registered flow for real, in this process, at once (a user's Prefect 2 flow)."""

    def __init__(self, store: Store, settings: Any, *, clock: Clock = SYSTEM_CLOCK):
        super().__init__(store, clock=clock)
        self.settings = settings

    def start(self, run: RunRow) -> int:
        from pipeline.orchestration.registry import flow_entry

        pid = next(self._pids)
        self.processes[run["id"]] = {"pid": pid, "kind": "inline", "exitcode": None}
        self.started.append(run["id"])
        flow_entry(run["flow"]).load()(self.store, self.settings, run["id"], clock=self.clock, await_policy=None,
                                       heartbeat_every=3600)
        self.processes[run["id"]]["exitcode"] = 0
        return pid
