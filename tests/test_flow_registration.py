"""Flows are registered from one explicit list by the entry points, never as a side effect of an import."""
from __future__ import annotations

import os
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.flows import FLOWS, flow_list, load_flows
from pipeline.orchestration import registry
from pipeline.orchestration.executor import ProcessExecutor
from pipeline.orchestration.runtime import SYSTEM_CLOCK
from pipeline.orchestration.states import State
from tests.conftest import wait_for
from tests.flows import echo

ROOT = Path(__file__).resolve().parent.parent
ECHO = "tests.flows.echo:ENTRY"


@pytest.fixture
def own_registry(monkeypatch):
    """The registry as it is now, restored after the test (so that a test's extra flow does not leak)."""
    monkeypatch.setattr(registry, "_FLOWS", dict(registry._FLOWS))


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)


def test_importing_the_package_and_its_flows_registers_nothing():
    done = python("import pipeline, pipeline.training, pipeline.scoring, pipeline.prefect2, pipeline.cli\n"
                  "from pipeline.orchestration import registry\n"
                  "print(registry.flow_names(), registry.LOAD_SCOPES, registry.FOREIGN_LOADERS, registry._RESOLVERS)")
    assert done.stdout.strip() == "[] [] [] {}", done.stderr


def test_load_flows_registers_the_list_once_however_often_it_is_called():
    done = python("from pipeline.flows import load_flows\nfrom pipeline.orchestration import registry\n"
                  "first = [e.name for e in load_flows()]\nload_flows()\n"
                  "print(first, registry.flow_names(), len(registry.LOAD_SCOPES), len(registry.FOREIGN_LOADERS), "
                  "sorted(registry._RESOLVERS))", FHV_FLOWS="")
    assert done.stdout.strip() == ("['fhv-duration-training', 'fhv-batch-scoring'] ['fhv-batch-scoring', "
                                   "'fhv-duration-training'] 1 1 ['prefect2:']"), done.stderr


def test_fhv_flows_appends_entries_and_lists_of_them_to_the_list(monkeypatch, own_registry):
    monkeypatch.setenv("FHV_FLOWS", f" {ECHO}, tests.flows.echo:ENTRIES ,")
    assert flow_list() == (*FLOWS, ECHO, "tests.flows.echo:ENTRIES")
    assert [e.name for e in load_flows()][-2:] == ["echo", "echo"]
    assert registry.flow_entry("echo").title == "Echo"


@pytest.mark.parametrize("item, says", [
    ("tests.flows.echo", "'tests.flows.echo' (FHV_FLOWS) is not written module:ATTRIBUTE"),
    ("tests.flows.nowhere:ENTRY", "its module 'tests.flows.nowhere' does not import (ModuleNotFoundError"),
    ("tests.flows.echo:NOPE", "the module 'tests.flows.echo' has no 'NOPE'"),
    ("tests.flows.echo:TASKS", "'tests.flows.echo:TASKS' (FHV_FLOWS) is a tuple of str, not a FlowEntry or a list"),
    ("tests.flows.echo:execute", "'tests.flows.echo:execute' (FHV_FLOWS) is the function execute, not a FlowEntry"),
    ("tests.flows.echo:echo_flow", "'tests.flows.echo:echo_flow' (FHV_FLOWS) is a callable Flow, not a FlowEntry"),
    ("tests.flows.echo:FLOW_NAME", "'tests.flows.echo:FLOW_NAME' (FHV_FLOWS) is a str, not a FlowEntry"),
])
def test_a_bad_fhv_flows_item_is_one_sentence_naming_it(monkeypatch, own_registry, item, says):
    monkeypatch.setenv("FHV_FLOWS", item)
    with pytest.raises(ConfigError, match="^The flow ") as raised:
        load_flows()
    assert says in str(raised.value)


def test_an_fhv_flows_item_naming_a_function_is_refused_without_calling_it(monkeypatch, own_registry):
    called = []
    monkeypatch.setattr(echo, "entries", lambda: called.append(1) or [echo.ENTRY], raising=False)
    monkeypatch.setenv("FHV_FLOWS", "tests.flows.echo:entries")
    with pytest.raises(ConfigError, match="is the function <lambda>, not a FlowEntry .* never called"):
        load_flows()
    assert called == [] and "echo" not in registry.flow_names()


def test_a_module_that_does_not_import_is_one_sentence_with_the_pythonpath_hint(monkeypatch, own_registry):
    monkeypatch.setenv("FHV_FLOWS", "my_missing_flows.echo:ENTRY")
    with pytest.raises(ConfigError) as raised:
        load_flows()
    assert str(raised.value) == (
        "The flow 'my_missing_flows.echo:ENTRY' (FHV_FLOWS) cannot be loaded: its module 'my_missing_flows.echo' "
        "does not import (ModuleNotFoundError: No module named 'my_missing_flows'); every process that runs the "
        "flow (CLI, scheduler, worker, dashboard) must import it: install it, or put its folder on PYTHONPATH for "
        "each of them.")


@pytest.mark.parametrize("item", ["tests.flows.echo:execute", "tests.flows.echo:echo_flow"])
def test_the_command_line_says_an_fhv_flows_function_in_one_line(monkeypatch, capsys, tmp_path, own_registry, item):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    monkeypatch.setenv("FHV_FLOWS", item)
    assert main(["runs", "ls"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: The flow {item!r} (FHV_FLOWS) is ") and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1


def test_the_command_line_says_a_bad_fhv_flows_item_in_one_line(monkeypatch, capsys, tmp_path, own_registry):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    monkeypatch.setenv("FHV_FLOWS", "tests.flows.echo:NOPE")
    assert main(["runs", "ls"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: The flow 'tests.flows.echo:NOPE' (FHV_FLOWS) cannot be loaded") and \
        "Traceback" not in error


def test_a_prefect2_script_run_with_plain_python_registers_the_flows_too(tmp_path):
    (tmp_path / "hello.py").write_text("from pipeline.prefect2 import flow\n\n@flow\ndef hello():\n    return 1\n\n"
                                       "hello()\nfrom pipeline.orchestration import registry\n"
                                       "print([n for n in registry.flow_names() if not n.startswith('prefect2:')])\n")
    done = subprocess.run([sys.executable, str(tmp_path / "hello.py")], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "FHV_HOME": str(tmp_path / "fhv"), "FHV_FLOWS": ECHO,
                               "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "['echo', 'fhv-batch-scoring', 'fhv-duration-training']", \
        done.stderr[-2000:]


def test_the_command_line_registers_the_flows_of_fhv_flows(tmp_path):
    env = {"FHV_HOME": str(tmp_path / "fhv"), "FHV_FLOWS": ECHO, "PYTHONPATH": str(ROOT)}
    done = python("import sys\nfrom pipeline.cli import main\nfrom pipeline.orchestration import registry\n"
                  "code = main(['runs', 'ls'])\nprint(code, registry.flow_names(), file=sys.stderr)", **env)
    assert done.stderr.strip().splitlines()[-1] == "0 ['echo', 'fhv-batch-scoring', 'fhv-duration-training']"


@pytest.mark.parametrize("flow, why", [
    ("echo-missing-module", "'tests.flows.nowhere:execute' does not load (ModuleNotFoundError: No module named "
                            "'tests.flows.nowhere')."),
    ("echo-missing-function", "'tests.flows.echo:nowhere' does not load (AttributeError: module 'tests.flows.echo' "
                              "has no attribute 'nowhere')."),
])
def test_a_run_whose_execute_does_not_load_ends_failed_with_one_sentence(monkeypatch, own_registry, store, settings,
                                                                         flow, why):
    monkeypatch.setenv("FHV_FLOWS", "tests.flows.broken:ENTRIES")
    executor = ProcessExecutor(settings, heartbeat_every=0.5)
    try:
        now = SYSTEM_CLOCK.now()
        store.ensure_work_queue("default", now=now)
        store.create_run(flow=flow, name="cannot-load", state=State.SCHEDULED, now=now, parameters={"date": None},
                         scheduled_time=now, work_queue="default", trigger="manual")
        run = store.claim_due_run(now=now, work_queue="default", claimer="test")
        executor.start(run)
        exit_ = wait_for(lambda: next(iter(executor.poll()), None), "the flow process to end")
    finally:
        executor.close()
    ended = store.get_run(run["id"])
    assert (exit_.exitcode, ended["state"]) == (0, "FAILED")
    assert ended["error"] == f"The flow {flow!r} cannot run: its execute {why}"


@pytest.mark.parametrize("field, value", [("execute", "tests.flows.echo.execute"), ("execute", "echo:"),
                                          ("summary", "tests.flows.echo")])
def test_an_entry_whose_execute_or_summary_is_not_module_function_is_refused_at_registration(own_registry, field,
                                                                                              value):
    with pytest.raises(ConfigError) as raised:
        registry.register_flow(replace(echo.ENTRY, **{field: value}))
    assert str(raised.value) == (f"The flow 'echo' has {field}={value!r}, which is not written module:function, as "
                                 f"in my_flows.job:{field}.")
