"""The harness of the fault campaign (``bench/faults.py``): temporary histories, CLI processes, read-only
checks, a trickling HTTP server, and ``Stage``: one scenario's history, its final sweep and its counts.

The product is used only through its public surface: ``python -m pipeline ...`` subprocesses with
``FHV_HOME`` in a temporary folder, deployment files, and the SQLite history read with ``mode=ro``.
Every process is started in its own session, so its whole tree (scheduler, forkserver, flows) is one
process group that ``Lab.close`` kills; nothing else on the machine is ever signalled.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import random
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

import psutil

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
WAITING = ("SCHEDULED", "LATE", "AWAITING_RETRY")
ACTIVE = ("PENDING", "RUNNING")
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
SCHEDULER_FLAGS = ("--tick", "0.2", "--heartbeat", "0.5", "--stale-after", "3", "--late-after", "1",
                   "--materialise-every", "1", "--cancel-grace", "2", "--grace", "2")
ANCHOR = dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # interval deployments count from here

# Imports first, then waits for the instant in argv[1], then runs ``python -m pipeline argv[2:]``:
# two commands launched this way start their real work within a millisecond of each other.
LAUNCH = r"""
import importlib, runpy, sys, time
for name in ("pipeline.cli", "pipeline.cli.scheduling", "pipeline.orchestration.scheduler",
             "pipeline.orchestration.enqueue", "pipeline.store"):
    try:
        importlib.import_module(name)
    except Exception:
        pass
at = float(sys.argv[1])
sys.argv = ["python -m pipeline", *sys.argv[2:]]
if time.time() > at:
    print(f"faults: ready {time.time() - at:.3f} s after the common instant", file=sys.stderr, flush=True)
time.sleep(max(0.0, at - time.time()))
runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
"""

DEPLOYMENT = """import datetime as dt
from pipeline import DeploymentSpec, IntervalSchedule
spec = DeploymentSpec(name={name!r}, schedule=IntervalSchedule({seconds}, dt.datetime(2026, 1, 1), "UTC"),
                      parameters={parameters!r}, work_queue={queue!r}, catchup={catchup!r})
"""


# -- time ----------------------------------------------------------------------------------------

def moment(text: str | None) -> float | None:
    """An ISO time from the history as epoch seconds."""
    if not text:
        return None
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def iso(epoch: float) -> str:
    """Epoch seconds as the history writes times (comparable as text)."""
    return dt.datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def clock(epoch: float | None) -> str:
    """HH:MM:SS.mmm UTC, for descriptions."""
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S.%f")[:-3]


def slots_between(start: float, end: float, seconds: float, after: float) -> list[float]:
    """Fire times of an interval schedule anchored at ANCHOR in [start, end], later than ``after``."""
    first = max(start, after + 1e-6)
    k = int((first - ANCHOR) // seconds)
    times = []
    while ANCHOR + k * seconds <= end:
        t = ANCHOR + k * seconds
        if t >= first:
            times.append(round(t, 3))
        k += 1
    return times


# -- processes -----------------------------------------------------------------------------------

@dataclass
class Proc:
    """A process started by the campaign, leader of its own process group."""

    name: str
    popen: subprocess.Popen
    out: Path
    err: Path
    spawned: float
    alive_at: float | None = None  # when the history first showed it as the scheduler
    stopped_at: float | None = None  # when the campaign signalled it
    exited_at: float | None = None  # when the campaign first saw it gone

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        if self.popen.poll() is None:
            return True
        self.exited_at = self.exited_at or time.time()
        return False

    def signal(self, signum: int) -> None:
        if self.running():
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass
        if self.stopped_at is None:
            self.stopped_at = time.time()

    def kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM, then SIGKILL to the whole group after ``timeout``."""
        self.signal(signal.SIGTERM)
        if self.wait(timeout) is None:
            self.kill_group()
            self.wait(5)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def tail(self, lines: int = 3) -> str:
        text = [line.strip() for line in self.stderr().splitlines() if line.strip()]
        return " | ".join(text[-lines:])


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    pids = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                pids.append(pid)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return pids


def process_alive(pid: int | None, started_at: float | None) -> bool:
    """True if ``pid`` runs, is no zombie and is not a newer process that reused the number."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        born = process.create_time()
    except psutil.Error:
        return False
    return started_at is None or born <= started_at + 2


def claimer_pid(run: dict[str, Any]) -> int | None:
    """The scheduler pid in ``claimed_by`` (host:pid:tag:pid-namespace)."""
    parts = str(run.get("claimed_by") or "").split(":")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None


# -- a temporary history and the CLI on it ---------------------------------------------------------

class Lab:
    """One temporary FHV_HOME, the processes started on it, and read-only queries of its history."""

    def __init__(self, name: str, product: Path, data_url: str, env: dict[str, str] | None = None,
                 keep: bool = False):
        self.name, self.product, self.keep = name, product, keep
        self.dir = Path(tempfile.mkdtemp(prefix=f"fhv-faults-{name}-"))
        self.home = self.dir / "home"
        base = {k: v for k, v in os.environ.items() if not k.startswith("FHV_")}
        self.env = {**base, "FHV_HOME": str(self.home), "FHV_DATA_URL": data_url, "PYTHONUNBUFFERED": "1",
                    "COLUMNS": "200", **(env or {})}
        self.procs: list[Proc] = []
        self._ids = itertools.count(1)

    @property
    def db(self) -> Path:
        return self.home / "history.db"

    @property
    def lock(self) -> Path:
        return self.home / "scheduler.lock"

    def spawn(self, name: str, args: Iterable[str], *, at: float | None = None) -> Proc:
        """Start ``python -m pipeline ARGS`` in its own session (at the instant ``at``, when given)."""
        index = next(self._ids)
        out, err = self.dir / f"{index:03d}-{name}.out", self.dir / f"{index:03d}-{name}.err"
        head = [sys.executable, "-m", "pipeline"] if at is None else [sys.executable, "-c", LAUNCH, f"{at:.6f}"]
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            popen = subprocess.Popen([*head, *args], cwd=self.product, env=self.env, stdout=stdout, stderr=stderr,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        proc = Proc(name, popen, out, err, time.time())
        self.procs.append(proc)
        return proc

    def scheduler(self, *, at: float | None = None) -> Proc:
        return self.spawn("scheduler", ["scheduler", *SCHEDULER_FLAGS], at=at)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run one CLI command to its end (its group is killed after ``timeout``)."""
        proc = self.spawn(args[0], args)
        if proc.wait(timeout) is None:
            proc.kill_group()
            proc.wait(5)
        return subprocess.CompletedProcess(args, proc.popen.returncode, proc.stdout(), proc.stderr())

    def deploy(self, name: str, seconds: float, *, parameters: dict | None = None, queue: str = "faults",
               catchup: str = "all", source: str | None = None) -> subprocess.CompletedProcess:
        path = self.dir / f"deploy-{name}.py"
        path.write_text(source or DEPLOYMENT.format(name=name, seconds=seconds, parameters=parameters or {},
                                                    queue=queue, catchup=catchup))
        return self.cli("deployment", "create", str(path))

    # -- reading the history ------------------------------------------------------------------------
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        if not self.db.exists():
            return []
        for attempt in range(20):
            try:
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
                try:
                    conn.row_factory = sqlite3.Row
                    return [dict(row) for row in conn.execute(sql, tuple(params))]
                finally:
                    conn.close()
            except sqlite3.OperationalError as error:
                if "no such" in str(error) or attempt == 19:
                    raise
                time.sleep(0.05)
        return []

    def runs(self, where: str = "1", params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Runs read raw, with their flow's fields (``flow_runs.fields``) flattened in as the store returns them."""
        rows = self.query(f"SELECT * FROM flow_runs WHERE {where}", params)
        return [{**json.loads(row.get("fields") or "{}"), **row} for row in rows]

    def deployment(self, name: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM deployments WHERE name = ?", (name,))
        return rows[0] if rows else None

    def scheduler_rows(self) -> list[dict[str, Any]]:
        try:
            return self.query("SELECT * FROM schedulers")
        except sqlite3.OperationalError:
            return []

    def serving(self, proc: Proc) -> bool:
        """True once the history names ``proc`` as its scheduler (or its log says it started)."""
        if proc.alive_at is None and proc.running():
            rows = self.scheduler_rows()
            named = [row for row in rows if row.get("pid") == proc.pid]
            if named:
                proc.alive_at = moment(named[0].get("started_at")) or time.time()
            elif not rows and "started on" in proc.stderr():
                proc.alive_at = time.time()
        return proc.alive_at is not None

    def wait_serving(self, proc: Proc, timeout: float = 20.0) -> float | None:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.running() and not self.serving(proc):
            time.sleep(0.05)
        return proc.alive_at

    def queues(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in self.query("SELECT * FROM work_queues")}

    def close(self) -> None:
        for proc in self.procs:
            proc.kill_group()
        for proc in self.procs:
            proc.wait(5)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- checks ------------------------------------------------------------------------------------------

def duplicate_slots(runs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Schedule slots (deployment, fingerprint, time) with more than one run that started."""
    groups: dict[tuple, list] = defaultdict(list)
    for run in runs:
        if run.get("schedule_fingerprint") and run.get("started_at"):
            groups[(run["deployment_id"], run["schedule_fingerprint"], moment(run["scheduled_time"]))].append(run)
    return [group for group in groups.values() if len(group) > 1]


def duplicate_dates(runs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Backfill dates with more than one started, or more than one non-cancelled, backfill run."""
    groups: dict[tuple, list] = defaultdict(list)
    for run in runs:
        if run.get("trigger") == "backfill":
            groups[(run["deployment_id"], run["run_date"])].append(run)
    return [group for group in groups.values()
            if sum(1 for r in group if r.get("started_at")) > 1 or sum(1 for r in group if r["state"] != "CANCELLED") > 1]


def dead_active(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PENDING or RUNNING runs with no live process."""
    return [r for r in runs if r["state"] in ACTIVE and not process_alive(r.get("pid"), moment(r.get("started_at")))]


def stuck_waiting(runs: list[dict[str, Any]], queues: dict[str, dict[str, Any]], due_by: float) -> list[dict]:
    """Waiting runs due by ``due_by`` (not awaiting data) in a work queue that is neither paused nor full."""
    running: dict[str, int] = defaultdict(int)
    for run in runs:
        if run["state"] in ACTIVE:
            running[run.get("work_queue")] += 1
    stuck = []
    for run in runs:
        due = moment(run.get("next_attempt_at") or run.get("scheduled_time"))
        if run["state"] not in ("SCHEDULED", "LATE") or due is None or due > due_by:
            continue
        queue = queues.get(run.get("work_queue"))
        limit = queue and queue.get("concurrency_limit")
        if queue and not queue.get("paused") and (limit is None or running[queue["name"]] < limit):
            stuck.append(run)
    return stuck


def passed_over(runs: list[dict[str, Any]], due_by: float) -> list[dict[str, Any]]:
    """Waiting runs due by ``due_by`` although a later run of their work queue started after they fell due."""
    starts: dict[str, list[tuple[float, float]]] = defaultdict(list)  # queue -> (due, started) of started runs
    for run in runs:
        if run.get("started_at") and run.get("scheduled_time"):
            starts[run.get("work_queue")].append((moment(run["scheduled_time"]), moment(run["started_at"])))
    held = []
    for run in runs:
        due = moment(run.get("next_attempt_at") or run.get("scheduled_time"))
        if run["state"] in ("SCHEDULED", "LATE") and due is not None and due <= due_by and any(
                other_due > due and due + 1 < started <= due_by for other_due, started in starts[run.get("work_queue")]):
            held.append(run)
    return held


def never_ran_silently(run: dict[str, Any]) -> bool:
    """A run that ended without starting and without a word saying why."""
    return run["state"] in FINAL and not run.get("started_at") and not (run.get("state_message") or run.get("error"))


def skipped(run: dict[str, Any]) -> bool:
    """CANCELLED before it started, with a sentence saying why (catch-up, lateness, pause)."""
    return run["state"] == "CANCELLED" and bool(run.get("state_message") or run.get("error"))


def slot_fate(run: dict[str, Any] | None, stuck: set[str]) -> str:
    """ran, skipped, in flight, queued (its queue is full), or LOST (no run, ended unstarted, stuck waiting)."""
    if run is None:
        return "LOST: no run"
    if run.get("started_at"):
        return "ran"
    if skipped(run):
        return "skipped"
    if run["state"] in ACTIVE:
        return "in flight"
    if run["state"] in WAITING and run["id"] not in stuck:
        return "queued"
    return f"LOST: {run['state']} before start"


def backfill_dates(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    dates: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        if run.get("trigger") == "backfill":
            dates[f"{run['run_date']} (deployment {run['deployment_id']})"].append(run)
    return dates


def command_of(pid: int) -> str:
    """What a process is: the forkserver, a flow forked from it, the resource tracker, or its command."""
    try:
        process = psutil.Process(pid)
        command, parent = " ".join(process.cmdline()), process.parent()
        parent_command = " ".join(parent.cmdline()) if parent else ""
    except psutil.Error:
        return "gone"
    if "resource_tracker" in command:
        return "multiprocessing resource tracker"
    if "forkserver" in command:
        return "a flow process forked by the forkserver" if "forkserver" in parent_command else "the forkserver"
    return command[-80:]


def describe(run: dict[str, Any]) -> str:
    """One run row in a line: id, state, slot, start, end, pid, claimer, message."""
    text = (run.get("state_message") or run.get("error") or run.get("late_reason") or "").replace("\n", " ")
    return (f"run {run['id'][:8]} ({run.get('trigger')}, date {run.get('run_date')}) {run['state']}: "
            f"slot {clock(moment(run.get('scheduled_time')))}, started {clock(moment(run.get('started_at')))}, "
            f"ended {clock(moment(run.get('ended_at')))}, pid {run.get('pid') or '-'}, "
            f"claimed by {run.get('claimed_by') or '-'}" + (f"; \"{text[:160]}\"" if text else ""))


# -- a server that sends a month one byte a second -------------------------------------------------------

@dataclass
class Attempt:
    path: str
    began: float
    ended: float | None = None
    sent: int = 0
    why: str = ""


@dataclass
class TrickleServer:
    """HTTP on 127.0.0.1: 200 with a 10 MB Content-Length, then one byte every ``every`` seconds."""

    every: float = 1.0
    size: int = 10_000_000
    attempts: list[Attempt] = field(default_factory=list)

    def start(self) -> "TrickleServer":
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="trickle", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fhv_tripdata_{{month}}.parquet"

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                attempt = Attempt(self.path, time.time())
                outer.attempts.append(attempt)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(outer.size))
                    self.end_headers()
                    self.wfile.flush()
                    attempt.why = outer._trickle(self.connection, self.wfile, attempt)
                except OSError as error:
                    attempt.why = f"client gone ({type(error).__name__})"
                finally:
                    attempt.ended = time.time()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def _trickle(self, conn: socket.socket, out: Any, attempt: Attempt) -> str:
        """One byte every ``every`` s until the client closes (seen at once through select) or we stop."""
        while not self.stopping.is_set() and attempt.sent < self.size:
            out.write(b"P")
            out.flush()
            attempt.sent += 1
            readable, _, _ = select.select([conn], [], [], self.every)
            if readable and not conn.recv(1, socket.MSG_PEEK):
                return "client closed"
        return "server stopped"


# -- a scenario's stage: its history, the final sweep and the counts -----------------------------------------

QUEUE_LIMIT = 3  # runs of the work queue ``faults`` at once (2 cores)
ALLOWANCE = 5.0  # a run due this long before the check, with a scheduler serving, should have been claimed
STUCK_FOR = 8.0  # a PENDING/RUNNING run without a process this long into the final sweep is lost
ORPHAN_AFTER = 5.0  # a process of a killed scheduler's group still alive this long after is an orphan
SETTLE, SETTLE_QUICK = 7.0, 4.0  # the final scheduler serves this long before the check (stale-after 3 s)
DRAIN, DRAIN_QUICK, NO_PROGRESS = 45.0, 20.0, 12.0  # the backlog drains until then, or until nothing moves (quick: half)
ROOM_FOR = 3.0  # a due run still waiting while its queue had room this long (sampled every 0.25 s) is lost


class CampaignError(Exception):
    """The campaign itself could not set a scenario up (not a finding about the product)."""


@dataclass
class Result:
    name: str
    trials: int = 0
    duplicates: int = 0
    lost: int = 0
    corrupted: int = 0  # histories whose integrity check failed or that mixed in another history's rows
    seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def seconds_text(self) -> str:
        if not self.seconds:
            return "-"
        return f"{statistics.median(self.seconds):.2f} / {max(self.seconds):.2f} (n={len(self.seconds)})"


@dataclass
class Context:
    product: Path
    rng: random.Random
    quick: bool
    keep: bool
    labs: list[Lab] = field(default_factory=list)


class Watch:
    """Runs that were RUNNING when their process was killed, until their row leaves RUNNING."""

    def __init__(self) -> None:
        self.open: dict[str, float] = {}
        self.by_itself: list[str] = []

    def add(self, run_ids: list[str], killed: float) -> None:
        for run_id in run_ids:
            self.open.setdefault(run_id, killed)

    def poll(self, lab: Lab, result: Result, serving_since: float | None) -> None:
        if not self.open:
            return
        for row in lab.runs(f"id IN ({', '.join('?' * len(self.open))})", list(self.open)):
            if row["state"] != "RUNNING":
                self._left(row, self.open.pop(row["id"]), result, serving_since)

    def _left(self, row: dict[str, Any], killed: float, result: Result, serving_since: float | None) -> None:
        ended = moment(row.get("ended_at"))
        left = ended if row["state"] in FINAL and ended and ended >= killed else time.time()
        if row["state"] in ("COMPLETED", "FAILED", "AWAITING_RETRY"):  # recorded by the flow process itself
            self.by_itself.append(describe(row))
            return
        result.seconds.append(max(0.0, left - max(killed, serving_since or killed)))


class Stage:
    """One scenario: its history, result, watched runs, and the windows in which a scheduler served."""

    def __init__(self, ctx: Context, slug: str, label: str, *, data_url: str = "demo:2000",
                 env: dict[str, str] | None = None):
        self.ctx, self.rng = ctx, ctx.rng
        self.lab = Lab(slug, ctx.product, data_url, env, keep=ctx.keep)
        ctx.labs.append(self.lab)
        self.result = Result(label)
        self.watch = Watch()
        self.windows: list[tuple[float, float]] = []
        self.slot_checks: list[tuple[str, float]] = []
        self.orphan_checks: list[tuple[int, float]] = []
        self.orphans: list[tuple[int, str]] = []
        self.crashed_seen: set[str] = set()
        self.false_crashes: list[str] = []
        self._next_crash_check = 0.0

    # -- set-up ---------------------------------------------------------------------------------
    def deploy(self, name: str, seconds: float, *, checked: bool = True, **options: Any) -> subprocess.CompletedProcess:
        """``deployment create`` of an interval deployment in the queue ``faults``; ``checked``: its slots are audited."""
        if not self.lab.queues().get("faults"):
            self.lab.cli("work-queue", "create", "faults", "--limit", str(QUEUE_LIMIT))
        done = self.lab.deploy(name, seconds, **options)
        if checked and done.returncode != 0:
            raise CampaignError(f"deployment create {name} failed: {done.stderr.strip()[-300:]}")
        if checked:
            self.slot_checks.append((name, seconds))
        return done

    def serve(self) -> Proc:
        proc = self.lab.scheduler()
        if self.lab.wait_serving(proc, 30) is None:
            self.result.notes.append(f"a scheduler did not serve within 30 s: {proc.tail()}")
        return proc

    def end_window(self, proc: Proc, end: float | None = None) -> None:
        if proc.alive_at is not None:
            self.windows.append((proc.alive_at, end or proc.stopped_at or time.time()))

    # -- watching -------------------------------------------------------------------------------
    def observe(self, procs: list[Proc], until: float, done: Callable[[], bool] = lambda: False) -> None:
        """Poll the history every 50 ms until ``until`` (or ``done()``)."""
        while time.time() < until and not done():
            serving = [p.alive_at for p in procs if p.running() and self.lab.serving(p)]
            self.watch.poll(self.lab, self.result, max(serving) if serving else None)
            self._check_orphans()
            self._check_false_crashes(procs)
            time.sleep(0.05)

    def _check_orphans(self) -> None:
        """Processes of a killed scheduler's group still alive ORPHAN_AFTER seconds later (flows, forkserver)."""
        for pgid, at in [c for c in self.orphan_checks if c[1] <= time.time()]:
            self.orphan_checks.remove((pgid, at))
            flows = {r["pid"]: r for r in self.lab.runs("pid IS NOT NULL AND state IN ('PENDING', 'RUNNING')")}
            for pid in group_pids(pgid):
                what = f"the flow of {describe(flows[pid])}" if pid in flows else command_of(pid)
                self.orphans.append((pid, f"pid {pid} ({what}) outlived its killed scheduler {pgid} by {ORPHAN_AFTER:g} s"))

    def _check_false_crashes(self, procs: list[Proc]) -> None:
        """CRASHED runs whose flow process, or whose claiming scheduler, was still alive."""
        if time.time() < self._next_crash_check:
            return
        self._next_crash_check = time.time() + 0.5
        live = {p.pid for p in procs if p.running()}
        for row in self.lab.runs("state = 'CRASHED'"):
            if row["id"] in self.crashed_seen:
                continue
            self.crashed_seen.add(row["id"])
            if process_alive(row.get("pid"), moment(row.get("started_at"))):
                self.false_crashes.append(f"marked CRASHED while its flow process lived: {describe(row)}")
            elif not row.get("started_at") and claimer_pid(row) in live:
                self.false_crashes.append(f"marked CRASHED while its claiming scheduler lived: {describe(row)}")

    # -- the final sweep and the checks --------------------------------------------------------------
    def settle(self, proc: Proc | None = None) -> Result:
        """Serve with one scheduler, let the backlog drain and the dead be swept, count, stop it."""
        proc = proc or self.serve()
        settle = SETTLE_QUICK if self.ctx.quick else SETTLE
        self.observe([proc], max((proc.alive_at or time.time()) + settle, time.time() + 2))
        self._drain(proc, time.time() + (DRAIN_QUICK if self.ctx.quick else DRAIN))
        stuck = self._stuck_without_process(proc)
        check = time.time()
        waiting = self._stuck_waiting(proc, check)
        self.end_window(proc, check)
        runs = self.lab.runs()
        self._count_duplicates(runs)
        self._count_lost(runs, stuck, waiting, check)
        proc.stop()
        self._notes()
        return self.result

    def _drain(self, proc: Proc, until: float) -> None:
        """Serve until no run due by now waits or runs, or nothing moved for NO_PROGRESS seconds, or ``until``."""
        began, due_by, seen, moved, how = time.time(), iso(time.time()), None, time.time(), "deadline"
        while time.time() < until and proc.running():
            rows = self.lab.query("SELECT id, state FROM flow_runs WHERE state IN ('SCHEDULED', 'LATE', 'PENDING', "
                                  "'RUNNING') AND COALESCE(next_attempt_at, scheduled_time) <= ?", (due_by,))
            now, key = time.time(), frozenset((r["id"], r["state"]) for r in rows)
            still = NO_PROGRESS / 2 if self.ctx.quick else NO_PROGRESS
            if not rows or (key == seen and now - moved > still):
                how = "drained" if not rows else f"{len(rows)} left, none moved for {still:g} s"
                break
            if key != seen:
                seen, moved = key, now
            self.observe([proc], now + 0.5)
        self.result.notes.append(f"backlog: {how} after {time.time() - began:.0f} s")

    def _stuck_without_process(self, proc: Proc) -> list[dict[str, Any]]:
        first: dict[str, float] = {}
        deadline = time.time() + STUCK_FOR + 4
        while True:
            dead, now = dead_active(self.lab.runs("state IN ('PENDING', 'RUNNING')")), time.time()
            first = {r["id"]: first.get(r["id"], now) for r in dead}
            stuck = [r for r in dead if now - first[r["id"]] >= STUCK_FOR]
            if not dead or (stuck and len(stuck) == len(dead)) or now >= deadline:
                return stuck
            self.observe([proc], now + 0.25)

    def _stuck_waiting(self, proc: Proc, check: float) -> set[str]:
        """Runs due by ``check - ALLOWANCE`` still SCHEDULED/LATE for ROOM_FOR seconds while their queue had room,
        or although later runs of their queue started (held back)."""
        candidates: set[str] | None = None
        end = time.time() + ROOM_FOR
        while True:
            runs = self.lab.runs()
            found = {r["id"] for r in stuck_waiting(runs, self.lab.queues(), check - ALLOWANCE)
                     + passed_over(runs, check - ALLOWANCE)}
            candidates = found if candidates is None else candidates & found
            if not candidates or time.time() >= end:
                return candidates
            self.observe([proc], time.time() + 0.25)

    def _count_duplicates(self, runs: list[dict[str, Any]]) -> None:
        for group in duplicate_slots(runs) + duplicate_dates(runs):
            self.result.duplicates += 1
            self.result.details.append(f"duplicate: {len(group)} runs for one slot/date: "
                                       + " || ".join(map(describe, group)))

    def _count_lost(self, runs: list[dict[str, Any]], stuck: list[dict[str, Any]], waiting: set[str],
                    check: float) -> None:
        lost = {r["id"]: f"PENDING/RUNNING with no live process for {STUCK_FOR:g} s of the final sweep: {describe(r)}"
                for r in stuck}
        waiting = {r["id"] for r in runs if r["id"] in waiting and r["state"] in ("SCHEDULED", "LATE")}
        for run in (r for r in runs if r["id"] in waiting):
            lost.setdefault(run["id"], f"still {run['state']} {check - moment(run['scheduled_time']):.0f} s after its "
                                       f"time, a scheduler serving, its queue with room for {ROOM_FOR:g} s or later "
                                       f"runs of it started: {describe(run)}")
        for run in runs:
            if never_ran_silently(run):
                lost.setdefault(run["id"], f"ended without starting and without a reason: {describe(run)}")
        for name, seconds in self.slot_checks:
            lost.update(self._unrun_slots(runs, name, seconds, check, waiting))
        for day, group in backfill_dates(runs).items():
            if not any(r.get("started_at") or r["state"] in WAITING + ACTIVE or skipped(r) for r in group):
                lost.setdefault(group[0]["id"], f"backfill date {day} never ran nor was skipped: "
                                                + " || ".join(map(describe, group)))
        self.result.lost += len(lost)
        self.result.details.extend(f"lost: {text}" for text in lost.values())

    def _unrun_slots(self, runs: list[dict[str, Any]], name: str, seconds: float, check: float,
                     stuck: set[str]) -> dict[str, str]:
        """Slots of ``name`` due while a scheduler served that neither ran nor were skipped with a reason."""
        row = self.lab.deployment(name)
        if row is None:
            return {f"deployment {name}": f"the deployment {name} is not in the history"}
        since = moment(row.get("schedule_since") or row.get("created_at")) or 0.0
        made = {round(moment(r["scheduled_time"]), 3): r for r in runs
                if r.get("deployment_id") == row["id"] and r.get("trigger") == "schedule" and r.get("scheduled_time")}
        due = sorted({t for a, b in self.windows for t in slots_between(a, min(b, check - ALLOWANCE), seconds, since)})
        fates: dict[str, int] = {}
        lost: dict[str, str] = {}
        for t in due:
            run = made.get(t)
            fate = slot_fate(run, stuck)
            fates[fate] = fates.get(fate, 0) + 1
            if fate.startswith("LOST"):
                lost[run["id"] if run else f"slot {name} {t}"] = (
                    f"slot {clock(t)} of {name} fell due while a scheduler served and "
                    + (f"never ran nor was skipped: {describe(run)}" if run else "has no run at all"))
        self.result.notes.append(f"{name}: {len(due)} slots due while served"
                                 + "".join(f", {v} {k}" for k, v in sorted(fates.items())))
        return lost

    def _notes(self) -> None:
        if self.watch.by_itself:
            self.result.notes.append(f"{len(self.watch.by_itself)} killed-while-RUNNING runs were ended by their own "
                                     "process (it outlived the kill)")
            self.result.details.extend(f"note: ended by its own process after the kill: {t}" for t in self.watch.by_itself)
        if self.watch.open:
            self.result.notes.append(f"{len(self.watch.open)} killed runs never left RUNNING")
        if self.orphans:
            alive = [pid for pid, _ in self.orphans if command_of(pid) != "gone"]
            self.result.notes.append(f"{len(self.orphans)} processes outlived their killed scheduler by "
                                     f"{ORPHAN_AFTER:g} s ({len(alive)} still alive at the end)")
            self.result.details.extend(f"note: {t}" + (" (still alive at the end)" if pid in alive else "")
                                       for pid, t in self.orphans)
        if self.false_crashes:
            self.result.notes.append(f"{len(self.false_crashes)} runs marked CRASHED while alive")
            self.result.details.extend(f"note: {t}" for t in self.false_crashes)
