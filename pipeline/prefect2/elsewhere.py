"""Loading a deployment file, and running a flow, in the user's own interpreter (see ``environment.py``).

The child is ``python -c BOOTSTRAP`` of that interpreter with this package on ``PYTHONPATH``; it reads its
job as JSON on standard input (a PostgreSQL URL never appears on a command line). A run's child dies with
the process that started it (``PR_SET_PDEATHSIG``) and is passed the SIGTERM of a cancel. Whatever the
child cannot do is said in one sentence: an interpreter that is missing, too old or lacks what a run
needs, a file that does not load there, a load that takes longer than its time limit.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError
from ..orchestration.runtime import Flow, FlowResult, run_flow
from ..orchestration.states import FINAL_STATES, State
from ..store import Store
from .environment import BOOTSTRAP, CHECK_TIMEOUT, environment_for, problem_sentence

PR_SET_PDEATHSIG = 1


def _child(python: str, command: str, **options: Any) -> subprocess.Popen:
    try:
        return subprocess.Popen([python, "-c", BOOTSTRAP, command], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=environment_for(python), text=True, **options)
    except OSError as error:
        raise ConfigError(f"The interpreter {python} cannot be started: {error.strerror or error}.") from None


def check_python(python: str, needs: tuple[str, ...] = ()) -> None:
    """ConfigError with one sentence if ``python`` cannot run this product's side of a flow."""
    try:
        done = subprocess.run([python, "-c", BOOTSTRAP, "check", *needs], capture_output=True, text=True,
                              env=environment_for(python), timeout=CHECK_TIMEOUT)
    except OSError as error:
        raise ConfigError(f"The interpreter {python} cannot be started: {error.strerror or error}.") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"The interpreter {python} did not answer within {CHECK_TIMEOUT:g} s.") from None
    problem = problem_sentence(python, done.returncode, done.stderr)
    if problem:
        raise ConfigError(problem)


def inspect_file(path: Path, python: str, timeout: float) -> list[dict[str, Any]]:
    """The Prefect 2 specs of the deployment file ``path`` as loaded by ``python``, as descriptions."""
    with tempfile.TemporaryDirectory(prefix="fhv-inspect-") as folder:
        out = Path(folder) / "specs.json"
        child = _child(python, "inspect", stdout=subprocess.DEVNULL)
        try:
            _, stderr = child.communicate(json.dumps({"file": str(path), "python": python, "out": str(out)}),
                                          timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise ConfigError(f"The deployment file {path} did not finish loading in {python} within {timeout:g} s "
                              "(a loop or a long computation at import time?); it was stopped. A deployment file "
                              "should only define its flows and specs (deployment create --timeout S allows more).")
        answer = json.loads(out.read_text()) if out.is_file() else None
    if answer is None:
        raise ConfigError(problem_sentence(python, child.returncode, stderr) or
                          f"The deployment file {path} ended its loading process in {python} (exit code "
                          f"{child.returncode}) before it defined anything; it should only define specs.")
    if "error" in answer:
        raise ConfigError(answer["error"])
    return answer["specs"]


def run_elsewhere(store: Store, run_id: str, python: str, *, heartbeat_every: float) -> FlowResult:
    """Execute the claimed run ``run_id`` in ``python``; its child records the run as any run."""
    job = {"history": str(store.location), "run_id": run_id, "claimer": store.claimer,
           "heartbeat_every": heartbeat_every}
    try:
        child = _child(python, "run", preexec_fn=_die_with_parent)
    except ConfigError as error:
        return _fail(store, run_id, error, heartbeat_every)
    with _passing_sigterm(child):
        _, stderr = child.communicate(json.dumps(job))
    return _outcome(store, run_id, python, child.returncode, stderr, heartbeat_every)


def _outcome(store: Store, run_id: str, python: str, code: int, stderr: str, heartbeat_every: float) -> FlowResult:
    run = store.get_run(run_id)
    state = State(run["state"])
    if state is State.PENDING:  # the child never started it: the run fails, saying why
        sentence = problem_sentence(python, code, stderr) or (
            f"The run's process in {python} ended with exit code {code} before the run started.")
        return _fail(store, run_id, ConfigError(sentence), heartbeat_every)
    if state not in FINAL_STATES and code != 0:  # it died mid-run: end as it did, so the run is judged crashed
        sys.stderr.write(stderr[-2000:])
        raise SystemExit(code if code > 0 else 128 - code)
    return FlowResult(run_id, state, error=run.get("error"), error_task=run.get("error_task"))


def _fail(store: Store, run_id: str, error: ConfigError, heartbeat_every: float) -> FlowResult:
    """The claimed run starts and fails at once with ``error``'s sentence."""
    def fail(**_: Any) -> Any:
        raise error
    return run_flow(store, Flow(fail, "prefect2"), run_id, {}, heartbeat_every=heartbeat_every)


@contextlib.contextmanager
def _passing_sigterm(child: subprocess.Popen) -> Iterator[None]:
    """A cancel's SIGTERM to this process goes on to the child, which records the run CANCELLED."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when this process dies (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
