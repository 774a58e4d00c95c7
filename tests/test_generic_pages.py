"""The dashboard's generic pages and helpers name no flow's field, metric, task or error text: they show a run
through its flow's declarations (``FlowEntry``), and a flow's own sections through ``dashboard/flow_pages.py``."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.training import job as training

ROOT = Path(__file__).resolve().parents[1]
GENERIC = [*(ROOT / "dashboard" / "app_pages" / f"{page}.py" for page in
             ("overview", "runs", "run_detail", "trends", "upcoming", "trigger")),
           *(ROOT / "dashboard" / f"{module}.py" for module in ("frames", "labels", "widgets", "charts", "queries"))]
NAMES = [*(f.name for f in training.FIELDS), *(m.key for m in training.METRICS), *training.TASKS, "fhv_tripdata"]


def pattern(name: str) -> str:
    """A name in snake case anywhere; a plain word (``synthetic``) as a key or an attribute, not in prose."""
    return rf"\b{name}\b" if "_" in name else rf"['\"]{name}['\"]|\.{name}\b"


@pytest.mark.parametrize("path", GENERIC, ids=lambda path: path.stem)
def test_a_generic_page_names_no_field_metric_task_or_error_text_of_the_training_flow(path):
    source = path.read_text()
    named = [name for name in NAMES if re.search(pattern(name), source)]
    assert not named and training.GATE_SENTENCE not in source, f"{path.name} names {named}"
