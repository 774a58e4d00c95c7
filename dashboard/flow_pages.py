"""Each flow's own parts of the generic pages, by flow name: the one place the dashboard names a flow.

A flow's view module may define ``run_results(run)`` (drawn under a run's results on its page),
``trends(hide_flagged)`` (drawn under the flow's trend on Trends) and ``flag_note(run, field)`` (what a flag
set on a run means for it, told by its state; else the field's ``help``). A flow not listed here gets the generic
parts only: its declared fields, metrics and trend (``pipeline/orchestration/registry.py``).
"""
from __future__ import annotations

import importlib
from typing import Any

from pipeline.scoring.job import FLOW_NAME as SCORING
from pipeline.training.job import FLOW_NAME as TRAINING

VIEWS = {TRAINING: "dashboard.training_view", SCORING: "dashboard.scoring_view"}


def _hook(flow: str | None, name: str) -> Any:
    module = VIEWS.get(flow or "")
    return getattr(importlib.import_module(module), name, None) if module else None


def run_results(run: dict[str, Any]) -> None:
    """The run's flow's own sections under its results (nothing for a flow without a view)."""
    hook = _hook(run.get("flow"), "run_results")
    if hook:
        hook(run)


def trends(flow: str | None, hide_flagged: bool) -> None:
    """The flow's own sections under its trend."""
    hook = _hook(flow, "trends")
    if hook:
        hook(hide_flagged)


def flag_note(run: dict[str, Any], field: Any) -> str:
    """What a flag field set on a run means for it: the flow's own sentence, else the field's help."""
    hook = _hook(run.get("flow"), "flag_note")
    return (hook(run, field) if hook else None) or field.help
