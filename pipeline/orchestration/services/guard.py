"""One guard per deployment inside a service, so one bad deployment never starves the rest.

A deployment whose part of a job fails is marked with the sentence (``deployments.last_error``) until every
job it failed succeeds again. While its catch-up fails its runs are held: nobody knows yet which of its
missed slots may run. (Prefect ``server/services/scheduler.py``: one ``try`` per deployment.)
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Callable

from ...errors import HistoryDamaged, HistoryLost, HistoryUnreachable, PipelineError
from ...store import DeploymentRow
from ...store.interfaces import Deployments

logger = logging.getLogger("pipeline.orchestration.scheduler")


class FailingDeployments:
    """Which deployments' jobs fail, and with what sentence (deployment id -> job -> error)."""

    def __init__(self, store: Deployments):
        self.store = store
        self.jobs: dict[int, dict[str, str]] = {}

    def guard(self, row: DeploymentRow, job: str, work: Callable[[], Any], now: dt.datetime) -> None:
        """Run one deployment's part of a job; mark the deployment while it fails, clear it once it works."""
        failing = self.jobs.setdefault(row["id"], {})
        try:
            work()
        except (HistoryLost, HistoryDamaged, HistoryUnreachable):
            raise
        except Exception as error:  # noqa: BLE001 - this deployment is marked; the others go on
            self._failed(row, job, sentence(error), now)
            return
        if failing.pop(job, None) is not None or (not failing and row.get("last_error")):
            if not failing:
                self.store.clear_deployment_error(row["id"])
                row["last_error"] = None

    def _failed(self, row: DeploymentRow, job: str, text: str, now: dt.datetime) -> None:
        """Say it (once per failing streak) and mark the deployment with the sentence."""
        message = f"{job}: {text}"
        if self.jobs[row["id"]].get(job) != message:
            logger.warning("The deployment %s is skipped by the scheduler's %s: %s", row["name"], job, text)
            self.store.set_deployment_error(row["id"], message, now)
        self.jobs[row["id"]][job] = message

    def fails(self, deployment: int, job: str) -> bool:
        return job in self.jobs.get(deployment, {})

    def held(self) -> dict[int, str]:
        """Deployments whose runs wait: their catch-up failed, so nobody knows yet which missed slots may run."""
        return {dep: jobs["catch-up"] for dep, jobs in self.jobs.items() if "catch-up" in jobs}


def sentence(error: BaseException) -> str:
    text = str(error)
    return text if isinstance(error, PipelineError) and text else f"{type(error).__name__}: {text}"
