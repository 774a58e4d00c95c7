"""The scheduler on a fake clock (months and DST days in milliseconds), and the executor contract.

The scheduler tests that reach the store's statements (claims, lateness, expiry, sweeps, the lease) are part of
the store's contract (``tests/store_contract.py``), which runs them on SQLite and on PostgreSQL."""
import datetime as dt
import logging
import os
import signal
import socket
import sys
import time
from zoneinfo import ZoneInfo

import pytest

from pipeline.orchestration import catchup, control
from pipeline.orchestration.deployments import DeploymentSpec, default_deployment, register
from pipeline.orchestration.enqueue import trigger_run
from pipeline.orchestration.executor import AwaitData, ProcessExecutor, warn_unless_preloaded
from tests.fakes import FakeExecutor
from pipeline.orchestration.runtime import SYSTEM_CLOCK
import schedule

from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from pipeline.orchestration.schedules import CronSchedule, IntervalSchedule
from pipeline.orchestration.states import State
from pipeline.training.job import DEFAULT_DEPLOYMENT
from pipeline.store import from_db
from tests.conftest import FakeClock
from tests.httpserver import http_server  # noqa: F401 - fixture

UTC = dt.timezone.utc
NY, LONDON = "America/New_York", "Europe/London"
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600


def make(store, settings, clock, behaviour="complete", executor=None, **overrides):
    """A scheduler on the fake clock with a fake executor; thresholds suit steps of minutes to a day."""
    options = SchedulerOptions(**({"heartbeat": 60, "stale_after": 3 * 86400, "materialise_every": 60} | overrides))
    kinds = behaviour if callable(behaviour) else (lambda run: behaviour)
    executor = executor or FakeExecutor(store, clock=clock, await_data=options.await_data, behaviour=kinds)
    return Scheduler(store, settings, options=options, clock=clock, executor=executor)


def ticks(scheduler, clock, count, step=1):
    for _ in range(count):
        clock.advance(step)
        scheduler.tick()


def walk(scheduler, clock, until, step):
    while clock.now() < until:
        scheduler.tick()
        clock.advance(step)
    scheduler.tick()


def runs_of(store, name, *states):
    return store.runs(deployment=name, states=states or None, limit=1000, order="upcoming")


def slot_times(runs):
    return [r["scheduled_time"][:16] for r in runs]


def hourly(**fields):
    return DeploymentSpec(name="hourly", schedule=CronSchedule("0 * * * *", "UTC"), **fields)


def at(hours, minutes=0):
    return T0 + dt.timedelta(hours=hours, minutes=minutes)


# -- months and DST days ------------------------------------------------------------------------

def test_a_monthly_deployment_runs_each_month_exactly_once_over_two_years(store, settings, clock):
    register(store, default_deployment(), clock.now(), settings=settings)
    walk(make(store, settings, clock), clock, until=dt.datetime(2028, 1, 1, tzinfo=UTC), step=86400)
    done = runs_of(store, DEFAULT_DEPLOYMENT, "COMPLETED")
    expected = [dt.datetime(y, m, 15, 9, tzinfo=ZoneInfo(NY)) for y in (2026, 2027) for m in range(1, 13)]
    assert [from_db(r["scheduled_time"]) for r in done] == expected
    assert slot_times(done[:3]) == ["2026-01-15T14:00", "2026-02-15T14:00", "2026-03-15T13:00"]
    assert [r["run_date"] for r in done] == [e.date().isoformat() for e in expected]
    assert {r["state"] for r in runs_of(store, DEFAULT_DEPLOYMENT)} == {"COMPLETED", "SCHEDULED"}


def test_a_yearly_deployment_runs_once_a_year_and_always_shows_its_next_run(store, settings, clock):
    register(store, DeploymentSpec(name="yearly", schedule=CronSchedule("0 9 1 1 *", "UTC")), clock.now(),
             settings=settings)
    walk(make(store, settings, clock), clock, until=dt.datetime(2027, 6, 1, tzinfo=UTC), step=86400)
    assert slot_times(runs_of(store, "yearly", "COMPLETED")) == ["2026-01-01T09:00", "2027-01-01T09:00"]
    assert slot_times(runs_of(store, "yearly", "SCHEDULED")) == ["2028-01-01T09:00"]  # 214 days ahead
    assert store.get_deployment("yearly")["next_run_time"] == "2028-01-01T09:00:00.000000Z"


DST_WALKS = [
    # schedule, zone of the walk, first and last local moment, the runs expected (UTC)
    (CronSchedule("30 1 * * *", NY), "2026-10-30T00:00", "2026-11-02T12:00",
     ["2026-10-30T05:30", "2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"]),
    (CronSchedule("30 2 * * *", NY), "2026-03-07T00:00", "2026-03-09T12:00",
     ["2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:30"]),
    (CronSchedule("30 1 * * *", LONDON), "2026-03-28T00:00", "2026-03-30T12:00",
     ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"]),
    (CronSchedule("30 1 * * *", LONDON), "2026-10-24T00:00", "2026-10-26T12:00",
     ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"]),
    (CronSchedule("0 * * * *", NY), "2026-11-01T00:10", "2026-11-01T02:50",
     ["2026-11-01T05:00", "2026-11-01T06:00", "2026-11-01T07:00"]),
    (CronSchedule("30 * * * *", LONDON), "2026-03-29T00:00", "2026-03-29T04:00",
     ["2026-03-29T00:30", "2026-03-29T01:30", "2026-03-29T02:30"]),
    (IntervalSchedule(86400, dt.datetime(2026, 1, 1, 9), NY), "2026-03-07T00:00", "2026-03-09T12:00",
     ["2026-03-07T14:00", "2026-03-08T13:00", "2026-03-09T13:00"]),
    (IntervalSchedule(86400, dt.datetime(2026, 1, 1, 1, 30), LONDON), "2026-10-24T00:00", "2026-10-26T12:00",
     ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"]),
]


@pytest.mark.parametrize("restart", [False, True], ids=["one-process", "restarted-midway"])
@pytest.mark.parametrize("schedule, start, end, expected", DST_WALKS, ids=lambda v: getattr(v, "expr", None))
def test_dst_days_run_every_expected_slot_exactly_once(store, settings, schedule, start, end, expected, restart):
    tz = ZoneInfo(schedule.timezone)
    clock = FakeClock(dt.datetime.fromisoformat(start).replace(tzinfo=tz).astimezone(UTC))
    finish = dt.datetime.fromisoformat(end).replace(tzinfo=tz).astimezone(UTC)
    register(store, DeploymentSpec(name="dst", schedule=schedule), clock.now(), settings=settings)
    if restart:
        walk(make(store, settings, clock), clock, until=clock.now() + (finish - clock.now()) / 2, step=1200)
    walk(make(store, settings, clock), clock, until=finish, step=1200)
    assert slot_times(runs_of(store, "dst", "COMPLETED")) == expected
    assert {r["state"] for r in runs_of(store, "dst")} == {"COMPLETED", "SCHEDULED"}


# -- catch-up, lateness, queues -----------------------------------------------------------------

@pytest.mark.parametrize("policy, ran, skipped", [("all", 5, 0), ("latest", 1, 4), ("none", 0, 5)])
@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "machine-slept"])
def test_after_a_downtime_the_catch_up_policy_decides_which_missed_slots_run(store, settings, clock, policy, ran,
                                                                             skipped, restart):
    register(store, hourly(catchup=policy), clock.now(), settings=settings)
    first = make(store, settings, clock, stale_after=HOUR)
    walk(first, clock, until=at(0, 30), step=300)
    clock.advance(5 * HOUR)  # nothing ticks from 00:30 to 05:30: the slots 01:00 to 05:00 are missed
    walk(make(store, settings, clock, stale_after=HOUR) if restart else first, clock, until=at(6, 10), step=60)
    missed = [r for r in runs_of(store, "hourly") if r["scheduled_time"] < "2026-01-01T05:30"]
    assert slot_times(missed) == [f"2026-01-01T0{h}:00" for h in range(1, 6)]
    assert [r["state"] for r in missed].count("COMPLETED") == ran
    cancelled = [r for r in missed if r["state"] == "CANCELLED"]
    assert len(cancelled) == skipped
    assert all(f"Skipped by the catch-up policy '{policy}' of hourly" in r["state_message"] for r in cancelled)
    assert all(r["late_reason"] is None for r in missed if r["state"] == "COMPLETED")  # cleared once started
    on_time = runs_of(store, "hourly", "COMPLETED")[-1]
    assert on_time["scheduled_time"].startswith("2026-01-01T06:00") and on_time["late_reason"] is None


def test_no_slot_is_ever_later_than_the_maximum_lateness(store, settings, clock):
    register(store, hourly(catchup="all", max_lateness=2 * HOUR), clock.now(), settings=settings)
    walk(make(store, settings, clock, stale_after=HOUR), clock, until=at(0, 30), step=300)
    clock.advance(5 * HOUR)
    walk(make(store, settings, clock, stale_after=HOUR), clock, until=at(5, 40), step=60)
    states = {r["scheduled_time"][11:16]: r for r in runs_of(store, "hourly")}
    assert [states[h]["state"] for h in ("01:00", "02:00", "03:00", "04:00", "05:00")] == (["CANCELLED"] * 3 +
                                                                                            ["COMPLETED"] * 2)
    assert "could not start within the maximum lateness of 2 hours of hourly" in states["01:00"]["state_message"]


@pytest.mark.parametrize("down_until, missed, cancelled", [(at(0, 40), 0, 0), (at(5, 30), 5, 4)],
                         ids=["short-pause", "downtime"])
def test_catch_up_only_acts_after_a_pause_longer_than_stale_after(store, settings, clock, down_until, missed,
                                                                  cancelled):
    register(store, hourly(catchup="latest"), clock.now(), settings=settings)
    options = SchedulerOptions(heartbeat=60, stale_after=HOUR)
    assert catchup.catch_up(store, settings, options, since=at(0, 30), now=down_until) == missed
    assert len(runs_of(store, "hourly", "CANCELLED")) == cancelled


def test_late_runs_say_why(store, settings, clock):
    triggered = trigger_run(store, settings, date=dt.date(2025, 1, 15), now=clock.now())
    store.set_work_queue_paused("default", True)
    scheduler = make(store, settings, clock)
    scheduler.tick()
    clock.advance(16)
    scheduler.tick()
    run = store.get_run(triggered["id"])  # held, not late: the user paused the queue
    assert run["state"] == "SCHEDULED"
    assert run["late_reason"] == "held: its work queue 'default' is paused"
    store.set_work_queue_paused("default", False)
    clock.advance(1)
    scheduler.tick()
    assert store.get_run(run["id"])["state"] == "COMPLETED"


@pytest.mark.parametrize("policy, ran", [("latest", ["01:00", "04:00", "05:00", "06:00"]),
                                         ("none", ["01:00", "05:00", "06:00"])])
def test_a_paused_deployment_starts_nothing_holds_its_runs_and_resumes_by_its_catch_up_policy(
        store, settings, clock, policy, ran):
    register(store, hourly(catchup=policy), clock.now(), settings=settings)
    scheduler = make(store, settings, clock)
    walk(scheduler, clock, until=at(1, 30), step=300)
    control.pause(store, "hourly", now=clock.now())
    held = {r["id"]: r["name"] for r in runs_of(store, "hourly", "SCHEDULED")}
    manual = trigger_run(store, settings, deployment="hourly", date=dt.date(2025, 6, 15), now=clock.now())
    walk(scheduler, clock, until=at(4, 30), step=300)
    assert store.get_run(manual["id"])["state"] == "SCHEDULED"  # a paused deployment starts no run at all
    assert store.get_run(manual["id"])["late_reason"] == "held: its deployment hourly is paused"
    assert store.get_deployment("hourly")["held_runs"] == len(held) + 1
    assert {r["id"]: r["name"] for r in store.runs(deployment="hourly", limit=100) if r["id"] in held} == held
    control.resume(store, settings, "hourly", now=clock.now())
    walk(scheduler, clock, until=at(6, 30), step=300)
    assert store.get_run(manual["id"])["state"] == "COMPLETED"
    done = [r["scheduled_time"][11:16] for r in runs_of(store, "hourly", "COMPLETED") if r["trigger"] == "schedule"]
    assert done == ran


# -- cancel, awaiting data, crashes -------------------------------------------------------------

def started(store, settings, clock, behaviour, **overrides):
    run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
    scheduler = make(store, settings, clock, behaviour=behaviour, **overrides)
    scheduler.tick()
    assert store.get_run(run["id"])["state"] == "RUNNING"
    return scheduler, run["id"]


def test_cancelling_a_running_run_sends_sigterm_and_the_flow_records_cancelled(store, settings, clock):
    scheduler, run_id = started(store, settings, clock, "hang")
    assert store.request_cancel(run_id, now=clock.now())["cancel_requested"] == 1
    for _ in range(2):  # SIGTERM, then reap the ended process
        clock.advance(1)
        scheduler.tick()
    run = store.get_run(run_id)
    assert (run["state"], run["state_message"]) == ("CANCELLED", "Cancelled on request.")
    assert scheduler.executor.running() == {}


def test_a_flow_ignoring_sigterm_is_killed_after_the_grace_and_its_slot_freed(store, settings, clock):
    scheduler, run_id = started(store, settings, clock, "stubborn", cancel_grace=10)
    store.request_cancel(run_id, now=clock.now())
    nxt = trigger_run(store, settings, date=dt.date(2025, 7, 15), now=clock.now())
    for _ in range(4):  # SIGTERM (ignored), wait, SIGKILL after 10 s, reap
        clock.advance(6)
        scheduler.tick()
    run = store.get_run(run_id)
    assert run["state"] == "CANCELLED"
    assert run["state_message"].startswith("Cancelled on request after not stopping within 10 seconds of SIGTERM.")
    assert "was killed by SIGKILL" in run["state_message"]
    assert store.get_run(nxt["id"])["state"] == "RUNNING"


def test_an_unpublished_month_waits_every_6_hours_in_sight_then_runs(store, settings, clock):
    published = dt.datetime(2026, 1, 16, 3, tzinfo=UTC)
    register(store, default_deployment(), clock.now(), settings=settings)
    scheduler = make(store, settings, clock,
                     behaviour=lambda run: "complete" if clock.now() >= published else "not_published")
    walk(scheduler, clock, until=dt.datetime(2026, 1, 15, 15, tzinfo=UTC), step=HOUR)
    run = runs_of(store, DEFAULT_DEPLOYMENT)[0]
    assert (run["state"], run["next_attempt_at"]) == ("AWAITING_RETRY", "2026-01-15T20:00:00.000000Z")
    assert run["late_reason"].startswith("awaiting data: fhv_tripdata_2025-11 is not published yet")
    walk(scheduler, clock, until=dt.datetime(2026, 1, 17, tzinfo=UTC), step=HOUR)
    run = store.get_run(run["id"])
    assert (run["state"], run["attempts"]) == ("COMPLETED", 4)
    assert [(t["attempt"], t["state"]) for t in store.task_runs(run["id"])] == [
        (1, "FAILED"), (2, "FAILED"), (3, "FAILED"), (4, "COMPLETED")]


def test_waiting_for_data_is_not_cut_short_by_the_maximum_lateness(store, settings, clock):
    published = dt.datetime(2026, 1, 15, 21, tzinfo=UTC)
    spec = DeploymentSpec(name="strict", schedule=CronSchedule("0 9 15 * *", NY), max_lateness=HOUR)
    register(store, spec, clock.now(), settings=settings)
    scheduler = make(store, settings, clock,
                     behaviour=lambda run: "complete" if clock.now() >= published else "not_published")
    walk(scheduler, clock, until=dt.datetime(2026, 1, 16, 6, tzinfo=UTC), step=HOUR)
    run = runs_of(store, "strict")[0]
    assert (run["state"], run["attempts"], run["started_at"][:16]) == ("COMPLETED", 3, "2026-01-16T02:00")


def test_a_month_never_published_fails_10_days_after_its_slot(store, settings, clock):
    register(store, default_deployment(), clock.now(), settings=settings)
    clock.advance((dt.datetime(2026, 1, 15, 13, tzinfo=UTC) - clock.now()).total_seconds())
    walk(make(store, settings, clock, behaviour="not_published"), clock,
         until=dt.datetime(2026, 1, 26, tzinfo=UTC), step=HOUR)
    run = runs_of(store, DEFAULT_DEPLOYMENT)[0]
    assert (run["state"], run["attempts"], run["ended_at"]) == ("FAILED", 41, "2026-01-25T14:00:00.000000Z")
    assert "fhv_tripdata_2025-11 is not published yet" in run["error"]


def test_a_manual_run_of_an_unpublished_month_fails_at_once(store, settings, clock):
    run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
    make(store, settings, clock, behaviour="not_published").tick()
    assert store.get_run(run["id"])["state"] == "FAILED"


def orphan(store, clock, *, pid=None, hostname=None, claimed_by="old-host:1:abc", beat=None, start=True):
    run_id = store.create_run(flow="fhv-duration-training", name="lost-run", state=State.SCHEDULED, now=clock.now(),
                              work_queue="elsewhere", scheduled_time=clock.now(), trigger="manual",
                              parameters={"date": "2025-06-15"})
    store.upsert_work_queue("elsewhere", concurrency_limit=0, now=clock.now())
    store.claim_due_run(now=clock.now(), work_queue="elsewhere", claimer=claimed_by)
    if start:
        store.start_run(run_id, now=clock.now(), pid=pid)
        with store.atomic() as conn:
            beat_at = (beat or clock.now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            conn.execute("UPDATE flow_runs SET hostname = COALESCE(:hostname, hostname), heartbeat_at = :beat "
                         "WHERE id = :id", {"hostname": hostname, "beat": beat_at, "id": run_id})
    return run_id


def test_on_start_up_runs_whose_process_is_gone_become_crashed(store, settings, clock):
    gone = orphan(store, clock, pid=FakeExecutor.PIDS - 1)
    silent = orphan(store, clock, pid=123, hostname="other-host", beat=clock.now() - dt.timedelta(minutes=5))
    fresh = orphan(store, clock, pid=123, hostname="other-host")
    make(store, settings, clock, stale_after=120).tick()
    states = {run_id: store.get_run(run_id) for run_id in (gone, silent, fresh)}
    assert [states[r]["state"] for r in (gone, silent, fresh)] == ["CRASHED"] * 2 + ["RUNNING"]
    assert f"Its flow process (pid {FakeExecutor.PIDS - 1}) is gone" in states[gone]["state_message"]
    assert "No heartbeat since 2025-12-31 23:55:00 UTC: its process on other-host" in states[silent]["state_message"]


def test_a_run_cancelled_while_claimed_by_a_scheduler_that_died_before_starting_it_ends_cancelled(
        store, settings, clock):
    dead = f"{socket.gethostname()}:{FakeExecutor.PIDS - 2}:abc"
    never_started = orphan(store, clock, claimed_by=dead, start=False)
    store.request_cancel(never_started, now=clock.now())
    make(store, settings, clock, stale_after=120).tick()
    run = store.get_run(never_started)
    assert (run["state"], run["claimed_by"], run["attempts"]) == ("CANCELLED", None, 0)
    assert run["state_message"] == (f"Cancelled on request before it started; it was claimed by the scheduler {dead}, "
                                    "which stopped before starting it.")
    assert run["ended_at"] is not None


def test_a_run_claimed_by_another_live_scheduler_is_never_marked_crashed(store, settings, clock):
    alive = f"{socket.gethostname()}:{os.getppid()}:abc"  # a live process that is not this one
    claimed = orphan(store, clock, claimed_by=alive, start=False)
    clock.advance(86400)
    make(store, settings, clock, stale_after=120).tick()
    assert store.get_run(claimed)["state"] == "PENDING"


def test_a_flow_still_running_in_another_command_is_left_alone(store, settings):
    clock = FakeClock(dt.datetime.now(UTC))  # the real process started before this moment
    alive = orphan(store, clock, pid=os.getpid(), claimed_by=None)
    make(store, settings, clock).tick()
    assert store.get_run(alive)["state"] == "RUNNING"


def test_the_end_of_a_run_is_logged_with_a_readable_duration(store, settings, clock, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.orchestration.scheduler")
    scheduler, run_id = started(store, settings, clock, "hang")
    store.request_cancel(run_id, now=clock.now())
    ticks(scheduler, clock, 2, step=1.25)  # SIGTERM at 1.25 s (the flow records CANCELLED), then reap
    assert f"({run_id[:8]}) ended CANCELLED after 1.2 s: Cancelled on request." in caplog.text


class DiesAtOnce(FakeExecutor):
    """A child that exits before its flow records anything (not even RUNNING)."""

    def start(self, run):
        pid = next(self._pids)
        self.processes[run["id"]] = {"pid": pid, "kind": "crash", "exitcode": 1}
        return pid


def test_a_run_whose_process_died_before_its_flow_started_is_logged_as_such(store, settings, clock, caplog):
    run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
    scheduler = make(store, settings, clock, executor=DiesAtOnce(store, clock=clock))
    ticks(scheduler, clock, 2)
    assert f"({run['id'][:8]}) ended CRASHED before its flow started: The flow process" in caplog.text
    assert " after -" not in caplog.text


def test_a_flow_process_without_the_preloaded_model_warns(monkeypatch, caplog):
    import pipeline.training.model  # noqa: F401 - present, as the forkserver preloads it

    modules = ("pipeline.training.model",)
    assert warn_unless_preloaded(modules) and "did not preload" not in caplog.text
    monkeypatch.delitem(sys.modules, "pipeline.training.model")
    assert not warn_unless_preloaded(modules)
    assert "The forkserver did not preload pipeline.training.model, so this flow process" in caplog.text


def test_an_own_flow_whose_heartbeat_goes_stale_is_killed_and_crashed(store, settings, clock):
    scheduler, run_id = started(store, settings, clock, "hang", stale_after=120, heartbeat=30)
    clock.advance(100)
    scheduler.tick()
    assert store.get_run(run_id)["state"] == "RUNNING"
    clock.advance(60)
    scheduler.tick()
    ticks(scheduler, clock, 1)
    run = store.get_run(run_id)
    assert (run["state"], run["state_message"]) == ("CRASHED", "No heartbeat for more than 2 minutes, so the flow "
                                                               "process was killed.")


# -- the loop itself ----------------------------------------------------------------------------

class BrokenPoll(FakeExecutor):
    def poll(self):
        raise RuntimeError("poll broke")


def test_a_failing_job_is_logged_and_recorded_and_the_other_jobs_go_on(store, settings, clock, caplog):
    run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
    scheduler = make(store, settings, clock, executor=BrokenPoll(store, clock=clock))
    scheduler.tick()
    assert store.get_run(run["id"])["state"] == "COMPLETED"
    assert scheduler.failures == 1 and "The scheduler job reap failed: poll broke" in caplog.text
    assert store.scheduler_status()["last_error"] == "reap: RuntimeError: poll broke"


class NoForks(FakeExecutor):
    def start(self, run):
        raise OSError("no forks left")


def test_a_flow_process_that_cannot_start_is_crashed_with_the_reason(store, settings, clock):
    run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
    make(store, settings, clock, executor=NoForks(store, clock=clock)).tick()
    assert store.get_run(run["id"])["state_message"] == "The flow process could not be started: OSError: no forks left"


def test_a_run_due_between_ticks_starts_at_its_time_not_at_the_next_tick(store, settings, clock):
    scheduler = make(store, settings, clock, tick=10)
    scheduler.tick()
    run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now() + dt.timedelta(seconds=3))
    scheduler.tick()
    assert scheduler._idle() == 3
    clock.advance(3)
    scheduler.tick()
    assert store.get_run(run["id"])["started_at"] == "2026-01-01T00:00:03.000000Z"


def test_the_schedule_library_only_sets_the_cadence_of_the_housekeeping_jobs(store, settings, clock):
    scheduler = make(store, settings, clock, tick=2, heartbeat=7, stale_after=30, materialise_every=11)
    scheduler.tick()
    assert type(scheduler.jobs) is schedule.Scheduler
    assert all(type(job) is schedule.Job for job in scheduler.jobs.get_jobs())
    cadence = sorted((job.job_func.__name__, job.interval) for job in scheduler.jobs.get_jobs())
    assert cadence == [("heartbeat", 7), ("materialise_all", 11), ("step", 2), ("sweep", 7)]


class StopAfter(FakeClock):
    def __init__(self, start, sleeps, scheduler=None):
        super().__init__(start)
        self.limit, self.scheduler = sleeps, scheduler

    def sleep(self, seconds):
        super().sleep(seconds)
        if len(self.sleeps) == self.limit:
            self.scheduler.request_stop()


@pytest.mark.parametrize("behaviour, ended_by", [("hang", "Cancelled because the scheduler stopped before the run "
                                                           "finished."),
                                                 ("stubborn", "Cancelled because the scheduler stopped")])
def test_stopping_lets_flows_finish_within_the_grace_then_cancels_them_and_hands_back_waiting_runs(
        store, settings, behaviour, ended_by):
    clock = StopAfter(T0, 2)
    running = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
    waiting = trigger_run(store, settings, date=dt.date(2025, 7, 15), now=clock.now())
    clock.scheduler = scheduler = make(store, settings, clock, behaviour=behaviour, shutdown_grace=5, cancel_grace=2)
    scheduler.run_forever()
    run = store.get_run(running["id"])
    assert run["state"] == "CANCELLED" and run["state_message"].startswith(ended_by)
    assert store.get_run(waiting["id"])["state"] in ("SCHEDULED", "LATE")
    assert clock.now() - T0 >= dt.timedelta(seconds=5)
    if behaviour == "hang":
        assert "The scheduler stopped while this run was running" in store.logs(run["id"])[-1]["message"]


@pytest.mark.parametrize("fields, words", [({"tick": 0}, "tick=0 must be a positive"),
                                           ({"stale_after": 3, "heartbeat": 5}, "stale_after=3 s must be longer")])
def test_bad_scheduler_options_are_refused(fields, words):
    with pytest.raises(Exception, match=words):
        SchedulerOptions(**fields)


# -- the executor contract: the fake passes the same tests as the real child processes ------------

@pytest.fixture(params=["fake", "process"])
def executor(request, store, settings, http_server):  # noqa: F811
    months = ("2026-01", "2026-02")
    for month in months:
        http_server.route(f"/slow/fhv_tripdata_{month}.parquet", body=b"never sent", delay=30)
    urls = {"complete": "demo:3000", "hang": http_server.url("/slow/fhv_tripdata_{month}.parquet"),
            "not_published": http_server.url("/missing/fhv_tripdata_{month}.parquet")}
    kinds = {url: kind for kind, url in urls.items()}
    await_data = AwaitData(every=3600)
    if request.param == "fake":
        made = FakeExecutor(store, await_data=await_data, behaviour=lambda run: kinds[run["parameters"]["data_url"]])
    else:
        made = ProcessExecutor(settings, await_data=await_data, heartbeat_every=0.5)
    made.urls = urls
    yield made
    made.close()


def claimed(store, executor, kind, trigger="schedule"):
    now = SYSTEM_CLOCK.now()
    store.create_run(flow="fhv-duration-training", name=f"{kind}-run", state=State.SCHEDULED, now=now,
                     parameters={"date": "2026-03-15", "data_url": executor.urls[kind]}, scheduled_time=now,
                     work_queue="contract", trigger=trigger)
    return store.claim_due_run(now=now, work_queue="contract", claimer="contract-test")


def wait_exit(executor, run_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for exit_ in executor.poll():
            if exit_.run_id == run_id:
                return exit_
        time.sleep(0.02)
    raise AssertionError(f"the run {run_id} did not end within {timeout} s")


def wait_in_task(store, run_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not [t for t in store.task_runs(run_id) if t["state"] == "RUNNING"]:
        assert time.monotonic() < deadline, "the flow never started its first task"
        time.sleep(0.02)


@pytest.mark.timeout(60)
def test_contract_a_started_run_completes_and_its_exit_is_reported(store, executor):
    run = claimed(store, executor, "complete")
    pid = executor.start(run)
    assert executor.running() == {run["id"]: pid}
    exit_ = wait_exit(executor, run["id"])
    assert (exit_.exitcode, exit_.pid) == (0, pid) and executor.running() == {}
    assert store.get_run(run["id"])["state"] == "COMPLETED"


@pytest.mark.timeout(60)
def test_contract_sigterm_makes_the_flow_record_cancelled_itself(store, executor):
    run = claimed(store, executor, "hang")
    executor.start(run)
    wait_in_task(store, run["id"])
    assert executor.signal(run["id"], signal.SIGTERM)
    assert wait_exit(executor, run["id"]).exitcode == 0
    assert store.get_run(run["id"])["state"] == "CANCELLED"
    assert [t["state"] for t in store.task_runs(run["id"])][0] == "CANCELLED"


@pytest.mark.timeout(60)
def test_contract_sigkill_leaves_the_run_unrecorded_and_reports_the_signal(store, executor):
    run = claimed(store, executor, "hang")
    executor.start(run)
    wait_in_task(store, run["id"])
    assert executor.signal(run["id"], signal.SIGKILL)
    exit_ = wait_exit(executor, run["id"])
    assert exit_.exitcode == -signal.SIGKILL and exit_.how == "was killed by SIGKILL"
    assert store.get_run(run["id"])["state"] == "RUNNING"
    assert not executor.signal(run["id"], signal.SIGTERM)


@pytest.mark.timeout(60)
def test_contract_a_scheduled_run_of_an_unpublished_month_awaits_the_data(store, executor):
    run = claimed(store, executor, "not_published")
    before = SYSTEM_CLOCK.now()
    executor.start(run)
    wait_exit(executor, run["id"])
    done = store.get_run(run["id"])
    assert done["state"] == "AWAITING_RETRY" and "fhv_tripdata_2026-01 is not published yet" in done["error"]
    hour = dt.timedelta(hours=1)
    assert before + hour <= from_db(done["next_attempt_at"]) <= SYSTEM_CLOCK.now() + hour


@pytest.mark.timeout(60)
def test_contract_a_manual_run_of_an_unpublished_month_fails_at_once(store, executor):
    run = claimed(store, executor, "not_published", trigger="manual")
    executor.start(run)
    wait_exit(executor, run["id"])
    assert store.get_run(run["id"])["state"] == "FAILED"
