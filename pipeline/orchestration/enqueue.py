"""Manual runs and backfills: runs put in a work queue for the scheduler to pick up.

``deployment=None`` means the default deployment (the first registered flow's ``default_deployment``); a
flow's default deployment is registered when a run of it is first enqueued. A backfill makes one run per
fire date of the deployment's schedule in the range (one a month for a monthly deployment) and skips
dates that already have a completed, waiting or running run, unless ``force``. Planning writes nothing:
a dry run leaves the history as it was, and a refused date or range registers nothing either.

Enqueueing is atomic: a run a person asks for (a backfill's, a manual trigger's) carries the key
``date:<deployment>:<date>``, unique among live runs (a database index), so two backfills of the
same dates at once, or a plan confirmed after another backfill or a trigger of one of its dates,
enqueue each date once; the confirm says which dates another request took. ``force`` leaves the
key out, and so does a trigger whose date has a live run already: the user asked for a second run.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from .deployments import default_deployment, register, run_columns, run_parameters, schedule_of, spec_of, zone_name
from ..errors import ConfigError, NotFound
from .registry import flow_entry
from .runtime import new_run_name
from .schedules import zone
from .states import State
from ..store import Store

MAX_BACKFILL_MONTHS = 120
KEEP_STATES = {State.COMPLETED: "completed", State.SCHEDULED: "scheduled", State.LATE: "late",
               State.AWAITING_RETRY: "awaiting data", State.PENDING: "pending", State.RUNNING: "running"}


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill would enqueue, and which dates it leaves out and why."""

    deployment: str
    dates: list[dt.date]
    skipped: list[tuple[dt.date, str]] = field(default_factory=list)
    work_queue: str | None = None  # None: the deployment's own queue
    force: bool = False


def trigger_run(store: Store, settings: Settings, *, deployment: str | None = None,
                date: dt.date | None = None, now: dt.datetime,
                parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Enqueue one manual run, due now; ``date`` defaults to today in the deployment's zone.

    ``parameters`` override the deployment's for this run only (checked by its flow, like a
    deployment's: for training, ``data_url``), and the run records what they make of it.
    """
    found = find_deployment(store, deployment)
    today = _today(found, now)
    run_date = date or today
    entry = flow_entry(found["flow"])
    entry.refuse_date(run_date, today)
    own = entry.check_parameters(parameters or {}, found["name"])
    row = resolve_deployment(store, settings, deployment, now)
    row = {**row, "parameters": {**(row.get("parameters") or {}), **own}}
    run_id = (_create(store, settings, row, run_date, now=now, when=now, trigger="manual",
                      enqueue_key=date_key(row["id"], run_date))
              or _create(store, settings, row, run_date, now=now, when=now, trigger="manual"))  # a second on purpose
    return store.get_run(run_id)


@dataclass(frozen=True)
class Enqueued:
    """What a confirmed backfill enqueued, and the dates another request enqueued first."""

    runs: list[dict[str, Any]]
    taken: list[dt.date] = field(default_factory=list)


def plan_backfill(store: Store, settings: Settings, *, deployment: str | None = None, start: dt.date,
                  end: dt.date, now: dt.datetime, force: bool = False) -> BackfillPlan:
    """The deployment's fire dates from ``start`` to ``end``, less those already done or under way.

    Writes nothing: the default deployment, when not registered yet, is planned from its spec.
    """
    row = find_deployment(store, deployment)
    entry, today = flow_entry(row["flow"]), _today(row, now)
    _check_range(start, end, today, future=entry.check_date is None)  # else the flow's own rule decides
    for day in (start, end):
        entry.refuse_date(day, today)  # e.g. before the flow's first data, or a month not over yet
    dates = fire_dates(row, start, end)
    if force or row["id"] is None:
        return BackfillPlan(row["name"], dates, [], force=force)
    taken = _taken_dates(store, row["id"], dates)
    return BackfillPlan(row["name"], [d for d in dates if d not in taken], [(d, taken[d]) for d in dates if d in taken])


def enqueue_backfill(store: Store, settings: Settings, plan: BackfillPlan, *, now: dt.datetime) -> Enqueued:
    """Create the plan's runs (trigger 'backfill'), oldest date first in the queue.

    A date that a live backfill run already has (another request enqueued it since the plan was
    made) is left out and reported in ``taken``: the unique key decides, in the same transaction.
    """
    row = resolve_deployment(store, settings, plan.deployment, now)
    made: dict[dt.date, str | None] = {}
    with store.atomic():
        for i, day in enumerate(sorted(plan.dates)):
            key = None if plan.force else date_key(row["id"], day)
            made[day] = _create(store, settings, row, day, now=now, when=now + dt.timedelta(microseconds=i),
                                trigger="backfill", work_queue=plan.work_queue, enqueue_key=key)
    return Enqueued([store.get_run(run_id) for run_id in made.values() if run_id],
                    [day for day, run_id in made.items() if run_id is None])


def date_key(deployment_id: int, day: dt.date) -> str:
    """The key of the run a person asked for on ``day``: one live run per deployment and date holds it."""
    return f"date:{deployment_id}:{day.isoformat()}"


def resolve_deployment(store: Store, settings: Settings, name: str | None, now: dt.datetime) -> dict[str, Any]:
    """The deployment ``name`` (None: the default one), a flow's default deployment registered if missing."""
    row = find_deployment(store, name)
    return row if row["id"] is not None else register(store, default_deployment(row["name"]), now, settings=settings)


def find_deployment(store: Store, name: str | None) -> dict[str, Any]:
    """The deployment ``name`` (None: the default one); a flow's default deployment's spec, with ``id`` None,
    if it is not registered."""
    name = default_deployment().name if name is None else name
    try:
        row = store.get_deployment(name)
        spec_of(row)  # a stored row that cannot be used: its sentence, not a traceback
        return row
    except NotFound:
        shipped = default_deployment(name)
        if shipped is None:
            _refuse_flow_slash_name(store, name)
            raise
    return {**shipped.to_row(), "id": None}


def _refuse_flow_slash_name(store: Store, name: str) -> None:
    """Prefect named a deployment ``FLOW/NAME``; here it is ``NAME`` alone: say so when that one exists."""
    flow, _, tail = name.rpartition("/")
    if not flow or not tail:
        return
    try:
        store.get_deployment(tail)
    except NotFound:
        return
    raise NotFound(f"There is no deployment named {name!r}; deployments are named without their flow here "
                   f"(Prefect's FLOW/NAME): use {tail!r}.")


def _today(row: dict[str, Any], now: dt.datetime) -> dt.date:
    return now.astimezone(zone(zone_name(row))).date()


def fire_dates(row: dict[str, Any], start: dt.date, end: dt.date) -> list[dt.date]:
    """The local dates on which the deployment's schedule fires from ``start`` to ``end`` inclusive."""
    schedule = schedule_of(row)
    if schedule is None:
        raise ConfigError(f"The deployment {row['name']!r} has no schedule, so a backfill has no dates; "
                          "use trigger --date for single runs.")
    tz = schedule.tz
    begin = dt.datetime.combine(start, dt.time(), tz) - dt.timedelta(microseconds=1)
    finish = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tz) - dt.timedelta(microseconds=1)
    days: dict[dt.date, None] = {}
    for moment in schedule.iter_fire_times(begin):
        if moment > finish:
            break
        days[moment.astimezone(tz).date()] = None
    return list(days)


def _check_range(start: dt.date, end: dt.date, today: dt.date, *, future: bool = True) -> None:
    if end < start:
        raise ConfigError(f"The backfill end {end.isoformat()} is before its start {start.isoformat()}.")
    for label, day in (("start", start), ("end", end)):
        if future and day > today:
            raise ConfigError(f"The backfill {label} {day.isoformat()} is in the future "
                              f"(today is {today.isoformat()}).")
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    if months > MAX_BACKFILL_MONTHS:
        raise ConfigError(f"The backfill from {start.isoformat()} to {end.isoformat()} spans {months} months; "
                          f"the most is {MAX_BACKFILL_MONTHS}.")


def _taken_dates(store: Store, deployment_id: int, dates: list[dt.date]) -> dict[dt.date, str]:
    """Dates with a run that completed or is waiting or running, with a sentence saying which."""
    taken: dict[dt.date, str] = {}
    for run in store.runs_on_dates(deployment_id, dates):
        label = KEEP_STATES.get(State(run["state"]))
        day = dt.date.fromisoformat(run["run_date"])
        if label and day not in taken:
            taken[day] = f"already {label}: run {run['name']} ({run['id'][:8]}, {run['trigger']})"
    return taken


def _create(store: Store, settings: Settings, row: dict[str, Any], run_date: dt.date, *, now: dt.datetime,
            when: dt.datetime, trigger: str, work_queue: str | None = None, enqueue_key: str | None = None) -> str | None:
    parameters = run_parameters(row, run_date)
    return store.create_run(flow=row["flow"], name=new_run_name(), state=State.SCHEDULED, now=now,
                            parameters=parameters, trigger=trigger, scheduled_time=when,
                            deployment_id=row["id"], work_queue=work_queue or row["work_queue"],
                            enqueue_key=enqueue_key, **run_columns(row["flow"], parameters, settings))
