"""The services that keep each deployment's runs made: materialise, follow, catch up, expire.

Each deployment's part runs in its own guard (``FailingDeployments``). Each ``run_once`` returns how many
deployments it went through.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ...config import Settings
from ...store import DeploymentRow, Store, from_db
from .. import catchup, triggers
from ..deployments import materialise, spec_of
from .guard import FailingDeployments
from .lease import Lease

if TYPE_CHECKING:
    from ..scheduler import SchedulerOptions


class Materialise:
    """Keep the upcoming runs of every active deployment made (``deployments.materialise``)."""

    name = "materialise_all"

    def __init__(self, store: Store, settings: Settings, failing: FailingDeployments, interval: float):
        self.store, self.settings, self.failing, self.interval = store, settings, failing, interval

    def run_once(self, now: dt.datetime) -> int:
        rows = [row for row in self.store.deployments() if row["active"]]
        for row in rows:
            self.failing.guard(row, "materialise", lambda row=row: materialise(self.store, self.settings, row, now), now)
        return len(rows)


class Follow:
    """Make the runs that other deployments' completed runs trigger (``triggers.py``)."""

    name = "follow"

    def __init__(self, store: Store, settings: Settings, failing: FailingDeployments, interval: float):
        self.store, self.settings, self.failing, self.interval = store, settings, failing, interval

    def run_once(self, now: dt.datetime) -> int:
        rows = [row for row in self.store.deployments() if row["active"] and row.get("after_deployment")]
        for row in rows:
            self.failing.guard(row, "trigger", lambda row=row: triggers.follow(self.store, self.settings, row, now), now)
        return len(rows)


class CatchUp:
    """After a downtime, apply each deployment's catch-up policy to the slots it missed (``catchup.py``).

    Each deployment's "served until" moves only after its catch-up succeeded, so a failing deployment never
    turns a ``latest`` or ``none`` policy into ``all``. An outage of the history is no downtime (``back``);
    a machine that slept is.
    """

    name = "catch_up"

    def __init__(self, store: Store, settings: Settings, options: "SchedulerOptions", failing: FailingDeployments,
                 lease: Lease):
        self.store, self.settings, self.options, self.failing, self.lease = store, settings, options, failing, lease
        self.interval = options.tick
        self.caught_up: dict[int, dt.datetime] = {}  # deployment id -> when its catch-up last succeeded

    def run_once(self, now: dt.datetime) -> int:
        rows = [row for row in self.store.deployments() if row["active"]]
        for row in rows:
            since = self.caught_up.get(row["id"], self._served_since(row))
            self.failing.guard(row, "catch-up", lambda row=row, since=since: self._one(row, since, now), now)
        return len(rows)

    def back(self, now: dt.datetime) -> None:
        """The history answers again: this scheduler ran all along, so the slots that fell due meanwhile are due
        runs, not a downtime (deployments whose catch-up fails stay as they are)."""
        for deployment in self.caught_up:
            if not self.failing.fails(deployment, "catch-up"):
                self.caught_up[deployment] = now

    def _served_since(self, row: DeploymentRow) -> dt.datetime | None:
        """A deployment created while this scheduler runs has missed nothing; others since the last scheduler."""
        created = from_db(row.get("created_at"))
        if self.lease.started_at is not None and created is not None and created >= self.lease.started_at:
            return created
        return self.lease.last_alive

    def _one(self, row: DeploymentRow, since: dt.datetime | None, now: dt.datetime) -> None:
        spec_of(row)  # a row that cannot be used is marked with its sentence, like any failing deployment
        catchup.catch_up_deployment(self.store, self.settings, self.options, row, since=since, now=now)
        self.caught_up[row["id"]] = now


class Expire:
    """Scheduled slots that could not start within their deployment's maximum lateness are skipped."""

    name = "expire"

    def __init__(self, store: Store, failing: FailingDeployments, interval: float):
        self.store, self.failing, self.interval = store, failing, interval

    def run_once(self, now: dt.datetime) -> int:
        names = {row["name"]: row for row in self.store.deployments()}
        runs = catchup.expiring(self.store, now)
        for run in runs:
            row = names.get(run["deployment"]) or {"id": run["deployment_id"], "name": run["deployment"]}
            self.failing.guard(row, "expiry", lambda run=run: catchup.expire_run(self.store, run, now), now)
        return len(runs)
