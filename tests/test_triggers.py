"""Deployments triggered by another's completion: one run per completed upstream run, with its date, exactly
once across scheduler restarts (a unique index), on SQLite and PostgreSQL."""
import datetime as dt
import json

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.orchestration import enqueue, triggers
from pipeline.orchestration.deployments import DeploymentSpec, register, spec_of
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from pipeline.orchestration.states import State
from pipeline.orchestration.triggers import AfterCompletion
from pipeline.scoring.job import FLOW_NAME as SCORING
from pipeline.store import Store
from tests.conftest import FakeClock
from tests.fakes import FakeExecutor

T0 = dt.datetime(2021, 9, 20, 12, tzinfo=dt.timezone.utc)


@pytest.fixture
def history(location, settings):
    store = Store(location)
    clock = FakeClock(T0)
    register(store, DeploymentSpec(name="monthly-training"), clock.now(), settings=settings)
    register(store, DeploymentSpec(name="monthly-scoring", flow=SCORING, trigger=AfterCompletion("monthly-training")),
             clock.now(), settings=settings)
    clock.advance(60)
    yield store, clock
    store.close()


def scheduler(store, settings, clock):
    options = SchedulerOptions(heartbeat=60, stale_after=3 * 86400, materialise_every=60)
    return Scheduler(store, settings, options=options, clock=clock, executor=FakeExecutor(store, clock=clock))


def scoring_runs(store):
    return store.runs(deployment="monthly-scoring", limit=100, order="upcoming")


def test_each_completed_run_triggers_one_run_with_its_date_even_across_restarts(history, settings):
    store, clock = history
    for day in ("2021-08-15", "2021-09-15"):
        enqueue.trigger_run(store, settings, deployment="monthly-training", date=dt.date.fromisoformat(day),
                            now=clock.now())
    first = scheduler(store, settings, clock)
    for _ in range(4):
        first.tick()
        clock.advance(1)
    first.stopped(clock.now())
    again = scheduler(store, settings, clock)  # a restart: the same completions are seen again
    for _ in range(3):
        again.tick()
        clock.advance(1)
    made = scoring_runs(store)
    training = {r["id"]: r for r in store.runs(deployment="monthly-training", limit=10)}
    assert sorted(r["run_date"] for r in made) == ["2021-08-15", "2021-09-15"]
    assert {r["triggered_by"] for r in made} == set(training) and {r["trigger"] for r in made} == {"completion"}
    assert {r["state"] for r in made} == {"COMPLETED"}
    assert all(training[r["triggered_by"]]["run_date"] == r["parameters"]["date"] for r in made)


def test_a_second_run_for_the_same_completion_is_refused_by_the_database(history, settings):
    store, clock = history
    upstream = store.create_run(flow="fhv-duration-training", name="done", state=State.COMPLETED, now=clock.now(),
                                deployment_id=store.get_deployment("monthly-training")["id"], run_date="2021-08-15",
                                ended_at=clock.now())
    row = store.get_deployment("monthly-scoring")
    assert len(triggers.follow(store, settings, row, clock.now())) == 1
    store.transition(scoring_runs(store)[0]["id"], State.CANCELLED, now=clock.now())  # a run that ended badly ...
    assert triggers.follow(store, settings, row, clock.now()) == []  # ... is not made again
    twin = store.create_run(flow=SCORING, name="twin", state=State.SCHEDULED, now=clock.now(), triggered_by=upstream,
                            deployment_id=row["id"], run_date="2021-08-15")
    assert twin is None and len(scoring_runs(store)) == 1


def test_completions_before_the_deployment_existed_or_of_other_deployments_trigger_nothing(location, settings):
    store, clock = Store(location), FakeClock(T0)
    register(store, DeploymentSpec(name="monthly-training"), clock.now(), settings=settings)
    register(store, DeploymentSpec(name="other-training"), clock.now(), settings=settings)
    for name in ("monthly-training", "other-training"):
        store.create_run(flow="fhv-duration-training", name=f"old-{name}", state=State.COMPLETED, now=clock.now(),
                         deployment_id=store.get_deployment(name)["id"], run_date="2021-08-15", ended_at=clock.now())
    clock.advance(60)
    row = register(store, DeploymentSpec(name="monthly-scoring", flow=SCORING, trigger="monthly-training"),
                   clock.now(), settings=settings)
    assert triggers.follow(store, settings, row, clock.now()) == []
    store.close()


def test_a_date_the_flow_refuses_makes_one_failed_run_with_the_sentence(history, settings):
    store, clock = history
    store.create_run(flow="fhv-duration-training", name="too-early", state=State.COMPLETED, now=clock.now(),
                     deployment_id=store.get_deployment("monthly-training")["id"], run_date="2015-01-15",
                     ended_at=clock.now())
    row = store.get_deployment("monthly-scoring")
    triggers.follow(store, settings, row, clock.now())
    assert triggers.follow(store, settings, row, clock.now()) == []
    (run,) = scoring_runs(store)
    assert run["state"] == "FAILED" and "would score 2014-12, before the first FHV month 2015-01" in run["error"]


@pytest.mark.parametrize("trigger, sentence", [
    (AfterCompletion("monthly-scoring"), "The deployment 'monthly-scoring' cannot be triggered by its own completion."),
    (42, "The trigger of 'monthly-scoring' must be AfterCompletion(\"<deployment name>\"), not 42."),
])
def test_a_bad_trigger_is_refused_with_one_sentence(trigger, sentence):
    with pytest.raises(ConfigError) as refused:
        DeploymentSpec(name="monthly-scoring", flow=SCORING, trigger=trigger)
    assert str(refused.value) == sentence


def test_the_trigger_is_stored_with_the_deployment(history):
    store, _ = history
    assert spec_of(store.get_deployment("monthly-scoring")).trigger == AfterCompletion("monthly-training")


def test_runs_show_links_the_two_runs_both_ways(tmp_path, monkeypatch, capsys):
    home = tmp_path / "fhv"
    monkeypatch.setenv("FHV_HOME", str(home))
    from pipeline.config import load_settings
    settings = load_settings().ensure_dirs()
    store, clock = Store(settings.db_path), FakeClock(T0)
    register(store, DeploymentSpec(name="monthly-training"), clock.now(), settings=settings)
    row = register(store, DeploymentSpec(name="monthly-scoring", flow=SCORING, trigger="monthly-training"),
                   clock.now(), settings=settings)
    upstream = store.create_run(flow="fhv-duration-training", name="upstream", state=State.COMPLETED,
                                now=clock.now(), deployment_id=store.get_deployment("monthly-training")["id"],
                                run_date="2021-08-15", ended_at=clock.now())
    (made,) = triggers.follow(store, settings, row, clock.now())
    assert main(["runs", "show", made, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["triggered_by"]["id"] == upstream and shown["trigger"] == "completion"
    assert main(["runs", "show", upstream]) == 0
    assert f"Its completion triggered {store.get_run(made)['name']} ({made[:8]}) of monthly-scoring" in \
        capsys.readouterr().out



def test_deployment_create_says_what_triggers_a_deployment(tmp_path, monkeypatch, capsys):
    path = tmp_path / "deployments.py"
    path.write_text("from pipeline import AfterCompletion, DeploymentSpec\n"
                    "training = DeploymentSpec(name='monthly-training')\n"
                    "scoring = DeploymentSpec(name='monthly-scoring', flow='fhv-batch-scoring', "
                    "trigger=AfterCompletion('monthly-training'))\n")
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    assert main(["deployment", "create", str(path)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "Deployment monthly-scoring (active): after each completed run of monthly-training;" in said


def test_the_triggered_run_reads_the_data_its_training_run_read(history, settings):
    store, clock = history
    store.create_run(flow="fhv-duration-training", name="on-demo", state=State.COMPLETED, now=clock.now(),
                     deployment_id=store.get_deployment("monthly-training")["id"], run_date="2021-08-15",
                     ended_at=clock.now(), parameters={"date": "2021-08-15", "data_url": "demo:500", "gates": {}})
    (made,) = triggers.follow(store, settings, store.get_deployment("monthly-scoring"), clock.now())
    run = store.get_run(made)
    assert run["parameters"] == {"date": "2021-08-15", "data_url": "demo:500"} and run["data_source"] == "demo:500"


def test_a_trigger_naming_no_deployment_marks_the_deployment_with_a_sentence(settings, clock):
    store = Store(settings.db_path)
    register(store, DeploymentSpec(name="orphan-scoring", flow=SCORING, trigger="nope"), clock.now(), settings=settings)
    scheduler(store, settings, clock).tick()
    assert store.get_deployment("orphan-scoring")["last_error"] == (
        "trigger: There is no deployment named 'nope'; see: python -m pipeline deployment ls.")
    store.close()
