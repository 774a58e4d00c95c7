import dataclasses
import datetime as dt
import json

import pytest

from pipeline.cli import main
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.enqueue import BackfillPlan, enqueue_backfill, plan_backfill, trigger_run
from pipeline.errors import ConfigError, NotFound
from pipeline.orchestration.schedules import CronSchedule, IntervalSchedule
from pipeline.orchestration.states import State
from pipeline.training.job import DEFAULT_DEPLOYMENT

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
D = dt.date


def test_a_trigger_enqueues_a_manual_run_of_the_default_deployment_due_now(store, settings):
    run = trigger_run(store, settings, now=NOW)
    default_id = store.get_deployment(DEFAULT_DEPLOYMENT)["id"]
    assert (run["state"], run["trigger"], run["deployment_id"]) == ("SCHEDULED", "manual", default_id)
    assert run["scheduled_time"] == "2026-11-25T13:00:00.000000Z" and run["work_queue"] == "default"
    assert run["parameters"] == {"date": "2026-11-25"}
    assert (run["train_month"], run["val_month"], run["data_source"]) == ("2026-09", "2026-10", "demo:4000")
    assert run["synthetic"] == 1


def test_the_default_date_is_today_in_the_deployment_zone(store, settings):
    run = trigger_run(store, settings, now=dt.datetime(2026, 3, 1, 3, 0, tzinfo=UTC))  # still Feb 28 in New York
    assert run["parameters"] == {"date": "2026-02-28"}


def test_a_trigger_carries_the_deployment_parameters_and_queue(store, settings):
    spec = DeploymentSpec(name="mirror", schedule=CronSchedule("0 6 1 * *"), parameters={"data_url": "demo:300"},
                          work_queue="mirror-queue")
    register(store, spec, NOW)
    run = trigger_run(store, settings, deployment="mirror", date=D(2021, 8, 15), now=NOW)
    assert run["parameters"] == {"date": "2021-08-15", "data_url": "demo:300"}
    assert (run["work_queue"], run["data_source"], run["val_month"]) == ("mirror-queue", "demo:300", "2021-07")


@pytest.mark.parametrize("day, allowed", [(D(2026, 11, 30), True), (D(2026, 12, 1), False), (D(2030, 1, 15), False)])
def test_a_run_date_validating_on_a_month_not_over_yet_is_refused_naming_the_latest_date(store, settings, day, allowed):
    if allowed:
        assert trigger_run(store, settings, date=day, now=NOW)["val_month"] == "2026-10"
        return
    with pytest.raises(ConfigError, match=f"The run date {day.isoformat()} would validate on .*, a month (not over "
                                          r"yet|in the future) \(today is 2026-11-25\); use a run date up to 2026-11-30"):
        trigger_run(store, settings, date=day, now=NOW)


def test_an_unknown_deployment_is_not_created(store, settings):
    with pytest.raises(NotFound, match="There is no deployment named 'ghost'"):
        trigger_run(store, settings, deployment="ghost", now=NOW)


def test_a_backfill_plans_one_run_per_scheduled_date_in_the_range(store, settings):
    plan = plan_backfill(store, settings, start=D(2025, 1, 1), end=D(2025, 12, 31), now=NOW)
    assert plan == BackfillPlan(DEFAULT_DEPLOYMENT, [D(2025, m, 15) for m in range(1, 13)], [])


@pytest.mark.parametrize("start, end, count", [
    (D(2025, 1, 15), D(2025, 1, 15), 1),  # both ends are inclusive
    (D(2025, 1, 16), D(2025, 2, 14), 0),
    (D(2016, 12, 1), D(2026, 11, 25), 120),
])
def test_backfill_ranges_include_both_ends(store, settings, start, end, count):
    assert len(plan_backfill(store, settings, start=start, end=end, now=NOW).dates) == count


@pytest.mark.parametrize("start, end, words", [
    (D(2025, 5, 1), D(2025, 4, 1), "The backfill end 2025-04-01 is before its start 2025-05-01"),
    (D(2026, 12, 1), D(2026, 12, 2), "The run date 2026-12-01 would validate on 2026-11, a month not over yet"),
    (D(2026, 1, 1), D(2026, 12, 1), "The run date 2026-12-01 would validate on 2026-11, .* up to 2026-11-30"),
    (D(2016, 11, 1), D(2026, 11, 1), "spans 121 months; the most is 120"),
])
def test_bad_backfill_ranges_are_refused_with_a_sentence(store, settings, start, end, words):
    with pytest.raises(ConfigError, match=words):
        plan_backfill(store, settings, start=start, end=end, now=NOW)


def nothing_written(store):
    return store.deployments() == [] and store.count_runs() == 0


def test_planning_a_backfill_of_the_unregistered_default_deployment_writes_nothing(store, settings):
    plan = plan_backfill(store, settings, start=D(2025, 1, 1), end=D(2025, 3, 31), now=NOW)
    assert plan.deployment == DEFAULT_DEPLOYMENT and plan.dates == [D(2025, m, 15) for m in (1, 2, 3)]
    assert nothing_written(store)
    assert [r["run_date"] for r in enqueue_backfill(store, settings, plan, now=NOW).runs] == ["2025-01-15", "2025-02-15",
                                                                                        "2025-03-15"]
    assert store.get_deployment(DEFAULT_DEPLOYMENT)["active"] is True


def test_a_refused_backfill_or_trigger_registers_nothing(store, settings):
    with pytest.raises(ConfigError, match="a month in the future"):
        plan_backfill(store, settings, start=D(2027, 1, 1), end=D(2027, 2, 1), now=NOW)
    with pytest.raises(ConfigError, match="would validate on"):
        trigger_run(store, settings, date=D(2030, 1, 15), now=NOW)
    assert nothing_written(store)


def test_enqueued_backfill_runs_are_ordered_oldest_date_first(store, settings):
    plan = plan_backfill(store, settings, start=D(2025, 1, 1), end=D(2025, 3, 31), now=NOW)
    runs = enqueue_backfill(store, settings, plan, now=NOW).runs
    assert [r["run_date"] for r in runs] == ["2025-01-15", "2025-02-15", "2025-03-15"]
    assert {r["trigger"] for r in runs} == {"backfill"} and {r["state"] for r in runs} == {"SCHEDULED"}
    assert [r["scheduled_time"] for r in runs] == sorted(r["scheduled_time"] for r in runs)
    claimed = store.claim_due_run(now=NOW + dt.timedelta(seconds=1), work_queue="default", claimer="test")
    assert claimed["run_date"] == "2025-01-15"


def test_a_repeated_backfill_skips_dates_done_or_under_way_but_not_failed(store, settings):
    runs = enqueue_backfill(store, settings, plan_backfill(store, settings, start=D(2025, 1, 1), end=D(2025, 4, 30),
                                                           now=NOW), now=NOW).runs
    store.transition(runs[0]["id"], State.CANCELLED, now=NOW)
    for run, state in zip(runs[1:3], (State.COMPLETED, State.FAILED)):
        store.transition(run["id"], State.PENDING, now=NOW)
        store.start_run(run["id"], now=NOW, pid=1)
        store.transition(run["id"], state, now=NOW)
    plan = plan_backfill(store, settings, start=D(2025, 1, 1), end=D(2025, 4, 30), now=NOW)
    assert plan.dates == [D(2025, 1, 15), D(2025, 3, 15)]
    assert [(d, reason.split(":")[0]) for d, reason in plan.skipped] == [(D(2025, 2, 15), "already completed"),
                                                                          (D(2025, 4, 15), "already scheduled")]
    assert runs[1]["name"] in plan.skipped[0][1]


def test_force_enqueues_every_date_again(store, settings):
    first = plan_backfill(store, settings, start=D(2025, 1, 1), end=D(2025, 2, 28), now=NOW)
    enqueue_backfill(store, settings, first, now=NOW)
    again = plan_backfill(store, settings, start=D(2025, 1, 1), end=D(2025, 2, 28), now=NOW, force=True)
    assert again.dates == first.dates and again.skipped == []
    assert len(enqueue_backfill(store, settings, again, now=NOW).runs) == 2 and store.count_runs() == 4 + 3


def test_a_plan_can_send_its_runs_to_another_queue(store, settings):
    store.upsert_work_queue("backfill", concurrency_limit=2, now=NOW)
    plan = dataclasses.replace(plan_backfill(store, settings, start=D(2025, 1, 1), end=D(2025, 2, 28), now=NOW),
                               work_queue="backfill")
    assert {r["work_queue"] for r in enqueue_backfill(store, settings, plan, now=NOW).runs} == {"backfill"}


def test_backfill_dates_follow_the_deployment_schedule_and_zone(store, settings):
    every_six_hours = IntervalSchedule(6 * 3600, "2026-01-01", "Asia/Tokyo")
    register(store, DeploymentSpec(name="six-hourly", schedule=every_six_hours), NOW)
    register(store, DeploymentSpec(name="manual-only"), NOW)
    plan = plan_backfill(store, settings, deployment="six-hourly", start=D(2026, 3, 1), end=D(2026, 3, 3), now=NOW)
    assert plan.dates == [D(2026, 3, 1), D(2026, 3, 2), D(2026, 3, 3)]
    with pytest.raises(ConfigError, match="'manual-only' has no schedule"):
        plan_backfill(store, settings, deployment="manual-only", start=D(2026, 3, 1), end=D(2026, 3, 3), now=NOW)


def cli(monkeypatch, settings, *argv):
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_DATA_URL", settings.data_url)
    return main(list(argv))


def test_backfill_dry_run_enqueues_nothing_and_concurrency_uses_its_own_queue(monkeypatch, settings, store, capsys):
    half_year = ("backfill", "--start", "2025-01-01", "--end", "2025-06-30")
    queues = store.work_queues()
    assert cli(monkeypatch, settings, *half_year, "--dry-run", "--json") == 0
    assert json.loads(capsys.readouterr().out)["dates"] == [f"2025-0{m}-15" for m in range(1, 7)]
    assert nothing_written(store) and store.work_queues() == queues
    assert cli(monkeypatch, settings, *half_year, "--concurrency", "2") == 0
    assert "Enqueued 6 run(s); skipped 0." in capsys.readouterr().out
    assert store.work_queue("backfill")["concurrency_limit"] == 2
    assert cli(monkeypatch, settings, *half_year) == 0
    assert "skipped 6 (use --force" in " ".join(capsys.readouterr().out.split())


def test_a_dry_run_on_a_new_home_does_not_even_create_the_history(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fresh"))
    assert main(["backfill", "--start", "2025-01-01", "--end", "2025-02-28", "--dry-run"]) == 0
    assert "Would enqueue 2 run(s); skipped 0." in capsys.readouterr().out
    assert not (tmp_path / "fresh").exists()


def test_trigger_from_the_cli_prints_the_run_or_a_clear_error(monkeypatch, settings, capsys):
    assert cli(monkeypatch, settings, "trigger", "--date", "2021-08-15", "--json") == 0
    run = json.loads(capsys.readouterr().out)
    assert (run["state"], run["trigger"], run["run_date"]) == ("SCHEDULED", "manual", "2021-08-15")
    assert cli(monkeypatch, settings, "trigger", "--date", "2999-01-01") == 2
    assert "would validate on 2998-12" in capsys.readouterr().err


@pytest.mark.parametrize("paused, says", [
    ("deployment", f"Deployment {DEFAULT_DEPLOYMENT} is paused: the run waits until `python -m pipeline deployment "
                   f"resume {DEFAULT_DEPLOYMENT}`."),
    ("queue", "Work queue default is paused: the run waits until `python -m pipeline work-queue resume default`.")])
def test_trigger_while_paused_says_the_run_waits_for_the_resume(monkeypatch, settings, store, capsys, paused, says):
    trigger_run(store, settings, date=D(2021, 8, 15), now=NOW)  # registers the default deployment
    if paused == "deployment":
        store.set_deployment_active(DEFAULT_DEPLOYMENT, False, NOW)
    else:
        store.set_work_queue_paused("default", True)
    assert cli(monkeypatch, settings, "trigger", "--date", "2021-09-15") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert says in out and "The scheduler starts it" not in out
