"""The course's own Prefect 2.0 beta files, run here unchanged (pipeline.prefect2)."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.orchestration import control
from pipeline.orchestration.deployments import load_specs
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from pipeline.store import Store
from pipeline.training import demo
from tests.conftest import FakeClock
from tests.fakes import InlineExecutor

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc

HOMEWORK = '''
import pickle
from datetime import timedelta

import pandas as pd
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error

from prefect import flow, get_run_logger, task
from prefect.deployments import DeploymentSpec
from prefect.flow_runners import SubprocessFlowRunner
from prefect.orion.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.task_runners import SequentialTaskRunner


@task
def get_paths(date):
    from datetime import date as day
    d = day.fromisoformat(date)
    months = [d.year * 12 + d.month - 1 - k for k in (2, 1)]
    names = [f"./data/fhv_tripdata_{m // 12:04d}-{m % 12 + 1:02d}.parquet" for m in months]
    return names[0], names[1]


@task
def read_data(path):
    return pd.read_parquet(path)


@task
def prepare_features(df, categorical, train=True):
    logger = get_run_logger()
    df["duration"] = (df.dropOff_datetime - df.pickup_datetime).dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
    logger.info(f"The mean duration of {'training' if train else 'validation'} is {df.duration.mean()}")
    df[categorical] = df[categorical].fillna(-1).astype("int").astype("str")
    return df


@task(retries=1, retry_delay_seconds=0)
def train_model(df, categorical):
    dv = DictVectorizer()
    X_train = dv.fit_transform(df[categorical].to_dict(orient="records"))
    print(f"The DictVectorizer has {len(dv.feature_names_)} features")
    lr = LinearRegression().fit(X_train, df.duration.values)
    return lr, dv


@task
def run_model(df, categorical, dv, lr):
    y_pred = lr.predict(dv.transform(df[categorical].to_dict(orient="records")))
    rmse = mean_squared_error(df.duration.values, y_pred) ** 0.5
    get_run_logger().info(f"The RMSE of validation is: {rmse}")
    return rmse


@flow(task_runner=SequentialTaskRunner())
def main(date=None):
    categorical = ["PUlocationID", "DOlocationID"]
    train_path, val_path = get_paths(date).result()
    df_train = prepare_features(read_data(train_path), categorical)
    df_val = prepare_features(read_data(val_path), categorical, False)
    lr, dv = train_model(df_train, categorical).result()
    with open(f"models/dv-{date}.b", "wb") as f_out:
        pickle.dump(dv, f_out)
    run_model(df_val, categorical, dv, lr)


main(date="2021-08-15")

DeploymentSpec(
    flow=main,
    name="model_training",
    schedule=IntervalSchedule(interval=timedelta(minutes=5)),
    flow_runner=SubprocessFlowRunner(),
    tags=["ml"],
)

DeploymentSpec(
    flow=main,
    name="mlops-zc-cron-schedule-deployment",
    schedule=CronSchedule(cron="0 9 15 * *", timezone="America/New_York"),
    flow_runner=SubprocessFlowRunner(),
    tags=["mlops-zc"],
)
'''


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A homework folder: the flow file, its months in ./data, a ./models folder; FHV_HOME beside it."""
    folder = tmp_path / "homework"
    (folder / "models").mkdir(parents=True)
    for month in ("2021-06", "2021-07"):
        demo.write_month(folder / "data" / f"fhv_tripdata_{month}.parquet", month, rows=3000)
    (folder / "homework.py").write_text(HOMEWORK)
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    monkeypatch.setenv("FHV_DATA_URL", "demo:2000")
    return folder


def history(tmp_path):
    return Store(tmp_path / "fhv" / "history.db")


def scheduler_on(store, tmp_path, clock):
    from pipeline.config import load_settings

    settings = load_settings()
    executor = InlineExecutor(store, settings, clock=clock)
    return Scheduler(store, settings, options=SchedulerOptions(heartbeat=60, stale_after=3600), clock=clock,
                     executor=executor)


def test_deployment_create_registers_the_course_file_unchanged_without_running_its_flow(course, tmp_path, capsys):
    assert main(["deployment", "create", str(course / "homework.py")]) == 0
    store = history(tmp_path)
    rows = {row["name"]: row for row in store.deployments()}
    assert {"model_training", "mlops-zc-cron-schedule-deployment"} <= set(rows)
    cron = rows["mlops-zc-cron-schedule-deployment"]
    assert cron["schedule"] == {"type": "cron", "cron": "0 9 15 * *", "timezone": "America/New_York"}
    assert rows["model_training"]["schedule"]["interval"] == 300 and rows["model_training"]["tags"] == ["ml"]
    assert cron["flow"] == f"prefect2:{course / 'homework.py'}:main"
    assert not [r for r in store.runs(limit=100) if r["started_at"]] and not list((course / "models").iterdir())
    assert "prefect" not in sys.modules and "homework" not in sys.modules  # the scope is gone


def test_a_triggered_run_executes_the_users_tasks_with_their_logs_prints_and_files(course, tmp_path):
    assert main(["deployment", "create", str(course / "homework.py")]) == 0
    store = history(tmp_path)
    clock = FakeClock(dt.datetime.now(UTC))
    run = control.trigger(store, scheduler_on(store, tmp_path, clock).settings, deployment="model_training",
                          date=dt.date(2021, 8, 15), now=clock.now())
    scheduler_on(store, tmp_path, clock).tick()
    done = store.get_run(run["id"])
    assert done["state"] == "COMPLETED", done["error"]
    tasks = [t["task"] for t in store.task_runs(run["id"])]
    assert tasks == ["get_paths", "read_data", "prepare_features", "read_data-2", "prepare_features-2", "train_model",
                     "run_model"]
    logs = {(line["task"], line["message"].split(" is")[0]) for line in store.logs(run["id"])}
    assert ("prepare_features", "The mean duration of training") in logs
    assert ("prepare_features-2", "The mean duration of validation") in logs
    assert any(m.startswith("The DictVectorizer has") and t == "train_model" for t, m in
               ((line["task"], line["message"]) for line in store.logs(run["id"])))
    assert (course / "models" / "dv-2021-08-15.b").is_file()  # the deployment file's folder is the working dir


def test_scheduled_runs_get_the_slots_date_and_run_on_the_fake_clock(course, tmp_path):
    assert main(["deployment", "create", str(course / "homework.py")]) == 0
    store = history(tmp_path)
    with store.atomic() as conn:  # only the five-minute deployment, two slots
        conn.execute("UPDATE deployments SET active = 0 WHERE name != 'model_training'")
    slot = store.runs(deployment="model_training", states=["SCHEDULED"], limit=1, order="upcoming")[0]
    assert slot["parameters"] == {"date": slot["run_date"]}
    clock = FakeClock(dt.datetime.fromisoformat(slot["scheduled_time"].replace("Z", "+00:00")))
    scheduler_on(store, tmp_path, clock).tick()
    ran = store.get_run(slot["id"])
    # the slot's date is today's: its months are not in ./data, so read_data fails, named, with its error
    assert ran["state"] == "FAILED" and ran["error_task"] == "read_data"
    assert "No such file or directory" in ran["error"] or "FileNotFoundError" in ran["error"]


def test_a_deployment_may_fix_the_date_and_backfills_and_triggers_still_pass_theirs(course, tmp_path):
    (course / "deploy.py").write_text(textwrap.dedent('''
        from prefect.deployments import DeploymentSpec
        from prefect.orion.schemas.schedules import CronSchedule
        from homework import main

        DeploymentSpec(flow=main, name="fixed", parameters={"date": "2021-08-15"},
                       schedule=CronSchedule(cron="0 9 15 * *"))
    '''))
    assert main(["deployment", "create", str(course / "deploy.py")]) == 0
    store = history(tmp_path)
    slot = store.runs(deployment="fixed", limit=1, order="upcoming")[0]
    assert slot["parameters"] == {"date": "2021-08-15"}
    from pipeline.config import load_settings

    run = control.trigger(store, load_settings(), deployment="fixed", date=dt.date(2021, 9, 15),
                          now=dt.datetime.now(UTC))
    assert run["parameters"] == {"date": "2021-09-15"}


def test_a_separate_deployment_file_with_flow_location_and_flow_name(course, tmp_path):
    (course / "deploy.py").write_text(textwrap.dedent('''
        from prefect.deployments import DeploymentSpec
        from prefect.orion.schemas.schedules import IntervalSchedule
        from datetime import timedelta

        DeploymentSpec(flow_location="homework.py", flow_name="main", name="located",
                       schedule=IntervalSchedule(interval=timedelta(hours=1)), flow_storage="s3-bucket")
    '''))
    [spec] = [s for s in load_specs(course / "deploy.py") if s.name == "located"]
    assert spec.flow == f"prefect2:{course / 'homework.py'}:main" and spec.schedule.seconds == 3600


def test_a_failing_task_fails_the_flow_naming_the_task_and_its_error(course, tmp_path):
    (course / "broken.py").write_text(textwrap.dedent('''
        from prefect import flow, task
        from prefect.deployments import DeploymentSpec

        @task
        def load(path):
            raise ValueError(f"cannot read {path}")

        @task
        def report(value):
            print("never", value)

        @flow
        def broken(path="x.parquet"):
            data = load(path)          # its error is kept in the future ...
            report("fine")             # ... the flow goes on, as in Prefect 2.0 ...

        DeploymentSpec(flow=broken, name="broken")
    '''))
    assert main(["deployment", "create", str(course / "broken.py")]) == 0
    store = history(tmp_path)
    clock = FakeClock(dt.datetime.now(UTC))
    scheduler = scheduler_on(store, tmp_path, clock)
    run = control.trigger(store, scheduler.settings, deployment="broken", date=dt.date(2021, 8, 15), now=clock.now())
    scheduler.tick()
    ended = store.get_run(run["id"])
    assert (ended["state"], ended["error_task"]) == ("FAILED", "load")  # ... and fails at its end
    assert "ValueError: cannot read x.parquet" in ended["error"]
    assert [(t["task"], t["state"]) for t in store.task_runs(run["id"])] == [("load", "FAILED"),
                                                                             ("report", "COMPLETED")]


@pytest.mark.parametrize("source, words", [
    ("from prefect.blocks.core import Block", "The module prefect.blocks is not supported here"),
    ("import prefect\nprefect.get_client", "prefect.get_client is not supported here"),
    ("import mlflow_is_not_installed_here", "imports the package 'mlflow_is_not_installed_here', which is not "
                                            "installed here"),
    ("from prefect.flow_runners import DockerFlowRunner", "prefect.flow_runners.DockerFlowRunner is not supported"),
    ("from prefect.orion.schemas.schedules import RRuleSchedule\nRRuleSchedule(rrule='x')",
     "RRuleSchedule is not supported here"),
    ("from prefect import task\n@task(log_prints=True)\ndef t(): pass", "@task on t: the option log_prints is not"),
    ("from prefect import flow\nclass DaskTaskRunner: pass\n@flow(task_runner=DaskTaskRunner())\ndef f(): pass",
     "uses task_runner=DaskTaskRunner(), which is not supported here"),
])
def test_what_is_not_supported_gets_one_sentence_at_deployment_create(tmp_path, monkeypatch, capsys, source, words):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    (tmp_path / "flow.py").write_text(source + "\n")
    assert main(["deployment", "create", str(tmp_path / "flow.py")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert words in err and "Traceback" not in err
    assert "prefect" not in sys.modules


def test_a_real_prefect_module_outside_the_scope_is_never_shadowed(course, tmp_path, monkeypatch):
    import types

    real = types.ModuleType("prefect")
    monkeypatch.setitem(sys.modules, "prefect", real)
    load_specs(course / "homework.py")
    assert sys.modules["prefect"] is real


def test_the_same_names_are_importable_from_pipeline_prefect2():
    from pipeline import prefect2

    for name in ("flow", "task", "get_run_logger", "DeploymentSpec", "IntervalSchedule", "CronSchedule",
                 "SubprocessFlowRunner", "SequentialTaskRunner", "ConcurrentTaskRunner"):
        assert hasattr(prefect2, name), name
    assert prefect2.CronSchedule(cron="0 9 15 * *").timezone == "UTC"
    with pytest.raises(ConfigError, match="IntervalSchedule needs an interval"):
        prefect2.IntervalSchedule()


@pytest.mark.timeout(60)
def test_the_file_run_as_a_script_runs_its_top_level_call_and_records_it(course, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline.prefect2", str(course / "homework.py")], cwd=course,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    [run] = history(tmp_path).runs(limit=10)
    assert (run["state"], run["trigger"], run["run_date"]) == ("COMPLETED", "script", "2021-08-15")
    assert (course / "models" / "dv-2021-08-15.b").is_file()


@pytest.mark.timeout(90)
def test_the_real_scheduler_runs_a_course_flow_in_its_own_process(course, tmp_path):
    assert main(["deployment", "create", str(course / "homework.py")]) == 0
    store = history(tmp_path)
    from pipeline.config import load_settings

    run = control.trigger(store, load_settings(), deployment="model_training", date=dt.date(2021, 8, 15),
                          now=dt.datetime.now(UTC))
    env = {**__import__("os").environ}
    scheduler = subprocess.Popen([sys.executable, "-m", "pipeline", "scheduler", "--tick", "0.2", "--grace", "1"],
                                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and store.get_run(run["id"])["state"] not in ("COMPLETED", "FAILED"):
            time.sleep(0.2)
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)
    done = store.get_run(run["id"])
    assert done["state"] == "COMPLETED", done["error"]
    assert any(line["message"].startswith("The DictVectorizer has") for line in store.logs(run["id"]))
    assert (course / "models" / "dv-2021-08-15.b").is_file()


def test_the_scope_forgets_the_users_modules_but_never_this_products_own(course):
    import pipeline.prefect2.api as before

    (course / "helpers.py").write_text("VALUE = 1\n")
    (course / "uses.py").write_text("from prefect import flow\nimport helpers\n\n@flow\ndef f():\n    pass\n")
    from pipeline.prefect2.scope import prefect_scope

    with prefect_scope(course):
        import runpy
        runpy.run_path(str(course / "uses.py"))
        assert "helpers" in sys.modules
    assert "helpers" not in sys.modules and "prefect" not in sys.modules
    import pipeline.prefect2.api as after
    assert after is before
