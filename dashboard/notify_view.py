"""The notifications of a run on its page: every delivery attempt, its event, masked target and outcome."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import labels, queries
from pipeline.store import Store

MIGRATION = "0008_notifications"
EVENT_LABELS = {"failed": "failed", "crashed": "crashed", "late": "late", "gate_warned": "data-check warning",
                "gate_blocked": "blocked by a data check", "gave_up": "gave up waiting for data",
                "promoted": "model promoted", "rolled_back": "model rolled back", "test": "test"}
OUTCOME_LABELS = {"sent": "sent", "failed": "failed", "timeout": "timed out", "dropped": "dropped (target gone)"}


def attempts_of(history: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's attempts; none on a history the scheduler or the CLI has not migrated yet (read-only here)."""
    if MIGRATION not in history.applied_migrations():
        return []
    return history.notification_attempts(run_id)


@queries._cached
def notification_attempts(history: Store, run_id: str) -> list[dict[str, Any]]:
    return attempts_of(history, run_id)


def attempts_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per attempt: when, event, target (masked), attempt number, outcome and Apprise's reason."""
    return pd.DataFrame({
        "When (UTC)": [labels.utc(r["started_at"]).removesuffix(" UTC") for r in rows],
        "Event": [EVENT_LABELS.get(r["event"], r["event"]) for r in rows],
        "Target": [r["target"] for r in rows],
        "Attempt": [r["attempt"] for r in rows],
        "Outcome": [OUTCOME_LABELS.get(r["outcome"], r["outcome"]) for r in rows],
        "Detail": [r["detail"] or "" for r in rows],
    }, columns=["When (UTC)", "Event", "Target", "Attempt", "Outcome", "Detail"])


def section(run: dict[str, Any]) -> None:
    """An expander with the run's notification attempts; nothing when none was made."""
    rows = notification_attempts(run["id"])
    if not rows:
        return
    sent = sum(r["outcome"] == "sent" for r in rows)
    with st.expander(f"Notifications · {len(rows)} attempt(s), {sent} sent", icon=":material/notifications:"):
        st.dataframe(attempts_frame(rows), hide_index=True, width="stretch")
