"""The store's speed before and after a change, measured in one run: claims, due -> RUNNING, the 4-task
flow's overhead and the dashboard's reads, on the working tree and on an earlier commit.

    .venv/bin/python bench/before_after.py [--base COMMIT] [--rounds 2] [--quick]

Checks the earlier commit out into a temporary git worktree (sharing this ``.venv``), then runs the same
benchmarks (``scheduler_overhead.py``, ``runtime_overhead.py``, ``dashboard_pages.py``,
``postgres_history.py``) on both, alternating which goes first each round so that a machine that
warms up or gets busy penalises neither, and prints each figure's median over the rounds with the
ratio after/before (for a time, below 1 is faster; for claims a second, above 1 is faster).
The default base is the last commit before the SQL went through SQLAlchemy Core.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "c6962ed"  # the last commit whose PostgreSQL SQL was rewritten from SQLite's with regular expressions

# (label, unit, higher is better, script and arguments, pattern whose group 1 is the figure)
FIGURES = [
    ("SQLite claims a second (100,000-run history)", "claims/s", True, "scheduler",
     r"claim_due_run: ([\d,]+) claims/s"),
    ("SQLite scheduler step, nothing due", "ms", False, "scheduler", r"nothing due.*?: ([\d.]+) ms"),
    ("due -> RUNNING, tick 0.05 s (median)", "ms", False, "scheduler",
     r"tick 0\.05 s: due -> RUNNING\s+median\s+([\d.]+) ms"),
    ("PostgreSQL claims a second (1 worker)", "claims/s", True, "scheduler",
     r"1 worker process\(es\) racing on one queue: ([\d,]+) claims/s"),
    ("PostgreSQL claims a second (4 workers)", "claims/s", True, "scheduler",
     r"4 worker process\(es\) racing on one queue: ([\d,]+) claims/s"),
    ("flow of 4 trivial tasks (median)", "ms", False, "runtime", r"median ([\d.]+) ms"),
]
PAGE = re.compile(r"^(\w[\w ]*?)\s+(\d+)\s+(\d+)\s+(?:ok|SLOW)$", re.M)  # dashboard_pages: page, cold, warm
READ = re.compile(r"^\| (.+?) \| ([\d.]+) \| ([\d.]+) \|$", re.M)  # postgres_history: read, SQLite, PostgreSQL


def scripts(quick: bool) -> dict[str, list[str]]:
    return {
        "scheduler": ["bench/scheduler_overhead.py", "--runs", "6" if quick else "12",
                      "--history", "20000" if quick else "100000", "--pg-claims", "300" if quick else "1000"],
        "runtime": ["bench/runtime_overhead.py", "--runs", "200"],
        "pages": ["bench/dashboard_pages.py", "--runs", "2000" if quick else "10000", "--repeat", "3"],
        "reads": ["bench/postgres_history.py", "--runs", "2000" if quick else "10000", "--repeat", "5"],
    }


def run(tree: Path, command: list[str]) -> str:
    done = subprocess.run([sys.executable, *command], cwd=tree, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {tree}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def figures(outputs: dict[str, str]) -> dict[str, float]:
    """Every figure the benchmarks printed, by label."""
    found: dict[str, float] = {}
    for label, _, _, script, pattern in FIGURES:
        match = re.search(pattern, outputs[script])
        if match:
            found[label] = float(match.group(1).replace(",", ""))
    for page, cold, _ in PAGE.findall(outputs["pages"]):
        found[f"dashboard page {page.strip()}, cold"] = float(cold)
    for read, sqlite_ms, postgres_ms in READ.findall(outputs["reads"]):
        found[f"read {read} (SQLite)"] = float(sqlite_ms)
        found[f"read {read} (PostgreSQL)"] = float(postgres_ms)
    return found


def measure(tree: Path, quick: bool) -> dict[str, float]:
    return figures({name: run(tree, command) for name, command in scripts(quick).items()})


def report(before: list[dict[str, float]], after: list[dict[str, float]], base: str) -> None:
    print(f"\n| figure | before ({base}) | after (working tree) | after / before |\n|---|---:|---:|---:|")
    for label in after[0]:
        old = statistics.median(r[label] for r in before if label in r)
        new = statistics.median(r[label] for r in after if label in r)
        verdict = "" if old == 0 else f"{new / old:.2f}"
        print(f"| {label} | {old:,.2f} | {new:,.2f} | {verdict} |")
    print("\n(claims a second: higher is better; times: lower is better)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smaller histories, for a check that it runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fhv-before-") as folder:
        base_tree = Path(folder) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), args.base], cwd=ROOT, check=True)
        try:
            (base_tree / ".venv").symlink_to(ROOT / ".venv")
            before, after = [], []
            for round_ in range(args.rounds):
                order = [(base_tree, before), (ROOT, after)]
                for tree, results in order if round_ % 2 == 0 else reversed(order):
                    print(f"round {round_ + 1}: {'before' if tree == base_tree else 'after'} ...", flush=True)
                    results.append(measure(tree, args.quick))
            report(before, after, args.base)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
