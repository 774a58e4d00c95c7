import datetime as dt
import json
import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import TLC_TEMPLATE
from pipeline.orchestration import registry
from pipeline.orchestration.deployments import (DeploymentSpec, default_deployment, ensure_defaults, load_specs,
                                                materialise, register, run_columns, spec_of, upcoming_slots)
from pipeline.errors import ConfigError, NotFound
from pipeline.orchestration.schedules import CronSchedule, IntervalSchedule, schedule_from_json
from pipeline.orchestration.enqueue import trigger_run
from pipeline.store import Store
from pipeline.training.job import DEFAULT_DEPLOYMENT, FLOW_NAME as TRAINING_FLOW
from tests.flows import echo

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "deployments.py"


def hourly(name="hourly", **fields):
    return DeploymentSpec(name=name, schedule=CronSchedule("0 * * * *", "UTC"), **fields)


def slots(store, name):
    return [r["scheduled_time"] for r in store.runs(deployment=name, limit=1000, order="upcoming")]


def write(tmp_path, text, name="deploy.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def echo_daily() -> DeploymentSpec:
    """The echo flow's default deployment in the tests below (``FlowEntry.default_deployment``)."""
    return DeploymentSpec(name="echo-daily", flow=echo.FLOW_NAME, schedule=CronSchedule("0 8 * * *", "UTC"))


@pytest.fixture
def echo_with_default(monkeypatch):
    """The echo flow registered (for this test), declaring ``echo_daily`` as its default deployment."""
    monkeypatch.setattr(registry, "_FLOWS", dict(registry._FLOWS))
    return registry.register_flow(replace(echo.ENTRY, default_deployment=f"{__name__}:echo_daily"))


def test_a_new_history_gets_the_default_deployment_of_each_registered_flow_that_declares_one(
        store, settings, echo_with_default):
    made = ensure_defaults(store, T0, settings=settings)
    assert [row["name"] for row in made] == [DEFAULT_DEPLOYMENT, "echo-daily"]
    assert {row["name"]: row["flow"] for row in store.deployments()} == {DEFAULT_DEPLOYMENT: TRAINING_FLOW,
                                                                         "echo-daily": echo.FLOW_NAME}
    assert ensure_defaults(store, T0, settings=settings) == [] and len(store.deployments()) == 2


def test_a_trigger_of_a_flows_unregistered_default_deployment_registers_it(store, settings, echo_with_default):
    run = trigger_run(store, settings, deployment="echo-daily", date=dt.date(2026, 1, 2), now=T0)
    made = store.get_deployment("echo-daily")
    assert (run["deployment_id"], run["flow"], made["flow"]) == (made["id"], echo.FLOW_NAME, echo.FLOW_NAME)


def test_the_default_deployment_is_monthly_on_the_15th_in_new_york():
    spec = default_deployment()
    assert (spec.name, spec.tags, spec.flow) == (DEFAULT_DEPLOYMENT, ("ml",), TRAINING_FLOW)
    assert spec.schedule == CronSchedule("0 9 15 * *", "America/New_York")
    assert spec.active and spec.catchup == "latest"


def test_a_deployment_that_names_no_flow_runs_the_first_flow_of_the_list():
    from pipeline.flows import FLOWS
    from pipeline.orchestration.registry import default_flow

    assert default_flow() == TRAINING_FLOW and FLOWS[0].startswith("pipeline.training.job:")


def test_run_columns_are_the_fields_the_flow_registered(settings):
    from pipeline.training import flow

    for parameters in ({"date": "2022-01-15"}, {"date": "2021-03-15", "data_url": "demo:500"}):
        assert run_columns(TRAINING_FLOW, parameters, settings) == flow.run_fields(parameters, settings)
    assert run_columns(TRAINING_FLOW, {"date": "2022-01-15"}, settings)["train_month"] == "2021-11"


@pytest.mark.parametrize("fields, words", [
    ({"name": "has space"}, "The deployment name 'has space' is not valid"),
    ({"name": ""}, "The deployment name '' is not valid"),
    ({"work_queue": "a/b"}, "The work queue name 'a/b' is not valid"),
    ({"catchup": "some"}, "The catch-up policy 'some' of 'x' is unknown"),
    ({"max_lateness": -5}, "The maximum lateness -5 of 'x' must be a positive"),
    ({"parameters": {"date": "2021-01-15"}}, "sets the parameter 'date'"),
    ({"parameters": {"colour": "red"}}, "the unknown parameter 'colour'"),
    ({"parameters": ["data_url"]}, "The parameters of 'x' must be a dict"),
    ({"parameters": {"data_url": "https://host/no-placeholder"}}, "has no {month} placeholder"),
    ({"tags": "ml"}, "The tags of 'x' must be a list of words"),
    ({"flow": "other-flow"}, "The deployment 'x' cannot run: its flow 'other-flow' is not registered (the flows are: "
                             "'fhv-batch-scoring', 'fhv-duration-training'; a flow of your own is added with "
                             "FHV_FLOWS=module:ENTRY)."),
    ({"schedule": "0 9 15 * *"}, "must be a CronSchedule or an IntervalSchedule"),
])
def test_invalid_specs_are_refused_with_a_sentence_naming_the_field(fields, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        DeploymentSpec(**{"name": "x", **fields})


@pytest.mark.parametrize("change, says", [
    ({"flow": "echo"}, "its flow 'echo' is not registered (the flows are: 'fhv-batch-scoring', 'fhv-duration-training'; "
                       "a flow of your own is added with FHV_FLOWS=module:ENTRY)."),
    ({"parameters": {"colour": "red"}}, "it has the unknown parameter 'colour'; the flow 'fhv-duration-training' "
                                        "takes date, "),
])
def test_a_stored_deployment_that_cannot_be_scheduled_says_why_in_one_sentence_naming_it_once(change, says):
    row = DeploymentSpec(name="echo-daily").to_row() | change
    with pytest.raises(ConfigError) as raised:
        spec_of(row)
    assert str(raised.value).startswith(f"The deployment 'echo-daily' cannot be scheduled: {says}")
    assert str(raised.value).count("echo-daily") == 1


def test_a_spec_normalises_its_values():
    spec = DeploymentSpec(name="x", parameters={"data_url": "tlc"}, tags=["ml", "nightly"],
                          max_lateness=dt.timedelta(hours=2))
    assert spec.parameters == {"data_url": TLC_TEMPLATE}
    assert spec.tags == ("ml", "nightly") and spec.max_lateness == 7200.0


def test_the_example_file_defines_three_specs():
    specs = load_specs(EXAMPLE)
    assert [s.name for s in specs] == [DEFAULT_DEPLOYMENT, "nightly-demo", "quarter-hourly-demo"]


def test_specs_in_module_level_lists_are_found_once(tmp_path):
    path = write(tmp_path, """
        from pipeline.orchestration.deployments import DeploymentSpec
        a = DeploymentSpec(name="a")
        ALL = [a, DeploymentSpec(name="b")]
    """)
    assert [s.name for s in load_specs(path)] == ["a", "b"]


@pytest.mark.parametrize("text, words", [
    ("x = 1\n", "defines no DeploymentSpec"),
    ("raise RuntimeError('boom')\n", "failed to load: RuntimeError: boom"),
    ("from pipeline.orchestration.schedules import CronSchedule\nCronSchedule('0 25 * * *')\n", r"cannot be registered \(line 2 of deploy.py\): The cron"),
    ("from pipeline.orchestration.deployments import DeploymentSpec as D\na = D(name='a')\nb = D(name='a')\n",
     "defines the deployment 'a' twice"),
])
def test_bad_deployment_files_are_refused_naming_the_file(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=words) as caught:
        load_specs(path)
    assert str(path) in str(caught.value)


def test_a_missing_deployment_file_is_named():
    with pytest.raises(ConfigError, match="nowhere.py does not exist"):
        load_specs("nowhere.py")


def test_registering_creates_the_deployment_its_queue_and_upcoming_runs(store, settings):
    row = register(store, hourly(work_queue="fast"), T0, settings=settings)
    assert row["active"] is True and row["work_queue"] == "fast"
    assert store.work_queue("fast")["concurrency_limit"] is None
    assert slots(store, "hourly") == ["2026-01-01T01:00:00.000000Z", "2026-01-01T02:00:00.000000Z",
                                      "2026-01-01T03:00:00.000000Z"]


def test_registering_again_never_duplicates_scheduled_runs(store, settings):
    register(store, hourly(), T0, settings=settings)
    first = [r["id"] for r in store.runs(deployment="hourly", limit=100)]
    register(store, hourly(), T0 + dt.timedelta(minutes=10), settings=settings)
    assert [r["id"] for r in store.runs(deployment="hourly", limit=100)] == first


def test_a_new_schedule_replaces_the_upcoming_runs_of_the_old_one(store, settings):
    register(store, hourly(), T0, settings=settings)
    spec = DeploymentSpec(name="hourly", schedule=CronSchedule("30 * * * *", "UTC"))
    register(store, spec, T0 + dt.timedelta(minutes=10), settings=settings)
    assert slots(store, "hourly") == ["2026-01-01T00:30:00.000000Z", "2026-01-01T01:30:00.000000Z",
                                      "2026-01-01T02:30:00.000000Z"]


def test_new_parameters_remake_the_upcoming_runs_with_them(store, settings):
    register(store, hourly(), T0, settings=settings)
    register(store, hourly(parameters={"data_url": "demo:777"}), T0, settings=settings)
    runs = store.runs(deployment="hourly", limit=100)
    assert len(runs) == 3 and {r["parameters"]["data_url"] for r in runs} == {"demo:777"}
    assert {r["data_source"] for r in runs} == {"demo:777"}


def test_an_inactive_spec_creates_a_paused_deployment_without_runs(store, settings):
    row = register(store, hourly(active=False), T0, settings=settings)
    assert row["active"] is False and slots(store, "hourly") == []


@pytest.mark.parametrize("first, then", [(True, False), (False, True)], ids=["paused-later", "resumed-later"])
def test_registering_again_keeps_a_deployment_paused_or_resumed_since(store, settings, first, then):
    register(store, hourly(active=first), T0, settings=settings)
    store.set_deployment_active("hourly", then, T0)
    row = register(store, hourly(active=first, tags=["edited"]), T0 + dt.timedelta(minutes=10), settings=settings)
    assert row["active"] is then and row["tags"] == ["edited"]
    assert len(slots(store, "hourly")) == 3  # a paused deployment keeps (and holds) its runs


def test_pausing_keeps_the_runs_and_resuming_counts_new_slots_from_then(store, settings):
    register(store, hourly(), T0, settings=settings)
    before = {r["id"]: r["name"] for r in store.runs(deployment="hourly", limit=10)}
    store.set_deployment_active("hourly", False, T0 + dt.timedelta(hours=1, minutes=30))
    assert {r["id"]: r["name"] for r in store.runs(deployment="hourly", limit=10)} == before
    assert {r["state"] for r in store.runs(deployment="hourly", limit=10)} == {"SCHEDULED"}
    resumed = store.set_deployment_active("hourly", True, T0 + dt.timedelta(hours=5, minutes=30))
    materialise(store, settings, resumed, T0 + dt.timedelta(hours=5, minutes=30))
    assert slots(store, "hourly")[3:] == ["2026-01-01T06:00:00.000000Z", "2026-01-01T07:00:00.000000Z",
                                          "2026-01-01T08:00:00.000000Z"]


@pytest.mark.parametrize("schedule, count", [
    (CronSchedule("0 9 15 * *", "America/New_York"), 3),  # 3 runs, about 3 months ahead
    (CronSchedule("0 * * * *", "UTC"), 3),
    (IntervalSchedule(600, "2026-01-01", "UTC"), 6),  # an hour ahead
    (IntervalSchedule(2, "2026-01-01", "UTC"), 100),  # at most 100 runs
    (CronSchedule("0 0 1 1 *", "UTC"), 1),  # at most 100 days ahead, but always the next slot
    (CronSchedule("0 0 1 3 *", "UTC"), 1),
])
def test_upcoming_runs_are_at_least_3_and_an_hour_ahead_at_most_100_or_100_days(schedule, count):
    assert len(upcoming_slots(schedule, dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))) == count


def test_a_yearly_deployment_shows_its_next_run_a_year_ahead(store, settings):
    register(store, DeploymentSpec(name="yearly", schedule=CronSchedule("0 0 1 1 *", "UTC")), T0, settings=settings)
    assert store.get_deployment("yearly")["next_run_time"] == "2027-01-01T00:00:00.000000Z"


def test_each_run_gets_the_date_of_its_slot_in_the_schedule_zone(store, settings):
    spec = DeploymentSpec(name="tokyo", schedule=CronSchedule("30 0 * * *", "Asia/Tokyo"))
    register(store, spec, T0, settings=settings)
    run = store.runs(deployment="tokyo", order="upcoming", limit=1)[0]
    assert run["scheduled_time"] == "2026-01-01T15:30:00.000000Z"
    assert run["parameters"] == {"date": "2026-01-02"} and run["run_date"] == "2026-01-02"
    assert (run["train_month"], run["val_month"], run["trigger"]) == ("2025-11", "2025-12", "schedule")


def test_the_store_lists_deployments_decoded_for_the_dashboard(store, settings):
    register(store, default_deployment(), T0, settings=settings)
    row = store.deployments()[0]
    assert row["active"] is True and row["tags"] == ["ml"] and row["parameters"] == {}
    assert row["work_queue"] == "default" and row["next_run_time"] == "2026-01-15T14:00:00.000000Z"
    schedule = schedule_from_json(row["schedule"])
    assert schedule.describe() == "At 09:00, on day 15 of the month (America/New_York)"
    assert "right after the jump" in schedule.dst_policy()
    assert store.get_deployment(DEFAULT_DEPLOYMENT)["id"] == row["id"]


def test_work_queues_report_limits_and_counts(store, settings):
    register(store, hourly(), T0, settings=settings)
    queues = {q["name"]: q for q in store.work_queues()}
    assert queues["default"] == {**queues["default"], "concurrency_limit": 1, "paused": False, "running": 0,
                                 "scheduled": 3, "late": 0, "awaiting": 0}


def test_unknown_names_raise_not_found_with_a_hint(store):
    with pytest.raises(NotFound, match="There is no deployment named 'nope'"):
        store.get_deployment("nope")
    with pytest.raises(NotFound, match="There is no work queue named 'nope'"):
        store.set_work_queue_paused("nope", True)


def test_a_registration_survives_reopening_the_history(settings):
    first = Store(settings.db_path)
    register(first, hourly(), T0, settings=settings)
    first.close()
    assert len(Store(settings.db_path).runs(deployment="hourly")) == 3


def cli(monkeypatch, settings, *argv):
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_DATA_URL", settings.data_url)
    return main(list(argv))


def test_deployment_create_twice_keeps_one_set_of_runs(monkeypatch, settings, store, capsys):
    assert cli(monkeypatch, settings, "deployment", "create", str(EXAMPLE)) == 0
    before = store.count_runs()
    assert cli(monkeypatch, settings, "deployment", "create", str(EXAMPLE)) == 0
    assert store.count_runs() == before == 3
    assert "Deployment monthly-training (active)" in capsys.readouterr().out


def test_deployment_create_again_keeps_a_deployment_resumed_from_the_cli(monkeypatch, settings, store, capsys):
    cli(monkeypatch, settings, "deployment", "create", str(EXAMPLE))
    assert cli(monkeypatch, settings, "deployment", "resume", "nightly-demo") == 0
    runs = slots(store, "nightly-demo")
    capsys.readouterr()
    assert cli(monkeypatch, settings, "deployment", "create", str(EXAMPLE)) == 0
    assert store.get_deployment("nightly-demo")["active"] is True and slots(store, "nightly-demo") == runs
    out = " ".join(capsys.readouterr().out.split())
    assert "It stays active although its spec says active=False" in out
    assert "use: python -m pipeline deployment pause nightly-demo" in out


def test_deployment_create_help_says_active_only_applies_when_created(monkeypatch, settings, capsys):
    with pytest.raises(SystemExit):
        cli(monkeypatch, settings, "deployment", "create", "--help")
    assert "active flag only sets how a new deployment starts" in " ".join(capsys.readouterr().out.split())


def test_deployment_ls_pause_and_resume_from_the_cli(monkeypatch, settings, store, capsys):
    cli(monkeypatch, settings, "deployment", "create", str(EXAMPLE))
    assert cli(monkeypatch, settings, "deployment", "resume", "nightly-demo") == 0
    assert len(store.runs(deployment="nightly-demo")) >= 3
    held = {r["id"] for r in store.runs(deployment="nightly-demo", states=["SCHEDULED"])}
    capsys.readouterr()
    assert cli(monkeypatch, settings, "deployment", "pause", "nightly-demo") == 0
    assert f"it holds {len(held)} waiting run(s)" in " ".join(capsys.readouterr().out.split())
    assert {r["id"] for r in store.runs(deployment="nightly-demo", states=["SCHEDULED"])} == held
    capsys.readouterr()
    cli(monkeypatch, settings, "deployment", "ls", "--json")
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["nightly-demo"]["active"] is False and rows["monthly-training"]["active"] is True
    assert cli(monkeypatch, settings, "deployment", "pause", "ghost") == 2


def test_work_queue_commands_create_limit_and_list(monkeypatch, settings, capsys):
    assert cli(monkeypatch, settings, "work-queue", "create", "gpu", "--limit", "2") == 0
    assert cli(monkeypatch, settings, "work-queue", "set-limit", "gpu", "none") == 0
    with pytest.raises(SystemExit, match="2"):
        cli(monkeypatch, settings, "work-queue", "set-limit", "gpu", "zero")
    assert "The concurrency limit zero is not valid" in capsys.readouterr().err
    cli(monkeypatch, settings, "work-queue", "ls", "--json")
    queues = {q["name"]: q for q in json.loads(capsys.readouterr().out)}
    assert queues["gpu"]["concurrency_limit"] is None and queues["default"]["concurrency_limit"] == 1
    assert cli(monkeypatch, settings, "work-queue", "ls") == 0
    assert "gpu" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["work-queue", "preview", "--hours", "-1"], "The number of hours -1 is not valid; use a number above 0"),
    (["work-queue", "preview", "--hours", "0"], "The number of hours 0 is not valid"),
    (["work-queue", "preview", "--hours", "nan"], "The number of hours nan is not valid"),
    (["work-queue", "create", "gpu", "--limit", "0"], "The concurrency limit 0 is not valid"),
    (["work-queue", "set-limit", "gpu", "-1"], "limit -1 is not valid; use a whole number of at least 1 or 'none'"),
    (["scheduler", "--tick", "0"], "The number of seconds 0 is not valid"),
    (["scheduler", "--grace", "-5"], "The number of seconds -5 is not valid"),
    (["schedule", "preview", "--interval", "-60"], "The interval -60 is not valid; use a whole number of seconds"),
    (["schedule", "preview", "--interval", "0"], "The interval 0 is not valid"),
    (["schedule", "preview", "--cron", "0 9 * * *", "--count", "0"], "The count 0 is not valid"),
    (["backfill", "--start", "2025-01-01", "--end", "2025-02-01", "--concurrency", "-2"],
     "The concurrency -2 is not valid"),
])
def test_zero_or_negative_numbers_are_refused_by_the_cli_naming_the_value(monkeypatch, settings, capsys, argv, words):
    with pytest.raises(SystemExit) as stopped:
        cli(monkeypatch, settings, *argv)
    assert stopped.value.code == 2
    assert words in " ".join(capsys.readouterr().err.split())


# -- a flow's own keywords: DeploymentSpec names none of them itself ---------------------------
def test_a_flows_own_keyword_becomes_its_run_parameter_and_reads_back_from_the_spec():
    spec = DeploymentSpec(name="checked", promotion_tolerance=0.05)
    assert spec.to_row()["parameters"] == {"promotion_tolerance": 0.05}
    assert spec.promotion_tolerance == 0.05 and spec.gates is None
    assert "gates" not in DeploymentSpec.__dataclass_fields__


def test_a_keyword_the_flow_does_not_declare_is_refused_with_the_ones_it_does():
    with pytest.raises(ConfigError, match=r"DeploymentSpec 'scores' got the unknown keyword 'gates'; the flow "
                                          r"'fhv-batch-scoring' takes these besides DeploymentSpec's own: none\."):
        DeploymentSpec(name="scores", flow="fhv-batch-scoring", gates={"mode": "block"})
    with pytest.raises(ConfigError, match=r"unknown keyword 'schedul'; .* takes these besides DeploymentSpec's "
                                          r"own: gates, promotion_tolerance\."):
        DeploymentSpec(name="typo", schedul=CronSchedule("0 9 15 * *"))
