"""Deployments triggered by another deployment's completed runs, like Prefect automations or Airflow datasets.

``DeploymentSpec(..., trigger=AfterCompletion("nightly"))`` runs the deployment once for each run
of ``nightly`` that completes after the deployment was registered, with that run's date. The
scheduler's step ``follow`` makes these runs (trigger ``completion``, due at once, in the deployment's
queue). Exactly once, whatever restarts or schedulers there are: the run records the upstream run in
``triggered_by`` and a unique index on (deployment, triggered_by) lets only one such run exist, in any
state; a second attempt inserts nothing. A paused deployment makes none; when resumed, it makes the runs
of the completions it missed meanwhile. A date the flow refuses makes a FAILED run with the sentence, so
nothing is lost and nothing is tried again.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from ..config import Settings
from ..errors import ConfigError
from ..store import Store, from_db
from .registry import flow_entry

logger = logging.getLogger("pipeline.orchestration.triggers")
TRIGGER = "completion"  # the flow_runs.trigger of the runs a completion made


@dataclass(frozen=True)
class AfterCompletion:
    """Run once for each completed run of the deployment ``deployment``."""

    deployment: str

    def describe(self) -> str:
        return f"after each completed run of {self.deployment}"


def check_trigger(trigger: Any, name: str) -> AfterCompletion | None:
    """The spec's trigger, checked: an AfterCompletion of another deployment, or None."""
    if trigger is None:
        return None
    if isinstance(trigger, str):
        trigger = AfterCompletion(trigger)
    if not isinstance(trigger, AfterCompletion) or not isinstance(trigger.deployment, str):
        raise ConfigError(f"The trigger of {name!r} must be AfterCompletion(\"<deployment name>\"), not {trigger!r}.")
    if trigger.deployment == name:
        raise ConfigError(f"The deployment {name!r} cannot be triggered by its own completion.")
    return trigger


def follow(store: Store, settings: Settings, row: Mapping[str, Any], now: dt.datetime) -> list[str]:
    """Make the runs of deployment ``row`` that its upstream's completed runs call for; their ids."""
    upstream = store.get_deployment(row["after_deployment"])  # NotFound: a sentence, the deployment is marked
    since = from_db(row["created_at"])
    made = []
    for run in store.completed_without_followup(upstream["id"], row["id"], since=since):
        run_id = _follow_one(store, settings, row, run, now)
        if run_id:
            logger.info("The completion of %s (%s) of %s triggered run %s of %s.", run["name"], run["id"][:8],
                        upstream["name"], run_id[:8], row["name"])
            made.append(run_id)
    return made


def _follow_one(store: Store, settings: Settings, row: Mapping[str, Any], upstream: Mapping[str, Any],
                now: dt.datetime) -> str | None:
    from .deployments import run_columns, run_parameters
    from .runtime import new_run_name

    run_date = dt.date.fromisoformat(upstream["run_date"]) if upstream.get("run_date") else \
        from_db(upstream["ended_at"]).date()
    fields = {"flow": row["flow"], "name": new_run_name(), "now": now, "trigger": TRIGGER, "scheduled_time": now,
              "deployment_id": row["id"], "work_queue": row["work_queue"], "triggered_by": upstream["id"]}
    parameters = {**_shared(row, upstream), **run_parameters(row, run_date)}
    try:
        flow_entry(row["flow"]).refuse_date(run_date, now.date())
        columns = run_columns(row["flow"], parameters, settings)
    except ConfigError as error:
        return store.create_run(state="FAILED", parameters=parameters, run_date=run_date, ended_at=now,
                                error=str(error), state_message=str(error), **fields)
    return store.create_run(state="SCHEDULED", parameters=parameters, **columns, **fields)


def _shared(row: Mapping[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
    """The upstream run's parameters the downstream flow takes too (its data source, say), unless the
    deployment sets them itself; never its date."""
    takes = flow_entry(row["flow"]).parameters or ()
    own = row.get("parameters") or {}
    return {k: v for k, v in (upstream.get("parameters") or {}).items() if k in takes and k not in own and k != "date"}
