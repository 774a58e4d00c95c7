"""A third flow, defined in the test suite (``tests/flows/echo.py``) and registered through FHV_FLOWS, driven
through a deployment file, the scheduler (on a fake clock, and a real process) and the command line, without a
line of generic code naming it. ``echo_history`` makes its history for other tests (the dashboard's pages)."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.flows import load_flows
from pipeline.orchestration import notify, registry
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from pipeline.store import Store, from_db
from tests.conftest import FakeClock, wait_for
from tests.fakes import InlineExecutor
from tests.flows import echo as echo_flow

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
FHV_FLOWS = "tests.flows.echo:ENTRY"
DEPLOYMENTS = '''
from pipeline import CronSchedule, DeploymentSpec

echo_daily = DeploymentSpec(name="echo-daily", flow="echo", parameters={"word": "hello"},
                            schedule=CronSchedule("0 8 * * *", "UTC"))
echo_refused = DeploymentSpec(name="echo-refused", flow="echo", parameters={"word": "nope"},
                              schedule=CronSchedule("0 9 * * *", "UTC"))
'''


@pytest.fixture
def echo(monkeypatch, settings):
    """FHV_FLOWS names the echo flow, for this process (registered now) and the processes it starts; FHV_HOME is
    the test's history. The registry is restored after the test."""
    monkeypatch.setattr(registry, "_FLOWS", dict(registry._FLOWS))
    monkeypatch.setenv("FHV_FLOWS", FHV_FLOWS)
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    load_flows()
    return settings


def echo_history(store: Store, settings, folder: Path) -> tuple[FakeClock, dict[str, dict]]:
    """A history where the echo flow's two deployments (a deployment file, created with the CLI) ran for a day on
    their schedules through the scheduler, on a fake clock, their runs executed in this process: ``echo-daily``
    COMPLETED (word "hello", 5 letters), ``echo-refused`` FAILED at the flow's own gate (word "nope").
    Needs the flow registered (the ``echo`` fixture). Returns the clock and the two runs by deployment."""
    (folder / "echo_deployments.py").write_text(DEPLOYMENTS)
    assert main(["deployment", "create", str(folder / "echo_deployments.py")]) == 0
    clock = FakeClock(dt.datetime.now(UTC).replace(microsecond=0))
    scheduler = Scheduler(store, settings, options=SchedulerOptions(heartbeat=60, stale_after=3 * 86400,
                                                                    materialise_every=60),
                          clock=clock, executor=InlineExecutor(store, settings, clock=clock))
    for _ in range(25):
        scheduler.tick()
        clock.advance(3600)
    ended = {name: store.runs(deployment=name, states=("COMPLETED", "FAILED"), limit=10)
             for name in ("echo-daily", "echo-refused")}
    return clock, {name: runs[-1] for name, runs in ended.items()}


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_its_deployments_run_on_their_schedules_with_its_own_fields_tasks_and_metrics(echo, store, tmp_path):
    _, runs = echo_history(store, echo, tmp_path)
    done, refused = runs["echo-daily"], runs["echo-refused"]
    assert (done["flow"], done["state"], done["word"], done["metrics"]) == \
        ("echo", "COMPLETED", "hello", {"letters": 5, "shouted": "HELLO"})
    assert [t["task"] for t in store.task_runs(done["id"])] == list(echo_flow.TASKS)
    assert (refused["state"], refused["error_task"], refused["word"]) == ("FAILED", "shout", "nope")
    assert refused["error"].startswith(echo_flow.REFUSED)


def test_its_own_classification_makes_its_refusal_a_gate_notification(echo, store, tmp_path):
    _, runs = echo_history(store, echo, tmp_path)
    ended = from_db(runs["echo-refused"]["ended_at"])  # a scan just after it ended
    kinds = {(e.kind, e.run_id) for e in notify.find_events(store, echo, ended + dt.timedelta(minutes=1))}
    assert ("gate_blocked", runs["echo-refused"]["id"]) in kinds
    assert not any(run_id == runs["echo-daily"]["id"] for _, run_id in kinds)


def test_the_command_line_lists_shows_and_triggers_its_runs(echo, store, tmp_path, capsys):
    clock, runs = echo_history(store, echo, tmp_path)
    capsys.readouterr()
    code, listed = cli(capsys, "runs", "ls", "--json")
    assert code == 0 and {r["id"] for r in json.loads(listed)} >= {runs["echo-daily"]["id"], runs["echo-refused"]["id"]}
    code, shown = cli(capsys, "runs", "show", runs["echo-daily"]["id"], "--json")
    payload = json.loads(shown)
    assert (code, payload["state"], payload["metrics"]["letters"], payload["parameters"]["word"]) == \
        (0, "COMPLETED", 5, "hello")
    assert [t["task"] for t in payload["task_runs"]] == ["shout", "count"]
    code, text = cli(capsys, "runs", "show", runs["echo-daily"]["id"])
    assert code == 0 and "Letters" in text and "shout" in text  # its results as its entry presents them
    code, text = cli(capsys, "runs", "show", runs["echo-refused"]["id"])
    assert code == 0 and "Failed in shout:" in text and "Echo refuses the word 'nope'." in text
    code, out = cli(capsys, "trigger", "--deployment", "echo-daily", "--date", "2026-01-05", "--json")
    triggered = json.loads(out)
    assert code == 0 and (triggered["flow"], triggered["run_date"]) == ("echo", "2026-01-05")
    Scheduler(store, echo, options=SchedulerOptions(heartbeat=60, stale_after=3 * 86400), clock=clock,
              executor=InlineExecutor(store, echo, clock=clock)).tick()
    assert store.get_run(triggered["id"])["state"] == "COMPLETED"


@pytest.mark.timeout(90)
def test_a_real_scheduler_runs_it_in_a_flow_process_that_registers_it_too(echo, store, tmp_path, capsys):
    (tmp_path / "echo_deployments.py").write_text(DEPLOYMENTS)
    assert main(["deployment", "create", str(tmp_path / "echo_deployments.py")]) == 0
    capsys.readouterr()
    assert main(["trigger", "--deployment", "echo-daily", "--date", "2026-01-05", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["id"]
    scheduler = subprocess.Popen([sys.executable, "-m", "pipeline", "scheduler", "--tick", "0.2", "--grace", "1"],
                                 cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    try:
        done = wait_for(lambda: (run := store.get_run(run_id))["state"] in ("COMPLETED", "FAILED") and run,
                        "the echo run to end", timeout=60)
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)
    assert (done["state"], done["metrics"]["letters"]) == ("COMPLETED", 5), done["error"]
