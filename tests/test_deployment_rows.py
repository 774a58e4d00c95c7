"""Every field of a stored deployment row is guarded (issue 22, point 7): a row changed by hand, or by
another version, is listed and marked with its problem in one sentence; the other deployments go on."""
from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from pipeline.cli import main
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.schedules import CronSchedule
from tests.test_orchestrator_edges import T0, make, walk
from tests.test_scheduler import runs_of

BROKEN = [  # column, stored value, words the sentence names
    ("schedule", "{not json", "{not json"),
    ("schedule", '{"type": "cron", "cron": "0 * * * *", "timezone": "Mars/Olympus_Mons"}', "Mars/Olympus_Mons"),
    ("schedule", '{"type": "cron", "cron": "61 * * * *", "timezone": "UTC"}', "61 * * * *"),
    ("schedule", '{"type": "interval", "interval": 60}', "schedule"),
    ("schedule", '{"type": "weekly"}', "weekly"),
    ("schedule", '[1, 2]', "schedule"),
    ("tags", "not json", "tags"),
    ("tags", "[1, 2]", "tags"),
    ("parameters", "{oops", "parameters"),
    ("parameters", '{"surprise": 1}', "surprise"),
    ("catchup", "sometimes", "sometimes"),
    ("max_lateness", "soon", "soon"),
    ("retries", 99, "99"),
    ("flow", "no-such-flow", "no-such-flow"),
]
IDS = [f"{column}={value}"[:40] for column, value, _ in BROKEN]


def two_deployments(store, settings, clock, column, value):
    for name in ("broken", "good"):
        register(store, DeploymentSpec(name=name, schedule=CronSchedule("0 * * * *", "UTC")), clock.now(),
                 settings=settings)
    with store.atomic() as conn:
        conn.execute(f"UPDATE deployments SET {column} = ? WHERE name = 'broken'", (value,))


@pytest.mark.parametrize("column, value, words", BROKEN, ids=IDS)
def test_a_broken_deployment_row_is_marked_with_a_sentence_and_the_others_keep_running(
        store, settings, clock, caplog, column, value, words):
    two_deployments(store, settings, clock, column, value)
    with caplog.at_level(logging.WARNING):
        walk(make(store, settings, clock), clock, until=T0 + dt.timedelta(hours=2, minutes=10))
    assert len(runs_of(store, "good", "COMPLETED")) == 2
    error = next(r for r in store.deployments() if r["name"] == "broken")["last_error"]
    assert "'broken'" in error and words in error
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("column, value, words", BROKEN, ids=IDS)
def test_deployment_ls_lists_a_broken_row_with_its_problem_beside_the_others(
        store, settings, clock, capsys, monkeypatch, column, value, words):
    two_deployments(store, settings, clock, column, value)
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    assert main(["deployment", "ls"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "good" in out and "monthly-training" in out
    assert "error: The deployment 'broken' cannot be scheduled" in out and words in out
    assert main(["deployment", "ls", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["good"]["problem"] is None and words in rows["broken"]["problem"]
