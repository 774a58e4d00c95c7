"""The scoring flow against the course's week-4 scoring steps, and on a 23-million-trip month.

    .venv/bin/python bench/scoring_vs_reference.py [--pairs 3] [--rows 1150000] [--large] [--repeats 3]

1. Writes a synthetic training month (2021-06) and the month to score (2021-07) of ``--rows`` trips, and
   trains a champion on them (``python -m pipeline run``) in a fresh FHV_HOME.
2. Times, as whole processes (their bytecode cached, as an installed package's is) in alternating pairs, ``bench/scoring_reference.py`` (pandas, ``to_dict``,
   ``dv.transform``, ``lr.predict``, ``to_parquet``) and ``python -m pipeline score --date 2021-08-15
   --json``: wall time and peak RSS (of the process tree, sampled). The first pair warms the page cache
   and the champion's coefficients (``scoring/zones.py``) and is left out. CPU time (user + system, from
   wait4) is printed too: on a machine other work shares, it moves far less than the wall time.
3. Checks that both files hold the same rides and predictions to 1e-9, and the same RMSE, and times the flow
   alone in this process (imports excluded) against the steps' own time inside their process.
4. ``--large``: scores a month of 23,904,082 trips (2018-12, the TLC's size; written once into
   /tmp/fhv-large-months/rg1m in row groups of 1 million, as ``bench/large_months.py`` does) ``--repeats``
   times: wall time and peak RSS.
Targets: >= 10x faster than the course's steps; the 23M-trip month in <= 8 s and <= 800 MiB.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from large_months import run_process  # noqa: E402  (wall, peak RSS of the process tree, CPU, JSON)
from pipeline.flows import load_flows  # noqa: E402  (the entry point registers the flows)

LARGE_FOLDER, LARGE_MONTH, LARGE_ROWS = Path("/tmp/fhv-large-months/rg1m"), "2018-12", 23_904_082


def prepare(folder: Path, home: Path, rows: int) -> dict:
    """The months, and a champion trained on them; returns its card (run id, artifacts)."""
    from pipeline.training.demo import write_month

    for month in ("2021-06", "2021-07"):
        write_month(folder / f"fhv_tripdata_{month}.parquet", month, rows)
    run_process([sys.executable, "-m", "pipeline", "run", "--date", "2021-08-15", "--data-url", str(folder), "--json"],
                env(home))
    return run_process([sys.executable, "-m", "pipeline", "models", "current", "--json"], env(home))["json"]


def env(home: Path) -> dict[str, str]:
    """The children's environment. Their bytecode is cached (under the bench's folder), as an installed package's
    is: with PYTHONDONTWRITEBYTECODE=1 set in the shell, every process would compile the pipeline's modules again
    (0.1 s) while the reference's libraries come compiled from site-packages."""
    kept = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {**kept, "FHV_HOME": str(home), "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(home.parent / "pycache")}


def pairs(folder: Path, home: Path, card: dict, count: int) -> dict[str, list]:
    paths = {a["name"]: a["path"] for a in card["artifacts"]}
    reference = [sys.executable, "bench/scoring_reference.py", str(folder / "fhv_tripdata_2021-07.parquet"),
                 paths["vectorizer"], paths["model"], str(home / "reference.parquet"), "2021", "7", card["run_id"]]
    ours = [sys.executable, "-m", "pipeline", "score", "--date", "2021-08-15", "--data-url", str(folder),
            "--output", str(home / "ours"), "--json"]
    results: dict[str, list] = {"reference": [], "pipeline": []}
    for pair in range(count + 1):
        for name, argv in (("reference", reference), ("pipeline", ours)) if pair % 2 else \
                (("pipeline", ours), ("reference", reference)):
            measured = run_process(argv, env(home))
            if pair:
                results[name].append(measured)
    return results


def in_process(folder: Path, home: Path, count: int) -> list[float]:
    """Seconds of the flow alone, in this process (imports excluded), after one run that warms up."""
    import time

    from pipeline.config import Settings
    from pipeline.scoring.flow import score_now
    from pipeline.store import Store

    settings = Settings(home=home, data_url=str(folder))
    store, times = Store(settings.db_path), []
    for _ in range(count + 1):
        start = time.perf_counter()
        result = score_now(store, settings, date="2021-08-15", output=str(home / "in-process"), name="bench")
        times.append(time.perf_counter() - start)
        assert result.state.value == "COMPLETED", result.error
    store.close()
    return times[1:]


def same_predictions(home: Path) -> str:
    import numpy as np
    import pandas as pd

    theirs = pd.read_parquet(home / "reference.parquet")
    ours = pd.read_parquet(home / "ours" / "fhv_predictions_2021-07.parquet")
    assert ours.ride_id.tolist() == theirs.ride_id.tolist(), "the rides differ"
    worst = float(np.max(np.abs(ours.predicted_duration.to_numpy() - theirs.predicted_duration.to_numpy())))
    assert worst <= 1e-9, f"predictions differ by {worst}"
    return f"same {len(ours):,} rides; predictions equal to {worst:.1e} minutes at most"


def large(home: Path, repeats: int) -> list[dict]:
    from pipeline.training.demo import write_month

    path = LARGE_FOLDER / f"fhv_tripdata_{LARGE_MONTH}.parquet"
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr, flush=True)
        write_month(path, LARGE_MONTH, LARGE_ROWS, part_rows=1_000_000)
    argv = [sys.executable, "-m", "pipeline", "score", "--date", "2019-01-15", "--data-url", str(LARGE_FOLDER),
            "--output", str(home / "large"), "--json"]
    return [run_process(argv, env(home)) for _ in range(repeats)]


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(results: dict[str, list], flow: list[float], check: str, big: list[dict] | None,
           load: tuple) -> list[str]:
    ref, ours = results["reference"], results["pipeline"]
    ratio = median(ref, "wall") / median(ours, "wall")
    steps = statistics.median(r["json"]["seconds"] for r in ref)
    lines = [f"load average before: {load[0]:.2f}",
             "| 1,150,000-trip month | course's steps | python -m pipeline score | ratio |", "|---|---|---|---|",
             f"| whole process, median of {len(ours)} | {median(ref, 'wall'):.2f} s | {median(ours, 'wall'):.2f} s | "
             f"{ratio:.1f}x faster |",
             f"| CPU time (user + system), median | {median(ref, 'cpu'):.2f} s | {median(ours, 'cpu'):.2f} s | "
             f"{median(ref, 'cpu') / median(ours, 'cpu'):.1f}x less |",
             f"| the steps alone, in process (imports excluded), median | {steps:.2f} s | "
             f"{statistics.median(flow):.2f} s | {steps / statistics.median(flow):.1f}x faster |",
             f"| peak RSS | {max(r['rss'] for r in ref):,.0f} MiB | {max(r['rss'] for r in ours):,.0f} MiB | "
             f"{max(r['rss'] for r in ours) / max(r['rss'] for r in ref):.2f}x |",
             f"| RMSE on the month | {ref[0]['json']['rmse']:.9f} | {ours[0]['json']['rmse']:.9f} | |",
             check, f"target >= 10x: {'met' if ratio >= 10 else 'MISSED'}"]
    if big:
        wall, rss = median(big, "wall"), max(r["rss"] for r in big)
        lines += [f"23,904,082-trip month (2018-12), python -m pipeline score, median of {len(big)}: {wall:.2f} s, "
                  f"peak RSS {rss:,.0f} MiB, CPU {median(big, 'cpu'):.2f} s ({median(big, 'cpu') / wall:.2f} cores); walls "
                  + ", ".join(f"{r['wall']:.2f}" for r in big),
                  f"targets <= 8 s and <= 800 MiB: {'met' if wall <= 8 and rss <= 800 else 'MISSED'}"]
    return lines + [f"load average after: {os.getloadavg()[0]:.2f}"]


def main() -> None:
    load_flows()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_150_000)
    parser.add_argument("--large", action="store_true", help="also score a 23,904,082-trip month")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the 23M-trip month")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fhv-scoring-bench-") as tmp:
        folder, home = Path(tmp) / "months", Path(tmp) / "home"
        card = prepare(folder, home, args.rows)
        results = pairs(folder, home, card, args.pairs)
        check = same_predictions(home)
        flow = in_process(folder, home, args.pairs)
        big = large(home, args.repeats) if args.large else None
        print("\n".join(report(results, flow, check, big, load)))


if __name__ == "__main__":
    main()
