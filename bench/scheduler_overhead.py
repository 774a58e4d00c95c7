"""Scheduler overhead: how long from a run being due to RUNNING, and how fast runs are claimed.

    .venv/bin/python bench/scheduler_overhead.py [--runs 20] [--history 100000]

1. Due -> RUNNING with the real executor (forkserver child, the real flow on demo:1000 data):
   ``started_at - scheduled_time`` for runs that fall due one after another, with the loop
   ticking every 0.05 s and every 1 s (the default), plus the part that is only process start-up
   (claim -> RUNNING). For comparison, the import a child would pay without the preloaded forkserver
   (``import pipeline.training.model``: scikit-learn). Runs the same from any working directory.
2. Claims per second on a history of 100,000 runs (99 % finished, the rest due), and the time of
   a scheduler tick with nothing to start on that history.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # works from any working directory
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402
from tests.fakes import FakeExecutor  # noqa: E402
from pipeline.orchestration.runtime import SYSTEM_CLOCK  # noqa: E402
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions  # noqa: E402
from pipeline.orchestration.states import State  # noqa: E402
from pipeline.store import Store, from_db  # noqa: E402

UTC = dt.timezone.utc


def due_run(store: Store, when: dt.datetime, index: int) -> str:
    return store.create_run(flow="fhv-duration-training", name=f"bench-{index}", state=State.SCHEDULED, now=when,
                            parameters={"date": "2021-03-15", "data_url": "demo:1000"}, scheduled_time=when,
                            work_queue="default", trigger="manual")


def wait_state(store: Store, scheduler: Scheduler, run_id: str, states: set[str],
               timeout: float = 60) -> tuple[dict, dt.datetime | None]:
    """The run once in one of ``states``, and when the scheduler started its process (kept: reaping forgets it)."""
    deadline, started = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        scheduler.tick()
        started = scheduler.started.get(run_id, started)
        run = store.get_run(run_id)
        if run["state"] in states:
            return run, started
        time.sleep(scheduler._idle())
    raise RuntimeError(f"run {run_id} did not reach {states} within {timeout} s")


def latencies(home: Path, tick: float, runs: int) -> tuple[list[float], list[float]]:
    """Due -> RUNNING and claim -> RUNNING, in seconds, for ``runs`` runs."""
    settings = Settings(home=home, data_url="demo:1000").ensure_dirs()
    store = Store(settings.db_path)
    scheduler = Scheduler(store, settings, options=SchedulerOptions(tick=tick, heartbeat=1, stale_after=30))
    scheduler.executor.warm_up()
    wait_state(store, scheduler, due_run(store, SYSTEM_CLOCK.now(), -1), {"COMPLETED", "FAILED"})  # imports, cache
    due, start = [], []
    for index in range(runs):
        when = SYSTEM_CLOCK.now() + dt.timedelta(seconds=0.3)
        run_id = due_run(store, when, index)
        run, started = wait_state(store, scheduler, run_id, {"RUNNING", "COMPLETED", "FAILED"})
        due.append((from_db(run["started_at"]) - when).total_seconds())
        start.append((from_db(run["started_at"]) - started).total_seconds())
        wait_state(store, scheduler, run_id, {"COMPLETED", "FAILED"})
    scheduler.request_stop()
    scheduler.shutdown()
    store.close()
    return due, start


def fill_history(store: Store, total: int, due: int) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(total):
        finished = i >= due
        rows.append({"name": f"bench-{i}", "flow": "fhv-duration-training", "work_queue": "default",
                     "state": "COMPLETED" if finished else "SCHEDULED", "parameters": {"date": "2021-03-15"},
                     "scheduled_time": now - dt.timedelta(minutes=total - i), "run_date": "2021-03-15",
                     "started_at": now if finished else None, "ended_at": now if finished else None,
                     "trigger": "manual"})
    for chunk in range(0, total, 10_000):
        store.insert_scheduled_runs(rows[chunk:chunk + 10_000], now)


def claims(home: Path, total: int) -> tuple[float, float, float]:
    """Claims per second, and milliseconds of an idle scheduler step, on a history of ``total`` runs."""
    due = total // 100
    store = Store(home / "big.db")
    began = time.perf_counter()
    fill_history(store, total, due)
    filled = time.perf_counter() - began
    now = SYSTEM_CLOCK.now()
    began = time.perf_counter()
    claimed = [store.claim_due_run(now=now, work_queue="default", claimer="bench") for _ in range(due)]
    per_second = due / (time.perf_counter() - began)
    assert all(claimed)
    for run in claimed:  # as if they had run: the step below then has nothing to do
        store.start_run(run["id"], now=now, pid=os.getpid())
        store.transition(run["id"], State.COMPLETED, now=now)
    step_ms = idle_step_ms(store, Settings(home=home, data_url="demo:1000"))
    store.close()
    return per_second, step_ms, filled


def idle_step_ms(store: Store, settings: Settings, repeat: int = 50) -> float:
    scheduler = Scheduler(store, settings, options=SchedulerOptions(), executor=FakeExecutor(store))
    scheduler.tick()
    began = time.perf_counter()
    for _ in range(repeat):
        scheduler.step()
    return (time.perf_counter() - began) / repeat * 1000


def import_cost() -> float:
    """Seconds for a fresh interpreter to import the model (scikit-learn), which the forkserver preloads.

    Not ``pipeline.training.flow`` alone: it imports ``pipeline.training.model`` lazily, in a thread, during read_data.
    """
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipeline.training.model"], check=True, cwd=ROOT)
    return time.perf_counter() - began


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    median, top = statistics.median(ordered), ordered[-1]
    return f"median {median * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   max {top * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--history", type=int, default=100_000)
    args = parser.parse_args()
    logging.getLogger("pipeline").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        print(f"Due -> RUNNING with the real executor ({args.runs} runs each):")
        for tick in (0.05, 1.0):
            due, start = latencies(home / f"tick-{tick}", tick, args.runs)
            print(f"  tick {tick:>4} s: due -> RUNNING   {describe(due)}")
            print(f"             claim -> RUNNING {describe(start)}  (forkserver child start-up)")
        print(f"  without the preloaded forkserver each run would first import the model (scikit-learn): "
              f"{import_cost() * 1000:.0f} ms (python -c 'import pipeline.training.model')")
        per_second, step_ms, filled = claims(home, args.history)
        print(f"History of {args.history:,} runs ({args.history // 100:,} due; filled in {filled:.1f} s):")
        print(f"  claim_due_run: {per_second:,.0f} claims/s")
        print(f"  one scheduler step with nothing due (reap, cancel, catch-up, expire, dispatch, late): "
              f"{step_ms:.2f} ms")


if __name__ == "__main__":
    main()
