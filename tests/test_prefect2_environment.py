"""A deployment's flows in the user's own Python environment (issue 17, "Their own environment").

The test makes a second virtual environment with ``venv`` and an older scikit-learn (and python-dotenv,
which this product does not ship) from the package registry, once: it is cached outside the test's
temporary folder, keyed by the versions, so later runs take no time to set it up.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import load_settings
from pipeline.orchestration import control
from pipeline.store import Store
from tests.conftest import wait_for
from tests.homework import history, messages, run_once, write
from tests.prerequisites import unavailable

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.timezone.utc
PACKAGES = ("scikit-learn==1.5.2", "python-dotenv==1.0.1")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fhv-tests"


@pytest.fixture(scope="module")
def user_venv() -> Path:
    """A virtualenv with an older scikit-learn and python-dotenv (and no SQLAlchemy), made once and cached."""
    return cached_venv(PACKAGES)


def cached_venv(packages: tuple[str, ...]) -> Path:
    venv = CACHE / f"venv-py{sys.version_info[0]}{sys.version_info[1]}-{'-'.join(packages)}"
    if not (venv / "ready").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / "venv.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two test workers never build it at once
            if not (venv / "ready").is_file():
                _build(venv, packages)
    return venv


def _build(venv: Path, packages: tuple[str, ...]) -> None:
    building = venv.with_name(venv.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
    done = subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", *packages], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        unavailable(f"pip could not install {', '.join(packages)} into a test virtualenv: {done.stderr[-500:]}")
    (building / "ready").write_text("")
    shutil.rmtree(venv, ignore_errors=True)
    building.rename(venv)


LIGHT = '''
from prefect import flow
from prefect.deployments import DeploymentSpec
from prefect.flow_runners import SubprocessFlowRunner


@flow
def main(date=None):
    pass
'''

IN_ITS_OWN_VENV = '''
import os
import sys

import sklearn
from dotenv import load_dotenv
from sklearn.metrics import mean_squared_error

from prefect import flow, task, get_run_logger
from prefect.deployments import DeploymentSpec
from prefect.flow_runners import SubprocessFlowRunner

load_dotenv()


@task
def evaluate(y, y_pred):
    return mean_squared_error(y, y_pred, squared=False)


@flow
def main(date=None):
    logger = get_run_logger()
    logger.info(f"python {sys.executable}")
    logger.info(f"scikit-learn {sklearn.__version__}")
    logger.info(f"VIRTUAL_ENV {os.environ.get('VIRTUAL_ENV')}")
    rmse = evaluate([3.0, 5.0, 7.0], [2.0, 5.0, 9.0]).result()
    logger.info(f"The RMSE is {rmse:.6f} for {date}")
'''


@pytest.fixture
def homework(tmp_path, monkeypatch):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    folder = tmp_path / "homework"
    folder.mkdir()
    return folder


@pytest.mark.timeout(900)  # the first run of the suite on a machine makes the virtualenv (about 20 s)
def test_a_deployment_in_its_own_virtualenv_runs_with_its_packages_and_records_tasks_and_logs(homework, user_venv):
    (homework / "env").symlink_to(user_venv)  # the student's virtualenv beside the file, named relatively
    write(homework, "homework.py", IN_ITS_OWN_VENV + '''
DeploymentSpec(flow=main, name="own-env", flow_runner=SubprocessFlowRunner(virtualenv="env"), tags=["ml"])
''')
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0  # dotenv is not installed here
    store = history(homework)
    python = homework / "env" / "bin" / "python"
    assert store.get_deployment("own-env")["flow"] == f"prefect2:{homework / 'homework.py'}:main?python={python}"
    run = run_once(store, "own-env", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    said = messages(store, run["id"])
    assert f"python {python}" in said and "scikit-learn 1.5.2" in said
    assert f"VIRTUAL_ENV {homework / 'env'}" in said  # as if activated
    assert "The RMSE is 1.290994 for 2021-08-15" in said  # squared=False, native in 1.5.2: nothing adapted
    assert not [m for m in said if "computed as the RMSE" in m]
    assert [(t["task"], t["state"]) for t in store.task_runs(run["id"])] == [("evaluate", "COMPLETED")]


@pytest.mark.timeout(900)
def test_deployment_create_with_python_loads_and_runs_a_file_that_names_no_environment(homework, user_venv, capsys):
    write(homework, "homework.py", '''
        import sys
        from dotenv import load_dotenv
        from prefect import flow, get_run_logger
        from prefect.deployments import DeploymentSpec

        @flow
        def main(date=None):
            get_run_logger().info(f"python {sys.executable}")

        DeploymentSpec(flow=main, name="with-python")
    ''')
    assert main(["deployment", "create", str(homework / "homework.py")]) == 2
    assert "imports the package 'dotenv', which is not installed here" in " ".join(capsys.readouterr().err.split())
    python = user_venv / "bin" / "python"
    assert main(["deployment", "create", str(homework / "homework.py"), "--python", str(python)]) == 0
    store = history(homework)
    run = run_once(store, "with-python", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    assert f"python {python}" in messages(store, run["id"])


@pytest.mark.timeout(900)
def test_an_environment_that_lacks_a_package_says_which_and_how_to_install_it(homework, user_venv, capsys):
    write(homework, "homework.py", '''
        import mlflow
        from prefect import flow
        from prefect.deployments import DeploymentSpec

        @flow
        def main():
            pass

        DeploymentSpec(flow=main, name="needs-mlflow")
    ''')
    python = user_venv / "bin" / "python"
    assert main(["deployment", "create", str(homework / "homework.py"), "--python", str(python)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"imports the package 'mlflow', which is not installed in the environment of {python} " \
           f"({python} -m pip install mlflow)" in err
    from pipeline.errors import ConfigError
    from pipeline.prefect2.elsewhere import check_python

    with pytest.raises(ConfigError, match=f"The environment of {python} lacks the package 'psycopg', which runs of "
                                          "this deployment need there"):
        check_python(str(python), needs=("psycopg",))  # what a history on PostgreSQL needs there


@pytest.mark.timeout(900)
def test_a_run_whose_interpreter_is_gone_fails_with_one_sentence(homework, user_venv):
    write(homework, "homework.py", LIGHT + 'DeploymentSpec(flow=main, name="gone")\n')
    link = homework / "venv"
    link.symlink_to(user_venv)
    assert main(["deployment", "create", str(homework / "homework.py"), "--python", str(link / "bin" / "python")]) == 0
    link.unlink()
    run = run_once(history(homework), "gone", dt.date(2021, 8, 15))
    assert run["state"] == "FAILED"
    assert run["error"].startswith(f"The interpreter {link / 'bin' / 'python'} cannot be started"), run["error"]


@pytest.mark.parametrize("runner, words", [
    ('virtualenv="no-such-env"', "runs its flows in SubprocessFlowRunner(virtualenv='no-such-env'), but there is no "
                                 "Python at {folder}/no-such-env/bin/python"),
    ('condaenv="mlops"', "runs its flows in the conda environment 'mlops', but conda is not on PATH here"),
    ('virtualenv="a", condaenv="b"', "gives both virtualenv= and condaenv= to its SubprocessFlowRunner; give one."),
    ('env={"A": "1"}', "SubprocessFlowRunner(env=...) is not supported here"),
])
def test_an_environment_that_cannot_be_used_is_refused_at_create_with_one_sentence(homework, monkeypatch, capsys,
                                                                                    runner, words):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("CONDA_EXE", raising=False)
    write(homework, "homework.py", f'''
        from prefect import flow
        from prefect.deployments import DeploymentSpec
        from prefect.flow_runners import SubprocessFlowRunner
        runner = dict({runner})

        @flow
        def main():
            pass

        DeploymentSpec(flow=main, name="refused", flow_runner=SubprocessFlowRunner(**runner))
    ''')
    assert main(["deployment", "create", str(homework / "homework.py")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert words.format(folder=homework) in err and "Traceback" not in err


def test_a_python_that_is_not_there_is_refused_with_one_sentence(homework, capsys):
    write(homework, "homework.py", "from prefect import flow\n")
    assert main(["deployment", "create", str(homework / "homework.py"), "--python", "/no/such/python"]) == 2
    assert "--python /no/such/python: there is no Python interpreter there" in capsys.readouterr().err


@pytest.mark.timeout(900)
def test_the_real_scheduler_runs_the_flow_in_the_users_interpreter_and_a_cancel_stops_it(homework, user_venv):
    write(homework, "homework.py", '''
        import sys, time
        import dotenv
        from prefect import flow, task, get_run_logger
        from prefect.deployments import DeploymentSpec
        from prefect.flow_runners import SubprocessFlowRunner

        @task
        def wait(seconds):
            get_run_logger().info(f"waiting in {sys.executable}")
            time.sleep(seconds)

        @flow
        def main(seconds: float = 0.1):
            wait(seconds)

        DeploymentSpec(flow=main, name="quick", flow_runner=SubprocessFlowRunner(virtualenv="%s"))
        DeploymentSpec(flow=main, name="slow", parameters={"seconds": "60"},
                       flow_runner=SubprocessFlowRunner(virtualenv="%s"))
    ''' % (user_venv, user_venv))
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store, settings, now = history(homework), load_settings(), dt.datetime.now(UTC)
    quick = control.trigger(store, settings, deployment="quick", date=None, now=now)
    slow = control.trigger(store, settings, deployment="slow", date=None, now=now)
    scheduler = subprocess.Popen([sys.executable, "-m", "pipeline", "scheduler", "--tick", "0.2", "--grace", "1"],
                                 cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: store.get_run(quick["id"])["state"] in ("COMPLETED", "FAILED", "CRASHED"), "the quick run")
        wait_for(lambda: any("waiting in" in m for m in messages(store, slow["id"])), "the slow run's task")
        control.cancel(store, slow["id"], now=dt.datetime.now(UTC))
        wait_for(lambda: store.get_run(slow["id"])["state"] not in ("RUNNING", "PENDING"), "the cancel")
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)
    assert store.get_run(quick["id"])["state"] == "COMPLETED", store.get_run(quick["id"])["error"]
    assert f"waiting in {user_venv / 'bin' / 'python'}" in messages(store, quick["id"])
    assert store.get_run(slow["id"])["state"] == "CANCELLED"


@pytest.mark.timeout(900)
def test_a_file_that_hangs_while_loading_in_its_own_environment_is_stopped_after_the_time_limit(homework, user_venv,
                                                                                                capsys):
    write(homework, "homework.py", '''
        import dotenv
        from prefect.flow_runners import SubprocessFlowRunner
        SubprocessFlowRunner(virtualenv="%s")
        while True:
            pass
    ''' % user_venv)
    assert main(["deployment", "create", str(homework / "homework.py"), "--timeout", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"did not finish loading in {user_venv / 'bin' / 'python'} within 1 s" in err


@pytest.mark.timeout(900)
def test_with_the_history_on_postgresql_an_environment_without_psycopg_fails_the_run_saying_so(homework, user_venv,
                                                                                                pg_url, monkeypatch):
    monkeypatch.setenv("FHV_DATABASE_URL", pg_url)
    write(homework, "homework.py", LIGHT + '''
DeploymentSpec(flow=main, name="on-postgresql", flow_runner=SubprocessFlowRunner(virtualenv="%s"))
''' % user_venv)
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = Store(pg_url)
    run = run_once(store, "on-postgresql", dt.date(2021, 8, 15))
    python = user_venv / "bin" / "python"
    assert run["state"] == "FAILED"
    assert run["error"] == (f"The environment of {python} lacks the package 'psycopg', which runs of this deployment "
                            f"need there ({python} -m pip install 'psycopg[binary]').")
    store.close()


@pytest.mark.timeout(900)
def test_a_conda_environment_named_by_its_name_is_found_with_conda(homework, user_venv, monkeypatch):
    bin_dir = homework / "conda-bin"
    bin_dir.mkdir()
    conda = bin_dir / "conda"  # a stand-in that lists the test's environment as conda would
    conda.write_text(f"#!/bin/sh\necho '{{\"envs\": [\"/opt/conda\", \"{user_venv}\"]}}'\n")
    conda.chmod(0o755)
    monkeypatch.setenv("CONDA_EXE", str(conda))
    named = f"DeploymentSpec(flow=main, name='in-conda', flow_runner=SubprocessFlowRunner(condaenv={user_venv.name!r}))"
    write(homework, "homework.py", LIGHT + named + "\n")
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = history(homework)
    assert store.get_deployment("in-conda")["flow"].endswith(f"?python={user_venv / 'bin' / 'python'}")
    run = run_once(store, "in-conda", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]


WITH_ITS_OWN_SQLALCHEMY = '''
import sqlalchemy
from prefect import flow, get_run_logger
from prefect.deployments import DeploymentSpec
from prefect.flow_runners import SubprocessFlowRunner


@flow
def main(date=None):
    get_run_logger().info(f"sqlalchemy {sqlalchemy.__version__} from {sqlalchemy.__file__}")


DeploymentSpec(flow=main, name="own-sqlalchemy", flow_runner=SubprocessFlowRunner(virtualenv="env"))
'''


@pytest.mark.timeout(900)
def test_an_environment_with_its_own_older_sqlalchemy_keeps_it_and_its_runs_are_recorded(homework):
    """MLflow 1.x brings SQLAlchemy 1.4: the flow imports that one, and the history's SQL compiles with it."""
    venv = cached_venv(("SQLAlchemy==1.4.54",))
    (homework / "env").symlink_to(venv)
    write(homework, "homework.py", WITH_ITS_OWN_SQLALCHEMY)
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = history(homework)
    run = run_once(store, "own-sqlalchemy", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    [said] = [m for m in messages(store, run["id"]) if m.startswith("sqlalchemy ")]
    assert said.startswith("sqlalchemy 1.4.54 from ") and str(venv) in said.replace(str(homework / "env"), str(venv))


def test_a_flow_in_an_environment_without_sqlalchemy_borrows_only_sqlalchemy_from_this_product(homework, user_venv):
    write(homework, "homework.py", WITH_ITS_OWN_SQLALCHEMY.replace("own-sqlalchemy", "borrowed")
          .replace("import sqlalchemy", "import sqlalchemy\nimport importlib.util\n"
                   "assert importlib.util.find_spec('pandas') is None, 'pandas leaked'"))
    (homework / "env").symlink_to(user_venv)
    assert main(["deployment", "create", str(homework / "homework.py")]) == 0
    store = history(homework)
    run = run_once(store, "borrowed", dt.date(2021, 8, 15))
    assert run["state"] == "COMPLETED", run["error"]
    [said] = [m for m in messages(store, run["id"]) if m.startswith("sqlalchemy ")]
    import sqlalchemy
    assert said == f"sqlalchemy {sqlalchemy.__version__} from {sqlalchemy.__file__}"
