"""Containers of one host name sharing a volume: a scheduler or a run in another pid namespace (``unshare
--pid --fork --mount-proc``, which needs root) cannot be seen by its process id, so it is judged by its
heartbeat."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from pipeline.cli import main
from tests.conftest import wait_for
from tests.httpserver import http_server  # noqa: F401 - fixture
from tests.prerequisites import unavailable
from tests.test_scheduler_process import FLAGS, ROOT, service  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(150)


def _in_another_pid_namespace(service, name, *argv):
    """``python -m pipeline ARGV`` in a pid namespace of its own: it cannot see this one's processes."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        unavailable("A pid namespace cannot be made here: the test needs root and unshare.")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(f"A pid namespace cannot be made here: {probe.stderr.strip()}")
    out = open(service.tmp / f"{name}.log", "w")
    # --kill-child: the scheduler inside ends with unshare, which the fixture stops (else it outlives the test)
    process = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", sys.executable, "-m",
                                "pipeline", *argv], cwd=ROOT, env=service.env, stdout=out, stderr=subprocess.STDOUT)
    process.log = service.tmp / f"{name}.log"
    service.processes.append(process)
    return process


def test_a_scheduler_in_another_pid_namespace_is_refused_while_the_holders_heartbeat_is_fresh(service):  # noqa: F811
    service.serve(delay=30)
    assert main(["trigger"]) == 0
    first = service.start("first")
    victim = wait_for(service.running_in_a_task_of_any, "the flow inside read_data", timeout=60)
    (service.tmp / "fhv" / "scheduler.lock").unlink()
    second = _in_another_pid_namespace(service, "second", "scheduler", *FLAGS)
    assert second.wait(timeout=60) == 2
    message = " ".join(second.log.read_text().split())
    assert f"Another scheduler (pid {first.pid} on" in message and "Traceback" not in message
    assert first.poll() is None and service.store.get_run(victim["id"])["state"] == "RUNNING"
    assert service.store.scheduler_status()["pid"] == first.pid
    assert service.stop(first) == 0


def test_a_run_of_another_pid_namespace_is_judged_by_its_heartbeat_not_by_its_invisible_pid(service):  # noqa: F811
    service.serve(delay=30)
    assert main(["trigger"]) == 0
    worker = _worker(service)
    victim = wait_for(service.running_in_a_task_of_any, "the worker's flow inside read_data", timeout=60)
    scheduler = _in_another_pid_namespace(service, "scheduler", "scheduler", "--no-execute", *FLAGS)
    wait_for(lambda: (service.store.scheduler_status() or {}).get("heartbeat_at"), "the other namespace's scheduler",
             timeout=60)
    time.sleep(4)  # past the stale time of 3 s: its sweeps judged the run, whose heartbeat is fresh
    assert service.store.get_run(victim["id"])["state"] == "RUNNING"
    assert scheduler.poll() is None and worker.poll() is None


def _worker(service):
    out = open(service.tmp / "worker.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "worker", "--heartbeat", "0.5", "--stale-after", "3",
                                "--tick", "0.1", "--grace", "1"], cwd=ROOT, env=service.env, stdout=out,
                               stderr=subprocess.STDOUT)
    service.processes.append(process)
    return process
