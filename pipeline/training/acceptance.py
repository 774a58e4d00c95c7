"""Accepting a blocked run's data after a lasting shift: one recorded action of an operator.

In ``block`` mode the drift gate compares each training month with a baseline month (the champion's
training month). After a real and lasting shift every run is blocked, so no version could ever be
promoted again. An operator accepts a blocked run's months with a reason (``models accept`` or the
run page): the acceptance is recorded (who, when, why; once per blocked run, a unique constraint)
and a new run of the same date is enqueued in the same transaction. That run passes the gates that
fail on those months, with each breach still recorded as a warning naming the acceptance, and is
then judged by the promotion rule like any other. Later runs measure drift against the newest
accepted month when it is newer than the champion's training month. Nothing passes a gate silently.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from ..config import Settings
from ..errors import ConfigError, InvalidTransition
from ..orchestration import enqueue
from ..store.interfaces import ModelRegistry
from .job import FLOW_NAME

BLOCKED_BY = "The gate "  # how a gate in block mode words its error (quality.GateBlocked)


def accept(store: ModelRegistry, settings: Settings, run_ref: str, *, actor: str, reason: str | None,
           now: dt.datetime) -> dict[str, Any]:
    """Accept the months of blocked run ``run_ref`` and enqueue a run of its date past the gates; returns the
    acceptance with its new run (``rerun``)."""
    run = store.get_run(run_ref)
    check_blocked(store, run)
    reason = (reason or "").strip()
    if not reason:
        raise ConfigError(f"Say why the data of {_months(run)} is accepted (a reason is recorded with it).")
    with store.atomic():
        accepted = store.record_acceptance(flow=FLOW_NAME, blocked_run_id=run["id"],
                                           subject=subject(run["train_month"], run["val_month"]), actor=actor,
                                           reason=reason, now=now)
        if accepted is None:
            earlier = store.acceptance(flow=FLOW_NAME, blocked_run_id=run["id"])
            raise InvalidTransition(f"{_who(run)} was accepted already: {said(earlier)}")
        rerun = enqueue.trigger_run(store, settings, deployment=store.deployment_name(run.get("deployment_id")),
                                    date=dt.date.fromisoformat(run["run_date"]), now=now,
                                    parameters={"data_url": run["data_source"]} if run.get("data_source") else None)
        store.set_acceptance_rerun(accepted, rerun["id"])
    return {**store.acceptance(flow=FLOW_NAME, blocked_run_id=run["id"]), "rerun": rerun}


def check_blocked(store: ModelRegistry, run: dict[str, Any]) -> None:
    """A sentence unless ``run`` is a training run a data gate in block mode stopped."""
    if run["flow"] != FLOW_NAME:
        raise InvalidTransition(f"{_who(run)} is a run of {run['flow']}, not of {FLOW_NAME}: it has no data gates.")
    if not blocked(run):
        raise InvalidTransition(f"{_who(run)} was not stopped by a data gate ({run['state']}): there is nothing "
                                "to accept.")


def blocked(run: dict[str, Any]) -> bool:
    return run["state"] == "FAILED" and run.get("error_task") == "check_data" and \
        (run.get("error") or "").startswith(BLOCKED_BY)


def said(found: dict[str, Any] | None) -> str:
    """An acceptance in one sentence: who accepted which months, when and why."""
    if found is None:
        return ""
    return (f"{found['actor']} accepted the data of {found['train_month']} and {found['val_month']} at "
            f"{found['at'].strftime('%Y-%m-%d %H:%M')} UTC: {found['reason'].rstrip('.')}.")


def subject(train_month: str, val_month: str) -> str:
    """What an acceptance of these months is recorded as (``2021-06/2021-07``: they sort by training month)."""
    return f"{train_month}/{val_month}"


def for_months(store: ModelRegistry, train_month: str, val_month: str) -> dict[str, Any] | None:
    """The acceptance a run of these months passes its gates with, as the flow records it; None if none."""
    found = store.acceptance(flow=FLOW_NAME, subject=subject(train_month, val_month))
    if found is None:
        return None
    return {"id": found["id"], "blocked_run_id": found["blocked_run_id"], "actor": found["actor"],
            "at": found["at"].isoformat(), "reason": found["reason"], "said": said(found)}


def baseline(store: ModelRegistry) -> dict[str, Any] | None:
    """The run whose training month later runs measure drift against: the champion, or the newest accepted
    blocked run when its training month is newer than the champion's. ``{"month", "why", "figures"}``."""
    held, accepted = store.champion(FLOW_NAME), store.newest_acceptance(FLOW_NAME)
    if accepted is not None and (held is None or accepted["train_month"] > (held.get("train_month") or "")):
        return {"month": accepted["train_month"], "why": "accepted", "figures": _train_figures(accepted)}
    if held is not None:
        return {"month": held.get("train_month"), "why": "champion", "figures": _train_figures(held)}
    return None


def _train_figures(row: dict[str, Any]) -> dict | None:
    figures = ((row.get("metrics") or {}).get("data") or {}).get("train") or {}
    return figures if "hist" in figures else None


def _who(run: dict[str, Any]) -> str:
    return f"The run {run['name']} ({run['id'][:8]})"


def _months(run: dict[str, Any]) -> str:
    return f"{run.get('train_month')} and {run.get('val_month')}"
