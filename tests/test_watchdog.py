"""A flow's own code cannot keep its run going past a task's timeout or a cancel (issue 22, points 3 and 4).

In process where the flow gives up in the end; in a real process where it never does, so that the
watchdog has to end that process.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pipeline.orchestration import control
from pipeline.orchestration.runtime import flow, run_flow, task
from pipeline.orchestration.states import State
from pipeline.store import Store
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def new_run(store: Store) -> str:
    return store.create_run(flow="t", name="watched", state=State.PENDING, now=T0, parameters={})


def test_a_nested_tasks_timer_does_not_clear_its_outer_tasks_timer(store):
    @task(name="inner", timeout=5)
    def inner() -> None:
        time.sleep(0.01)

    @task(name="outer", timeout=0.3)
    def outer() -> None:
        inner()
        time.sleep(2)

    run_id = new_run(store)
    began = time.monotonic()
    result = run_flow(store, flow("t")(lambda: outer()), run_id, {}, heartbeat_every=60)
    assert time.monotonic() - began < 1.5
    assert (result.state, result.error_task) == (State.FAILED, "outer")
    assert result.error == "The task outer ran longer than its timeout of 0.3 s."


def test_a_task_that_swallows_its_timeout_and_returns_still_fails(store):
    @task(name="stubborn", timeout=0.2)
    def stubborn() -> str:
        try:
            time.sleep(1)
        except:  # noqa: E722 - what careless task code does
            pass
        return "done anyway"

    run_id = new_run(store)
    result = run_flow(store, flow("t")(lambda: stubborn()), run_id, {}, heartbeat_every=60)
    assert (result.state, result.error_task) == (State.FAILED, "stubborn")
    assert [t["state"] for t in store.task_runs(run_id)] == ["FAILED"]


def test_a_flow_that_catches_a_tasks_timeout_still_fails(store):
    @task(name="slow", timeout=0.2)
    def slow() -> None:
        time.sleep(1)

    def body() -> str:
        try:
            slow()
        except BaseException:  # noqa: BLE001
            return "carried on"

    result = run_flow(store, flow("t")(body), new_run(store), {}, heartbeat_every=60)
    assert (result.state, result.error) == (State.FAILED, "The task slow ran longer than its timeout of 0.2 s.")


def test_sys_exit_in_a_task_ends_the_run_failed_instead_of_leaving_it_running(store):
    @task(name="quitter")
    def quitter() -> None:
        sys.exit(3)

    run_id = new_run(store)
    result = run_flow(store, flow("t")(lambda: quitter()), run_id, {}, heartbeat_every=60)
    run = store.get_run(run_id)
    assert (result.state, run["state"], run["error_task"]) == (State.FAILED, "FAILED", "quitter")
    assert run["error"] == "Unexpected error in quitter: SystemExit: 3"


def test_a_flow_that_catches_its_cancel_and_returns_is_recorded_cancelled(store, settings):
    run_id = new_run(store)

    def body() -> str:
        try:
            for _ in range(100):
                time.sleep(0.05)
        except BaseException:  # noqa: BLE001
            return "carried on"

    threading.Timer(0.2, lambda: Store(settings.db_path).request_cancel(run_id, now=T0)).start()
    result = run_flow(store, flow("t")(body), run_id, {}, heartbeat_every=0.1)
    assert result.state is State.CANCELLED and store.get_run(run_id)["state"] == "CANCELLED"


def test_a_run_whose_tasks_have_no_timeout_starts_no_watchdog_thread_and_one_with_a_timeout_does(store):
    seen = []

    @task(name="plain")
    def plain() -> None:
        seen.append(sorted(t.name for t in threading.enumerate() if t.name == "watchdog"))

    @task(name="timed", timeout=30)
    def timed() -> None:
        plain()

    run_flow(store, flow("t")(lambda: (plain(), timed())), new_run(store), {}, heartbeat_every=60)
    assert seen == [[], ["watchdog"]]


# -- flows that never stop: the watchdog ends their process --------------------------------------

def run_script(tmp_path: Path, source: str, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> subprocess.Popen:
    """``python [before] stubborn.py [after]`` with the history in tmp_path/home."""
    script = tmp_path / "stubborn.py"
    script.write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FHV_HOME": str(tmp_path / "home")}
    return subprocess.Popen([sys.executable, *before, str(script), *after], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


PREFECT2_SWALLOWER = '''
import time
from prefect import flow, task

@task(timeout_seconds=0.5)
def stubborn():
    for _ in range(200):
        try:
            time.sleep(0.1)
        except:
            pass

@flow
def main():
    stubborn()

main()
'''


@pytest.mark.timeout(60)
def test_a_prefect2_task_that_swallows_its_timeout_in_a_bare_except_is_ended_after_its_grace(tmp_path):
    began = time.monotonic()
    process = run_script(tmp_path, PREFECT2_SWALLOWER, before=("-m", "pipeline.prefect2"))
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - began < 10, "the task ran on past its timeout and grace"
    [run] = Store(tmp_path / "home" / "history.db").runs(limit=5)
    assert (run["state"], run["error_task"]) == ("FAILED", "stubborn")
    assert run["error"] == ("The task stubborn ran longer than its timeout of 0.5 s. It did not stop within 1 s "
                            "more, so its process was ended.")
    assert [t["state"] for t in Store(tmp_path / "home" / "history.db").task_runs(run["id"])] == ["FAILED"]
    assert process.returncode == 1 and "so its process was ended" in err


CANCEL_IGNORER = '''
import sys, time
from pipeline.orchestration.runtime import flow, run_flow, task
from pipeline.orchestration.states import State
from pipeline.store import Store
from pipeline.orchestration.clock import SYSTEM_CLOCK

@task(name="deaf")
def deaf():
    while True:
        try:
            time.sleep(0.05)
        except BaseException:
            pass

store = Store(sys.argv[1])
run_id = store.create_run(flow="t", name="deaf", state=State.PENDING, now=SYSTEM_CLOCK.now(), parameters={})
print(run_id, flush=True)
run_flow(store, flow("t", tasks=("deaf",))(lambda: deaf()), run_id, {}, heartbeat_every=0.1, cancel_grace=0.5)
'''


@pytest.mark.timeout(60)
def test_a_foreground_flow_that_ignores_its_cancel_is_ended_and_recorded_cancelled(tmp_path):
    db = tmp_path / "history.db"
    Store(db).close()
    script = run_script(tmp_path, CANCEL_IGNORER, after=(str(db),))
    run_id = script.stdout.readline().strip()
    store = Store(db)
    wait_for(lambda: store.get_run(run_id)["state"] == "RUNNING", "the run to start")
    control.cancel(store, run_id, now=T0)
    script.wait(timeout=10)
    run = store.get_run(run_id)
    assert run["state"] == "CANCELLED"
    assert run["error"] == ("Cancelled on request; the flow did not stop within 0.5 s of being asked, so its "
                            "process was ended.")
    assert [t["state"] for t in store.task_runs(run_id)] == ["CANCELLED"]
