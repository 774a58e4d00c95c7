"""Scheduler overhead: how long from a run being due to RUNNING, and how fast runs are claimed.

    .venv/bin/python bench/scheduler_overhead.py [--runs 20] [--history 100000] [--pg-claims 1000]

1. Due -> RUNNING with the real executor (forkserver child, the real flow on demo:1000 data):
   ``started_at - scheduled_time`` for runs that fall due one after another, with the loop
   ticking every 0.05 s and every 1 s (the default), plus the part that is only process start-up
   (claim -> RUNNING). For comparison, what the forkserver preloads, imported by a fresh interpreter
   (the flow, the model, scikit-learn). Runs the same from any working directory.
2. Claims per second on a history of 100,000 runs (99 % finished, the rest due), and the time of
   a scheduler tick with nothing to start on that history.
3. The history on PostgreSQL (a throwaway server, as the tests start it; skipped without PostgreSQL):
   claims per second with 1, 2 and 4 worker processes racing on one queue (each claim locks the
   queue's row, then its run ``FOR UPDATE SKIP LOCKED``), and due -> RUNNING through a real worker.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # works from any working directory
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402
from pipeline.flows import load_flows  # noqa: E402  (the entry point registers the flows)
from tests.fakes import FakeExecutor  # noqa: E402
from pipeline.orchestration.runtime import SYSTEM_CLOCK  # noqa: E402
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions  # noqa: E402
from pipeline.orchestration.states import State  # noqa: E402
from pipeline.store import Store, from_db  # noqa: E402
from pipeline.training.job import ENTRY  # noqa: E402

TRAINING_PRELOAD = ENTRY.preload  # the training flow's modules, which the forkserver imports once

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
        scheduler.run(scheduler.step)
    return (time.perf_counter() - began) / repeat * 1000


def import_cost() -> float:
    """Seconds for a fresh interpreter to import the flow's modules the forkserver preloads: the flow, the model
    and scikit-learn (which a run imports only for a new history's first run, and the scoring flow's first
    use of a champion)."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {', '.join(TRAINING_PRELOAD)}"], check=True, cwd=ROOT)
    return time.perf_counter() - began


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    median, top = statistics.median(ordered), ordered[-1]
    return f"median {median * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   max {top * 1000:7.1f} ms"


# -- PostgreSQL -------------------------------------------------------------------------------------

def pg_racing_claims(url: str, due: int, racers: int) -> float:
    """Claims per second of ``racers`` processes claiming ``due`` runs of one queue until none is left."""
    import multiprocessing

    store, queue, now = Store(url), f"race-{racers}", SYSTEM_CLOCK.now()
    store.upsert_work_queue(queue, concurrency_limit=None, now=now)
    rows = [{"name": f"race-{racers}-{i}", "flow": "fhv-duration-training", "work_queue": queue,
             "run_date": "2021-03-15", "parameters": {"date": "2021-03-15"}, "scheduled_time": now - dt.timedelta(seconds=due - i),
             "trigger": "manual"} for i in range(due)]
    store.insert_scheduled_runs(rows, now)
    store.close()
    context = multiprocessing.get_context("fork")
    start, counts = context.Barrier(racers + 1), context.Queue()
    processes = [context.Process(target=_claim_all, args=(url, queue, f"racer-{i}", start, counts))
                 for i in range(racers)]
    for process in processes:
        process.start()
    start.wait()
    began = time.perf_counter()
    claimed = sum(counts.get() for _ in processes)
    took = time.perf_counter() - began
    for process in processes:
        process.join()
    assert claimed == due, (claimed, due)
    return due / took


def _claim_all(url: str, queue: str, name: str, start: Any, counts: Any) -> None:
    store = Store(url, migrate=False)
    store.conn  # connected before the race starts
    start.wait()
    claimed = 0
    while store.claim_due_run(now=SYSTEM_CLOCK.now(), work_queue=queue, claimer=name, within_limit=True):
        claimed += 1
    counts.put(claimed)
    store.close()


def pg_worker_latencies(url: str, home: Path, tick: float, runs: int) -> list[float]:
    """Due -> RUNNING, in seconds, through a real ``python -m pipeline worker`` on a PostgreSQL history."""
    store = Store(url)
    env = {**os.environ, "FHV_HOME": str(home), "FHV_DATABASE_URL": url, "FHV_DATA_URL": "demo:1000"}
    worker = subprocess.Popen([sys.executable, "-m", "pipeline", "worker", "--queue", "default", "--tick", str(tick),
                               "--heartbeat", "1", "--stale-after", "30", "--grace", "5"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pg_wait(store, due_run(store, SYSTEM_CLOCK.now(), -1), {"COMPLETED", "FAILED"})  # imports, cache
        due = []
        for index in range(runs):
            when = SYSTEM_CLOCK.now() + dt.timedelta(seconds=0.3)
            run = pg_wait(store, due_run(store, when, index), {"RUNNING", "COMPLETED", "FAILED"})
            due.append((from_db(run["started_at"]) - when).total_seconds())
            pg_wait(store, run["id"], {"COMPLETED", "FAILED"})
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        store.close()
    return due


def pg_wait(store: Store, run_id: str, states: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = store.get_run(run_id)
        if run["state"] in states:
            return run
        time.sleep(0.01)
    raise RuntimeError(f"run {run_id} did not reach {states} within {timeout} s")


def postgres_figures(home: Path, runs: int, due: int) -> None:
    from tests.pgserver import PgServer, postgres_bin

    bin_dir = postgres_bin()
    if bin_dir is None:
        print("PostgreSQL: skipped (no initdb: apt-get install postgresql).")
        return
    server = PgServer(bin_dir)
    try:
        server.start()
        url = server.fresh_database("bench")
        Store(url).close()  # the schema
        print(f"History on PostgreSQL ({server.url().rsplit('/', 1)[0]}, fsync off as in the tests):")
        for racers in (1, 2, 4):
            rate = pg_racing_claims(url, due, racers)
            print(f"  {racers} worker process(es) racing on one queue: {rate:,.0f} claims/s ({due:,} claims)")
        for tick in (0.05, 1.0):
            due = pg_worker_latencies(url, home / f"pg-{tick}", tick, runs)
            print(f"  python -m pipeline worker --tick {tick:<4}: due -> RUNNING   {describe(due)}")
    finally:
        server.stop()


def main() -> None:
    load_flows()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--pg-claims", type=int, default=1000, help="runs claimed in each PostgreSQL race")
    parser.add_argument("--pg-only", action="store_true", help="only the PostgreSQL figures")
    parser.add_argument("--no-postgres", action="store_true", help="only the SQLite figures")
    args = parser.parse_args()
    logging.getLogger("pipeline").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        if not args.pg_only:
            sqlite_figures(home, args.runs, args.history)
        if not args.no_postgres:
            postgres_figures(home, args.runs, args.pg_claims)


def sqlite_figures(home: Path, runs: int, history: int) -> None:
    print(f"Due -> RUNNING with the real executor ({runs} runs each):")
    for tick in (0.05, 1.0):
        due, start = latencies(home / f"tick-{tick}", tick, runs)
        print(f"  tick {tick:>4} s: due -> RUNNING   {describe(due)}")
        print(f"             claim -> RUNNING {describe(start)}  (forkserver child start-up)")
    print(f"  what the forkserver preloads, imported by a fresh interpreter: {import_cost() * 1000:.0f} ms "
          f"(python -c 'import {', '.join(TRAINING_PRELOAD)}')")
    per_second, step_ms, filled = claims(home, history)
    print(f"History of {history:,} runs ({history // 100:,} due; filled in {filled:.1f} s):")
    print(f"  claim_due_run: {per_second:,.0f} claims/s")
    print(f"  one scheduler step with nothing due (reap, cancel, catch-up, expire, dispatch, late): "
          f"{step_ms:.2f} ms")


if __name__ == "__main__":
    main()
