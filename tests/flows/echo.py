"""A third flow, defined in the test suite and registered through FHV_FLOWS ("tests.flows.echo:ENTRY").

Two tasks (``shout``, ``count``), one field (``word``), one metric (``letters``) and its own failure
classification: a word the flow refuses is a "gate", the word "later" is "not_published" (so that a
scheduled run that fails with it "gave up"). Nothing in the generic code names any of it.
"""
from __future__ import annotations

from typing import Any, Mapping

from pipeline.config import Settings
from pipeline.errors import ConfigError, DataError
from pipeline.orchestration.clock import SYSTEM_CLOCK, Clock
from pipeline.orchestration.registry import Field, FlowEntry, Metric, Trend
from pipeline.orchestration.runtime import FlowResult, flow, run_flow, task
from pipeline.store import Store

FLOW_NAME = "echo"
TASKS = ("shout", "count")
REFUSED = "Echo refuses the word "  # how a refused word fails: the flow's own gate
NOT_YET = "Echo has not heard the word yet"


def run_fields(parameters: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    word = parameters.get("word") or "hello"
    if not isinstance(word, str):
        raise ConfigError(f"The word {word!r} must be text.")
    return {"run_date": parameters.get("date"), "word": word}


@task
def shout(word: str) -> str:
    if word == "later":
        raise DataError(f"{NOT_YET}: {word!r}.")
    if word.startswith("no"):
        raise DataError(f"{REFUSED}{word!r}.")
    return word.upper()


@task
def count(shouted: str) -> int:
    return len(shouted)


@flow(FLOW_NAME, tasks=TASKS)
def echo_flow(*, date: str | None = None, word: str = "hello") -> dict[str, Any]:
    return {"letters": count(shout(word)), "shouted": word.upper()}


def execute(store: Store, settings: Settings, run_id: str, *, clock: Clock = SYSTEM_CLOCK,
            await_policy: Any = None, heartbeat_every: float = 5.0) -> FlowResult:
    parameters = dict(store.get_run(run_id)["parameters"])
    return run_flow(store, echo_flow, run_id, parameters, clock=clock, await_policy=await_policy,
                    heartbeat_every=heartbeat_every)


def classify_failure(run: Mapping[str, Any]) -> str:
    error = run.get("error") or ""
    if run.get("error_task") == "shout" and error.startswith(REFUSED):
        return "gate"
    return "not_published" if error.startswith(NOT_YET) else "failed"


ENTRY = FlowEntry(name=FLOW_NAME, execute="tests.flows.echo:execute", run_fields=run_fields, parameters=("word",),
                  title="Echo", fields=(Field("word", "Word", indexed=True),), metrics=(Metric("letters", "Letters", "d"),),
                  trend=Trend("letters", by="word"), classify_failure=classify_failure)
ENTRIES = (ENTRY,)  # the same flow, as a tuple (FHV_FLOWS may name a list or tuple of entries)
