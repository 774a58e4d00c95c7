"""Our pipeline against the course's pandas + DictVectorizer + LinearRegression steps.

    .venv/bin/python bench/pipeline_vs_reference.py [--pairs 3] [--rows 1150000] [--checks-only]

Generates two full-size synthetic months (June and July 2021), then, in one run:
1. times both as whole processes, in alternating pairs: ``bench/reference_steps.py`` and
   ``python -m pipeline run --date 2021-08-15 --data-url FOLDER --json`` (wall time and peak
   RSS of each process, from wait4);
2. times the flow alone in this process (imports excluded, the history and artifacts written)
   against the reference steps' own in-process time;
3. checks that both report the same row counts, feature count and MSE;
4. times the flow in this process with the data checks (figures, drift, gates: the task check_data
   and the count of short trips while reading) and without them, in alternating pairs
   (at least 10 pairs; ``--checks-only``: this step alone), and the checks' own work timed alone,
   which a busy machine disturbs far less than the difference of two flows.
Targets: whole process >= 8x faster, flow in-process >= 20x faster, peak RSS <= 0.30x, data checks <= 10 %.
The pipeline's first run on the bench's new history is timed apart: it imports scikit-learn once, to learn
how it pickles the model (``pipeline/training/pickles.py``); the runs in the pairs never import it.
``FHV_SOLVER=lsqr`` times scikit-learn's iterative fit instead of the closed form (identical MSE).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.flows import load_flows  # noqa: E402  (the entry point registers the flows)


def run_process(argv: list[str], env: dict[str, str]) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS in MiB and the JSON printed by one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{argv} exited with {child.returncode}")
    return wall, usage.ru_maxrss / 1024, json.loads(out)


def make_months(folder: Path, rows: int) -> None:
    from pipeline.training.demo import write_month

    for month in ("2021-06", "2021-07"):
        write_month(folder / f"fhv_tripdata_{month}.parquet", month, rows)


def whole_processes(folder: Path, home: Path, pairs: int) -> dict[str, list]:
    """Alternating pairs, after one run of the pipeline on a new history (``first``: it imports scikit-learn
    to learn how it pickles the model; every later run, in the pairs, writes and scores without it)."""
    env = {**os.environ, "FHV_HOME": str(home), "PYTHONPATH": str(ROOT)}
    reference = [sys.executable, "bench/reference_steps.py", str(folder / "fhv_tripdata_2021-06.parquet"),
                 str(folder / "fhv_tripdata_2021-07.parquet")]
    ours = [sys.executable, "-m", "pipeline", "run", "--date", "2021-08-15", "--data-url", str(folder), "--json"]
    results: dict[str, list] = {"reference": [], "pipeline": [], "first": [run_process(ours, env)]}
    for _ in range(pairs):
        results["reference"].append(run_process(reference, env))
        results["pipeline"].append(run_process(ours, env))
    return results


def flow_in_process(folder: Path, home: Path, repeats: int) -> list[float]:
    from pipeline.config import Settings
    from pipeline.training.flow import run_now
    from pipeline.store import Store

    settings = Settings(home=home, data_url=str(folder), solver=os.environ.get("FHV_SOLVER", "exact")).ensure_dirs()
    store = Store(settings.db_path)
    times = []
    for _ in range(repeats + 1):  # the first one warms the page cache
        start = time.perf_counter()
        result = run_now(store, settings, date="2021-08-15", name="bench")
        times.append(time.perf_counter() - start)
        assert result.state.value == "COMPLETED", result.error
    return times[1:]


CHECK_PAIRS = 10  # the checks cost milliseconds of a flow of some 0.3 s: fewer pairs measure the machine's noise


def checks_cost(folder: Path, home: Path, pairs: int) -> dict[str, list[float]]:
    """In-process flow times with the data checks and without them, in pairs whose order alternates
    (the first pair warms up), and the task check_data's own time."""
    from pipeline.config import Settings
    from pipeline.store import Store
    from pipeline.training.flow import run_now

    settings = Settings(home=home / "checks", data_url=str(folder),
                        solver=os.environ.get("FHV_SOLVER", "exact")).ensure_dirs()
    store = Store(settings.db_path)
    times: dict[str, list[float]] = {"with": [], "without": [], "task": []}
    for pair in range(pairs + 1):
        for mode in ("with", "without") if pair % 2 else ("without", "with"):
            with contextlib.nullcontext() if mode == "with" else checks_off():
                start = time.perf_counter()
                result = run_now(store, settings, date="2021-08-15", name="bench-checks")
                elapsed = time.perf_counter() - start
            assert result.state.value == "COMPLETED", result.error
            if pair:
                times[mode].append(elapsed)
            if pair and mode == "with":
                times["task"].append(task_seconds(store, result.run_id, "check_data"))
    return times


def task_seconds(store, run_id: str, name: str) -> float:
    from pipeline.store import from_db

    row = next(t for t in store.task_runs(run_id) if t["task"] == name)
    return (from_db(row["ended_at"]) - from_db(row["started_at"])).total_seconds()


@contextlib.contextmanager
def checks_off():
    """The flow without its data checks: check_data does nothing, readers do not count short trips."""
    from pipeline.orchestration.runtime import task
    from pipeline.training import features, flow

    @task(timeout=600)
    def check_data(*args, **kwargs) -> dict:
        return {}

    saved = flow.check_data, flow._drift_baseline, features._short
    flow.check_data, flow._drift_baseline, features._short = check_data, (lambda month: None), (lambda trips: 0)
    try:
        yield
    finally:
        flow.check_data, flow._drift_baseline, features._short = saved


def direct_cost(folder: Path, repeats: int = 20) -> tuple[float, float, int]:
    """The checks' own work, timed alone on the months (fastest of ``repeats``): the figures, drift and
    gates of check_data, and the count of short trips summed over every batch of both months (the
    readers do it on two threads: this is an upper bound). Seconds, seconds, batches."""
    from pipeline.training import data, features, quality
    from pipeline.training.gates import Gates

    paths = [folder / f"fhv_tripdata_{month}.parquet" for month in ("2021-06", "2021-07")]
    train, val = data.read_months(paths, ["2021-06", "2021-07"])

    def checks() -> None:
        figures = {"train": quality.month_figures(train.summary, "2021-06"),
                   "val": quality.month_figures(val.summary, "2021-07")}
        quality.apply_gates(Gates(), figures, {"val_vs_train": quality.drift(figures["train"], figures["val"])})

    batches = []
    for path in paths:
        with features.open_parquet(path, path.name) as parquet:
            batches += [features.trip_arrays(b, path.name) for b in features._record_batches(parquet)]
    return (_fastest(checks, repeats), _fastest(lambda: [features._short(t) for t in batches], repeats),
            len(batches))


def _fastest(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def direct_line(cost: tuple[float, float, int], times: dict[str, list[float]]) -> str:
    checks, short, batches = cost
    flow = min(times["without"])
    return (f"data checks    their own work: figures, drift and gates {1000 * checks:.1f} ms + short trips counted "
            f"in {batches} batches {1000 * short:.1f} ms = {100 * (checks + short) / flow:.2f} % of the fastest "
            f"flow without them ({flow:.3f} s)")


def checks_line(times: dict[str, list[float]]) -> str:
    """The cost of the checks from the fastest flow of each kind (the least disturbed by other work on
    the machine) and from the medians, and the task check_data's own median time."""
    on, off = min(times["with"]), min(times["without"])
    median_on, median_off = statistics.median(times["with"]), statistics.median(times["without"])
    return (f"data checks    with   {on:6.3f} s   without  {off:6.3f} s   cost {100 * (on / off - 1):+5.1f} % "
            f"(target <= 10 %; flow in-process, fastest of {len(times['with'])} alternating pairs; medians "
            f"{median_on:.3f} s and {median_off:.3f} s: {100 * (median_on / median_off - 1):+.1f} %); the task "
            f"check_data alone {1000 * statistics.median(times['task']):.1f} ms")


def compare(reference: dict, ours: dict) -> list[str]:
    lines = []
    for key in ("train_rows", "val_rows", "feature_count", "train_mse", "val_mse", "train_rmse", "val_rmse"):
        a, b = reference[key], ours[key]
        rel = abs(a - b) / max(abs(a), 1e-12)
        lines.append(f"  {key:<14} reference {a:<20} pipeline {b:<20} rel. diff {rel:.1e}")
        if rel > 1e-6:
            lines.append(f"  !! {key} differs by more than 1e-6 relative")
    return lines


def main() -> None:
    load_flows()
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_150_000)
    parser.add_argument("--checks-only", action="store_true", help="only time the flow with and without data checks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp) / "data", Path(tmp) / "home"
        folder.mkdir()
        make_months(folder, args.rows)
        if args.checks_only:
            print(f"Two synthetic months of {args.rows:,} rows, {os.cpu_count()} cores")
            times = checks_cost(folder, home, max(args.pairs, CHECK_PAIRS))
            print(checks_line(times))
            print(direct_line(direct_cost(folder), times))
            return
        procs = whole_processes(folder, home, args.pairs)
        flow_times = flow_in_process(folder, home, args.pairs)
        checks = checks_cost(folder, home, max(args.pairs, CHECK_PAIRS))
        direct = direct_cost(folder)
    report(procs, flow_times, args)
    print(checks_line(checks))
    print(direct_line(direct, checks))


def report(procs: dict[str, list], flow_times: list[float], args: argparse.Namespace) -> None:
    med = {name: statistics.median(w for w, _, _ in runs) for name, runs in procs.items() if name != "first"}
    rss = {name: max(r for _, r, _ in runs) for name, runs in procs.items()}
    ref_steps = statistics.median(j["seconds"] for _, _, j in procs["reference"])
    flow = statistics.median(flow_times)
    print(f"Two synthetic months of {args.rows:,} rows, {args.pairs} alternating pairs, {os.cpu_count()} cores, "
          f"solver {os.environ.get('FHV_SOLVER', 'exact')} (FHV_SOLVER=lsqr: the course's own fit, identical MSE)")
    print(f"whole process  reference {med['reference']:6.2f} s   pipeline {med['pipeline']:6.2f} s   "
          f"ratio {med['reference'] / med['pipeline']:5.1f}x faster (target >= 8x); medians")
    print(f"flow alone     reference {ref_steps:6.2f} s   pipeline {flow:6.3f} s   "
          f"ratio {ref_steps / flow:5.1f}x faster (target >= 20x; imports excluded)")
    print(f"peak RSS       reference {rss['reference']:6.0f} MiB pipeline {rss['pipeline']:6.0f} MiB "
          f"ratio {rss['pipeline'] / rss['reference']:5.2f}x (target <= 0.30x); the highest of each")
    first_wall, first_rss, _ = procs["first"][0]
    print(f"first run      of a new history (imports scikit-learn once, to learn how it pickles): "
          f"{first_wall:.2f} s, {first_rss:.0f} MiB")
    print("\n".join(compare(procs["reference"][0][2], procs["pipeline"][0][2])))


if __name__ == "__main__":
    main()
