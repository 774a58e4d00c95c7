"""``./demo.sh`` when it cannot start: a busy dashboard port, or a history another demo already runs.
Each says so in one sentence and exits non-zero, leaving no process behind."""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest

from pipeline.orchestration.states import State
from pipeline.store import Store
from tests.conftest import wait_for
from tests.test_browser import ROOT, free_port

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def home(tmp_path):
    """A history with one run, so that the demo skips its first start (training three months)."""
    store = Store(tmp_path / "fhv" / "history.db")
    now = dt.datetime.now(dt.timezone.utc)
    store.create_run(flow="fhv-duration-training", name="earlier-run", state=State.CANCELLED, now=now)
    store.close()
    return tmp_path / "fhv"


def demo(home, port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "FHV_HOME": str(home), "FHV_DATA_URL": "demo:3000", "FHV_DASHBOARD_PORT": str(port)}
    return subprocess.run(["bash", str(ROOT / "demo.sh")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=80)


def test_a_busy_port_is_named_with_the_variable_that_changes_it_and_the_demo_exits_non_zero(home):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = demo(home, port)
    assert done.returncode == 1, done.stderr
    assert f"Port {port} is busy" in done.stderr and "FHV_DASHBOARD_PORT" in done.stderr
    assert "Scheduler and dashboard stopped." in done.stdout


def test_a_second_demo_on_the_same_history_exits_non_zero_with_the_schedulers_sentence(home):
    env = {**os.environ, "FHV_HOME": str(home), "FHV_DATA_URL": "demo:3000"}
    first = subprocess.Popen([sys.executable, "-m", "pipeline", "scheduler"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = home / "scheduler.lock"
        wait_for(lambda: lock.exists() and lock.read_text().split()[:1] == [str(first.pid)], "the first scheduler")
        done = demo(home, free_port())
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "Another scheduler (pid" in said and "already runs on" in said and "the demo stops" in said
