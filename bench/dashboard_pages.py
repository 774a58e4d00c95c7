"""How long each dashboard page takes to run on a big history (target: <= 300 ms a page).

    python bench/dashboard_pages.py [--runs 10000] [--tasks 50000] [--repeat 5]

Seeds a history in a temporary folder (the dashboard test history plus ``--runs`` runs and
``--tasks`` task runs written with executemany), then runs each page's script with AppTest:
one warm-up, then ``--repeat`` timed runs with the query cache cleared (cold: every query hits
SQLite) and ``--repeat`` with it warm (the live refresh within the cache's ttl). Prints the
medians as a table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from pipeline.store import Store  # noqa: E402
from pipeline.flows import load_flows  # noqa: E402  (the entry point registers the flows)
from tests.dashboard_seed import bulk_history, seed_history  # noqa: E402

APP = str(ROOT / "dashboard" / "app.py")
PAGES = ["overview", "runs", "run_detail", "upcoming", "trends", "models", "trigger"]
TARGET_MS = 300


def seed(home: Path, runs: int, tasks: int) -> str:
    """The seeded history plus bulk runs; returns the id of a failed run for the detail page."""
    seeded = seed_history(home)
    store = Store(seeded.settings.db_path)
    try:
        bulk_history(store, runs=runs, tasks_per_run=max(tasks // max(runs, 1), 1))
        print(f"history: {store.count_runs():,} flow runs, {store.count_task_runs():,} task runs")
    finally:
        store.close()
    return seeded.failed


def app_on(page: str, run_id: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if page == "run_detail":
        at.query_params["id"] = run_id
    at.run()
    return at.switch_page(f"app_pages/{page}.py")


def timed(at: AppTest, *, cold: bool) -> float:
    if cold:
        st.cache_data.clear()
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    return elapsed * 1000


def measure(page: str, run_id: str, repeat: int) -> tuple[float, float]:
    at = app_on(page, run_id)
    timed(at, cold=True)  # warm-up: imports, plotly templates, SQLite page cache
    cold = statistics.median(timed(at, cold=True) for _ in range(repeat))
    warm = statistics.median(timed(at, cold=False) for _ in range(repeat))
    return cold, warm


def main() -> int:
    load_flows()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "fhv"
        started = time.perf_counter()
        run_id = seed(home, args.runs, args.tasks)
        print(f"seeded in {time.perf_counter() - started:.1f} s at {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
        os.environ["FHV_HOME"] = str(home)
        rows = [(page, *measure(page, run_id, args.repeat)) for page in PAGES]
    print(f"\n{'page':<12} {'cold ms':>9} {'warm ms':>9}  target <= {TARGET_MS} ms")
    for page, cold, warm in rows:
        print(f"{page:<12} {cold:>9.0f} {warm:>9.0f}  {'ok' if cold <= TARGET_MS else 'SLOW'}")
    return 0 if all(cold <= TARGET_MS for _, cold, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
