"""Fault scenarios about where the history lives, run by ``bench/faults.py``: its file replaced under a running
flow (``history-replaced``), a second scheduler in a pid namespace of its own on the same host name
(``pid-namespace``), and its PostgreSQL server stopped for 3-7 s under a scheduler and a worker
(``db-outage``). A corrupted history is one whose ``PRAGMA integrity_check`` is not ``ok``, or that holds a run,
a scheduler row or the id of the history it replaced.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from faults_support import ROOT, SCHEDULER_FLAGS, Context, Lab, Proc, Result, Stage, describe, iso, moment

sys.path.insert(0, str(ROOT))
from tests.conftest import wait_for  # noqa: E402
from tests.pgserver import PgServer, postgres_bin  # noqa: E402

FAST = 3  # seconds between the slots of the fast deployments (as in faults.py)
WORKER_FLAGS = ("--tick", "0.2", "--heartbeat", "0.5", "--stale-after", "3", "--grace", "2")


def _until(check: Callable[[], Any], seconds: float) -> Any:
    """``check()`` once it gives something true, or None after ``seconds`` (the tests' ``wait_for``)."""
    try:
        return wait_for(check, "the scenario's condition", timeout=seconds)
    except AssertionError:
        return None


# -- the history file replaced under a running flow --------------------------------------------------

def history_replaced(ctx: Context, trials: int) -> Result:
    """``mv`` of another history over history.db (odd trials: ``cp`` over it) while a flow runs: the scheduler
    must stop with its sentence, and the new file must stay sound and hold nothing of the old history."""
    result, said = Result("history replaced under a running flow"), 0
    for trial in range(trials):
        stage = Stage(ctx, "history-replaced", result.name, data_url="demo:100000")
        stage.result = result
        stage.deploy("fast", FAST, checked=False)
        other = _another_history(stage.lab)
        proc = stage.serve()
        if not _until(lambda: stage.lab.runs("state = 'RUNNING'"), 20):
            result.details.append(f"note: trial {trial + 1}: no flow ran within 20 s: {proc.tail()}")
        _replace(stage.lab.db, other, "cp" if trial % 2 else "mv")
        replaced = time.time()
        code = proc.wait(30)
        result.seconds.append(time.time() - replaced)
        said += code == 2 and "was replaced by another file" in proc.stderr()
        if code != 2:
            result.details.append(f"note: trial {trial + 1}: exit code {code}: {proc.tail()}")
        _judge_replaced(result, stage.lab.db, other, trial)
        result.trials += 1
    result.notes.insert(0, f"stopped with its sentence in {said} of {trials} (mv, cp alternately); seconds = from "
                           "the replacement to the scheduler's exit")
    return result


def _another_history(lab: Lab) -> Path:
    other = lab.dir / "other.db"
    subprocess.run([sys.executable, "-c", "import sys; from pipeline.store import Store; Store(sys.argv[1]).close()",
                    str(other)], cwd=lab.product, check=True, capture_output=True)
    return other


def _replace(db: Path, other: Path, how: str) -> None:
    if how == "cp":
        shutil.copyfile(other, db)
        return
    staged = db.with_name("incoming.db")
    shutil.copyfile(other, staged)
    os.replace(staged, db)


def _judge_replaced(result: Result, db: Path, other: Path, trial: int) -> None:
    found, expected = _look(db), _look(other)
    if found != expected:
        result.corrupted += 1
        result.details.append(f"corrupted: trial {trial + 1}: the new history reads {found}, its copy {expected}")


def _look(path: Path) -> tuple[str, int, int, str]:
    """Its integrity check, runs, scheduler rows and id, as a new connection of a new process sees them."""
    script = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); q = lambda s: c.execute(s).fetchone()[0]\n"
              "try: print(q('PRAGMA integrity_check'), q('SELECT COUNT(*) FROM flow_runs'), "
              "q('SELECT COUNT(*) FROM schedulers'), q('SELECT id FROM history_identity'))\n"
              "except sqlite3.Error as e: print(f'error:{e}'.replace(' ', '_'), -1, -1, '-')")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    words = (done.stdout.split() + ["-", "-1", "-1", "-"])[:4]
    return words[0], int(words[1]), int(words[2]), words[3]


# -- a second scheduler in another pid namespace -----------------------------------------------------

def pid_namespace(ctx: Context, trials: int) -> Result:
    """A flow running under scheduler A; its lock file deleted; B started with ``unshare --pid --fork
    --mount-proc`` (containers of one host name sharing a volume): B must be refused, A's runs left alone."""
    stage = Stage(ctx, "pid-namespace", "lease across pid namespaces", data_url="demo:100000")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        stage.result.notes.append("skipped: needs root and unshare")
        return stage.result
    stage.deploy("fast", FAST)
    refused, sentence = 0, ""
    for trial in range(trials):
        first = stage.serve()
        _until(lambda: stage.lab.runs("state = 'RUNNING'"), 20)
        stage.lab.lock.unlink(missing_ok=True)
        second = _unshared(stage.lab, "scheduler-ns", ["scheduler", *SCHEDULER_FLAGS])
        stage.observe([first], time.time() + (6 if ctx.quick else 8))  # notes runs marked CRASHED while alive
        if second.wait(0.1) == 2 and "already runs" in second.stderr():
            refused, sentence = refused + 1, sentence or second.stderr().strip().splitlines()[-1]
        else:
            stage.result.details.append(f"note: trial {trial + 1}: the second scheduler was not refused: "
                                        f"{second.tail(2)}")
        for proc in (first, second):
            stage.end_window(proc, time.time())
            proc.stop()
        stage.result.trials += 1
    stage.result.notes.insert(0, f"refused in {refused} of {trials}, {len(stage.false_crashes)} runs marked CRASHED "
                                 f"while alive" + (f"; it said \"{sentence[:80]}\"" if sentence else ""))
    return stage.settle()


def _unshared(lab: Lab, name: str, args: list[str]) -> Proc:
    """``python -m pipeline ARGS`` in a pid namespace of its own (same host name, same FHV_HOME)."""
    out, err = lab.dir / f"{name}.out", lab.dir / f"{name}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        popen = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", sys.executable, "-m", "pipeline",
                                  *args], cwd=lab.product, env=lab.env, stdout=stdout, stderr=stderr,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    proc = Proc(name, popen, out, err, time.time())
    lab.procs.append(proc)
    return proc


# -- the PostgreSQL server away --------------------------------------------------------------------

def db_outage(ctx: Context, trials: int) -> Result:
    """The history on PostgreSQL; a scheduler and a worker serve it; the server is stopped for 3-7 s, then
    started again, ``trials`` times: both must live on, say it once each way, and run the slots that fell due."""
    result = Result("database outage (PostgreSQL)")
    if postgres_bin() is None:
        result.notes.append("skipped: PostgreSQL is not installed")
        return result
    server = PgServer(postgres_bin()).start()
    try:
        _outages(ctx, trials, server, result)
    finally:
        server.stop()
    return result


def _outages(ctx: Context, trials: int, server: Any, result: Result) -> None:
    url = server.fresh_database()
    lab = Lab("db-outage", ctx.product, "demo:2000", {"FHV_DATABASE_URL": url}, keep=ctx.keep)
    ctx.labs.append(lab)
    lab.deploy("fast", FAST, catchup="latest")
    procs = [lab.spawn("scheduler", ["scheduler", *SCHEDULER_FLAGS]), lab.spawn("worker", ["worker", *WORKER_FLAGS])]
    _until(lambda: _pg(url, "SELECT 1 FROM flow_runs WHERE state = 'COMPLETED'"), 40)
    windows = []
    for _ in range(trials):
        server.pause()
        down = time.time()
        time.sleep(ctx.rng.uniform(3, 7))
        server.resume()
        up = time.time()
        windows.append((down, up))
        started = _until(lambda: _pg(url, "SELECT started_at FROM flow_runs WHERE started_at > %s", (iso(up),)), 30)
        result.seconds.append(time.time() - up if started else 30.0)
        time.sleep(3)
        result.trials += 1
    _until(lambda: not _pg(url, "SELECT 1 FROM flow_runs WHERE scheduled_time < %s AND state IN "
                               "('SCHEDULED', 'LATE', 'PENDING', 'RUNNING')", (iso(windows[-1][1]),)), 20)
    _judge_outages(result, url, windows, procs, trials)
    for proc in procs:
        proc.stop()


def _judge_outages(result: Result, url: str, windows: list[tuple[float, float]], procs: list[Proc],
                   trials: int) -> None:
    runs = _pg(url, "SELECT * FROM flow_runs WHERE trigger = 'schedule'")
    slots = [r for r in runs if any(a < moment(r["scheduled_time"]) < b for a, b in windows)]
    for run in slots:
        if run["state"] != "COMPLETED" and not (run["state"] == "CRASHED" and run["started_at"]):
            result.lost += 1
            result.details.append(f"lost: a slot that fell due during an outage: {describe(run)}")
    result.duplicates += len(_pg(url, "SELECT scheduled_time FROM flow_runs WHERE started_at IS NOT NULL AND "
                                      "trigger = 'schedule' GROUP BY deployment_id, scheduled_time HAVING COUNT(*) > 1"))
    texts = [" ".join(proc.stderr().split()) for proc in procs]
    alive = sum(proc.running() for proc in procs)
    away = [text.count("keeps running and tries again") for text in texts]
    back = [text.count("can be reached again") for text in texts]
    result.notes.insert(0, f"{alive} of 2 (scheduler, worker) alive after {trials} outages; lines 'away' {away}, "
                           f"'back' {back}; {sum(t.count('Traceback') for t in texts)} tracebacks; {len(slots)} slots "
                           f"fell due while away, {sum(r['state'] == 'COMPLETED' for r in slots)} completed; "
                           "seconds = from the restart to the next run started")


def _pg(url: str, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    try:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=3) as conn:
            return conn.execute(sql, params).fetchall()
    except psycopg.OperationalError:
        return []

