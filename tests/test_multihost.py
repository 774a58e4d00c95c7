"""Several machines: PostgreSQL, the scheduler and two workers, each in a network namespace (and a
hostname) of its own on a bridge this test makes and deletes. One worker host is killed with -9
mid-run: no slot runs twice, no run is lost, its running run ends CRASHED within the stale time and
the run it had claimed but not started runs on the other worker. Then the other worker's network is
cut mid-run: that run ends CRASHED too, and the worker, back online, kills its flow and goes on."""
import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from pipeline.cli import main
from pipeline.store import Store, from_db
from tests.conftest import wait_for
from tests.pgserver import PgServer, postgres_bin
from tests.prerequisites import unavailable

pytestmark = pytest.mark.timeout(150)
ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
STALE = 3.0
TAG = os.getpid() % 100_000


def free_net() -> str:
    """A 10.213.N /24 no interface of this machine uses yet (two test sessions may run at once)."""
    used = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    for number in range(20 + os.getpid() % 200, 20 + os.getpid() % 200 + 230):
        net = f"10.213.{number % 250 + 1}"
        if f" {net}." not in used:
            return net
    raise RuntimeError("no free 10.213.N.0/24 for the test's bridge")


NET = free_net() if shutil.which("ip") else "10.213.1"  # a /24 on the test's own bridge
WORKER = ["--queue", "multi", "--concurrency", "2", "--tick", "0.1", "--heartbeat", "0.5", "--stale-after", str(STALE),
          "--grace", "1", "--cancel-grace", "1"]
SCHEDULER = ["--no-execute", "--tick", "0.2", "--heartbeat", "0.5", "--stale-after", str(STALE), "--late-after", "5",
             "--materialise-every", "1"]

TINY_FLOW = '''
import pathlib
import socket
import time

from prefect import flow

HERE = pathlib.Path(__file__).resolve().parent
HOST = socket.gethostname()
while (HERE / f"gate-{HOST}").exists():  # a run loading here is claimed by this host's worker, not started
    time.sleep(0.05)


@flow
def tiny(seconds: float = 0.2):
    print(f"executing on {HOST}")
    while (HERE / f"hold-{HOST}").exists():  # a run held here is RUNNING on this host
        time.sleep(0.05)
    time.sleep(seconds)
'''
DEPLOYMENTS = '''
import datetime as dt
from pipeline.orchestration.deployments import DeploymentSpec
from pipeline.orchestration.schedules import IntervalSchedule

FLOW = "prefect2:{flow}:tiny"
even = DeploymentSpec(name="tiny-even", flow=FLOW, schedule=IntervalSchedule(1, dt.datetime(2026, 1, 1), "UTC"),
                      work_queue="multi", catchup="all", parameters={{"seconds": 0.2}})
odd = DeploymentSpec(name="tiny-odd", flow=FLOW, work_queue="multi", catchup="all", parameters={{"seconds": 0.2}},
                     schedule=IntervalSchedule(1, dt.datetime(2026, 1, 1, 0, 0, 0, 500000), "UTC"))
'''


def ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check, timeout=20)


class Hosts:
    """Network namespaces on one bridge, each a 'host' with an address in NET and a hostname of its own."""

    def __init__(self):
        self.bridge, self.names, self.links, self.processes = f"fhvbr{TAG}", [], [], []

    def make_bridge(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{NET}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add(self, role: str, number: int) -> str:
        """A namespace with a veth on the bridge and the address NET.number; returns its name."""
        name, outside, inside = f"fhv{TAG}-{role}", f"fv{TAG}{number}", f"fp{TAG}{number}"
        ip("netns", "add", name)
        self.names.append(name)
        self.links.append(outside)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", name)
        ip("link", "set", outside, "master", self.bridge, "up")
        for argv in (("addr", "add", f"{NET}.{number}/24", "dev", inside), ("link", "set", inside, "up"),
                     ("link", "set", "lo", "up")):
            ip("netns", "exec", name, "ip", *argv)
        return name

    def start(self, namespace: str, hostname: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        """A process in ``namespace`` whose hostname is ``hostname`` (a UTS namespace of its own)."""
        command = ["ip", "netns", "exec", namespace, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                   hostname, *argv]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def kill(self, namespace: str) -> list[int]:
        """kill -9 every process of the host."""
        pids = [int(pid) for pid in ip("netns", "pids", namespace, check=False).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def close(self) -> None:
        for name in self.names:
            self.kill(name)
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.wait(timeout=10)
        for name in self.names:
            ip("netns", "del", name, check=False)
        for link in self.links:  # gone with its namespace, unless the test failed before moving its peer there
            ip("link", "del", link, check=False)
        ip("link", "del", self.bridge, check=False)


class NamespacedPg(PgServer):
    """The tests' throwaway PostgreSQL server, run inside a namespace and listening on its address."""

    def __init__(self, bin_dir: Path, namespace: str):
        super().__init__(bin_dir, host=f"{NET}.2", port=5432, clients=f"{NET}.0/24")
        self.namespace = namespace

    def _run(self, *argv: str) -> None:
        prefix = ["ip", "netns", "exec", self.namespace] + (["runuser", "-u", "postgres", "--"] if self.as_postgres
                                                             else [])
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv[:2])} failed in {self.namespace}: {done.stderr or done.stdout}")


@pytest.fixture
def hosts():
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        unavailable("Network namespaces cannot be made here: the multi-host test needs root, ip and unshare.")
    if postgres_bin() is None:
        unavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb).")
    made = Hosts()
    try:
        made.make_bridge()
    except subprocess.CalledProcessError as error:
        made.close()
        unavailable(f"Network namespaces cannot be made here: {error.stderr.strip()}")
    try:
        yield made
    finally:
        made.close()


def on_host(store, run_id, host):
    return any(line["message"] == f"executing on {host}" for line in store.logs(run_id))


def executions(store, run_id):
    return [line["message"] for line in store.logs(run_id) if line["message"].startswith("executing on ")]


def test_a_worker_host_killed_mid_run_loses_no_run_and_runs_no_slot_twice(hosts, tmp_path, monkeypatch):
    pg = NamespacedPg(postgres_bin(), hosts.add("pg", 2))
    for role, number in (("sched", 3), ("w1", 4), ("w2", 5)):
        hosts.add(role, number)
    pg.start()
    try:
        run_the_scenario(hosts, pg, tmp_path, monkeypatch)
    finally:
        pg.stop()


def run_the_scenario(hosts, pg, tmp_path, monkeypatch):
    url, flows = pg.fresh_database("multi"), tmp_path / "flows"
    flows.mkdir()
    (flows / "tiny.py").write_text(TINY_FLOW)
    (flows / "deployments.py").write_text(textwrap.dedent(DEPLOYMENTS.format(flow=flows / "tiny.py")))
    for name, value in (("FHV_HOME", str(tmp_path / "root")), ("FHV_DATABASE_URL", url), ("FHV_DATA_URL", "demo")):
        monkeypatch.setenv(name, value)
    (flows / "hold-w1").touch()  # the first run w1 executes stays RUNNING
    store = Store(url)
    store.upsert_work_queue("multi", concurrency_limit=3, now=dt.datetime.now(UTC))

    def start(role, command, flags):
        env = {**os.environ, "FHV_HOME": str(tmp_path / role), "PYTHONUNBUFFERED": "1"}
        return hosts.start(f"fhv{TAG}-{role}", role, [sys.executable, "-m", "pipeline", command, *flags], env,
                           tmp_path / f"{role}.log")

    start("sched", "scheduler", SCHEDULER)
    start("w1", "worker", WORKER)
    start("w2", "worker", WORKER)
    try:
        workers = wait_for(lambda: (found := {w["hostname"]: w["id"] for w in store.workers(live_only=True)}).keys()
                           == {"w1", "w2"} and found, "both workers to register", timeout=60)
        assert main(["deployment", "create", str(flows / "deployments.py")]) == 0  # slots every half second from now
        check_the_scenario(store, flows, hosts, workers["w1"], dt.datetime.now(UTC))
    except BaseException:
        for role in ("sched", "w1", "w2"):
            print(f"--- {role}.log ---\n" + (tmp_path / f"{role}.log").read_text()[-3000:])
        raise
    finally:
        store.close()


def active_on_w1(store, w1):
    """(a RUNNING run held on w1, a run w1 claimed that has not started), as far as they exist."""
    running = [r for r in store.runs(states=["RUNNING"], limit=50) if on_host(store, r["id"], "w1")]
    claimed = [r for r in store.runs(states=["PENDING"], limit=50) if r["claimed_by"] == w1 and not r["started_at"]]
    return running[0] if running else None, claimed[0] if claimed else None


def check_the_scenario(store, flows, hosts, w1, created):
    held = wait_for(lambda: active_on_w1(store, w1)[0], "a run held RUNNING on w1")
    (flows / "gate-w1").touch()
    claimed = wait_for(lambda: active_on_w1(store, w1)[1], "a run w1 claimed and did not start")
    assert hosts.kill(f"fhv{TAG}-w1"), "w1 had no process to kill"
    killed_at = dt.datetime.now(UTC)
    crashed = wait_for(lambda: (r := store.get_run(held["id"]))["state"] == "CRASHED" and r, "the held run CRASHED",
                       timeout=STALE + 5)
    assert (from_db(crashed["ended_at"]) - killed_at).total_seconds() <= STALE + 1.5, crashed["ended_at"]
    assert "No heartbeat since" in crashed["error"] and "on w1" in crashed["error"]
    rerun = wait_for(lambda: (r := store.get_run(claimed["id"]))["state"] == "COMPLETED" and r,
                     "the run w1 had claimed to complete on w2", timeout=STALE + 10)
    assert rerun["claimed_by"].startswith("w2:") and executions(store, rerun["id"]) == ["executing on w2"]
    window = max(killed_at + dt.timedelta(seconds=STALE), created + dt.timedelta(seconds=6.5))  # a dozen slots
    slots = wait_for(lambda: settled_slots(store, window), "every slot up to the window to end", timeout=30)
    assert len(slots) >= 12
    assert [r["id"] for r in slots if r["state"] == "CRASHED"] == [held["id"]]
    assert {r["state"] for r in slots if r["id"] != held["id"]} == {"COMPLETED"}
    assert all(len(executions(store, r["id"])) == 1 for r in slots), "a run executed twice"
    for name in ("tiny-even", "tiny-odd"):
        times = [r["scheduled_time"] for r in slots if r["deployment"] == name]
        assert len(times) == len(set(times)) and gaps_of_one_second(times), name
    assert most_running_at_once(slots) <= 3
    cut_the_network_of_w2(store, flows)


def cut_the_network_of_w2(store, flows):
    """w2's network is cut while it runs a held run: the run ends CRASHED within the stale time; once the
    network is back, w2 kills that flow (the run is not its own any more) and runs new slots again."""
    (flows / "hold-w2").touch()
    held = wait_for(lambda: next((r for r in store.runs(states=["RUNNING"], limit=50) if on_host(store, r["id"], "w2")),
                                 None), "a run held RUNNING on w2")
    link = ["ip", "netns", "exec", f"fhv{TAG}-w2", "ip", "link", "set", f"fp{TAG}5"]
    subprocess.run([*link, "down"], check=True, timeout=20)
    cut_at = dt.datetime.now(UTC)
    try:
        crashed = wait_for(lambda: (r := store.get_run(held["id"]))["state"] == "CRASHED" and r,
                           "the run on the cut-off w2 to end CRASHED", timeout=STALE + 5)
    finally:
        subprocess.run([*link, "up"], check=True, timeout=20)
    assert (from_db(crashed["ended_at"]) - cut_at).total_seconds() <= STALE + 1.5, crashed["ended_at"]
    wait_for(lambda: not process_alive(held["pid"]), "w2 to kill the flow of the run it lost", timeout=40)
    (flows / "hold-w2").unlink()
    back = dt.datetime.now(UTC)
    wait_for(lambda: [r for r in store.runs(states=["COMPLETED"], limit=20) if r["claimed_by"].startswith("w2:")
                      and from_db(r["started_at"]) > back], "w2 to run slots again", timeout=40)
    assert store.get_run(held["id"])["state"] == "CRASHED" and executions(store, held["id"]) == ["executing on w2"]


def process_alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def settled_slots(store, window):
    """The slots due by ``window``, once every one of them has ended (None before)."""
    slots = [r for r in store.runs(limit=1000, order="upcoming") if r["deployment"] in ("tiny-even", "tiny-odd")
             and from_db(r["scheduled_time"]) <= window]
    return slots if slots and all(r["state"] in ("COMPLETED", "CRASHED", "FAILED", "CANCELLED") for r in slots) \
        else None


def gaps_of_one_second(times):
    moments = sorted(from_db(t) for t in times)
    return all((b - a).total_seconds() == 1 for a, b in zip(moments, moments[1:]))


def most_running_at_once(runs):
    edges = sorted([(from_db(r["started_at"]), 1) for r in runs if r["started_at"]]
                   + [(from_db(r["ended_at"]), -1) for r in runs if r["started_at"]])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most
