import logging
import os
import signal
import threading
import time

import pytest

from pipeline.errors import ConfigError, DataError, NotPublishedError, TransientError
from pipeline.orchestration.heartbeat import heartbeats
from pipeline.orchestration.runtime import Retry, flow, run_flow, task
from pipeline.orchestration.states import State

log = logging.getLogger("pipeline.test")


def pending_run(store, clock):
    return store.create_run(flow="t", name="quick-fox", state=State.PENDING, now=clock.now())


def make_flow(*steps):
    """A flow whose tasks are ``steps`` (Task objects) called in order."""
    @flow("test-flow", tasks=tuple(s.name for s in steps))
    def the_flow(**kwargs):
        return {"result": [s() for s in steps]}
    return the_flow


@task
def one():
    log.info("one says hello")
    return 1


@task(name="two")
def two():
    return 2


def tasks_of(store, run_id):
    return [(t["task"], t["attempt"], t["state"]) for t in store.task_runs(run_id)]


def test_a_flow_of_tasks_completes_and_records_each_task(store, clock):
    run_id = pending_run(store, clock)
    result = run_flow(store, make_flow(one, two), run_id, {}, clock=clock)
    assert result.state is State.COMPLETED
    run = store.get_run(run_id)
    assert run["state"] == "COMPLETED" and run["metrics"] == {"result": [1, 2]}
    assert tasks_of(store, run_id) == [("one", 1, "COMPLETED"), ("two", 1, "COMPLETED")]


def test_log_lines_are_captured_with_their_task(store, clock):
    run_id = pending_run(store, clock)
    run_flow(store, make_flow(one), run_id, {}, clock=clock)
    lines = [(line["task"], line["level"], line["message"]) for line in store.logs(run_id)]
    assert ("one", "INFO", "one says hello") in lines


def test_a_transient_error_is_retried_after_the_delay_and_each_attempt_is_recorded(store, clock):
    calls = []

    @task(name="flaky", retries=2, retry_delay=7.5, retry_on=(TransientError,))
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("HTTP 500 from the mirror.")
        return "ok"

    run_id = pending_run(store, clock)
    assert run_flow(store, make_flow(flaky), run_id, {}, clock=clock).state is State.COMPLETED
    assert clock.sleeps == [7.5, 7.5]
    assert tasks_of(store, run_id) == [("flaky", 1, "FAILED"), ("flaky", 2, "FAILED"), ("flaky", 3, "COMPLETED")]


def test_a_bad_file_is_not_retried_and_later_tasks_show_as_not_run(store, clock):
    @task(name="read", retries=3, retry_on=(TransientError,))
    def read():
        raise DataError("fhv_tripdata_2021-06 has no column 'dropOff_datetime'.")

    run_id = pending_run(store, clock)
    result = run_flow(store, make_flow(read, two), run_id, {}, clock=clock)
    run = store.get_run(run_id)
    assert result.state is State.FAILED and clock.sleeps == []
    assert run["error"] == "fhv_tripdata_2021-06 has no column 'dropOff_datetime'." and run["error_task"] == "read"
    assert tasks_of(store, run_id) == [("read", 1, "FAILED"), ("two", 1, "NOT_RUN")]


def test_an_unexpected_error_fails_the_run_with_its_type_and_traceback_in_the_logs(store, clock):
    @task(name="divide")
    def divide():
        return 1 / 0

    run_id = pending_run(store, clock)
    run_flow(store, make_flow(divide), run_id, {}, clock=clock)
    run = store.get_run(run_id)
    assert run["error"] == "Unexpected error in divide: ZeroDivisionError: division by zero"
    assert any("Traceback" in line["message"] for line in store.logs(run_id, levels=["ERROR"]))


def test_a_task_past_its_timeout_fails_clearly(store, clock):
    @task(name="slow", timeout=0.05)
    def slow():
        time.sleep(2)

    run_id = pending_run(store, clock)
    run_flow(store, make_flow(slow), run_id, {}, clock=clock)
    assert store.get_run(run_id)["error"] == "The task slow ran longer than its timeout of 0.05 s."


def test_sigterm_cancels_the_running_task_and_the_run(store, clock):
    @task(name="interrupted")
    def interrupted():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(2)

    run_id = pending_run(store, clock)
    assert run_flow(store, make_flow(interrupted, two), run_id, {}, clock=clock).state is State.CANCELLED
    assert tasks_of(store, run_id) == [("interrupted", 1, "CANCELLED"), ("two", 1, "NOT_RUN")]
    assert signal.getsignal(signal.SIGTERM) is not None


def test_an_await_policy_turns_an_unpublished_month_into_a_wait(store, clock):
    @task(name="read")
    def read():
        raise NotPublishedError("2026-10")

    run_id = pending_run(store, clock)
    later = clock.now().replace(hour=6)
    result = run_flow(store, make_flow(read), run_id, {}, clock=clock,
                      await_policy=lambda error, now: later if isinstance(error, NotPublishedError) else None)
    run = store.get_run(run_id)
    assert result.state is State.AWAITING_RETRY and run["state"] == "AWAITING_RETRY"
    assert run["next_attempt_at"].startswith("2026-01-01T06:00")
    assert "fhv_tripdata_2026-10 is not published yet" in run["error"]


def test_the_heartbeat_is_stamped_while_the_flow_runs(store, clock):
    @task(name="waits")
    def waits():
        time.sleep(0.3)

    run_id = pending_run(store, clock)
    store.heartbeat_run(run_id, clock.now())
    clock.advance(60)
    run_flow(store, make_flow(waits), run_id, {}, clock=clock, heartbeat_every=0.02)
    assert store.get_run(run_id)["heartbeat_at"].startswith("2026-01-01T00:01:00")


def test_runs_of_a_process_share_one_heartbeat_thread_instead_of_starting_one_each(store, clock):
    seen = []

    @task(name="looks")
    def looks():
        seen.append({t for t in threading.enumerate() if t.name.startswith("heartbeat")})

    for _ in range(2):
        run_flow(store, make_flow(looks), pending_run(store, clock), {}, clock=clock, heartbeat_every=60)
    assert len(seen[0]) == 1 and seen[1] == seen[0]


def test_a_forked_child_beats_with_a_heartbeat_thread_of_its_own():
    parent = heartbeats()
    child = os.fork()
    if child == 0:  # the parent's thread does not run here
        os._exit(0 if heartbeats() is not parent and heartbeats().thread is None else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and heartbeats() is parent


def test_tasks_called_outside_a_flow_are_plain_functions():
    assert one() == 1


@pytest.mark.parametrize("retries, delay", [(-1, 0), (1.5, 0), (1, -2)])
def test_invalid_retry_policies_are_refused(retries, delay):
    with pytest.raises(ConfigError):
        Retry(retries, delay)


def test_a_tasks_error_is_logged_under_that_task_once(tmp_path):
    from pipeline.orchestration.runtime import flow, run_flow, task
    from pipeline.orchestration.states import State
    from pipeline.store import Store
    import datetime as dt

    store = Store(tmp_path / "h.db")
    run_id = store.create_run(flow="t", name="r", state=State.PENDING, now=dt.datetime.now(dt.timezone.utc))

    @task(name="explode")
    def explode() -> None:
        raise ValueError("the file is empty")

    @flow("t", tasks=("explode",))
    def made() -> None:
        explode()

    result = run_flow(store, made, run_id, {}, heartbeat_every=60)
    errors = [line for line in store.logs(run_id) if line["level"] == "ERROR"]
    assert result.error_task == "explode" and len(errors) == 1
    assert errors[0]["task"] == "explode" and errors[0]["message"].startswith("ValueError: the file is empty")


def test_a_history_that_refuses_log_lines_is_said_once_per_streak_without_a_traceback(capsys):
    import logging
    from types import SimpleNamespace

    from pipeline.errors import StorageError
    from pipeline.orchestration.runtime import HistoryHandler

    class Refusing:
        refuse = True
        written: list[str] = []

        def add_log(self, run_id, *, message, **_):
            if self.refuse:
                raise StorageError("The history h.db could not be read or written.")
            self.written.append(message)

    store = Refusing()
    handler = HistoryHandler(SimpleNamespace(store=store, run_id="abcdef123456", task_run_id=None))
    line = lambda text: logging.LogRecord("flow", logging.INFO, __file__, 1, text, None, None)  # noqa: E731
    handler.emit(line("one"))
    handler.emit(line("two"))
    store.refuse = False
    handler.emit(line("three"))
    store.refuse = True
    handler.emit(line("four"))
    err = capsys.readouterr().err
    assert "Traceback" not in err and store.written == ["three"]
    assert err.count("Log lines of run abcdef12 cannot be written to the history for now (The history h.db could "
                     "not be read or written.); they still go to this output.") == 2
