"""Prefect 2.0 beta files as students wrote them in 2022, each run unchanged (issue 17).

Every file here is written in the students' style for these tests: ``squared=False``, the run
context, loggers given a context, type-hinted parameters, a spec pointing at its own file, 2.0b8's
``Deployment``, and the file run as a script.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.store import Store
from tests.homework import history, messages, run_once, student_folder, write

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc

STUDENT = '''
import pandas as pd
from datetime import datetime
from dateutil.relativedelta import relativedelta

from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error

from prefect import flow, task
from prefect.context import get_run_context
from prefect.logging import get_run_logger
from prefect.deployments import DeploymentSpec
from prefect.orion.schemas.schedules import CronSchedule
from prefect.flow_runners import SubprocessFlowRunner


@task
def get_paths(date):
    train_date = date - relativedelta(months=2)
    val_date = date - relativedelta(months=1)
    return (f"./data/fhv_tripdata_{train_date.year}-{train_date.month:02d}.parquet",
            f"./data/fhv_tripdata_{val_date.year}-{val_date.month:02d}.parquet")


@task
def read_data(path):
    df = pd.read_parquet(path)
    return df


@task
def prepare_features(df, categorical, train=True):
    logger = get_run_logger(get_run_context())
    df['duration'] = df.dropOff_datetime - df.pickup_datetime
    df['duration'] = df.duration.dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
    logger.info(f"task run {get_run_context().task_run.name}: mean duration {df.duration.mean():.2f}")
    df[categorical] = df[categorical].fillna(-1).astype('int').astype('str')
    return df


@task
def train_model(df, categorical):
    dv = DictVectorizer()
    X_train = dv.fit_transform(df[categorical].to_dict(orient='records'))
    lr = LinearRegression()
    lr.fit(X_train, df.duration.values)
    rmse = mean_squared_error(df.duration.values, lr.predict(X_train), squared=False)
    get_run_logger(name="training").info(f"The features are {len(dv.get_feature_names())}, train RMSE {rmse}")
    return lr, dv


@task
def run_model(df, categorical, dv, lr):
    y_pred = lr.predict(dv.transform(df[categorical].to_dict(orient='records')))
    rmse = mean_squared_error(df.duration.values, y_pred, squared=False)
    mse = mean_squared_error(df.duration.values, y_pred)
    get_run_logger().info(f"The MSE of validation is: {rmse} (mse {mse})")
    return rmse


@flow
def main(date: datetime = None):
    if date is None:
        date = get_run_context().flow_run.expected_start_time
    get_run_logger().info(f"date is a {type(date).__name__}: {date:%Y-%m-%d}")
    categorical = ['PUlocationID', 'DOlocationID']
    train_path, val_path = get_paths(date).result()
    df_train = prepare_features(read_data(train_path), categorical)
    df_val = prepare_features(read_data(val_path), categorical, False)
    lr, dv = train_model(df_train, categorical).result()
    rmse = run_model(df_val, categorical, dv, lr).result()
    return {"val_rmse": rmse}


DeploymentSpec(
    flow=main,
    name="cron-schedule-deployment",
    schedule=CronSchedule(cron="0 9 15 * *", timezone="America/New_York"),
    flow_runner=SubprocessFlowRunner(),
    tags=["ml"],
)
'''


@pytest.fixture
def homework(tmp_path, monkeypatch):
    """A student's folder: ./data with two months, FHV_HOME beside it."""
    return student_folder(tmp_path, monkeypatch, ("2021-06", "2021-07"))


def test_a_students_file_with_squared_false_runs_unchanged_and_the_log_says_it_was_adapted_once(homework):
    assert main(["deployment", "create", str(write(homework, "homework.py", STUDENT))]) == 0
    store = history(homework)
    run = run_once(store, "cron-schedule-deployment", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    said = [m for m in messages(store, run["id"]) if "computed as the RMSE" in m]
    assert said == ["mean_squared_error(..., squared=False) computed as the RMSE with root_mean_squared_error: "
                    "scikit-learn 1.6 removed squared=."]
    [line] = [m for m in messages(store, run["id"]) if m.startswith("The MSE of validation")]
    rmse, mse = (float(word.strip("()")) for word in (line.split()[5], line.split()[7]))
    assert math.isclose(rmse, math.sqrt(mse), rel_tol=1e-12) and run["metrics"]["val_rmse"] == rmse
    assert any(m.startswith("The features are ") for m in messages(store, run["id"]))  # get_feature_names()
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.metrics import mean_squared_error

    with pytest.raises(TypeError, match="squared"):  # outside the user's flow, scikit-learn is as it was
        mean_squared_error([1.0, 2.0], [1.5, 2.5], squared=False)
    assert not hasattr(DictVectorizer, "get_feature_names")


def test_the_run_context_logging_module_and_typed_date_work_as_in_prefect_2_beta(homework):
    assert main(["deployment", "create", str(write(homework, "homework.py", STUDENT))]) == 0
    store = history(homework)
    run = run_once(store, "cron-schedule-deployment", dt.date(2021, 8, 15))
    said = messages(store, run["id"])
    assert "date is a datetime: 2021-08-15" in said  # the string parameter cast to the type hint
    assert "task run prepare_features: mean duration" in " ".join(said)
    assert "task run prepare_features-2: mean duration" in " ".join(said)


def test_a_flow_without_a_date_takes_its_run_date_from_the_expected_start_time_or_the_date_asked(homework):
    write(homework, "score.py", '''
        from datetime import datetime
        from prefect import flow, get_run_logger
        from prefect.context import get_run_context
        import prefect.engine

        @flow
        def score(taxi_type: str = "fhv", run_date: datetime = None):
            if run_date is None:
                ctx = get_run_context()
                run_date = ctx.flow_run.expected_start_time
            get_run_logger().info(f"scoring {taxi_type} for {run_date.year:04d}-{run_date.month:02d} "
                                  f"in run {get_run_context().flow_run.name}")
            get_run_logger().info(f"run id {ctx.flow_run.id.hex}")
    ''')
    write(homework, "deploy.py", '''
        from prefect.deployments import DeploymentSpec
        from prefect.orion.schemas.schedules import CronSchedule
        DeploymentSpec(flow_location="score.py", name="scoring", schedule=CronSchedule(cron="0 3 2 * *"))
    ''')
    assert main(["deployment", "create", str(homework / "deploy.py")]) == 0
    store = history(homework)
    run = run_once(store, "scoring")
    when = dt.datetime.now(UTC)
    assert run["state"] == "COMPLETED", run["error"]
    assert f"scoring fhv for {when:%Y-%m} in run {run['name']}" in messages(store, run["id"])
    assert f"run id {run['id'].replace('-', '')}" in messages(store, run["id"])  # a UUID, as Prefect's
    backfilled = run_once(store, "scoring", dt.date(2021, 3, 2))  # a run asked for another date scores that month
    assert f"scoring fhv for 2021-03 in run {backfilled['name']}" in messages(store, backfilled["id"])


@pytest.mark.parametrize("parameters, words", [
    ({"n": "three"}, "The parameter 'n' of the flow counting is 'three', which is not an int (a whole number)"),
    ({"when": "someday"}, "The parameter 'when' of the flow counting is 'someday', which is not a date"),
])
def test_a_parameter_that_cannot_be_cast_fails_the_run_with_one_sentence_naming_it(homework, parameters, words):
    write(homework, "counting.py", f'''
        from datetime import date
        from prefect import flow
        from prefect.deployments import DeploymentSpec

        @flow
        def counting(n: int = 1, when: date = None, ratio: float = 0.5, dry: bool = False):
            assert isinstance(n, int) and isinstance(ratio, float) and isinstance(dry, bool)

        DeploymentSpec(flow=counting, name="counting", parameters={parameters!r})
    ''')
    assert main(["deployment", "create", str(homework / "counting.py")]) == 0
    run = run_once(history(homework), "counting")
    assert run["state"] == "FAILED" and words in run["error"] and "Traceback" not in run["error"]


def test_parameters_given_as_text_reach_the_flow_as_their_hinted_types(homework):
    write(homework, "counting.py", '''
        from pathlib import Path
        from typing import Optional
        from prefect import flow, get_run_logger
        from prefect.deployments import DeploymentSpec

        @flow
        def counting(n: int = 1, ratio: float = 0.5, dry: bool = True, out: Path = None, k: Optional[int] = None):
            get_run_logger().info(f"{n!r} {ratio!r} {dry!r} {out!r} {k!r}")

        DeploymentSpec(flow=counting, name="counting",
                       parameters={"n": "3", "ratio": "2", "dry": "false", "out": "models", "k": "7"})
    ''')
    assert main(["deployment", "create", str(homework / "counting.py")]) == 0
    store = history(homework)
    run = run_once(store, "counting")
    assert "3 2.0 False PosixPath('models') 7" in messages(store, run["id"])


def test_trigger_without_a_date_keeps_the_date_the_deployment_sets(homework, capsys):
    write(homework, "homework.py", STUDENT.replace('    tags=["ml"],', '    tags=["ml"],\n'
                                                   '    parameters={"date": "2021-08-15"},'))
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    assert main(["trigger", "--deployment", "cron-schedule-deployment", "--json"]) == 0
    store = history(homework)
    [run] = [r for r in store.runs(deployment="cron-schedule-deployment", limit=50) if r["trigger"] == "manual"]
    assert run["parameters"] == {"date": "2021-08-15"} and run["run_date"] == "2021-08-15"
    assert main(["trigger", "--deployment", "cron-schedule-deployment", "--date", "2021-09-15"]) == 0
    dates = {r["parameters"]["date"] for r in store.runs(deployment="cron-schedule-deployment", limit=50)
             if r["trigger"] == "manual"}
    assert dates == {"2021-08-15", "2021-09-15"}


def test_a_spec_pointing_at_its_own_file_loads_the_flow_once_and_runs(homework):
    write(homework, "homework.py", '''
        from prefect import flow, task, get_run_logger
        from prefect.deployments import DeploymentSpec
        from prefect.orion.schemas.schedules import CronSchedule

        with open(__file__ + ".loads", "a") as f:
            print("loaded", file=f)

        @task
        def add(x, y):
            return x + y

        @flow
        def main(date=None):
            get_run_logger().info(f"sum {add(1, 2).result()} for {date}")

        DeploymentSpec(flow_location="homework.py", name="homework", schedule=CronSchedule(cron="0 9 15 * *"))
    ''')
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    (homework / "homework.py.loads").unlink()
    store = history(homework)
    assert store.get_deployment("homework")["flow"] == f"prefect2:{homework / 'homework.py'}:main"
    run = run_once(store, "homework", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    assert "sum 3 for 2021-08-15" in messages(store, run["id"])
    assert (homework / "homework.py.loads").read_text().count("loaded") == 1  # once to run it (create ran elsewhere)


def test_deployment_of_prefect_2_0b8_registers_and_runs(homework):
    write(homework, "homework.py", STUDENT.split("DeploymentSpec(\n")[0])
    write(homework, "deployment.py", '''
        from prefect.deployments import Deployment, FlowScript
        from prefect.flow_runners import SubprocessFlowRunner
        from prefect.orion.schemas.schedules import CronSchedule, IntervalSchedule
        from datetime import timedelta
        from homework import main

        Deployment(
            flow=main,
            name="model_training",
            schedule=CronSchedule(cron="0 9 15 * *", timezone="America/New_York"),
            flow_runner=SubprocessFlowRunner(),
            tags=["ml", "homework"],
        )
        Deployment(flow=FlowScript(path="homework.py", name="main"),
                   schedule=IntervalSchedule(interval=timedelta(days=7)))
    ''')
    assert main(["deployment", "create", str(homework / "deployment.py")]) == 0
    store = history(homework)
    rows = {row["name"]: row for row in store.deployments()}
    assert rows["model_training"]["tags"] == ["ml", "homework"]
    assert rows["main"]["flow"] == f"prefect2:{homework / 'homework.py'}:main"  # named after its flow
    run = run_once(store, "model_training", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]


def test_an_unsupported_import_is_called_an_import_not_an_invalid_spec(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    write(tmp_path, "flow.py", "from prefect.blocks.system import JSON\n")
    assert main(["deployment", "create", str(tmp_path / "flow.py")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "imports what is not supported here: The module prefect.blocks is not supported here" in err
    assert "invalid spec" not in err


SCRIPT = '''
from prefect import flow, task, get_run_logger

@task
def read_data(path):
    get_run_logger().info(f"reading {path}")
    with open(path) as f:
        return f.read()

@flow
def main(date=None):
    print(f"running for {date}")
    return read_data("./data/missing.txt")

main(date="2021-08-15")
'''


@pytest.mark.timeout(60)
def test_script_mode_prints_the_log_and_the_final_state_and_exits_1_on_failure_from_any_folder(homework, tmp_path):
    write(homework, "homework.py", SCRIPT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "pipeline.prefect2", str(homework / "homework.py")], cwd=elsewhere,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    [run] = history(homework).runs(limit=5)
    assert (run["state"], run["trigger"], run["error_task"]) == ("FAILED", "script", "read_data")
    assert f"Created flow run '{run['name']}' for flow 'main'" in done.stderr
    assert f"| INFO    | Flow run '{run['name']}' - running for 2021-08-15" in done.stderr
    assert "| INFO    | Task run 'read_data' - reading ./data/missing.txt" in done.stderr
    assert f"Flow run '{run['name']}' - Finished in state Failed(" in done.stderr


@pytest.mark.timeout(60)
def test_script_mode_exits_0_and_says_completed_when_the_flow_completes(homework):
    (homework / "data" / "missing.txt").write_text("here after all")
    write(homework, "homework.py", SCRIPT)
    done = subprocess.run([sys.executable, "-m", "pipeline.prefect2", "homework.py"], cwd=homework,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Finished in state Completed()" in done.stderr


@pytest.mark.parametrize("source, options, words", [
    ("import os\nfrom prefect import flow\n\n@flow\ndef main():\n    pass\n\nos._exit(0)\n", [],
     "ended its process with exit code 0 (as os._exit(0) does) while loading, before it defined anything"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", [], "was killed by SIGKILL while loading"),
    ("from prefect import flow\n\nwhile True:\n    pass\n", ["--timeout", "1"],
     "did not finish loading within 1 s (a loop or a long computation at import time?); it was stopped"),
])
@pytest.mark.timeout(30)
def test_a_file_that_ends_or_hangs_its_loading_gets_one_sentence_and_registers_nothing(tmp_path, monkeypatch, capsys,
                                                                                       source, options, words):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    write(tmp_path, "homework.py", source)
    assert main(["deployment", "create", str(tmp_path / "homework.py"), *options]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert words in err and "Traceback" not in err
    assert Store(tmp_path / "fhv" / "history.db").deployments() == []


def test_wait_for_and_futures_inside_a_dict_are_resolved_as_in_prefect_2_beta(homework):
    write(homework, "homework.py", '''
        from prefect import flow, task, get_run_logger
        from prefect.deployments import DeploymentSpec

        @task
        def download(month):
            return f"fhv_tripdata_{month}.parquet"

        @task
        def report(files):
            get_run_logger().info(f"files {files['train']} and {files['val']}")

        @flow
        def main(date=None):
            train, val = download("2021-06"), download("2021-07")
            report({"train": train, "val": val}, wait_for=[train, val])

        DeploymentSpec(flow=main, name="waiting")
    ''')
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = history(homework)
    run = run_once(store, "waiting")
    assert run["state"] == "COMPLETED", run["error"]
    assert "files fhv_tripdata_2021-06.parquet and fhv_tripdata_2021-07.parquet" in messages(store, run["id"])


def test_a_cached_task_runs_every_time_and_the_log_says_so_once(homework):
    write(homework, "homework.py", '''
        from datetime import timedelta
        from prefect import flow, task, get_run_logger
        from prefect.tasks import task_input_hash
        from prefect.deployments import DeploymentSpec

        @task(cache_key_fn=task_input_hash, cache_expiration=timedelta(days=1))
        def read(month):
            get_run_logger().info(f"reading {month}")
            return month

        @flow
        def main(date=None):
            read("2021-06")
            read("2021-06")

        DeploymentSpec(flow=main, name="cached")
    ''')
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = history(homework)
    run = run_once(store, "cached")
    said = messages(store, run["id"])
    assert run["state"] == "COMPLETED" and said.count("reading 2021-06") == 2
    assert said.count("The task read sets cache_key_fn: here it runs every time (task results are not cached).") == 1


def test_the_example_homework_registers_and_runs_unchanged(homework):
    shutil.copy(ROOT / "examples" / "prefect2" / "homework.py", homework / "homework.py")
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = history(homework)
    run = run_once(store, "cron-schedule-deployment", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    assert [t["task"] for t in store.task_runs(run["id"])][-2:] == ["train_model", "run_model"]
    assert (homework / "models" / "dv-2021-08-15.b").is_file()
    assert any(m.startswith("The MSE of validation is: ") for m in messages(store, run["id"]))
