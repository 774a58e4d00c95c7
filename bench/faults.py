"""Fault campaign: kill, race and starve the scheduler, then count duplicate and lost runs.

    .venv/bin/python bench/faults.py [--quick] [--trials N] [--only NAME[,NAME]] [--seed S] [--keep]

A benchmark, not a test: each scenario drives the real CLI (``python -m pipeline ...``) on a
temporary FHV_HOME with small synthetic months, injects its fault, then serves with one scheduler
until the backlog has drained and the dead have been swept, and reads the history (read-only). It
prints a table, writes it to ``bench/out/faults.md``, and exits 1 if any duplicate or lost run was
found (2 if the campaign itself broke).

* duplicate: a schedule slot (deployment, fingerprint, time) with more than one started run, or a
  backfill date with more than one started or more than one non-cancelled backfill run;
* lost: a run still PENDING/RUNNING with no live process 8 s into the final sweep; a run due
  5 s before the check and still SCHEDULED/LATE while its work queue had room for 3 s on end, or
  although later runs of its queue started (after the backlog had up to 45 s to drain); a run that ended without starting and without a reason; a slot that fell due
  while a scheduler served and never ran nor was skipped (CANCELLED with a reason) -- so a slot
  CRASHED or FAILED before it started is lost; a backfill date none of whose runs ran; (trickle)
  a run whose download attempt outlives its deadline by 2 s;
* seconds until a dead run is marked: from the kill -9 (or from when the restarted scheduler
  recorded its start, if later) until the run's row leaves RUNNING (CRASHED or requeued).

Scenarios (``--only``): kill-scheduler, kill-flow, two-schedulers, lock-deleted, two-backfills, broken,
trickle, swallowed-timeout, and where the history lives (``faults_storage.py``): history-replaced,
pid-namespace, db-outage. The fast deployments fire every 3 s into the work queue ``faults`` (at most 3 at once).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from faults_support import (FINAL, ORPHAN_AFTER, ROOT, Context, Proc, Result, Stage, TrickleServer,  # noqa: E402
                            describe, iso, moment, process_alive)
from faults_storage import db_outage, history_replaced, pid_namespace  # noqa: E402

OUT = ROOT / "bench" / "out" / "faults.md"
FAST = 3  # seconds between the slots of the fast deployments


# -- scenarios -------------------------------------------------------------------------------------------

def kill_scheduler(ctx: Context, trials: int) -> Result:
    """kill -9 of the scheduler at a random moment after its start, then a restart after a random pause."""
    stage = Stage(ctx, "kill-scheduler", "kill -9 of the scheduler", data_url="demo:100000")  # ~1 s runs
    stage.deploy("fast", FAST)
    hits = 0
    for _ in range(trials):
        proc = stage.lab.scheduler()
        stage.observe([proc], proc.spawned + stage.rng.uniform(0.3, 4.0 if ctx.quick else 6.0))
        proc.signal(signal.SIGKILL)
        killed = time.time()
        proc.wait(5)
        running = [r["id"] for r in stage.lab.runs("state = 'RUNNING'")]
        stage.watch.add(running, killed)
        hits += bool(running)
        stage.orphan_checks.append((proc.pid, killed + ORPHAN_AFTER))
        stage.end_window(proc, killed)
        stage.result.trials += 1
        stage.observe([], time.time() + stage.rng.uniform(0.0, 2.5))
    stage.result.notes.insert(0, f"{len(stage.windows)} of {trials} killed after they served, {hits} while runs "
                                 "were RUNNING")
    return stage.settle()


def kill_flow(ctx: Context, trials: int) -> Result:
    """kill -9 of a flow process in the middle of its run; the scheduler stays up."""
    stage = Stage(ctx, "kill-flow", "kill -9 of flow processes", data_url="demo:20000")
    stage.deploy("fast", FAST)
    proc, voided = stage.serve(), 0
    for _ in range(trials * 4):
        if stage.result.trials >= trials or not proc.running():
            break
        victim = _running_flow(stage, proc, time.time() + 15)
        if victim is None:
            stage.result.notes.append("no RUNNING flow of the scheduler within 15 s")
            break
        time.sleep(stage.rng.uniform(0.0, 0.15))
        _kill(victim["pid"])
        killed = time.time()
        if stage.lab.runs("id = ?", (victim["id"],))[0]["state"] != "RUNNING":
            voided += 1  # it ended before the signal landed
            continue
        stage.result.trials += 1
        stage.watch.add([victim["id"]], killed)
        stage.observe([proc], killed + 15, done=lambda: not stage.watch.open)
    if voided:
        stage.result.notes.append(f"{voided} kills landed after the run ended (not counted)")
    return stage.settle(proc)


def _running_flow(stage: Stage, proc: Proc, deadline: float) -> dict[str, Any] | None:
    """A RUNNING run whose live process descends from ``proc``."""
    while time.time() < deadline and proc.running():
        try:
            mine = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        except psutil.Error:  # the scheduler just died
            mine = set()
        for run in stage.lab.runs("state = 'RUNNING' AND pid IS NOT NULL"):
            if run["pid"] in mine and process_alive(run["pid"], moment(run["started_at"])):
                return run
        stage.observe([proc], time.time() + 0.02)
    return None


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def two_schedulers(ctx: Context, trials: int) -> Result:
    """Two schedulers launched at the same instant on one history: exactly one may serve."""
    stage = Stage(ctx, "two-schedulers", "two schedulers at once")
    stage.deploy("fast", FAST)
    outcomes: dict[str, int] = {}
    tally: list[list[int]] = []
    refusal = ""
    for trial in range(trials):
        at = time.time() + 2.5
        pair = [stage.lab.scheduler(at=at), stage.lab.scheduler(at=at)]
        stage.observe(pair, at + (4 if ctx.quick else 6))
        claims = _claims(stage, pair)
        served = [p for p in pair if p.alive_at is not None or claims[p.pid]]
        key = {1: "one served", 2: "BOTH served", 0: "NONE served"}[len(served)]
        outcomes[key] = outcomes.get(key, 0) + 1
        tally.append(sorted(claims.values(), reverse=True))
        if len(served) != 1:
            stage.result.details.append(f"note: trial {trial + 1}: {key}; runs claimed by pid {claims}; "
                                        + "; ".join(f"pid {p.pid}: {p.tail(2)}" for p in pair))
        refusal = refusal or next((_last_line(p.stderr()) for p in pair if p not in served), "")
        _late_launch(stage, pair)
        for proc in pair:
            stage.end_window(proc, time.time())
            proc.stop()
        stage.result.trials += 1
    stage.result.notes.insert(0, ", ".join(f"{k} in {v}" for k, v in outcomes.items())
                              + f"; runs claimed per trial (by each): {tally}; the other said \"{refusal[:90]}\"")
    return stage.settle()


def _claims(stage: Stage, procs: list[Proc]) -> dict[int, int]:
    """How many runs each scheduler claimed (``claimed_by`` is host:pid:suffix)."""
    return {p.pid: len(stage.lab.runs("claimed_by LIKE ?", (f"%:{p.pid}:%",))) for p in procs}


def _late_launch(stage: Stage, procs: list[Proc]) -> None:
    late = [p for p in procs if "after the common instant" in p.stderr()]
    if late:
        stage.result.notes.append(f"{len(late)} launches missed the common instant (machine busy)")


def lock_deleted(ctx: Context, trials: int) -> Result:
    """The lock file deleted under a serving scheduler, then a second scheduler started."""
    stage = Stage(ctx, "lock-deleted", "lock file deleted")
    stage.deploy("fast", FAST)
    outcomes: dict[str, int] = {}
    refusal = ""
    for trial in range(trials):
        first = stage.serve()
        stage.observe([first], time.time() + 1.0)
        stage.lab.lock.unlink(missing_ok=True)
        deleted = time.time()
        second = stage.lab.scheduler()
        stage.observe([first, second], deleted + (6 if ctx.quick else 8))
        claims = _claims(stage, [first, second])
        took_over = second.alive_at is not None or claims[second.pid]
        both = took_over and (first.exited_at is None or first.exited_at > (second.alive_at or time.time()))
        key = "BOTH SERVED at once" if both else "the first stepped down, the second took over" if took_over \
            else "second refused"
        outcomes[key] = outcomes.get(key, 0) + 1
        if took_over:
            stage.result.details.append(f"note: trial {trial + 1}: {key}: runs claimed by pid {claims}, first still "
                                        f"running: {first.running()}; second: {second.tail(2)}")
        else:
            refusal = refusal or _last_line(second.stderr())
        for proc in (first, second):
            stage.end_window(proc, time.time())
            proc.stop()
        stage.result.trials += 1
    stage.result.notes.insert(0, ", ".join(f"{k} in {v}" for k, v in outcomes.items())
                              + (f"; the second said \"{refusal[:90]}\"" if refusal else ""))
    return stage.settle()


def two_backfills(ctx: Context, trials: int) -> Result:
    """Two `backfill` commands of the same three months launched at the same instant."""
    stage = Stage(ctx, "two-backfills", "two concurrent backfills")
    proc, failures, enqueued = stage.serve(), [], 0
    for trial in range(trials):
        year, quarter = 2025 - trial // 4, trial % 4
        start = dt.date(year, 3 * quarter + 1, 1)
        end = (dt.date(year + (quarter == 3), (3 * quarter + 3) % 12 + 1, 1) - dt.timedelta(days=1))
        args = ["backfill", "--start", start.isoformat(), "--end", end.isoformat(), "--concurrency", "2", "--json"]
        at = time.time() + 2.0
        pair = [stage.lab.spawn("backfill", args, at=at), stage.lab.spawn("backfill", args, at=at)]
        stage.observe([proc], at + 40, done=lambda: not any(p.running() for p in pair))
        for p in pair:
            enqueued += len(_json(p.stdout()).get("runs", []))
            if p.popen.poll() != 0:
                failures.append(f"trial {trial + 1}: exit {p.popen.poll()}: {p.tail(1)}")
        _late_launch(stage, pair)
        _dates_enqueued(stage, start, end)
        stage.result.trials += 1
    stage.observe([proc], time.time() + 90, done=lambda: not stage.lab.runs(
        "trigger = 'backfill' AND state IN ('SCHEDULED', 'LATE', 'PENDING', 'RUNNING')"))
    stage.result.notes.insert(0, f"{enqueued} runs enqueued for {3 * trials} dates; "
                                 f"{len(failures)} commands exited non-zero")
    stage.result.details.extend(f"note: backfill {text}" for text in failures)
    return stage.settle(proc)


def _json(text: str) -> dict[str, Any]:
    try:
        return json.loads(text)
    except ValueError:
        return {}


def _dates_enqueued(stage: Stage, start: dt.date, end: dt.date) -> None:
    """Each 15th in the range must have a backfill run."""
    day = start.replace(day=15)
    while day <= end:
        if not stage.lab.runs("trigger = 'backfill' AND run_date = ?", (day.isoformat(),)):
            stage.result.lost += 1
            stage.result.details.append(f"lost: backfill date {day} was enqueued by neither command")
        day = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=15)


def broken_deployment(ctx: Context, trials: int) -> Result:
    """A deployment with an absurd interval and one whose data folder is deleted, beside a good one."""
    stage = Stage(ctx, "broken", "broken deployment beside a good one")
    folder = stage.lab.dir / "gone"
    folder.mkdir()
    huge = stage.deploy("aaa-huge", 10**11, checked=False)
    stage.deploy("aab-gone", FAST, checked=False, parameters={"data_url": str(folder)})
    stage.deploy("zzz-good", FAST)
    shutil.rmtree(folder)
    stage.result.notes.append(f"aaa-huge (every 10^11 s): deployment create exit {huge.returncode}"
                              + (f" \"{_last_line(huge.stderr)[:140]}\"" if huge.returncode else ""))
    for trial in range(trials):
        proc = stage.serve()
        stage.observe([proc], (proc.alive_at or time.time()) + (4 if ctx.quick else 6))
        proc.stop()
        stage.end_window(proc)
        stage.result.trials += 1
        stage.observe([], time.time() + stage.rng.uniform(0.5, 4.5))
    result = stage.settle()
    _broken_fates(stage)
    return result


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _broken_fates(stage: Stage) -> None:
    for name in ("aaa-huge", "aab-gone"):
        row = stage.lab.deployment(name)
        states: dict[str, int] = {}
        for run in stage.lab.runs("deployment_id = ? AND scheduled_time <= ?", (row and row["id"], iso(time.time()))):
            states[run["state"]] = states.get(run["state"], 0) + 1
        stage.result.notes.append(f"{name}: " + (", ".join(f"{v} {k}" for k, v in sorted(states.items())) or "no due runs"))
    errors = [r.get("last_error") for r in stage.lab.scheduler_rows() if r.get("last_error")]
    if errors:
        stage.result.details.append(f"note: the scheduler's last recorded error: {errors[-1][:300]}")


def trickle(ctx: Context, trials: int) -> Result:
    """Months served one byte a second: each download attempt must give up at its deadline."""
    server = TrickleServer().start()
    try:
        return _trickle(ctx, trials, server)
    finally:
        server.stop()


DEADLINE, SLACK = 3.0, 2.0


def _trickle(ctx: Context, trials: int, server: TrickleServer) -> Result:
    env = {"FHV_DOWNLOAD_DEADLINE": f"{DEADLINE:g}", "FHV_DOWNLOAD_TIMEOUT": "2"}
    stage = Stage(ctx, "trickle", "trickling server", data_url=server.url, env=env)
    stage.lab.cli("work-queue", "create", "default", "--limit", str(trials))
    proc = stage.serve()
    ids = [_json(stage.lab.cli("trigger", "--date", f"2021-{3 + i:02d}-15", "--json").stdout).get("id")
           for i in range(trials)]
    ids = [i for i in ids if i]
    # quick: the first attempt of each run; full: the whole run (4 attempts, 5 s apart, by the product's retry policy)
    bound = time.time() + (DEADLINE + SLACK + 5 if ctx.quick else 4 * (DEADLINE + SLACK) + 3 * 5 + 10)
    stage.observe([proc], bound, done=lambda: _trickle_done(stage, ids, server, ctx.quick))
    rows = stage.lab.runs(f"id IN ({', '.join('?' * len(ids))})", ids) if ids else []
    for run in rows:
        _trickle_verdict(stage, run, server, ctx.quick)
    stage.result.trials = len(rows)
    stage.result.seconds = [(a.ended or time.time()) - a.began for a in server.attempts]
    still = sum(1 for a in server.attempts if a.ended is None)
    for run in rows:
        stage.lab.cli("runs", "cancel", run["id"], timeout=20)
    stage.result.notes.insert(0, f"seconds = one download attempt (server-side), deadline {DEADLINE:g} s; "
                                 f"{len(server.attempts)} attempts ({still} still open when measured); runs: "
                                 + ", ".join(sorted(r["state"] for r in rows)))
    stage.observe([proc], time.time() + 2)
    proc.stop()
    return stage.result


def _attempts_of(run: dict[str, Any], server: TrickleServer) -> list:
    return [a for a in server.attempts if run["train_month"] in a.path or run["val_month"] in a.path]


def _trickle_done(stage: Stage, ids: list[str], server: TrickleServer, quick: bool) -> bool:
    rows = stage.lab.runs(f"id IN ({', '.join('?' * len(ids))})", ids) if ids else []
    if quick:
        return all(_attempts_of(r, server) and _attempts_of(r, server)[0].ended for r in rows)
    return all(r["state"] in FINAL + ("AWAITING_RETRY",) for r in rows)


def _trickle_verdict(stage: Stage, run: dict[str, Any], server: TrickleServer, quick: bool) -> None:
    attempts = _attempts_of(run, server)
    long = [a for a in attempts if (a.ended or time.time()) - a.began > DEADLINE + SLACK]
    unfinished = not quick and run["state"] not in FINAL + ("AWAITING_RETRY",)
    if long or unfinished or not attempts:
        stage.result.lost += 1
        spans = ", ".join(f"{(a.ended or time.time()) - a.began:.1f} s{'' if a.ended else ' (still open)'}"
                          f" ({a.sent} bytes)" for a in attempts)
        stage.result.details.append(f"lost (download hung or never attempted): attempts {spans or 'none reached the server'}; "
                                    f"{describe(run)}")


SWALLOWER = '''
import time
from prefect import flow, task


@task(timeout_seconds=30)
def inner():
    time.sleep(0.01)


@task(timeout_seconds={timeout})
def stubborn(nested):
    if nested:
        inner()
    for _ in range(400):  # 20 s, whatever it is told
        try:
            time.sleep(0.05)
        except:
            pass


@flow
def main():
    stubborn({nested})


main()
'''
TIMEOUT = 2.0


def swallowed_timeout(ctx: Context, trials: int) -> Result:
    """A Prefect 2 task with timeout_seconds=2 and a bare ``except:`` (every other trial with a nested task
    inside it) run as a script: it must end FAILED by its timeout and grace, not complete after 20 s."""
    stage = Stage(ctx, "swallowed-timeout", "swallowed task timeout")
    for trial in range(trials):
        path = stage.lab.dir / f"swallow-{trial}.py"
        path.write_text(SWALLOWER.format(timeout=TIMEOUT, nested=bool(trial % 2)))
        began = time.time()
        subprocess.run([sys.executable, "-m", "pipeline.prefect2", str(path)], cwd=stage.lab.dir, timeout=60,
                       env={**stage.lab.env, "PYTHONPATH": str(ctx.product)}, capture_output=True)
        stage.result.seconds.append(time.time() - began)
        stage.result.trials += 1
    for run in stage.lab.runs("1 = 1"):
        took = (moment(run["ended_at"]) or time.time()) - (moment(run["started_at"]) or time.time())
        if run["state"] != "FAILED" or took > 2 * TIMEOUT + SLACK:
            stage.result.lost += 1
            stage.result.details.append(f"lost (the timeout was swallowed): {took:.1f} s, {describe(run)}")
    stage.result.notes.insert(0, f"seconds = the script from start to exit, timeout {TIMEOUT:g} s (+ its grace)")
    return stage.result


# -- the campaign ----------------------------------------------------------------------------------------

SCENARIOS: dict[str, tuple[Callable[[Context, int], Result], int, int]] = {  # name: (scenario, trials, quick trials)
    "kill-scheduler": (kill_scheduler, 30, 3),
    "kill-flow": (kill_flow, 10, 2),
    "two-schedulers": (two_schedulers, 8, 1),
    "lock-deleted": (lock_deleted, 5, 1),
    "two-backfills": (two_backfills, 6, 1),
    "broken": (broken_deployment, 3, 1),
    "trickle": (trickle, 3, 1),
    "swallowed-timeout": (swallowed_timeout, 4, 2),
    "history-replaced": (history_replaced, 6, 2),
    "pid-namespace": (pid_namespace, 5, 1),
    "db-outage": (db_outage, 5, 2),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, help="trials of kill-scheduler (default 30; the others scale with it); "
                                                   "with --only, the trials of each scenario named")
    parser.add_argument("--only", help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    parser.add_argument("--quick", action="store_true", help="a few trials each: a smoke run under 2 minutes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary histories and logs")
    parser.add_argument("--product", type=Path, default=ROOT, help="the checkout to drive (default: this one)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    args.names = names
    args.seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    return args


def trials_for(name: str, args: argparse.Namespace) -> int:
    _, full, quick = SCENARIOS[name]
    default = quick if args.quick else full
    if args.trials is None:
        return default
    if args.only or name == "kill-scheduler":
        return max(1, args.trials)
    return max(1, round(default * args.trials / SCENARIOS["kill-scheduler"][1]))


def run_one(ctx: Context, name: str, trials: int, console: Console) -> Result:
    console.print(f"[bold]{name}[/]: {trials} trial(s)")
    began = time.time()
    try:
        result = SCENARIOS[name][0](ctx, trials)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - a broken scenario is reported, the others still run
        result = Result(name, notes=[f"CAMPAIGN ERROR: {type(error).__name__}: {error}"])
    finally:
        while ctx.labs:
            ctx.labs.pop().close()
    result.notes.append(f"{time.time() - began:.0f} s")
    return result


def table(results: list[Result]) -> Table:
    grid = Table(title="Fault campaign", show_lines=True)
    for column in ("scenario", "trials", "duplicates", "lost runs", "corrupted histories",
                   "s until a dead run is marked\n(median / max)", "notes"):
        grid.add_column(column, overflow="fold")
    for r in results:
        grid.add_row(r.name, str(r.trials), _flag(r.duplicates), _flag(r.lost), _flag(r.corrupted), r.seconds_text(),
                     escape("; ".join(r.notes)))
    return grid


def _flag(count: int) -> str:
    return f"[bold red]{count}[/]" if count else "0"


def markdown(results: list[Result], header: str) -> str:
    lines = ["# Fault campaign", "", header, "",
             "| scenario | trials | duplicates | lost runs | corrupted histories | seconds until a dead run is marked "
             "(median / max) | notes |",
             "|---|---:|---:|---:|---:|---|---|"]
    lines += [f"| {r.name} | {r.trials} | {r.duplicates} | {r.lost} | {r.corrupted} | {r.seconds_text()} | "
              f"{'; '.join(r.notes).replace('|', '/')} |" for r in results]
    details = [f"- **{r.name}**: {d}" for r in results for d in r.details]
    return "\n".join(lines + (["", "## Details", ""] + details if details else []) + [""])


def product_label(product: Path) -> str:
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(product), *args], capture_output=True, text=True)
    commit = git("rev-parse", "--short", "HEAD").stdout.strip()
    if not commit:
        return f"{product} (not a git checkout)"
    dirty = git("diff", "--quiet", "HEAD", "--", "pipeline").returncode == 1
    return f"{commit}{' + uncommitted changes in pipeline/' if dirty else ''}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    ctx = Context(args.product.resolve(), random.Random(args.seed), args.quick, args.keep)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    began, results = time.time(), []
    console.print(f"Fault campaign on {ctx.product} ({product_label(ctx.product)}), seed {args.seed}")
    try:
        for name in args.names:
            results.append(run_one(ctx, name, trials_for(name, args), console))
    except KeyboardInterrupt:
        console.print("Interrupted: the table shows the scenarios that finished.")
    header = (f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, product {product_label(ctx.product)}, "
              f"seed {args.seed}, {'quick' if args.quick else 'full'} run, {time.time() - began:.0f} s. "
              f"Command: `.venv/bin/python bench/faults.py {' '.join(argv if argv is not None else sys.argv[1:])}`")
    console.print(table(results))
    for r in results:
        for line in r.details:
            console.print(f"[bold]{r.name}[/]: {escape(line)}", highlight=False, soft_wrap=True)
    if results:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(markdown(results, header))
        console.print(f"Written to {OUT}.")
    if any("CAMPAIGN ERROR" in n for r in results for n in r.notes):
        return 2
    return 1 if any(r.duplicates or r.lost or r.corrupted for r in results) else 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
