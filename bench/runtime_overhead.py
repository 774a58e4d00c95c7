"""Orchestration overhead: a flow of four trivial tasks, recorded in a real SQLite history.

    .venv/bin/python bench/runtime_overhead.py [--runs 200]

Prints the median and 95th percentile wall time per flow run (create the run, run four
tasks with their task-run records, finish the run). Target: <= 0.8 ms a run; Prefect 3 needs
about 1 s for the same flow.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.orchestration.runtime import SYSTEM_CLOCK, flow, run_flow, task  # noqa: E402
from pipeline.flows import load_flows  # noqa: E402  (the entry point registers the flows)
from pipeline.orchestration.states import State  # noqa: E402
from pipeline.store import Store  # noqa: E402

log = logging.getLogger("pipeline.bench")


@task
def read_data():
    log.info("read")
    return 1


@task
def prepare_features(x):
    return x + 1


@task
def train_model(x):
    return x * 2


@task
def run_model(x):
    log.info("done")
    return {"val_rmse": float(x)}


@flow("bench", tasks=("read_data", "prepare_features", "train_model", "run_model"))
def trivial_flow():
    return run_model(train_model(prepare_features(read_data())))


def one_run(store: Store) -> float:
    start = time.perf_counter()
    run_id = store.create_run(flow="bench", name="bench-run", state=State.PENDING, now=SYSTEM_CLOCK.now())
    result = run_flow(store, trivial_flow, run_id, {})
    elapsed = time.perf_counter() - start
    assert result.state is State.COMPLETED, result
    return elapsed


def main() -> None:
    load_flows()
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "history.db")
        for _ in range(10):
            one_run(store)
        times = sorted(one_run(store) for _ in range(args.runs))
    median, p95 = statistics.median(times), times[int(0.95 * len(times)) - 1]
    print(f"flow of 4 trivial tasks, {args.runs} runs on a real SQLite history")
    print(f"  median {median * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms per run (target <= 0.8 ms)")
    print(f"  vs Prefect 3 (~1 s a run): {1.0 / median:.0f}x less overhead")


if __name__ == "__main__":
    main()
