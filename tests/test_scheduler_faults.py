"""Faults at the edges with real processes: the lock file deleted, the history deleted, a foreground cancel."""
import datetime as dt
import subprocess
import sys
import time

import pytest

from pipeline.cli import main
from tests.httpserver import http_server  # noqa: F401 - fixture
from tests.conftest import wait_for
from tests.test_scheduler_process import ROOT, service  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(60)


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
