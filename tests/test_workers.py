"""Workers: claims within each queue's limit across all workers, liveness judged by heartbeat across hosts,
``scheduler --no-execute``, and a real worker process killed with -9 on this host."""
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError, HistoryUnreachable, StorageError
from pipeline.orchestration.executor import EXIT_UNREACHABLE
from pipeline.orchestration.liveness import judge, worker_alive
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from pipeline.orchestration.states import State
from pipeline.orchestration.worker import Worker, WorkerOptions
from pipeline.store import Store
from pipeline.training.job import FLOW_NAME
from tests.conftest import FakeClock, wait_for
from tests.fakes import FakeExecutor

UTC = dt.timezone.utc
ROOT = Path(__file__).resolve().parent.parent
OPTIONS = WorkerOptions(tick=1, heartbeat=5, stale_after=30)
ELSEWHERE = "other-host:4242:wabcdef"


@pytest.fixture
def clock():
    """A fake clock starting now: a worker of this process is judged by its pid and start time."""
    return FakeClock(dt.datetime.now(UTC))


@pytest.fixture
def history(location):
    """The history on either backend: a SQLite file, or a fresh PostgreSQL database."""
    made = Store(location)
    yield made
    made.close()


def due_runs(store, clock, count, queue="q", limit=None):
    store.upsert_work_queue(queue, concurrency_limit=limit, now=clock.now())
    return [store.create_run(flow=FLOW_NAME, name=f"run-{queue}-{i}", state=State.SCHEDULED, now=clock.now(),
                             work_queue=queue, scheduled_time=clock.now(), trigger="manual",
                             parameters={"date": f"2025-{i % 12 + 1:02d}-15"}) for i in range(count)]


def worker(store, settings, clock, behaviour="hang", **kwargs):
    executor = FakeExecutor(store, clock=clock, behaviour=lambda run: behaviour)
    return Worker(store, settings, options=kwargs.pop("options", OPTIONS), clock=clock, executor=executor, **kwargs)


def states(store, run_ids):
    return [store.get_run(run_id)["state"] for run_id in run_ids]


def test_a_worker_registers_and_runs_at_most_its_concurrency(store, settings, clock):
    runs = due_runs(store, clock, 5)
    made = worker(store, settings, clock, queues=["q"], concurrency=2)
    made.tick()
    assert states(store, runs).count("RUNNING") == 2
    row = store.worker(made.identity)
    assert row["queues"] == ["q"] and row["concurrency"] == 2 and row["stale_after"] == 30
    assert worker_alive(row, now=clock.now()) and made.identity.startswith(f"{socket.gethostname()}:{os.getpid()}:")


def test_workers_together_never_exceed_a_queues_concurrency_limit(history, location, settings, clock):
    store = history
    runs = due_runs(store, clock, 6, limit=3)
    others = [Store(location) for _ in range(2)]
    workers = [worker(history, settings, clock, queues=["q"], concurrency=3) for history in others]
    for made in workers * 2:
        made.tick()
    assert states(store, runs).count("RUNNING") == 3
    assert sorted(len(made.executor.running()) for made in workers) == [0, 3]
    for history in others:
        history.close()


def test_a_worker_claims_only_from_its_queues_and_every_queue_when_none_is_named(store, settings, clock):
    mine, theirs = due_runs(store, clock, 1, queue="mine"), due_runs(store, clock, 1, queue="theirs")
    worker(store, settings, clock, queues=["mine"], concurrency=5).tick()
    assert states(store, mine + theirs) == ["RUNNING", "SCHEDULED"]
    worker(store, settings, clock, concurrency=5).tick()
    assert states(store, theirs) == ["RUNNING"]


def test_a_paused_queue_gives_a_worker_nothing(store, settings, clock):
    runs = due_runs(store, clock, 2)
    store.set_work_queue_paused("q", True)
    worker(store, settings, clock, queues=["q"], concurrency=2).tick()
    assert states(store, runs) == ["SCHEDULED"] * 2


@pytest.mark.parametrize("queues, concurrency, message", [
    (["nope"], 1, "There is no work queue named 'nope'"),
    ([], 0, "The worker concurrency 0 must be a whole number of at least 1."),
])
def test_a_worker_with_bad_queues_or_concurrency_fails_with_a_sentence(store, settings, clock, queues, concurrency,
                                                                         message):
    with pytest.raises(ConfigError, match=message):
        worker(store, settings, clock, queues=queues, concurrency=concurrency).tick()
    assert store.workers() == []


def test_the_worker_command_names_an_unknown_queue_and_workers_lists_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    assert main(["worker", "--queue", "nope"]) == 2
    assert "There is no work queue named 'nope'" in capsys.readouterr().err
    assert main(["workers", "--json"]) == 0 and capsys.readouterr().out.strip() == "[]"
    store, now = Store(tmp_path / "fhv" / "history.db"), dt.datetime.now(UTC)
    for identity, minutes in ((ELSEWHERE, 0), ("silent-host:7:wsilent", 5), ("done-host:8:wdone", 5)):
        store.register_worker(identity=identity, hostname=identity.split(":")[0], pid=7, queues=["default"],
                              concurrency=2, stale_after=30, now=now - dt.timedelta(minutes=minutes))
    store.worker_stopped("done-host:8:wdone", now)
    assert main(["workers", "--all", "--json"]) == 0
    listed = {row["id"]: row["status"] for row in json.loads(capsys.readouterr().out)}
    assert listed == {ELSEWHERE: "alive", "silent-host:7:wsilent": "gone (silent for more than 30 s)",
                      "done-host:8:wdone": "stopped"}
    assert main(["workers"]) == 0 and "silent-host:7:wsilent" in capsys.readouterr().out  # the live ones, as a table
    store.close()


def test_a_worker_finishes_its_runs_cancels_on_request_and_marks_itself_stopped(store, settings, clock):
    runs = due_runs(store, clock, 2)
    made = worker(store, settings, clock, queues=["q"], concurrency=2)
    made.tick()
    store.request_cancel(runs[0], now=clock.now())
    made.tick()
    made.tick()
    assert states(store, runs) == ["CANCELLED", "RUNNING"]
    made.options = WorkerOptions(tick=1, heartbeat=5, stale_after=30, shutdown_grace=1, cancel_grace=1)
    made.shutdown()
    assert states(store, runs) == ["CANCELLED", "CANCELLED"]
    assert store.worker(made.identity)["stopped_at"] and store.workers(live_only=True) == []


def test_a_worker_kills_its_flow_once_the_scheduler_ended_the_run_as_crashed(store, settings, clock):
    [run] = due_runs(store, clock, 1)
    made = worker(store, settings, clock, queues=["q"])
    made.tick()
    store.end_dead_run(run, message="No heartbeat: presumed gone.", now=clock.now())
    made.tick()
    assert made.executor.running() == {} and made.ending == {}
    assert store.get_run(run)["state"] == "CRASHED"


def test_a_worker_stops_when_its_history_file_is_deleted(store, settings, clock):
    from pipeline.orchestration.lock import HistoryWatch

    made = worker(store, settings, clock, watch=HistoryWatch(settings.db_path, role="worker"))
    made.tick()
    settings.db_path.unlink()
    made.tick()
    assert made.stopping.is_set() and "was deleted while the worker ran" in str(made.fatal)


class StuckExecutor(FakeExecutor):
    """Flow processes stuck before they start their run: it stays PENDING, claimed."""

    exitcode = None  # still running

    def start(self, run):
        pid = next(self._pids)
        self.processes[run["id"]] = {"pid": pid, "kind": "hang", "exitcode": self.exitcode}
        self.started.append(run["id"])
        return pid


def test_a_worker_kills_the_flow_of_a_run_handed_back_and_claimed_elsewhere_and_leaves_that_claim_alone(
        store, settings, clock):
    [run] = due_runs(store, clock, 1)
    made = Worker(store, settings, options=OPTIONS, clock=clock, executor=StuckExecutor(store, clock=clock),
                  queues=["q"])
    made.tick()
    store.requeue_unstarted(run, reason="claimed by a silent worker; back in the queue", now=clock.now())
    store.claim_due_run(now=clock.now(), work_queue="q", claimer="elsewhere:1:wother", within_limit=True)
    made.tick()
    made.tick()
    assert made.executor.running() == {} and made.failures == 0
    assert store.get_run(run)["state"] == "PENDING" and store.get_run(run)["claimed_by"] == "elsewhere:1:wother"


class Unreachable(Store):
    """The history as seen from a worker whose network is cut: every heartbeat fails."""

    cut = False

    def worker_heartbeat(self, identity, now):
        if self.cut:
            raise StorageError("The history cannot be reached (the network is cut).")
        return super().worker_heartbeat(identity, now)


def test_a_worker_cut_off_longer_than_its_stale_time_kills_its_flows_and_claims_nothing(settings, clock):
    history = Unreachable(settings.db_path)
    runs = due_runs(history, clock, 3)
    made = worker(history, settings, clock, queues=["q"], concurrency=1)
    made.tick()
    history.cut = True
    clock.advance(20)
    made.tick()
    assert len(made.executor.running()) == 1
    clock.advance(20)
    made.tick()
    assert made.executor.running() == {} and made.failures == 2
    assert states(history, runs).count("PENDING") + states(history, runs).count("RUNNING") == 0
    history.cut = False
    clock.advance(1)
    made.tick()
    assert states(history, runs).count("RUNNING") == 1
    history.close()


def test_a_flow_process_of_a_claim_that_was_handed_back_does_not_start_the_run(history, location, clock):
    [run] = due_runs(history, clock, 1)
    history.claim_due_run(now=clock.now(), work_queue="q", claimer="slow:1:wa", within_limit=True)
    history.requeue_unstarted(run, reason="claimed by the worker slow:1:wa, silent", now=clock.now())
    history.claim_due_run(now=clock.now(), work_queue="q", claimer="fast:2:wb", within_limit=True)
    late, on_time = Store(location, migrate=False), Store(location, migrate=False)
    late.claimer, on_time.claimer = "slow:1:wa", "fast:2:wb"
    assert late.start_run(run, now=clock.now(), pid=1) is None
    assert on_time.start_run(run, now=clock.now(), pid=2)["state"] == "RUNNING"
    late.close()
    on_time.close()


def test_while_no_scheduler_runs_a_worker_leaves_scheduled_slots_to_the_catch_up_policy(store, settings, clock):
    store.upsert_work_queue("q", concurrency_limit=None, now=clock.now())
    slot, manual = (store.create_run(flow=FLOW_NAME, name=f"{kind}-run", state=State.SCHEDULED, now=clock.now(),
                                     work_queue="q", scheduled_time=clock.now(), trigger=kind,
                                     parameters={"date": "2025-06-15"}) for kind in ("schedule", "manual"))
    made = worker(store, settings, clock, queues=["q"], concurrency=5)
    made.tick()
    assert states(store, [slot, manual]) == ["SCHEDULED", "RUNNING"]
    store.end_dead_run(manual, message="done with it", now=clock.now())  # (its fake process has no pid to sweep)
    scheduler(store, settings, clock).tick()  # a scheduler runs (here, without executing): slots are claimed again
    made.tick()
    assert states(store, [slot]) == ["RUNNING"]


def test_a_worker_holds_the_runs_of_a_deployment_whose_catch_up_fails(history, settings, clock):
    from pipeline.orchestration.deployments import DeploymentSpec, register

    store = history
    row = register(store, DeploymentSpec(name="held", work_queue="q"), clock.now(), settings=settings)
    run = store.create_run(flow=FLOW_NAME, name="held-run", state=State.SCHEDULED, now=clock.now(), work_queue="q",
                           scheduled_time=clock.now(), deployment_id=row["id"], parameters={"date": "2025-06-15"})
    store.set_deployment_error(row["id"], "catch-up: the data folder /gone does not exist.", clock.now())
    made = worker(store, settings, clock, queues=["q"])
    made.tick()
    assert states(store, [run]) == ["SCHEDULED"]
    store.clear_deployment_error(row["id"])
    made.tick()
    assert states(store, [run]) == ["RUNNING"]


# -- the scheduler judges workers ------------------------------------------------------------------

def scheduler(store, settings, clock, execute=False):
    options = SchedulerOptions(heartbeat=5, stale_after=30, late_after=10, materialise_every=60)
    return Scheduler(store, settings, options=options, clock=clock, execute=execute,
                     executor=FakeExecutor(store, clock=clock, behaviour=lambda run: "hang"))


def claimed_elsewhere(store, clock, *, stale_after=30):
    """A worker on another host that claimed two runs and started one, then went silent."""
    runs = due_runs(store, clock, 2, limit=2)
    store.register_worker(identity=ELSEWHERE, hostname="other-host", pid=4242, queues=["q"], concurrency=2,
                          stale_after=stale_after, now=clock.now())
    for _ in runs:
        store.claim_due_run(now=clock.now(), work_queue="q", claimer=ELSEWHERE, within_limit=True)
    store.start_run(runs[0], now=clock.now(), pid=4242)
    with store.atomic() as conn:
        conn.execute("UPDATE flow_runs SET hostname = 'other-host' WHERE id = :id", {"id": runs[0]})
    return runs


def test_the_sweep_leaves_a_worker_on_another_host_alone_while_its_heartbeat_is_fresh(store, settings, clock):
    runs = claimed_elsewhere(store, clock)
    clock.advance(25)
    store.worker_heartbeat(ELSEWHERE, clock.now())
    store.heartbeat_run(runs[0], clock.now())
    clock.advance(25)
    scheduler(store, settings, clock).tick()
    assert states(store, runs) == ["RUNNING", "PENDING"]


def test_a_silent_worker_on_another_host_has_its_running_run_crashed_and_its_claimed_run_requeued(
        history, settings, clock):
    store = history
    runs = claimed_elsewhere(store, clock)
    clock.advance(31)
    scheduler(store, settings, clock).tick()
    assert states(store, runs) == ["CRASHED", "LATE"]
    crashed, requeued = (store.get_run(run_id) for run_id in runs)
    assert "No heartbeat since" in crashed["error"] and "on other-host" in crashed["error"]
    assert requeued["claimed_by"] is None and requeued["attempts"] == 0
    assert f"claimed by the worker {ELSEWHERE}, silent since" in requeued["state_message"]


def test_a_stopped_worker_hands_its_claimed_runs_back_at_once(store, settings, clock):
    runs = claimed_elsewhere(store, clock)
    store.worker_stopped(ELSEWHERE, clock.now())
    verdict = judge(store.get_run(runs[1]), now=clock.now(), identity="me", stale_after=30,
                    workers=store.claimers([ELSEWHERE]))
    assert verdict.action == "requeue" and "which stopped before starting it" in verdict.reason


def test_scheduler_no_execute_never_claims_and_names_queues_no_live_worker_serves(history, settings, clock):
    store = history
    runs = due_runs(store, clock, 2)
    made = scheduler(store, settings, clock)
    made.tick()
    clock.advance(11)
    made.tick()
    assert made.executor.started == []
    assert [store.get_run(r)["late_reason"] for r in runs] == ["no live worker serves its work queue 'q'"] * 2
    assert states(store, runs) == ["LATE", "LATE"]
    worker(store, settings, clock, queues=["q"], concurrency=2).tick()
    assert states(store, runs) == ["RUNNING", "RUNNING"] and made.executor.started == []


def test_the_scheduler_with_local_execution_honours_a_limit_that_workers_filled(store, settings, clock):
    runs = due_runs(store, clock, 3, limit=2)
    worker(store, settings, clock, queues=["q"], concurrency=1).tick()
    with store.atomic() as conn:  # its (fake) flow process is this live one
        conn.execute("UPDATE flow_runs SET pid = :pid WHERE state = 'RUNNING'", {"pid": os.getpid()})
    made = scheduler(store, settings, clock, execute=True)
    made.tick()
    assert states(store, runs).count("RUNNING") == 2 and len(made.executor.started) == 1


# -- racing claimers ---------------------------------------------------------------------------------

def test_claimers_racing_for_the_last_free_slot_never_pass_the_limit(history, location, clock):
    """Rounds of four claimers let loose at once on a queue with one free slot: exactly one wins each round."""
    store, rounds, racers = history, 12, 4
    runs = due_runs(store, clock, rounds * 2, limit=2)
    store.claim_due_run(now=clock.now(), work_queue="q", claimer="holder", within_limit=True)
    start, claimers = threading.Barrier(racers), [Store(location) for _ in range(racers)]
    won: list[list[str]] = [[] for _ in range(racers)]

    def race(index):
        start.wait()
        run = claimers[index].claim_due_run(now=clock.now(), work_queue="q", claimer=f"racer-{index}",
                                            within_limit=True)
        won[index] += [run["id"]] if run else []

    for _ in range(rounds):
        before = sum(map(len, won))
        threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(map(len, won)) == before + 1 and states(store, runs).count("PENDING") == 2
        last = next(run_id for claimed in won for run_id in claimed if store.get_run(run_id)["state"] == "PENDING")
        store.transition(last, State.CANCELLED, now=clock.now())
    claimed = [run_id for ids in won for run_id in ids]
    assert len(claimed) == len(set(claimed)) == rounds
    for claimer in claimers:
        claimer.close()


# -- real worker processes on this host ---------------------------------------------------------------

TINY_FLOW = '''
import pathlib
import time

from prefect import flow

HERE = pathlib.Path(__file__).resolve().parent
while (HERE / "gate").exists():  # a run whose flow loads while the gate is there stays claimed, not started
    time.sleep(0.05)


@flow
def tiny(seconds: float = 0.2):
    print("executing")
    time.sleep(seconds)
'''


def tiny_flow(folder):
    """A Prefect 2 flow file: each execution logs 'executing' in its run, then sleeps ``seconds``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.py").write_text(TINY_FLOW)
    return f"prefect2:{folder / 'tiny.py'}:tiny"


def executions(store, run_id):
    return sum(1 for line in store.logs(run_id) if line["message"] == "executing")


WORKER_FLAGS = ["--tick", "0.1", "--heartbeat", "0.3", "--stale-after", "2", "--grace", "1", "--cancel-grace", "1"]


def start_worker(home, log, *extra):
    env = {**os.environ, "FHV_HOME": str(home), "FHV_DATA_URL": "demo"}
    return subprocess.Popen([sys.executable, "-m", "pipeline", "worker", "--queue", "q", *WORKER_FLAGS, *extra],
                            cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.timeout(90)
def test_a_worker_killed_with_kill_9_has_its_running_run_crashed_and_its_claimed_run_run_by_another(tmp_path):
    home, flow = tmp_path / "fhv", tiny_flow(tmp_path / "flows")
    store, clock = Store(home / "history.db"), FakeClock(dt.datetime.now(UTC))
    store.upsert_work_queue("q", concurrency_limit=None, now=clock.now())

    def run(seconds):
        return store.create_run(flow=flow, name=f"tiny-{seconds}", state=State.SCHEDULED, now=dt.datetime.now(UTC),
                                work_queue="q", scheduled_time=dt.datetime.now(UTC), parameters={"seconds": seconds})

    doomed = start_worker(home, tmp_path / "doomed.log", "--concurrency", "2")
    survivor = None
    try:
        long = run(60)
        wait_for(lambda: executions(store, long) == 1, "the long run to execute on the doomed worker")
        (tmp_path / "flows" / "gate").touch()
        held = run(0.2)
        wait_for(lambda: store.get_run(held)["state"] == "PENDING", "the doomed worker to claim the held run")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        (tmp_path / "flows" / "gate").unlink()
        sweeper = Scheduler(store, load_settings_for(home), clock=clock, execute=False,
                           options=SchedulerOptions(heartbeat=0.3, stale_after=2, late_after=60))
        wait_for(lambda: sweeper.tick() or states(store, [long, held]) == ["CRASHED", "LATE"],
                 "the sweep to end the long run and hand the held one back", timeout=5)  # once its flow has died
        assert "is gone" in store.get_run(long)["error"] and store.get_run(held)["claimed_by"] is None
        survivor = start_worker(home, tmp_path / "survivor.log")
        wait_for(lambda: store.get_run(held)["state"] == "COMPLETED", "the other worker to run the held run")
        assert store.get_run(held)["claimed_by"].split(":")[1] == str(survivor.pid)
        assert [executions(store, r) for r in (long, held)] == [1, 1]
    finally:
        for process in (doomed, survivor):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        store.close()


def load_settings_for(home):
    from pipeline.config import load_settings

    return load_settings({"FHV_HOME": str(home), "FHV_DATA_URL": "demo"})


# -- one scheduler per history on PostgreSQL ---------------------------------------------------------

def _drop_the_lock_holders_session(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                      "AND objid = %s", (0x66687601 & 0xFFFFFFFF,))


def test_on_postgresql_one_scheduler_holds_the_lock_until_its_session_is_gone(pg_url, tmp_path):
    from pipeline.config import Settings
    from pipeline.errors import HistoryLost, HistoryUnreachable, SchedulerLocked
    from pipeline.orchestration.lock import LockWatch, exclusive

    settings = Settings(home=tmp_path / "fhv", database_url=pg_url)
    first, second = Store(pg_url), Store(pg_url)
    with exclusive(settings, first) as lock:
        watch = LockWatch(lock, settings.history_label)
        watch.check()
        with pytest.raises(SchedulerLocked, match="holds the lock of postgresql://"):
            with exclusive(settings, second):
                pass
        _drop_the_lock_holders_session(pg_url)
        with pytest.raises(HistoryUnreachable, match="lost its connection"):
            watch.check()
        with exclusive(settings, second) as taken:
            assert taken.held() and taken.conn.execute("SHOW tcp_keepalives_idle", {}).fetchone()[0] == "5"
            with pytest.raises(HistoryLost, match="Another scheduler took the lock"):
                watch.reacquire(first)
    first.close()
    second.close()


def test_on_postgresql_a_scheduler_whose_session_was_dropped_takes_the_lock_again_if_it_is_free(pg_url, tmp_path):
    from pipeline.config import Settings
    from pipeline.errors import SchedulerLocked
    from pipeline.orchestration.lock import LockWatch, exclusive

    settings = Settings(home=tmp_path / "fhv", database_url=pg_url)
    first, second = Store(pg_url), Store(pg_url)
    with exclusive(settings, first) as lock:
        watch = LockWatch(lock, settings.history_label)
        _drop_the_lock_holders_session(pg_url)
        watch.reacquire(first)
        watch.check()
        with pytest.raises(SchedulerLocked, match="holds the lock of postgresql://"):
            with exclusive(settings, second):
                pass
    first.close()
    second.close()


def test_on_postgresql_a_claimer_silent_inside_its_claim_blocks_the_queue_only_briefly(pg_url, clock):
    stuck, other = Store(pg_url), Store(pg_url)
    runs = due_runs(other, clock, 1)
    stuck.claim_idle_timeout_ms = 500
    with pytest.raises(StorageError):
        with stuck.atomic() as conn:
            stuck.lock_queue(conn, "q")  # the claim's first statement; then its host goes silent
            began = time.monotonic()
            assert other.claim_due_run(now=clock.now(), work_queue="q", claimer="other", within_limit=True)
            waited = time.monotonic() - began
            conn.execute("SELECT 1", {})  # the silent claimer's session is gone
    assert 0.4 < waited < 5 and states(other, runs) == ["PENDING"]
    stuck.close()
    other.close()


def test_a_flow_process_slower_to_start_than_the_stale_time_is_killed_and_its_run_goes_back_to_the_queue(
        store, settings, clock):
    [run] = due_runs(store, clock, 1)
    executor = StuckExecutor(store, clock=clock)
    made = Worker(store, settings, options=OPTIONS, clock=clock, executor=executor, queues=["q"])
    made.tick()
    clock.advance(OPTIONS.stale_after + 1)
    made.tick()
    row = store.get_run(run)
    assert row["state"] != "CRASHED" and row["ended_at"] is None and executor.started == [run, run]
    assert row["late_reason"] == ("its flow process did not start it within the stale time of 30 seconds (a slow "
                                  "start); back in the queue")


def test_a_flow_cancelled_because_its_worker_stopped_says_so(store, settings, clock):
    [run] = due_runs(store, clock, 1)
    made = worker(store, settings, clock, queues=["q"])
    made.tick()
    made.request_stop()
    made.shutdown()
    row = store.get_run(run)
    assert row["state"] == "CANCELLED"
    assert row["state_message"].startswith("Cancelled because the worker stopped before the run finished.")
    assert row["error"] == row["state_message"]


class EndsUnstarted(StuckExecutor):
    """Flow processes that end before starting their run, as one that cannot reach the history does."""

    exitcode = EXIT_UNREACHABLE


class SweepsFailOnce(Store):
    """The history out of reach for the first read of an ended flow's run."""

    failed = False

    def run_for_sweep(self, run_id):
        if not self.failed:
            self.failed = True
            raise HistoryUnreachable("The history cannot be reached (the server restarts).")
        return super().run_for_sweep(run_id)


def test_a_flow_that_ended_while_the_history_was_away_is_settled_once_it_is_back_and_its_run_requeued(
        settings, clock):
    history = SweepsFailOnce(settings.db_path)
    [run] = due_runs(history, clock, 1)
    made = Worker(history, settings, options=OPTIONS, clock=clock, executor=EndsUnstarted(history, clock=clock),
                  queues=["q"])
    made.tick()
    made.tick()  # its reap cannot read the run: the exit waits
    assert made.outage.active and made.unsettled
    made.tick()
    row = history.get_run(run)
    assert made.unsettled == [] and row["late_reason"] == ("its flow process could not reach the history to start "
                                                           "it; back in the queue")
    history.close()
