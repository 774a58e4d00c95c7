"""Riding out a database outage: the test's own PostgreSQL server stopped for seconds, then started again,
under a real scheduler and a real worker."""
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pipeline.store import Store, from_db
from tests.conftest import wait_for
from tests.pgserver import PgServer, postgres_bin
from tests.prerequisites import unavailable
from tests.test_scheduler_process import ROOT

pytestmark = pytest.mark.timeout(240)
FAST = ["--tick", "0.1", "--heartbeat", "0.5", "--stale-after", "3", "--grace", "1"]
DEPLOYMENT = """
    import datetime as dt
    from pipeline.orchestration.deployments import DeploymentSpec
    from pipeline.orchestration.schedules import IntervalSchedule

    often = DeploymentSpec(name="often", schedule=IntervalSchedule(2, dt.datetime(2026, 1, 1), "UTC"),
                           catchup="latest")
"""


@pytest.fixture
def own_server():
    """A PostgreSQL server of this test's own, to stop and start (the session's serves the other tests)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        unavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb).")
    server = PgServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


def runs(url):
    store = Store(url, readonly=True)
    try:
        return store.runs(deployment="often", limit=1000)
    finally:
        store.close()


def test_the_scheduler_and_a_worker_ride_out_a_database_outage_and_run_the_slots_that_fell_due(own_server, tmp_path):
    url = own_server.fresh_database()
    env = {**os.environ, "FHV_HOME": str(tmp_path / "fhv"), "FHV_DATA_URL": "demo:2000", "FHV_DATABASE_URL": url}
    (tmp_path / "often.py").write_text(textwrap.dedent(DEPLOYMENT))
    subprocess.run([sys.executable, "-m", "pipeline", "deployment", "create", str(tmp_path / "often.py")], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    logs = {name: tmp_path / f"{name}.log" for name in ("scheduler", "worker")}
    processes = {name: subprocess.Popen([sys.executable, "-m", "pipeline", name, *FAST, *extra], cwd=ROOT, env=env,
                                        stdout=open(logs[name], "w"), stderr=subprocess.STDOUT)
                 for name, extra in (("scheduler", ["--no-execute", "--late-after", "1", "--materialise-every", "1"]),
                                             ("worker", []))}
    try:
        wait_for(lambda: [r for r in runs(url) if r["state"] == "COMPLETED"], "a first completed run", timeout=90)
        own_server.pause()
        down = dt.datetime.now(dt.timezone.utc)
        time.sleep(5)  # longer than the stale time of 3 s
        up = dt.datetime.now(dt.timezone.utc)
        own_server.resume()
        wait_for(lambda: [r for r in runs(url) if r["state"] == "COMPLETED" and down < from_db(r["scheduled_time"]) < up],
                 "a slot that fell due during the outage to complete", timeout=90)
        assert all(process.poll() is None for process in processes.values())
        assert [r for r in runs(url) if "catch-up policy" in (r["state_message"] or "")
                and down < from_db(r["scheduled_time"]) < up] == []
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        assert [process.wait(timeout=30) for process in processes.values()] == [0, 0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for name, log in logs.items():
        text = " ".join(log.read_text().split())
        assert text.count("keeps running and tries again with backoff") == 1, (name, text)
        assert text.count("The history can be reached again") == 1, (name, text)
        assert "Traceback" not in text, (name, text)
