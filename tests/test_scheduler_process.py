"""The scheduler as a real process: kill -9 it, start two, kill a flow child, cancel, stop it."""
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from pipeline.training import demo
from pipeline.cli import main
from pipeline.training.months import months_for
from pipeline.store import Store
from tests.conftest import wait_for
from tests.httpserver import http_server  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--tick", "0.1", "--heartbeat", "0.5", "--stale-after", "3", "--late-after", "1", "--materialise-every", "1",
         "--cancel-grace", "2", "--grace", "1"]
DEPLOYMENT = """
    import datetime as dt
    from pipeline.orchestration.deployments import DeploymentSpec
    from pipeline.orchestration.schedules import IntervalSchedule

    fast = DeploymentSpec(name="fast", schedule=IntervalSchedule(2, dt.datetime(2026, 1, 1), "UTC"), catchup="all")
"""


class Service:
    """A history in tmp_path, a local data server and the scheduler processes started on it."""

    def __init__(self, tmp_path, server, monkeypatch):
        self.tmp, self.server, self.processes = tmp_path, server, []
        self.env = {**os.environ, "FHV_HOME": str(tmp_path / "fhv"),
                    "FHV_DATA_URL": server.url("/fhv_tripdata_{month}.parquet")}
        for name in ("FHV_HOME", "FHV_DATA_URL"):
            monkeypatch.setenv(name, self.env[name])
        self.files = {month: self._month_bytes(month) for month in _months_around_today()}
        self.serve(delay=0)
        self.store = Store(tmp_path / "fhv" / "history.db")

    def _month_bytes(self, month):
        return demo.write_month(self.tmp / "data" / f"fhv_tripdata_{month}.parquet", month, rows=3000).read_bytes()

    def serve(self, delay):
        for month, body in self.files.items():
            self.server.route(f"/fhv_tripdata_{month}.parquet", body=body, delay=delay)

    def create_deployment(self):
        path = self.tmp / "deployments.py"
        path.write_text(textwrap.dedent(DEPLOYMENT))
        assert main(["deployment", "create", str(path)]) == 0

    def start(self, name):
        out = open(self.tmp / f"{name}.log", "w")
        process = subprocess.Popen([sys.executable, "-m", "pipeline", "scheduler", *FLAGS], cwd=ROOT, env=self.env,
                                   stdout=out, stderr=subprocess.STDOUT)
        process.log = self.tmp / f"{name}.log"
        self.processes.append(process)
        return process

    def stop(self, process, sig=signal.SIGTERM):
        process.send_signal(sig)
        return process.wait(timeout=20)

    def close(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        self.store.close()

    def runs(self, *states):
        return self.store.runs(deployment="fast", states=states or None, limit=1000, order="upcoming")

    def running_in_a_task_of_any(self):
        """A running run of any deployment (or none) inside a task."""
        for run in self.store.runs(states=["RUNNING"], limit=100):
            if [t for t in self.store.task_runs(run["id"]) if t["state"] == "RUNNING"]:
                return run
        return None

    def running_in_a_task(self):
        for run in self.runs("RUNNING"):
            if [t for t in self.store.task_runs(run["id"]) if t["state"] == "RUNNING"]:
                return run
        return None


def _months_around_today():
    today = dt.datetime.now(dt.timezone.utc).date()
    days = [today + dt.timedelta(days=d) for d in (-1, 0, 1)]
    return sorted({month for day in days for month in months_for(day)})


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def service(tmp_path, http_server, monkeypatch):  # noqa: F811
    made = Service(tmp_path, http_server, monkeypatch)
    yield made
    made.close()


def test_kill_9_of_the_scheduler_mid_run_crashes_that_run_and_later_slots_run_once(service):
    service.serve(delay=5)
    service.create_deployment()
    first = service.start("first")
    victim = wait_for(service.running_in_a_task, "a run inside its first task")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    wait_for(lambda: gone(victim["pid"]), "the flow child to die with its scheduler", timeout=10)
    service.serve(delay=0)
    again = service.start("again")
    crashed = wait_for(lambda: service.store.get_run(victim["id"])["state"] == "CRASHED" and
                       service.store.get_run(victim["id"]), "the run to be marked CRASHED")
    wait_for(lambda: len([r for r in service.runs("COMPLETED") if r["scheduled_time"] > victim["scheduled_time"]]) >= 2,
             "two later slots to complete")
    assert service.stop(again) == 0
    assert f"Its flow process (pid {victim['pid']}) is gone" in crashed["state_message"]
    assert_each_slot_ran_at_most_once(service)
    assert service.store.get_run(victim["id"])["attempts"] == 1
    assert service.store.integrity_check() == "ok"


def assert_each_slot_ran_at_most_once(service):
    slots = service.store.conn.execute(
        "SELECT scheduled_time, COUNT(*) FROM flow_runs WHERE schedule_fingerprint IS NOT NULL "
        "GROUP BY deployment_id, scheduled_time HAVING COUNT(*) > 1", {}).fetchall()
    assert slots == []
    for run in service.runs("COMPLETED"):
        assert [t["task"] for t in service.store.task_runs(run["id"]) if t["task"] == "run_model"] == ["run_model"]


def test_of_two_schedulers_started_at_once_one_runs_and_one_says_who_holds_the_history(service):
    both = [service.start("one"), service.start("two")]
    loser = wait_for(lambda: next((p for p in both if p.poll() is not None), None), "one scheduler to give up")
    winner = next(p for p in both if p is not loser)
    assert loser.returncode == 2
    message = " ".join(loser.log.read_text().split())
    assert f"Another scheduler (pid {winner.pid} on" in message and "already runs on" in message
    wait_for(lambda: (service.store.scheduler_status() or {}).get("pid") == winner.pid, "the winner's heartbeat")
    assert winner.poll() is None
    assert service.stop(winner) == 0
    assert service.store.scheduler_status()["stopped_at"] is not None


def test_kill_9_of_a_flow_child_crashes_its_run_and_frees_the_slot(service):
    service.serve(delay=5)
    service.create_deployment()
    scheduler = service.start("scheduler")
    victim = wait_for(service.running_in_a_task, "a run inside its first task")
    os.kill(victim["pid"], signal.SIGKILL)
    service.serve(delay=0)
    crashed = wait_for(lambda: service.store.get_run(victim["id"])["state"] == "CRASHED" and
                       service.store.get_run(victim["id"]), "the run to be marked CRASHED")
    assert crashed["state_message"] == (f"The flow process (pid {victim['pid']}) was killed by SIGKILL "
                                        "before recording a final state.")
    wait_for(lambda: [r for r in service.runs("COMPLETED") if r["scheduled_time"] > victim["scheduled_time"]],
             "a later slot to complete")
    assert scheduler.poll() is None
    assert service.stop(scheduler) == 0


def test_cancel_and_sigterm_stop_flows_cleanly_and_hand_back_waiting_runs(service):
    service.serve(delay=30)
    service.create_deployment()
    scheduler = service.start("scheduler")
    victim = wait_for(service.running_in_a_task, "a run inside its first task")
    assert main(["runs", "cancel", victim["id"]]) == 0
    wait_for(lambda: service.store.get_run(victim["id"])["state"] == "CANCELLED", "the cancelled run to stop")
    second = wait_for(service.running_in_a_task, "the next run inside its first task")
    assert service.stop(scheduler) == 0
    stopped = service.store.get_run(second["id"])
    assert stopped["state"] == "CANCELLED" and gone(second["pid"])
    assert "The scheduler stopped while this run was running" in service.store.logs(second["id"])[-1]["message"]
    waiting = service.runs("SCHEDULED", "LATE")
    assert waiting and not service.runs("PENDING", "RUNNING")
    assert service.store.scheduler_status()["stopped_at"] is not None


# -- the forkserver preload, whatever the working directory --------------------------------------

PRELOAD_PROBE = """
import sys
sys.path.insert(0, {root!r})  # importable the way a script finds it, not through PYTHONPATH
from pathlib import Path
from pipeline.config import Settings
from pipeline.orchestration.scheduler import Scheduler
from pipeline.store import Store

settings = Settings(home=Path({home!r})).ensure_dirs()
executor = Scheduler(Store(settings.db_path), settings).executor
executor.warm_up()
check = "import sys; sys.exit(0 if 'pipeline.training.model' in sys.modules else 3)"
probe = executor.context.Process(target=exec, args=(check,))
probe.start()
probe.join(30)
sys.exit(probe.exitcode)
"""


def elsewhere_env():
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_a_scheduler_started_from_another_folder_still_gives_its_flows_the_preloaded_model(tmp_path):
    script = PRELOAD_PROBE.format(root=str(ROOT), home=str(tmp_path / "fhv"))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=elsewhere_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"the flow child had to import pipeline.training.model itself: {done.stderr}"


def test_the_scheduler_bench_runs_from_any_folder_through_the_store(tmp_path):
    bench = ROOT / "bench" / "scheduler_overhead.py"
    done = subprocess.run([sys.executable, str(bench), "--runs", "1", "--history", "2000", "--no-postgres"], cwd=tmp_path,
                          env=elsewhere_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "python -c 'import pipeline.training.flow, pipeline.training.model" in done.stdout and "claims/s" in done.stdout
    assert "did not preload" not in done.stderr
    source = bench.read_text()
    assert ".execute(" not in source and "atomic()" not in source  # SQL belongs to pipeline/store
