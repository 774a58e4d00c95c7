"""A new user's review of the Prefect 2 layer: homework files in more of the students' 2022 styles.

Each file is written here in a style the course's students used with Prefect 2.0 beta (the task
runner given as its class, 2.0b8's ``Deployment`` with a ``FlowScript``, the week-3 starting file with
path parameters, a default run date in the signature, a conda environment named in the runner, a
script that only defines its flow, ``import mlflow``), on small months.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import sys

import pytest

from pipeline.cli import main
from pipeline.prefect2.__main__ import main as script
from tests.homework import history, messages, run_once, run_slot, student_folder, write


TRAINING = '''
import pickle
from datetime import datetime

import pandas as pd
from dateutil.relativedelta import relativedelta
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error

from prefect import flow, task
from prefect.logging import get_run_logger
from prefect.task_runners import SequentialTaskRunner


@task(name="read data", retries=2, retry_delay_seconds=0)
def read_data(path):
    return pd.read_parquet(path)


@task
def prepare_features(df, categorical):
    df['duration'] = (df.dropOff_datetime - df.pickup_datetime).dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
    df[categorical] = df[categorical].fillna(-1).astype('int').astype('str')
    return df


@task
def train_and_evaluate(df_train, df_val, categorical):
    dv = DictVectorizer()
    X_train = dv.fit_transform(df_train[categorical].to_dict(orient='records'))
    lr = LinearRegression().fit(X_train, df_train.duration.values)
    y_pred = lr.predict(dv.transform(df_val[categorical].to_dict(orient='records')))
    get_run_logger().info(f"The MSE of validation is: {mean_squared_error(df_val.duration.values, y_pred, squared=False)}")
    return lr, dv


@flow(name="Homework week 3", task_runner=SequentialTaskRunner)
def main(date: datetime = None):
    date = date or datetime.now()
    train, val = date - relativedelta(months=2), date - relativedelta(months=1)
    categorical = ['PUlocationID', 'DOlocationID']
    df_train = prepare_features(read_data(f"./data/fhv_tripdata_{train:%Y-%m}.parquet"), categorical)
    df_val = prepare_features(read_data(f"./data/fhv_tripdata_{val:%Y-%m}.parquet"), categorical)
    lr, dv = train_and_evaluate(df_train, df_val, categorical).result()
    with open(f"models/model-{date:%Y-%m-%d}.bin", "wb") as f_out:
        pickle.dump((dv, lr), f_out)


if __name__ == "__main__":
    state = main(date=datetime(2021, 8, 15))
    print(state)
'''

DEPLOYMENT_2_0B8 = '''
from prefect.deployments import Deployment, FlowScript
from prefect.flow_runners import SubprocessFlowRunner
from prefect.orion.schemas.schedules import CronSchedule

Deployment(
    name="model_training",
    flow=FlowScript(path="./homework.py", name="Homework week 3"),
    schedule=CronSchedule(cron="0 9 15 * *", timezone="America/New_York"),
    flow_runner=SubprocessFlowRunner(),
    tags=["ml"],
)
'''


@pytest.fixture
def homework(tmp_path, monkeypatch):
    """A student's folder: ./data with the months of run dates 2021-03-15 and 2021-08-15, ./models, FHV_HOME beside."""
    folder = student_folder(tmp_path, monkeypatch, ("2021-01", "2021-02", "2021-06", "2021-07"), rows=1500)
    (folder / "models").mkdir()
    return folder


def run_script(folder, name, monkeypatch, capsys):
    """``python -m pipeline.prefect2 FILE`` in this process: (exit code, what it printed)."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    code = script([str(folder / name)])
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


def test_a_task_runner_given_as_its_class_works_as_in_prefect_2_beta(homework):
    write(homework, "homework.py", TRAINING)
    write(homework, "deployment.py", DEPLOYMENT_2_0B8)
    assert main(["deployment", "create", str(homework / "deployment.py")]) == 0
    store = history(homework)
    run = run_once(store, "model_training", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    assert any(m.startswith("The MSE of validation is: ") for m in messages(store, run["id"]))
    assert (homework / "models" / "model-2021-08-15.bin").is_file()


def test_a_script_prints_the_state_its_flow_returns_as_prefect_2_beta_did(homework, monkeypatch, capsys):
    write(homework, "homework.py", TRAINING)
    code, said = run_script(homework, "homework.py", monkeypatch, capsys)
    assert code == 0, said
    assert "Completed(message=None, type=COMPLETED, result=None)" in said


def test_an_unsupported_task_runner_class_is_named_with_the_line_and_not_called_an_invalid_spec(homework, capsys):
    write(homework, "homework.py", '''
        from prefect import flow
        from prefect.deployments import DeploymentSpec

        class DaskTaskRunner:
            pass

        @flow(task_runner=DaskTaskRunner)
        def main(date=None):
            pass

        DeploymentSpec(flow=main, name="dask")
    ''')
    assert main(["deployment", "create", str(homework / "homework.py")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"The deployment file {homework / 'homework.py'} cannot be registered (line 8 of homework.py): @flow on "
            "main uses task_runner=DaskTaskRunner(), which is not supported here") in err
    assert "invalid spec" not in err


def test_an_async_flow_is_refused_in_one_sentence_rather_than_completed_without_running(homework, capsys):
    write(homework, "homework.py", '''
        from prefect import flow, task
        from prefect.deployments import DeploymentSpec

        @task
        async def read_data(path):
            return path

        @flow
        async def main(date=None):
            await read_data("./data/fhv_tripdata_2021-06.parquet")

        DeploymentSpec(flow=main, name="async")
    ''')
    assert main(["deployment", "create", str(homework / "homework.py")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "(line 5 of homework.py): @task on read_data: async functions are not supported here; write it as a " \
           "plain def (and call its tasks without await)." in err


def test_the_flows_own_default_date_stands_for_its_slots_and_a_trigger_without_date(homework):
    write(homework, "homework.py", TRAINING.replace("def main(date: datetime = None):", "def main(date=\"2021-03-15\"):")
          .replace("    date = date or datetime.now()\n", "    date = datetime.strptime(date, \"%Y-%m-%d\")\n"))
    write(homework, "deployment.py", DEPLOYMENT_2_0B8)
    assert main(["deployment", "create", str(homework / "deployment.py")]) == 0
    store = history(homework)
    [slot, *_] = store.runs(deployment="model_training", states=["SCHEDULED"], limit=3)
    assert slot["parameters"] == {"date": "2021-03-15"}
    run = run_once(store, "model_training")  # trigger without --date
    assert (run["state"], run["parameters"]) == ("COMPLETED", {"date": "2021-03-15"}), run["error"]
    assert (homework / "models" / "model-2021-03-15.bin").is_file()
    asked = run_once(store, "model_training", dt.date(2021, 8, 15))  # a date asked for still wins
    assert (asked["state"], asked["parameters"]) == ("COMPLETED", {"date": "2021-08-15"}), asked["error"]


def test_a_trigger_date_the_flow_does_not_take_is_said_in_the_runs_log(homework):
    write(homework, "orchestration.py", '''
        from datetime import timedelta

        import pandas as pd
        from prefect import flow, task
        from prefect.orion.schemas.schedules import IntervalSchedule
        from prefect.deployments import DeploymentSpec

        @task
        def read_dataframe(filename):
            df = pd.read_parquet(filename)
            print(len(df))
            return df

        @flow
        def main(train_path: str = './data/fhv_tripdata_2021-01.parquet',
                 val_path: str = './data/fhv_tripdata_2021-02.parquet'):
            read_dataframe(train_path)
            read_dataframe(val_path)

        DeploymentSpec(flow=main, name="model_training", tags=["ml"],
                       schedule=IntervalSchedule(interval=timedelta(minutes=5)))
    ''')
    assert main(["deployment", "create", str(homework / "orchestration.py")]) == 0
    store = history(homework)
    run = run_once(store, "model_training", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    assert messages(store, run["id"])[0] == ("The flow main takes no parameter 'date', so this run's date='2021-08-15' "
                                             "is not passed to it (get_run_context().flow_run.expected_start_time "
                                             "carries it).")
    slot = run_slot(store, "model_training")  # a slot's own date, which every run carries, is not worth a word
    assert slot["state"] == "COMPLETED" and not any("takes no parameter" in m for m in messages(store, slot["id"]))


def test_a_script_that_calls_no_flow_says_that_nothing_ran(homework, monkeypatch, capsys):
    write(homework, "homework.py", '''
        from prefect import flow

        @flow
        def main(date=None):
            print("training")

        # main(date="2021-08-15")
    ''')
    code, said = run_script(homework, "homework.py", monkeypatch, capsys)
    assert code == 0
    assert said == ("homework.py defines the flow main but calls none, so nothing ran; call it at the end of the "
                    "file (as in if __name__ == \"__main__\": main()), or trigger its deployment.")


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed here")
def test_a_script_importing_mlflow_says_it_is_not_installed_and_how_to_install_it(homework, monkeypatch, capsys):
    write(homework, "homework.py", '''
        import mlflow
        from prefect import flow

        mlflow.set_tracking_uri("sqlite:///mlflow.db")

        @flow
        def main(date=None):
            mlflow.log_metric("rmse", 11.6)

        main(date="2021-08-15")
    ''')
    code, said = run_script(homework, "homework.py", monkeypatch, capsys)
    assert code == 1
    assert said == (f"error: homework.py imports the package 'mlflow', which is not installed here ({sys.executable} "
                    "-m pip install mlflow) (line 2 of homework.py)")


def test_a_conda_environment_that_cannot_be_found_names_the_file_not_a_deployment(homework, monkeypatch, capsys):
    write(homework, "homework.py", '''
        from prefect import flow
        from prefect.deployments import DeploymentSpec
        from prefect.flow_runners import SubprocessFlowRunner

        @flow
        def main(date=None):
            pass

        DeploymentSpec(flow=main, name="model_training",
                       flow_runner=SubprocessFlowRunner(condaenv="mlops-zoomcamp"))
    ''')
    monkeypatch.delenv("CONDA_EXE", raising=False)
    monkeypatch.setenv("PATH", str(homework))  # no conda on it
    assert main(["deployment", "create", str(homework / "homework.py")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "The deployment file homework.py runs its flows in the conda environment 'mlops-zoomcamp', but conda" in err


SMALL_FLOW = '''
from prefect import flow
from prefect.deployments import DeploymentSpec

@flow
def main(date=None):
    print(date)

DeploymentSpec(flow=main, name="model_training", tags=["ml"])
'''


def test_a_deployment_name_taken_by_another_files_flow_is_replaced_and_said(homework, tmp_path, capsys):
    write(homework, "homework.py", SMALL_FLOW)
    week4 = tmp_path / "week4"
    week4.mkdir()
    write(week4, "homework.py", SMALL_FLOW)
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    assert "ran the flow" not in capsys.readouterr().out
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0  # the same file again: nothing to say
    assert "ran the flow" not in capsys.readouterr().out
    assert main(["deployment", "create", str(week4 / "homework.py")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (f"The deployment model_training ran the flow prefect2:{homework / 'homework.py'}:main; it runs "
            f"prefect2:{week4 / 'homework.py'}:main from now on (a deployment name is unique here: give the spec "
            "another name to keep both).") in out


def test_prefects_flow_slash_deployment_name_is_answered_with_the_name_used_here(homework, capsys):
    write(homework, "homework.py", SMALL_FLOW)
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    assert main(["trigger", "--deployment", "main/model_training", "--date", "2021-08-15"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert ("There is no deployment named 'main/model_training'; deployments are named without their flow here "
            "(Prefect's FLOW/NAME): use 'model_training'.") in err
    assert main(["trigger", "--deployment", "main/nothing", "--date", "2021-08-15"]) == 2
    assert "There is no deployment named 'main/nothing'; see: python -m pipeline deployment ls." in \
           " ".join(capsys.readouterr().err.split())


def test_a_missing_file_given_by_a_relative_path_is_named_where_the_run_looked(homework):
    (homework / "models").rmdir()
    write(homework, "orchestration.py", '''
        import pickle
        import pandas as pd
        from prefect import flow, task
        from prefect.deployments import DeploymentSpec

        @task
        def read_dataframe(filename):
            return pd.read_parquet(filename)

        @task
        def train_best_model(df):
            with open("models/preprocessor.b", "wb") as f_out:
                pickle.dump(len(df), f_out)

        @flow
        def main(train_path: str = './data/fhv_tripdata_2021-01.parquet', month: str = "2021-05"):
            train_best_model(read_dataframe(train_path))
            read_dataframe(f"./data/fhv_tripdata_{month}.parquet").result()

        DeploymentSpec(flow=main, name="model_training")
    ''')
    assert main(["deployment", "create", str(homework / "orchestration.py")]) == 0
    store = history(homework)
    run = run_once(store, "model_training")
    assert run["state"] == "FAILED"
    [first, second] = [t["error"] for t in store.task_runs(run["id"]) if t["error"]]
    assert f"No such file or directory: '{homework / 'models' / 'preprocessor.b'}'" in first  # open()'s error
    assert second.endswith(f"FileNotFoundError: {homework / 'data' / 'fhv_tripdata_2021-05.parquet'}")  # pyarrow's


@pytest.mark.timeout(60)
def test_python_given_on_the_command_line_wins_over_a_conda_environment_that_is_not_found(homework, monkeypatch,
                                                                                           capsys):
    write(homework, "homework.py", SMALL_FLOW.replace(
        'DeploymentSpec(flow=main, name="model_training", tags=["ml"])',
        'from prefect.flow_runners import SubprocessFlowRunner\n\n'
        'DeploymentSpec(flow=main, name="model_training", flow_runner=SubprocessFlowRunner(condaenv="mlops-zoomcamp"))'))
    monkeypatch.delenv("CONDA_EXE", raising=False)
    monkeypatch.setenv("PATH", str(homework))  # no conda on it, as the sentence without --python says
    assert main(["deployment", "create", str(homework / "homework.py"), "--python", sys.executable]) == 0, \
        capsys.readouterr().err
    [row] = [r for r in history(homework).deployments() if r["name"] == "model_training"]
    assert row["flow"] == f"prefect2:{homework / 'homework.py'}:main?python={sys.executable}"


def test_a_flow_timeout_that_is_not_kept_is_said_in_the_runs_log(homework):
    write(homework, "homework.py", SMALL_FLOW.replace("@flow\n", "@flow(timeout_seconds=3600)\n"))
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = history(homework)
    run = run_once(store, "model_training", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    assert ("The flow main sets timeout_seconds=3600: here a flow has no time limit (its tasks' timeout_seconds are "
            "kept).") in messages(store, run["id"])


def test_the_names_prefect_2_beta_exported_at_the_top_and_its_tags_context_work_in_a_script(homework, monkeypatch,
                                                                                            capsys):
    write(homework, "homework.py", '''
        from prefect import Flow, State, Task, flow, tags, task

        @task
        def double(x):
            return 2 * x

        @flow
        def main(x: int = 1):
            return double(x).result()

        assert isinstance(main, Flow) and isinstance(double, Task)
        with tags("ml", "homework"):
            state = main(x="21")
        assert isinstance(state, State)
        print(f"result {state.result()}")
    ''')
    code, said = run_script(homework, "homework.py", monkeypatch, capsys)
    assert code == 0, said
    assert "result 42" in said


def test_a_subflow_returns_its_state_and_one_that_failed_fails_its_caller_as_in_prefect_2_beta(homework):
    write(homework, "homework.py", '''
        from prefect import flow, task, get_run_logger
        from prefect.deployments import DeploymentSpec

        @task
        def read(path):
            with open(path) as f:
                return f.read()

        @flow
        def train(path):
            return len(read(path).result())

        @flow
        def main(date=None, path="./data/fhv_tripdata_2021-06.parquet"):
            state = train(path)
            get_run_logger().info(f"subflow {state.name}, result {state.result(raise_on_failure=False)!r}")

        DeploymentSpec(flow=main, name="fine")
        DeploymentSpec(flow=main, name="broken", parameters={"path": "./data/missing.txt"})
    ''')
    (homework / "data" / "fhv_tripdata_2021-06.parquet").write_text("twelve bytes")
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = history(homework)
    fine = run_once(store, "fine")
    assert fine["state"] == "COMPLETED", fine["error"]
    assert "subflow Completed, result 12" in messages(store, fine["id"])
    broken = run_once(store, "broken")
    assert broken["state"] == "FAILED" and "missing.txt" in broken["error"]
    assert any(m.startswith("subflow Failed, result FileNotFoundError(") for m in messages(store, broken["id"])), \
        messages(store, broken["id"])


@pytest.mark.parametrize("options", [[], ["--python", sys.executable]], ids=["here", "its-own-python"])
@pytest.mark.timeout(60)
def test_a_file_is_loaded_in_its_own_folder_whatever_folder_deployment_create_is_run_from(homework, tmp_path,
                                                                                         monkeypatch, options):
    write(homework, "homework.py", '''
        import os
        import mlflow_free_settings
        from prefect import flow
        from prefect.deployments import DeploymentSpec

        os.makedirs("mlruns", exist_ok=True)
        with open("./data/tracking.txt") as f:
            TRACKING = f.read()

        @flow
        def main(date=None):
            print(TRACKING)

        DeploymentSpec(flow=main, name="model_training")
    ''')
    write(homework, "mlflow_free_settings.py", "EXPERIMENT = 'nyc-taxi'\n")
    (homework / "data" / "tracking.txt").write_text("sqlite:///mlflow.db")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["deployment", "create", str(homework / "homework.py"), *options]) == 0
    assert (homework / "mlruns").is_dir() and not (elsewhere / "mlruns").exists()


def test_a_script_run_from_another_folder_is_recorded_in_that_folders_history_by_default(homework, tmp_path,
                                                                                        monkeypatch, capsys):
    write(homework, "homework.py", '''
        from prefect import flow

        @flow
        def main(date=None):
            print(f"training for {date}")

        main(date="2021-08-15")
    ''')
    monkeypatch.delenv("FHV_HOME")
    repository = tmp_path / "repository"
    repository.mkdir()
    monkeypatch.chdir(repository)  # where the dashboard and `runs ls` read ./.fhv
    code, said = run_script(homework, "homework.py", monkeypatch, capsys)
    assert code == 0, said
    assert (repository / ".fhv" / "history.db").is_file() and not (homework / ".fhv").exists()


def test_a_flow_file_without_a_spec_is_told_how_to_add_one(homework, capsys):
    write(homework, "homework.py", SMALL_FLOW.replace('DeploymentSpec(flow=main, name="model_training", tags=["ml"])', ""))
    assert main(["deployment", "create", str(homework / "homework.py")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"The deployment file {homework / 'homework.py'} defines no DeploymentSpec at module level; add one at "
            "its end, like DeploymentSpec(flow=main, name=\"model_training\", schedule=CronSchedule(cron=\"0 9 15 * "
            "*\")), or give deployment create the file that defines it.") in err


def test_a_computed_default_date_is_not_frozen_at_create_the_slots_date_is_passed(homework):
    write(homework, "homework.py", SMALL_FLOW.replace("def main(date=None):",
                                                      "def main(date=str(__import__('datetime').date(2021, 8, 15))):"))
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = history(homework)
    run = run_once(store, "model_training")  # a trigger without --date: today, as Prefect computed it in each run
    assert run["parameters"] == {"date": run["run_date"]} and run["run_date"] != "2021-08-15"


@pytest.mark.skipif(importlib.util.find_spec("dotenv") is not None, reason="python-dotenv is installed here")
def test_a_missing_package_is_named_by_what_to_install_and_where_else_it_may_be(homework, capsys):
    write(homework, "homework.py", "from dotenv import load_dotenv\n" + SMALL_FLOW)
    assert main(["deployment", "create", str(homework / "homework.py")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert ("imports the package 'dotenv', which is not installed here (pip install python-dotenv; or, if another "
            "environment has it: deployment create homework.py --python /path/to/that/bin/python).") in err
