"""The history on PostgreSQL against SQLite: ``history copy`` and the dashboard's reads on a big history.

    python bench/postgres_history.py [--runs 10000] [--tasks 5] [--repeat 5]

Seeds a SQLite history (the dashboard test history plus ``--runs`` runs with ``--tasks`` task runs
each), copies it with ``history copy`` onto a throwaway PostgreSQL server (``tests/pgserver.py``:
initdb in a temporary folder, 127.0.0.1, fsync off), then times the dashboard's main reads on both
(median of ``--repeat``, after one warm-up) and prints a table.
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

from pipeline.cli import main as cli  # noqa: E402
from pipeline.flows import load_flows  # noqa: E402  (the entry point registers the flows)
from pipeline.store import Store  # noqa: E402
from pipeline.training.job import FLOW_NAME, METRICS  # noqa: E402
from tests.dashboard_seed import bulk_history, seed_history  # noqa: E402
from tests.pgserver import PgServer, postgres_bin  # noqa: E402

NOW = dt.datetime.now(dt.timezone.utc)
READS = {
    "runs list, newest, page 1": lambda s: s.run_list(limit=50, sort="newest"),
    "runs list, by validation RMSE": lambda s: s.run_list(limit=50, sort="metric_desc", metric="val_rmse"),
    "runs list, by duration": lambda s: s.run_list(limit=50, sort="duration_desc"),
    "runs list count, searched": lambda s: s.count_run_list(search="bulk-run-01"),
    "trends (trend_points)": lambda s: s.trend_points(FLOW_NAME, "val_rmse", by="val_month", keys=[m.key for m in METRICS]),
    "runs over time (1000 points)": lambda s: s.run_list_points(limit=1000),
    "deployments": lambda s: s.deployments(),
    "work queues": lambda s: s.work_queues(),
    "count by state": lambda s: s.count_by_state(),
}


def median_ms(fn, store: Store, repeat: int) -> float:
    fn(store)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(store)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run(runs: int, tasks: int, repeat: int) -> None:
    bin_dir = postgres_bin()
    if bin_dir is None:
        sys.exit("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb).")
    with tempfile.TemporaryDirectory() as folder:
        seeded = seed_history(Path(folder) / "fhv")
        sqlite = Store(seeded.settings.db_path)
        bulk_history(sqlite, runs=runs, tasks_per_run=tasks)
        server = PgServer(bin_dir).start()
        try:
            url = server.fresh_database("bench")
            start = time.perf_counter()
            os.environ["FHV_HOME"] = str(seeded.settings.home)
            assert cli(["history", "copy", "--to", url]) == 0
            copy_s = time.perf_counter() - start
            postgres = Store(url)
            print(f"\nhistory copy of {runs:,} runs and {runs * tasks:,} task runs: {copy_s:.2f} s\n")
            print("| read | SQLite ms | PostgreSQL ms |\n|---|---:|---:|")
            for name, fn in READS.items():
                print(f"| {name} | {median_ms(fn, sqlite, repeat):.1f} | {median_ms(fn, postgres, repeat):.1f} |")
            postgres.close()
        finally:
            server.stop()
        sqlite.close()


if __name__ == "__main__":
    load_flows()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    run(options.runs, options.tasks, options.repeat)
