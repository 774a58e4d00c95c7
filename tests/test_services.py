"""The scheduler and the worker as lists of small services, each with a name, an interval and ``run_once(now)``."""
import datetime as dt
import logging

from pipeline.orchestration.enqueue import trigger_run
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from pipeline.orchestration.services.dispatch import Dispatch
from pipeline.orchestration.services.waiting import MarkLate
from pipeline.orchestration.states import State
from pipeline.orchestration.process import ProcessOptions
from pipeline.orchestration.supervisor import Supervisor
from pipeline.orchestration.worker import Worker, WorkerOptions
from tests.fakes import FakeExecutor

OPTIONS = SchedulerOptions(tick=2, heartbeat=7, stale_after=30, materialise_every=11)


class Counting:
    """A service that notes the ``now`` of each of its rounds."""

    def __init__(self, name="count", interval=3.0):
        self.name, self.interval, self.nows = name, interval, []

    def run_once(self, now):
        self.nows.append(now)
        return len(self.nows)


class Broken(Counting):
    def run_once(self, now):
        super().run_once(now)
        raise RuntimeError("it broke")


def scheduler(store, settings, clock, **kwargs):
    return Scheduler(store, settings, options=OPTIONS, clock=clock, executor=FakeExecutor(store, clock=clock), **kwargs)


def worker(store, settings, clock):
    return Worker(store, settings, options=WorkerOptions(tick=1, heartbeat=5, stale_after=30), clock=clock,
                  executor=FakeExecutor(store, clock=clock, behaviour=lambda run: "hang"))


def due_run(store, clock, queue="default"):
    return store.create_run(flow="fhv-duration-training", name=f"due-{queue}", state=State.SCHEDULED, now=clock.now(),
                            work_queue=queue, scheduled_time=clock.now(), trigger="manual",
                            parameters={"date": "2025-06-15"})


def names(services):
    return [(service.name, service.interval) for service in services]


def test_the_scheduler_is_a_list_of_services_with_the_step_running_its_parts_in_order(store, settings, clock):
    made = scheduler(store, settings, clock)
    assert names(made.services) == [("heartbeat", 7), ("sweep", 7), ("materialise_all", 11), ("step", 2)]
    assert [part.name for part in made.step.parts] == ["reap", "cancel", "follow", "catch_up", "expire", "dispatch",
                                                       "mark_late", "notify"]


def test_a_scheduler_that_does_not_execute_has_no_dispatch_service(store, settings, clock):
    made = scheduler(store, settings, clock, execute=False)
    assert "dispatch" not in [part.name for part in made.step.parts]


def test_the_worker_is_a_list_of_services(store, settings, clock):
    made = worker(store, settings, clock)
    assert names(made.services) == [("heartbeat", 5), ("step", 1)]
    assert [part.name for part in made.step.parts] == ["reap", "cancel", "claim"]


def test_one_failing_scheduler_service_is_logged_and_recorded_and_the_others_go_on(store, settings, clock, caplog):
    run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
    made, broken, after = scheduler(store, settings, clock), Broken("broken", 3), Counting()
    made.services[:0] = [broken]
    made.step.parts[:0] = [Broken("broken part", 2)]
    made.services.append(after)
    made.tick()
    assert store.get_run(run["id"])["state"] == "COMPLETED" and after.nows == [clock.now()]
    assert made.failures == 2 and "The scheduler job broken failed: it broke" in caplog.text
    assert store.scheduler_status()["last_error"] == "broken part: RuntimeError: it broke"
    assert ("broken", 3) in [(job.job_func.__name__, job.interval) for job in made.jobs.get_jobs()]


def test_one_failing_worker_service_is_logged_and_recorded_and_the_worker_still_claims(store, settings, clock,
                                                                                         caplog):
    run_id = due_run(store, clock)
    made = worker(store, settings, clock)
    made.services[:0] = [Broken("broken", 3)]
    made.tick()
    assert store.get_run(run_id)["state"] == State.RUNNING and made.failures == 1
    assert store.worker(made.identity)["last_error"] == "broken: RuntimeError: it broke"
    assert "The worker job broken failed: it broke" in caplog.text


def test_a_process_that_runs_flows_needs_only_its_begin_and_its_services(store, settings, clock):
    class Minimal(Supervisor):
        def begin(self):
            pass

    made = Minimal(store, settings, options=ProcessOptions(), clock=clock, executor=FakeExecutor(store, clock=clock))
    made.heartbeat = Counting()
    made.services = [made.heartbeat, made.step]
    made.tick()
    clock.advance(5)
    made.tick()
    assert made.heartbeat.nows == [clock.now() - dt.timedelta(seconds=5), clock.now()]
    assert made.step.last == clock.now()
    assert [(job.job_func.__name__, job.interval) for job in made.jobs.get_jobs()] == [("count", 3), ("step", 1)]


def test_a_service_runs_on_its_own_at_the_now_it_is_given_and_says_what_it_did(store, settings, clock):
    made = scheduler(store, settings, clock)
    store.upsert_work_queue("q", concurrency_limit=None, now=clock.now())
    started = [due_run(store, clock, queue="q"), due_run(store, clock, queue="q")]
    lost = due_run(store, clock, queue="nowhere")
    assert Dispatch(made, made.failing, 1).run_once(clock.now()) == 2
    later = clock.now() + dt.timedelta(seconds=OPTIONS.late_after + 1)
    assert MarkLate(made, made.failing, late_after=OPTIONS.late_after, execute=True, interval=1).run_once(later) == 1
    assert [store.get_run(run_id)["state"] for run_id in started] == [State.COMPLETED] * 2
    assert (store.get_run(lost)["state"], store.get_run(lost)["late_reason"]) == \
        (State.LATE, "its work queue 'nowhere' does not exist")


def test_a_stopping_scheduler_says_so_for_every_waiting_run(store, settings, clock, caplog):
    caplog.set_level(logging.INFO)
    made = scheduler(store, settings, clock)
    made.tick()
    made.stopping.set()
    run_id = due_run(store, clock)
    clock.advance(OPTIONS.late_after + 1)
    made.tick()
    assert (store.get_run(run_id)["state"], store.get_run(run_id)["late_reason"]) == \
        (State.LATE, "the scheduler is stopping")
