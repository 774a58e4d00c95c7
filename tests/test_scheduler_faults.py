"""Faults at the edges with real processes: the lock file deleted, the history deleted, replaced or damaged, a
foreground cancel."""
import contextlib
import datetime as dt
import json
import random
import sqlite3
import subprocess
import shutil
import sys
import time

import pytest

from pipeline.cli import main
from tests.httpserver import http_server  # noqa: F401 - fixture
from tests.conftest import wait_for
from tests.test_scheduler_process import ROOT, gone, service  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(150)


def test_with_its_lock_file_deleted_a_second_scheduler_is_still_refused(service):  # noqa: F811
    first = service.start("first")
    wait_for(lambda: (service.store.scheduler_status() or {}).get("pid") == first.pid, "the first scheduler's lease")
    (service.tmp / "fhv" / "scheduler.lock").unlink()
    second = service.start("second")
    assert second.wait(timeout=30) == 2
    message = " ".join(second.log.read_text().split())
    assert f"Another scheduler (pid {first.pid} on" in message and "although its lock file is missing" in message
    assert first.poll() is None and service.store.scheduler_status()["pid"] == first.pid
    assert service.stop(first) == 0


def test_a_scheduler_whose_history_is_deleted_stops_with_a_sentence(service):  # noqa: F811
    scheduler = service.start("scheduler")
    wait_for(lambda: (service.store.scheduler_status() or {}).get("pid") == scheduler.pid, "the scheduler's lease")
    service.store.close()
    history = service.tmp / "fhv" / "history.db"
    for suffix in ("", "-wal", "-shm"):
        history.with_name(history.name + suffix).unlink(missing_ok=True)
    assert scheduler.wait(timeout=30) == 2
    log = " ".join(scheduler.log.read_text().split())
    assert f"error: The history {history} was deleted while the scheduler ran" in log
    assert "Traceback" not in log


def test_a_foreground_run_stops_within_seconds_when_cancelled_from_the_cli(service):  # noqa: F811
    service.serve(delay=30)  # the download waits: the run sits in read_data
    run = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--date", _a_served_date(service)], cwd=ROOT,
                           env=service.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim = wait_for(service.running_in_a_task_of_any, "the foreground run inside read_data")
        asked = time.monotonic()
        assert main(["runs", "cancel", victim["id"]]) == 0
        assert run.wait(timeout=15) == 1
        assert time.monotonic() - asked < 10
    finally:
        if run.poll() is None:
            run.kill()
    ended = service.store.get_run(victim["id"])
    assert ended["state"] == "CANCELLED" and "Traceback" not in run.stdout.read()


def _a_served_date(service):
    """Today: the test server has its two months."""
    return dt.date.today().isoformat()


@pytest.mark.parametrize("how", ["mv", "cp"])
def test_a_history_replaced_under_a_running_flow_stays_sound_and_gets_nothing_of_the_old_one(service, how):  # noqa: F811
    other = service.tmp / "other.db"
    subprocess.run([sys.executable, "-c", "import sys; from pipeline.store import Store; Store(sys.argv[1]).close()",
                    str(other)], cwd=ROOT, check=True)  # another history, made and closed by another process
    service.serve(delay=30)  # the download waits: the flow sits in read_data, stamping its heartbeat
    assert main(["trigger"]) == 0
    scheduler = service.start("scheduler")
    victim = wait_for(service.running_in_a_task_of_any, "the flow inside read_data", timeout=60)
    service.store.close()
    history = service.tmp / "fhv" / "history.db"
    if how == "mv":
        shutil.copy(other, history.with_name("new.db"))
        history.with_name("new.db").rename(history)
    else:
        shutil.copyfile(other, history)
    assert scheduler.wait(timeout=60) == 2
    log = " ".join(scheduler.log.read_text().split())
    assert f"The history {history} was replaced by another file while the scheduler ran" in log
    assert _fresh_look(history) == ["ok", 0, None]  # another process: this one may still hold the old file open
    assert f"The flow of run {victim['id'][:8]} (pid {victim['pid']}) was stopped and not recorded" in log
    assert "Traceback" not in log and gone(victim["pid"])


def _fresh_look(history):
    """The integrity check, the number of runs and the scheduler's row of ``history``, as a new process sees them."""
    look = ("import json, sys; from pipeline.store import Store; s = Store(sys.argv[1], readonly=True); "
            "print(json.dumps([s.integrity_check(), len(s.runs(limit=10)), s.scheduler_status()]))")
    done = subprocess.run([sys.executable, "-c", look, str(history)], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def _drop_task_runs(history):
    with contextlib.closing(sqlite3.connect(history)) as conn:
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DROP TABLE task_runs")


def _random_bytes_over_task_runs(history):
    """Random bytes over the first page of the table ``task_runs`` (a deterministic spot of 'the middle')."""
    with contextlib.closing(sqlite3.connect(history)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'task_runs'").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(history, "r+b") as file:
        file.seek((page - 1) * size)
        file.write(random.Random(7).randbytes(size))


@pytest.mark.parametrize("damage, says", [(_drop_task_runs, "has no table task_runs"),
                                          (_random_bytes_over_task_runs, "is damaged")])
def test_a_history_damaged_under_the_scheduler_stops_it_with_a_sentence_and_fails_no_run(service, damage, says):  # noqa: F811
    scheduler = service.start("scheduler")
    wait_for(lambda: (service.store.scheduler_status() or {}).get("pid") == scheduler.pid, "the scheduler's lease")
    service.store.close()
    history = service.tmp / "fhv" / "history.db"
    damage(history)
    assert main(["trigger"]) == 0
    assert scheduler.wait(timeout=60) == 2
    log = " ".join(scheduler.log.read_text().split())
    assert f"error: The history {history} " in log and says in log and "Traceback" not in log
    with contextlib.closing(sqlite3.connect(history)) as conn:
        states = {state for state, in conn.execute("SELECT state FROM flow_runs")}
    assert not states & {"FAILED", "CRASHED"}
