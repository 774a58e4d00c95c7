"""The orchestrator's edges, one numbered guarantee at a time (fake clock, real SQLite, in process).

1 one bad deployment never stops the others; 2 state changes are conditional; 3 enqueueing is
atomic; 4 one scheduler per history; 5 unstarted claims go back to the queue, crash retries;
6 cancel works for every run; 7 a task timeout cannot be swallowed; 9 the history deleted or
replaced under a scheduler; 10 literal run-id prefixes, queue names, deployment files;
11 catch-up never silently drops slots. (8, 9 and 10 have more in test_data, test_storage_faults
and test_cli_edges; the real-process versions are in test_scheduler_faults.)
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import socket
import threading
import time

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError, HistoryLost, NotFound, SchedulerLocked
from pipeline.orchestration import control
from pipeline.orchestration.deployments import DeploymentSpec, load_specs, register
from pipeline.orchestration.enqueue import enqueue_backfill, plan_backfill
from pipeline.orchestration.lock import HistoryWatch
from pipeline.orchestration.runtime import flow, run_flow, task
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from pipeline.orchestration.schedules import CronSchedule, IntervalSchedule
from pipeline.orchestration.states import State
from pipeline.store import Store, to_db
from tests.conftest import FakeClock
from tests.fakes import FakeExecutor
from tests.test_scheduler import runs_of
from tests.test_scheduler import walk as scheduler_walk

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600
D = dt.date


def make(store, settings, clock, behaviour="complete", **overrides):
    options = SchedulerOptions(**({"heartbeat": 60, "stale_after": HOUR, "materialise_every": 60} | overrides))
    kinds = behaviour if callable(behaviour) else (lambda run: behaviour)
    executor = FakeExecutor(store, clock=clock, await_data=options.await_data, behaviour=kinds)
    return Scheduler(store, settings, options=options, clock=clock, executor=executor)


def walk(scheduler, clock, until, step=300):
    scheduler_walk(scheduler, clock, until, step)


def hourly(name="hourly", **fields):
    return DeploymentSpec(name=name, schedule=CronSchedule("0 * * * *", "UTC"), **fields)


def folder_deployment(tmp_path, settings, clock, store):
    folder = tmp_path / "months"
    folder.mkdir()
    register(store, hourly("local", parameters={"data_url": str(folder / "fhv_tripdata_{month}.parquet")}),
             clock.now(), settings=settings)
    return folder


# -- 1. one bad deployment never stops the others ------------------------------------------------

def test_a_deployment_whose_data_folder_vanished_is_marked_and_the_others_keep_running(
        tmp_path, store, settings, clock, capsys, monkeypatch):
    register(store, hourly(), clock.now(), settings=settings)
    folder = folder_deployment(tmp_path, settings, clock, store)
    shutil.rmtree(folder)
    walk(make(store, settings, clock), clock, until=T0 + dt.timedelta(hours=3, minutes=10))
    assert len(runs_of(store, "hourly", "COMPLETED")) == 3
    broken = store.get_deployment("local")
    assert broken["last_error"].startswith("materialise: The data folder") and str(folder) in broken["last_error"]
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    assert main(["deployment", "ls"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "local is skipped by the scheduler since" in out and "The data folder" in out


def test_a_deployment_whose_stored_spec_no_longer_loads_is_marked_and_the_others_keep_running(store, settings, clock):
    register(store, hourly(), clock.now(), settings=settings)
    register(store, hourly("other"), clock.now(), settings=settings)
    with store.atomic() as conn:  # e.g. a zone a newer tzdata removed
        conn.execute("UPDATE deployments SET schedule = '{\"type\": \"cron\", \"cron\": \"0 * * * *\", "
                     "\"timezone\": \"Mars/Olympus_Mons\"}' WHERE name = 'other'")
    walk(make(store, settings, clock), clock, until=T0 + dt.timedelta(hours=2, minutes=10))
    assert len(runs_of(store, "hourly", "COMPLETED")) == 2
    assert "Mars/Olympus_Mons" in store.get_deployment("other")["last_error"]


def test_a_deployment_error_is_cleared_once_it_works_again(tmp_path, store, settings, clock):
    folder = folder_deployment(tmp_path, settings, clock, store)
    moved = folder.rename(tmp_path / "elsewhere")
    scheduler = make(store, settings, clock)
    scheduler.tick()
    assert store.get_deployment("local")["last_error"]
    moved.rename(folder)
    clock.advance(60)
    scheduler.tick()
    assert store.get_deployment("local")["last_error"] is None


@pytest.mark.parametrize("schedule", [IntervalSchedule(10 ** 11, dt.datetime(2026, 1, 1), "UTC"),
                                      IntervalSchedule(3 * 10 ** 11, dt.datetime(2026, 1, 1), "UTC")],
                         ids=["3000-years", "9000-years"])
def test_a_schedule_that_cannot_be_computed_is_refused_before_anything_is_committed(store, settings, clock,
                                                                                     schedule):
    before = store.deployments()
    with pytest.raises(ConfigError, match="The schedule of 'huge' .* cannot be computed|never fires"):
        register(store, DeploymentSpec(name="huge", schedule=schedule), clock.now(), settings=settings)
    assert store.deployments() == before


def test_a_failing_catch_up_never_turns_latest_into_all(tmp_path, store, settings, clock):
    folder_deployment(tmp_path, settings, clock, store)
    walk(make(store, settings, clock), clock, until=T0 + dt.timedelta(minutes=30))
    clock.advance(5 * HOUR)  # down from 00:30 to 05:30: 01:00 .. 05:00 are missed
    [stored] = store.conn.execute("SELECT schedule FROM deployments WHERE name = 'local'").fetchone()
    with store.atomic() as conn:  # and the first ticks after the restart fail for it (its row cannot be read)
        conn.execute("UPDATE deployments SET schedule = '{\"type\": \"cron\", \"cron\": \"0 * * * *\", "
                     "\"timezone\": \"Mars/Olympus_Mons\"}' WHERE name = 'local'")
    restarted = make(store, settings, clock)
    for _ in range(3):
        restarted.tick()
        clock.advance(60)
    assert store.get_deployment("local")["last_error"]
    with store.atomic() as conn:
        conn.execute("UPDATE deployments SET schedule = ? WHERE name = 'local'", (stored,))
    walk(restarted, clock, until=T0 + dt.timedelta(hours=5, minutes=50), step=60)
    missed = [r for r in runs_of(store, "local") if r["scheduled_time"] < "2026-01-01T05:30"]
    assert [r["state"] for r in missed].count("COMPLETED") == 1  # 'latest': only 05:00
    assert [r["state"] for r in missed].count("CANCELLED") == 4


# -- 2. every state change is one conditional UPDATE ---------------------------------------------

def test_a_cancel_racing_mark_late_is_a_normal_outcome_not_a_scheduler_error(store, settings, clock):
    register(store, hourly(), clock.now(), settings=settings)
    scheduler = make(store, settings, clock)
    scheduler.tick()
    slot = runs_of(store, "hourly")[0]
    control.cancel(store, slot["id"], now=clock.now())
    assert store.mark_late(slot["id"], "late", clock.now()) is None
    assert store.transition(slot["id"], State.PENDING, now=clock.now()) is None
    scheduler.tick()
    assert scheduler.failures == 0 and store.get_run(slot["id"])["state"] == "CANCELLED"
    assert (store.scheduler_status() or {}).get("last_error") is None


# -- 3. enqueueing is atomic ---------------------------------------------------------------------

def test_two_backfills_of_the_same_range_at_once_enqueue_each_date_once(settings, store):
    now = dt.datetime(2026, 1, 10, tzinfo=UTC)
    control.trigger(store, settings, deployment=None, date=D(2025, 6, 15), now=now)  # registers the default
    plans = [plan_backfill(Store(settings.db_path), settings, start=D(2025, 1, 1), end=D(2025, 12, 31), now=now)
             for _ in range(2)]
    made = {}

    def enqueue(i):
        mine = Store(settings.db_path)
        made[i] = enqueue_backfill(mine, settings, plans[i], now=now)
        mine.close()

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backfilled = [r["run_date"] for r in store.runs(limit=100) if r["trigger"] == "backfill"]
    assert sorted(backfilled) == sorted(set(backfilled)) and len(backfilled) == 11  # June had a manual run
    assert sorted(len(m.runs) for m in made.values()) == [0, 11]
    assert sorted(len(m.taken) for m in made.values()) == [0, 11]


def test_a_dry_run_plan_confirmed_after_a_cli_backfill_of_the_same_dates_enqueues_nothing_twice(
        settings, store, monkeypatch, capsys):
    now = dt.datetime.now(UTC)
    plan = control.plan_backfill(store, settings, deployment=None, start=D(2025, 1, 1), end=D(2025, 3, 31), now=now)
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    assert main(["backfill", "--start", "2025-01-01", "--end", "2025-03-31"]) == 0
    done = control.backfill(store, settings, plan, now=now)
    assert done.runs == [] and done.taken == [D(2025, 1, 15), D(2025, 2, 15), D(2025, 3, 15)]
    assert len([r for r in store.runs(limit=100) if r["trigger"] == "backfill"]) == 3


def test_a_second_trigger_of_a_date_under_way_is_still_a_run_asked_for(settings, store):
    now = dt.datetime.now(UTC)
    first, second = (control.trigger(store, settings, deployment=None, date=D(2025, 2, 15), now=now) for _ in "ab")
    assert first["id"] != second["id"] and (first["enqueue_key"], second["enqueue_key"]) == ("date:1:2025-02-15", None)


def test_force_still_enqueues_a_second_run_on_purpose(settings, store):
    now = dt.datetime.now(UTC)
    first = control.plan_backfill(store, settings, deployment=None, start=D(2025, 1, 1), end=D(2025, 1, 31), now=now)
    control.backfill(store, settings, first, now=now)
    forced = control.plan_backfill(store, settings, deployment=None, start=D(2025, 1, 1), end=D(2025, 1, 31), now=now,
                                   force=True)
    assert len(control.backfill(store, settings, forced, now=now).runs) == 1
    assert len([r for r in store.runs(limit=100) if r["trigger"] == "backfill"]) == 2


# -- 4. one scheduler per history ----------------------------------------------------------------

def test_a_second_scheduler_is_refused_while_the_first_holds_the_lease_even_without_the_lock_file(
        store, settings, clock):
    first = make(store, settings, clock)
    first.tick()
    with store.atomic() as conn:  # as if another live process on this host held it
        conn.execute("UPDATE schedulers SET owner = ?, started_at = ? WHERE id = 1",
                     (f"{socket.gethostname()}:{os.getppid()}:xyz", to_db(dt.datetime.now(UTC))))
    second = make(store, settings, clock)
    with pytest.raises(SchedulerLocked, match="although its lock file is missing"):
        second.tick()


def test_a_scheduler_whose_lease_was_taken_stops_with_a_sentence(store, settings, clock):
    scheduler = make(store, settings, clock)
    scheduler.tick()
    with store.atomic() as conn:
        conn.execute("UPDATE schedulers SET owner = 'elsewhere:1:abc' WHERE id = 1")
    clock.advance(60)
    scheduler.tick()
    assert isinstance(scheduler.fatal, HistoryLost) and scheduler.stopping.is_set()
    assert "Another scheduler (elsewhere:1:abc) took over" in str(scheduler.fatal)


# -- 5. unstarted claims and crash retries -------------------------------------------------------

@pytest.mark.parametrize("retries, runs, completed", [(0, 1, 0), (1, 2, 1), (2, 2, 1)])
def test_a_crashed_run_is_retried_as_its_deployment_says(store, settings, clock, retries, runs, completed):
    register(store, hourly(retries=retries), clock.now(), settings=settings)
    kinds = lambda run: "complete" if run["trigger"] == "retry" else "crash"  # noqa: E731
    walk(make(store, settings, clock, behaviour=kinds), clock, until=T0 + dt.timedelta(hours=1, minutes=10), step=60)
    slot = [r for r in store.runs(limit=100) if r["trigger"] == "schedule" and r["started_at"]][0]
    family = [r for r in store.runs(limit=100) if r["id"] == slot["id"] or r["retry_of"] == slot["id"]]
    assert len(family) == runs and slot["state"] == "CRASHED"
    assert [r["state"] for r in family].count("COMPLETED") == completed
    if retries:
        retry = next(r for r in family if r["retry_of"])
        assert (retry["retry_number"], retry["run_date"], retry["enqueue_key"]) == (1, slot["run_date"],
                                                                                   f"retry:{slot['id']}")


def test_retries_are_off_by_default_and_validated():
    assert DeploymentSpec(name="x").retries == 0
    with pytest.raises(ConfigError, match="retries -1 of 'x' must be a whole number from 0 to 10"):
        DeploymentSpec(name="x", retries=-1)


# -- 6. cancel works for every run ---------------------------------------------------------------

def test_a_cancel_requested_before_the_scheduler_died_ends_cancelled_after_restart(store, settings, clock):
    register(store, hourly(), clock.now(), settings=settings)
    clock.advance(HOUR)
    first = make(store, settings, clock, behaviour="hang")
    first.tick()
    run = runs_of(store, "hourly", "RUNNING")[0]
    control.cancel(store, run["id"], now=clock.now())  # ... and the scheduler dies before acting on it
    with store.atomic() as conn:
        conn.execute("UPDATE flow_runs SET pid = ? WHERE id = ?", (FakeExecutor.PIDS - 7, run["id"]))
    make(store, settings, clock).tick()
    ended = store.get_run(run["id"])
    assert ended["state"] == "CANCELLED" and ended["state_message"].startswith("Cancelled on request.")


def test_the_runtime_stops_a_flow_whose_cancel_is_requested_through_the_history(store, settings):
    """What stops a foreground ``python -m pipeline run``: its heartbeat reads the cancel flag."""
    run_id = store.create_run(flow="t", name="fg", state=State.PENDING, now=T0, parameters={})

    @task(name="wait")
    def wait() -> None:
        for _ in range(200):
            time.sleep(0.05)

    @flow("t", tasks=("wait",))
    def slow() -> None:
        wait()

    threading.Timer(0.3, lambda: Store(settings.db_path).request_cancel(run_id, now=T0)).start()
    began = time.monotonic()
    result = run_flow(store, slow, run_id, {}, heartbeat_every=0.1)
    assert result.state is State.CANCELLED and time.monotonic() - began < 3
    assert store.get_run(run_id)["state"] == "CANCELLED"


# -- 7. a task timeout cannot be swallowed -------------------------------------------------------

def test_a_task_timeout_is_not_swallowed_by_a_catch_all_in_the_task(store):
    run_id = store.create_run(flow="t", name="slow", state=State.PENDING, now=T0, parameters={})

    @task(name="stubborn", timeout=0.2, retries=2)
    def stubborn() -> None:
        for _ in range(100):
            try:
                time.sleep(0.05)
            except Exception:  # noqa: BLE001 - what careless task code does
                logging.getLogger("pipeline.test").exception("swallowed")

    @flow("t", tasks=("stubborn",))
    def made() -> None:
        stubborn()

    began = time.monotonic()
    result = run_flow(store, made, run_id, {}, heartbeat_every=60)
    assert time.monotonic() - began < 2
    assert (result.state, result.error_task) == (State.FAILED, "stubborn")
    assert result.error == "The task stubborn ran longer than its timeout of 0.2 s."
    assert [t["state"] for t in store.task_runs(run_id)] == ["FAILED"]  # a timeout is not retried


def test_heartbeat_failures_are_logged(store, caplog):
    run_id = store.create_run(flow="t", name="beat", state=State.PENDING, now=T0, parameters={})

    class Flaky(Store):
        def heartbeat_run(self, run_id, now):
            raise OSError("disk I/O error")

    flaky = Flaky(store.path)

    @flow("t")
    def made() -> None:
        time.sleep(0.35)

    with caplog.at_level(logging.WARNING):
        run_flow(flaky, made, run_id, {}, heartbeat_every=0.1)
    assert f"Could not record the heartbeat of run {run_id[:8]}: OSError: disk I/O error" in caplog.text
    assert caplog.text.count("Could not record the heartbeat") == 1  # once per failing streak


# -- 9. the history deleted or replaced under a running scheduler --------------------------------

@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_scheduler_notices_its_history_deleted_or_replaced_and_stops(tmp_path, settings, how):
    store = Store(settings.db_path)
    clock = FakeClock()
    scheduler = Scheduler(store, settings, options=SchedulerOptions(heartbeat=60, stale_after=HOUR), clock=clock,
                          executor=FakeExecutor(store, clock=clock), watch=HistoryWatch(settings.db_path))
    scheduler.tick()
    store.close()
    for suffix in ("", "-wal", "-shm"):
        path = settings.db_path.with_name(settings.db_path.name + suffix)
        if path.exists():
            path.unlink()
    if how == "replaced":
        Store(settings.db_path).close()
    scheduler.tick()
    assert isinstance(scheduler.fatal, HistoryLost) and scheduler.stopping.is_set()
    assert f"The history {settings.db_path} was {how}" in str(scheduler.fatal)


# -- 10. literal prefixes, queue names, deployment files -----------------------------------------

@pytest.mark.parametrize("prefix", ["%", "_", "", "%%", "_" * 8])
def test_a_run_id_prefix_is_matched_literally(store, prefix):
    store.create_run(flow="t", name="perky-eel", state=State.SCHEDULED, now=T0, parameters={})
    with pytest.raises(NotFound, match="matches no run"):
        store.get_run(prefix)


@pytest.mark.parametrize("name", ["bad name", "", "-x", "a/b", "x" * 65, "quote'"])
def test_work_queue_names_are_validated_like_deployment_names(store, name):
    with pytest.raises(ConfigError, match="The work queue name .* is not valid"):
        control.create_work_queue(store, name, limit=None, now=T0)


def test_a_deployment_naming_a_missing_queue_creates_it_and_says_so(tmp_path, store, settings, clock):
    path = tmp_path / "d.py"
    path.write_text("from pipeline import DeploymentSpec\nx = DeploymentSpec(name='x', work_queue='gpu')\n")
    [done] = control.register_file(store, settings, path, now=clock.now())
    assert done.notes == ["Created the work queue 'gpu' (no concurrency limit) for x; the queues were default. "
                          "Set a limit with: python -m pipeline work-queue set-limit gpu N"]
    assert store.work_queue("gpu")["concurrency_limit"] is None
    assert control.register_file(store, settings, path, now=clock.now())[0].notes == []


@pytest.mark.parametrize("code", ["sys.exit(3)", "sys.exit()", "raise SystemExit('bye')"])
def test_a_deployment_file_that_exits_is_refused_with_a_sentence(tmp_path, code):
    path = tmp_path / "d.py"
    path.write_text(f"import sys\n{code}\n")
    with pytest.raises(ConfigError, match=f"The deployment file {path} called sys.exit"):
        load_specs(path)


def test_the_public_api_and_the_old_import_paths_still_work():
    import pipeline
    import pipeline.deployments
    import pipeline.schedules
    from pipeline.orchestration import deployments, schedules

    assert pipeline.DeploymentSpec is deployments.DeploymentSpec
    assert (pipeline.CronSchedule, pipeline.IntervalSchedule) == (schedules.CronSchedule, schedules.IntervalSchedule)
    assert pipeline.deployments is deployments and pipeline.schedules is schedules


# -- 11. catch-up never silently drops slots -----------------------------------------------------

def test_slots_beyond_the_catch_up_cap_are_recorded_with_the_reason(store, settings, clock):
    register(store, DeploymentSpec(name="minutely", schedule=IntervalSchedule(60, T0, "UTC"), catchup="none"),
             clock.now(), settings=settings)
    make(store, settings, clock).tick()
    clock.advance(3 * 86400)  # three days without a scheduler: 4,320 slots
    make(store, settings, clock).tick()
    [record] = store.skipped_slots()
    # made at the start: an hour ahead (00:01 .. 01:00); after the restart: the latest 100 missed slots
    assert (record["deployment"], record["count"], record["count_is_floor"]) == ("minutely", 3 * 1440 - 60 - 100, 0)
    assert (record["first_slot"], record["last_slot"]) == ("2026-01-01T01:01:00.000000Z", "2026-01-03T22:20:00.000000Z")
    assert "passed while no scheduler ran and were not made into runs" in record["reason"]
    assert "only the latest 100 missed slots within 100 days" in record["reason"]
    assert store.get_deployment("minutely")["skipped_slots"] == record["count"]
    make(store, settings, clock).tick()
    assert len(store.skipped_slots()) == 1  # recorded once


# -- the flow decides which run dates it can take (through its registration) ---------------------

def test_a_backfill_reaching_before_the_first_fhv_month_is_refused_whatever_the_caller(store, settings):
    with pytest.raises(ConfigError, match="The run date 2014-01-01 is before the first FHV month 2015-01"):
        control.plan_backfill(store, settings, deployment=None, start=D(2014, 1, 1), end=D(2015, 6, 1),
                              now=dt.datetime(2026, 1, 10, tzinfo=UTC))


def test_an_empty_deployment_name_is_not_the_default_deployment(store, settings):
    with pytest.raises(NotFound, match="There is no deployment named ''"):
        control.trigger(store, settings, deployment="", date=D(2025, 6, 15), now=dt.datetime(2026, 1, 10, tzinfo=UTC))


def test_a_foreground_run_between_its_creation_and_its_start_is_never_handed_to_the_queue(store, settings, clock):
    from pipeline.orchestration.liveness import this_process

    run_id = store.create_run(flow="fhv-duration-training", name="fg", state=State.PENDING, now=clock.now(),
                              parameters={"date": "2025-06-15"}, trigger="cli", claimed_by=this_process())
    clock.advance(7 * 86400)
    make(store, settings, clock).tick()
    assert store.get_run(run_id)["state"] == "PENDING"


def test_a_triggered_run_may_read_its_own_data_source_and_a_bad_one_is_refused(settings, store, monkeypatch, capsys):
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    assert main(["trigger", "--date", "2025-06-15", "--data-url", "demo:500", "--json"]) == 0
    run = store.get_run(__import__("json").loads(capsys.readouterr().out)["id"])
    assert (run["parameters"]["data_url"], run["data_source"], run["synthetic"]) == ("demo:500", "demo:500", 1)
    assert main(["trigger", "--date", "2025-06-15", "--data-url", "ftp://x/{month}"]) == 2
    assert "uses the scheme 'ftp', which is not supported" in capsys.readouterr().err
