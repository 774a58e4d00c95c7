"""The command line's light commands import neither pyarrow nor scikit-learn (nor numpy, pandas, scipy),
and only the command groups and Prefect 2 parts they need: checked in a fresh interpreter, command by command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.orchestration.states import State
from pipeline.training.job import FLOW_NAME

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pyarrow", "sklearn", "numpy", "pandas", "scipy", "pipeline.prefect2.api")
# Runs each command line in turn in one interpreter; after each, prints the heavy modules imported so far.
PROBE = """
import contextlib, io, json, sys
from pipeline.cli import main
heavy = {heavy!r}
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            code = main(argv)
        except SystemExit as stop:  # --help
            code = stop.code
    loaded = sorted(name for name in heavy if name in sys.modules)
    print(json.dumps({{"argv": argv, "code": code, "heavy": loaded, "err": err.getvalue()[-300:]}}))
"""


@pytest.fixture
def history(store, clock):
    """A history with one completed training run (a model version) and one failed run."""
    ids = []
    for state, metrics in ((State.COMPLETED, {"val_rmse": 11.2, "train_rmse": 11.0}), (State.FAILED, None)):
        run_id = store.create_run(flow=FLOW_NAME, name=f"run-{state.value.lower()}", state=State.PENDING,
                                  now=clock.now(), trigger="manual", run_date="2021-08-15")
        store.start_run(run_id, now=clock.now(), pid=1)
        store.transition(run_id, state, now=clock.now(), metrics=metrics,
                         error=None if metrics else "boom.", error_task=None if metrics else "read_data")
        ids.append(run_id)
    return ids


def probe(settings, command_lines: list[list[str]]) -> list[dict]:
    env = {**os.environ, "FHV_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps(command_lines)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_light_commands_import_neither_pyarrow_nor_scikit_learn(settings, history):
    lines = [["runs", "ls"], ["runs", "ls", "--json"], ["runs", "show", history[0]], ["runs", "show", history[1]],
             ["deployment", "ls"], ["work-queue", "ls"], ["workers"], ["models", "ls"], ["models", "history"],
             ["users", "ls"], ["notifications", "ls"], ["schedule", "preview", "--cron", "0 9 * * *"],
             ["history", "--help"], ["--help"]]
    results = probe(settings, lines)
    assert [(r["argv"], r["code"], r["heavy"]) for r in results] == [(argv, 0, []) for argv in lines], results


def test_a_command_imports_only_its_own_group(settings):
    env = {**os.environ, "FHV_HOME": str(settings.home)}
    code = ("import sys\nfrom pipeline.cli import main\nmain(['users', 'ls'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('pipeline.cli.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "['pipeline.cli.render', 'pipeline.cli.users']", done.stderr


def test_every_command_is_listed_with_the_group_that_declares_it():
    import argparse

    from pipeline.cli import COMMANDS, build_parser

    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == set(COMMANDS)
    for command, group in COMMANDS.items():
        [declared] = [a for a in build_parser([command])._actions if isinstance(a, argparse._SubParsersAction)]
        assert command in declared.choices, f"{command} is not declared by pipeline/cli/{group}.py"
