"""The command line's words: a mistyped option names the right one, an ambiguous run id lists the
runs it matches, and ``runs ls --json`` and ``runs show --json`` name the run id with the same key."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from pipeline.cli import main
from pipeline.orchestration.states import State

UTC = dt.timezone.utc


def cli(monkeypatch, settings, capsys, *argv) -> tuple[int, str, str]:
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


@pytest.mark.parametrize("argv, says", [
    (["runs", "ls", "--limt", "3"], "unrecognized option --limt; did you mean --limit?"),
    (["runs", "ls", "--jsn"], "unrecognized option --jsn; did you mean --json?"),
    (["runs", "ls", "--limit", "3", "extra"], "unrecognized arguments: extra"),
])
def test_a_mistyped_option_names_the_commands_closest_one(monkeypatch, settings, capsys, argv, says):
    code, _, err = cli(monkeypatch, settings, capsys, *argv)
    assert code == 2 and says in err and "python -m pipeline runs ls" in err


def add_runs(store, ids: list[str]) -> None:
    now = dt.datetime(2026, 11, 1, tzinfo=UTC)
    for i, run_id in enumerate(ids):
        store.create_run(flow="fhv-duration-training", name=f"run-{i}", state=State.SCHEDULED, now=now,
                         scheduled_time=now, id=run_id)


def test_an_ambiguous_run_id_lists_the_runs_it_matches(monkeypatch, settings, capsys, store):
    add_runs(store, ["0a" + "1" * 30, "0b" + "2" * 30, "9c" + "3" * 30])
    code, _, err = cli(monkeypatch, settings, capsys, "runs", "show", "0")
    assert code == 2 and "The run id '0' matches several runs: 0a111111 (run-0), 0b222222 (run-1); give more" in err
    assert cli(monkeypatch, settings, capsys, "runs", "show", "0b")[0] == 0


def test_runs_ls_and_runs_show_name_the_run_id_with_the_same_key_and_keep_the_old_one(monkeypatch, settings,
                                                                                      capsys, store):
    add_runs(store, ["0a" + "1" * 30])
    listed = json.loads(cli(monkeypatch, settings, capsys, "runs", "ls", "--json")[1])[0]
    shown = json.loads(cli(monkeypatch, settings, capsys, "runs", "show", "0a", "--json")[1])
    assert listed["run_id"] == shown["run_id"] == listed["id"] == shown["id"] == "0a" + "1" * 30
