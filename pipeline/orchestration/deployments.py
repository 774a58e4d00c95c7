"""Deployments: a flow, a schedule and parameters, written as a Python spec like Prefect's DeploymentSpec.

A deployment file is plain Python; every ``DeploymentSpec`` bound to a module-level name (or in a
module-level list or tuple) is a spec::

    from pipeline.deployments import DeploymentSpec
    from pipeline.schedules import CronSchedule

    monthly = DeploymentSpec(name="monthly-training", schedule=CronSchedule("0 9 15 * *", "America/New_York"),
                             tags=["ml"])

``python -m pipeline deployment create FILE.py`` registers them; running it again updates them, except
``active``, which only sets how a new deployment starts (then ``deployment pause|resume NAME``).
Each run of a deployment gets the parameter ``date`` = the date of its slot in the schedule's zone.
"""
from __future__ import annotations

import datetime as dt
import re
import runpy
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import Settings, is_synthetic, normalize_data_url
from ..errors import ConfigError, NotFound
from ..training.months import months_for, parse_date
from .runtime import new_run_name
from .schedules import CronSchedule, IntervalSchedule, Schedule, schedule_from_json
from ..store import Store, from_db

TRAINING_FLOW = "fhv-duration-training"  # flow.FLOW_NAME (not imported: flow.py pulls in scikit-learn)
DEFAULT_DEPLOYMENT = "monthly-training"
CATCHUP_POLICIES = ("all", "latest", "none")
PARAMETERS = ("data_url",)  # what a spec may set; ``date`` comes from each run's slot
MIN_RUNS, MIN_AHEAD = 3, dt.timedelta(hours=1)
MAX_RUNS, MAX_AHEAD = 100, dt.timedelta(days=100)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class DeploymentSpec:
    """What to run, when, where and with what; validated when built.

    ``catchup`` says what happens to slots missed while no scheduler ran: ``all`` runs every one,
    ``latest`` only the most recent, ``none`` none. ``max_lateness`` (seconds or a timedelta)
    skips any slot that could not start within that long after its time, whatever the policy.
    ``active`` is the state a new deployment starts in; later, pause and resume it instead.
    """

    name: str
    schedule: Schedule | None = None
    flow: Any = TRAINING_FLOW
    parameters: Mapping[str, Any] = field(default_factory=dict)
    tags: Iterable[str] = ()
    work_queue: str = "default"
    catchup: str = "latest"
    max_lateness: float | dt.timedelta | None = None
    active: bool = True
    description: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "deployment")
        _check_name(self.work_queue, "work queue")
        if self.schedule is not None and not isinstance(self.schedule, (CronSchedule, IntervalSchedule)):
            raise ConfigError(f"The schedule of {self.name!r} must be a CronSchedule or an IntervalSchedule, "
                              f"not {type(self.schedule).__name__}.")
        object.__setattr__(self, "flow", _flow_name(self.flow, self.name))
        object.__setattr__(self, "parameters", _parameters(self.parameters, self.name))
        object.__setattr__(self, "tags", _tags(self.tags, self.name))
        object.__setattr__(self, "catchup", _catchup(self.catchup, self.name))
        object.__setattr__(self, "max_lateness", _lateness(self.max_lateness, self.name))
        object.__setattr__(self, "active", bool(self.active))

    def to_row(self) -> dict[str, Any]:
        """The deployments columns for this spec."""
        schedule = self.schedule
        return {"name": self.name, "flow": self.flow, "parameters": dict(self.parameters),
                "schedule": schedule.to_json() if schedule else None,
                "schedule_fingerprint": schedule.fingerprint() if schedule else None,
                "tags": list(self.tags), "work_queue": self.work_queue, "catchup": self.catchup,
                "max_lateness": self.max_lateness, "active": self.active, "description": self.description}


def default_deployment() -> DeploymentSpec:
    """The deployment that ships with the product: the 15th at 09:00 New York time."""
    return DeploymentSpec(
        name=DEFAULT_DEPLOYMENT, schedule=CronSchedule("0 9 15 * *", "America/New_York"), tags=("ml",),
        catchup="latest",
        description="Monthly retraining: train on the month two months back, validate on the last month.")


def load_specs(path: str | Path) -> list[DeploymentSpec]:
    """Run a deployment file and return the specs it defines at module level."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"The deployment file {path} does not exist.")
    try:
        namespace = runpy.run_path(str(path), run_name="__deployments__")
    except ConfigError as error:
        raise ConfigError(f"The deployment file {path} has an invalid spec: {error}") from None
    except Exception as error:  # noqa: BLE001 - any error in user code is reported as a config error
        raise ConfigError(f"The deployment file {path} failed to load: {type(error).__name__}: {error}") from None
    return _collect(namespace, path)


def _collect(namespace: dict[str, Any], path: Path) -> list[DeploymentSpec]:
    specs: dict[str, DeploymentSpec] = {}
    for value in namespace.values():
        for spec in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(spec, DeploymentSpec) or specs.get(spec.name) is spec:
                continue
            if spec.name in specs:
                raise ConfigError(f"The deployment file {path} defines the deployment {spec.name!r} twice.")
            specs[spec.name] = spec
    if not specs:
        raise ConfigError(f"The deployment file {path} defines no DeploymentSpec at module level.")
    return list(specs.values())


def register(store: Store, spec: DeploymentSpec, now: dt.datetime, *,
             settings: Settings | None = None, source_file: str | None = None) -> dict[str, Any]:
    """Create or update a deployment; re-registering never duplicates its scheduled runs.

    The spec's ``active`` applies only when the deployment is created: later, a deployment paused
    or resumed (CLI, dashboard) stays so however often its file is registered again. When its
    schedule, parameters, queue or flow change, the upcoming runs made for the old version are
    dropped. With ``settings``, the upcoming runs are made at once.
    """
    with store.atomic():
        store.ensure_work_queue(spec.work_queue, now=now)
        fields = spec.to_row() | ({"source_file": source_file} if source_file else {})
        row, stale = store.upsert_deployment(fields, now=now)
        if stale:
            store.drop_upcoming_runs(row["id"], now)
    if settings is not None:
        materialise(store, settings, row, now)
    return store.get_deployment(spec.name)


def ensure_default(store: Store, now: dt.datetime, *, settings: Settings | None = None) -> dict[str, Any]:
    """The default deployment, registered if the history has none of that name."""
    try:
        return store.get_deployment(DEFAULT_DEPLOYMENT)
    except NotFound:
        return register(store, default_deployment(), now, settings=settings)


def schedule_of(row: Mapping[str, Any]) -> Schedule | None:
    return schedule_from_json(row.get("schedule"))


def zone_name(row: Mapping[str, Any]) -> str:
    schedule = schedule_of(row)
    return schedule.timezone if schedule else "UTC"


# -- making slots into runs ------------------------------------------------------------------

def upcoming_slots(schedule: Schedule, now: dt.datetime) -> list[dt.datetime]:
    """The slots to keep made ahead of ``now``: at least 3 and 1 hour ahead, at most 100 or 100 days.

    The next slot is always made, however far ahead (a yearly schedule), so that it shows as upcoming.
    """
    slots: list[dt.datetime] = []
    for moment in schedule.iter_fire_times(now):
        if slots and (len(slots) >= MAX_RUNS or moment > now + MAX_AHEAD):
            break
        if len(slots) >= MIN_RUNS and moment > now + MIN_AHEAD:
            break
        slots.append(moment)
    return slots


def missed_slots(schedule: Schedule, start: dt.datetime, now: dt.datetime) -> list[dt.datetime]:
    """Slots in (start, now], at most the 100 latest and none older than 100 days."""
    start = max(start, now - MAX_AHEAD)
    if isinstance(schedule, IntervalSchedule):  # evenly spaced (within a DST hour): skip what the deque drops
        start = max(start, now - dt.timedelta(seconds=(MAX_RUNS + 1) * schedule.seconds + 7200))
    latest: deque[dt.datetime] = deque(maxlen=MAX_RUNS)
    for moment in schedule.iter_fire_times(start):
        if moment > now:
            break
        latest.append(moment)
    return list(latest)


def materialise(store: Store, settings: Settings, row: Mapping[str, Any], now: dt.datetime) -> int:
    """Make the runs of an active deployment's slots, from where it left off to the horizon.

    Slots start after the latest one already made for this schedule (or when the schedule
    started counting), so slots missed while no scheduler ran are made too (then the catch-up
    policy decides which of them run). Returns how many runs were new.
    """
    schedule = schedule_of(row)
    if schedule is None or not row["active"]:
        return 0
    fingerprint = schedule.fingerprint()
    marks = (from_db(row.get("schedule_since")), store.slot_watermark(row["id"], fingerprint))
    start = max((m for m in marks if m is not None), default=now)
    slots = missed_slots(schedule, start, now) + [t for t in upcoming_slots(schedule, now) if t > start]
    runs = [slot_run(row, slot, settings, fingerprint) for slot in slots]
    return store.insert_scheduled_runs(runs, now) if runs else 0


def slot_run(row: Mapping[str, Any], slot: dt.datetime, settings: Settings, fingerprint: str) -> dict[str, Any]:
    """The flow_runs columns of a scheduled run for ``slot``."""
    parameters = run_parameters(row, slot.astimezone(schedule_of(row).tz).date())
    return {"name": new_run_name(), "flow": row["flow"], "deployment_id": row["id"],
            "work_queue": row["work_queue"], "schedule_fingerprint": fingerprint, "scheduled_time": slot,
            "parameters": parameters, **run_columns(parameters, settings)}


def run_parameters(row: Mapping[str, Any], run_date: dt.date) -> dict[str, Any]:
    return {**(row.get("parameters") or {}), "date": run_date.isoformat()}


def run_columns(parameters: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Run date, months and data source of a run (what ``flow.run_fields`` computes, without its imports)."""
    run_date = parse_date(parameters["date"])
    data_url = normalize_data_url(parameters.get("data_url") or settings.data_url)
    train_month, val_month = months_for(run_date)
    return {"run_date": run_date.isoformat(), "train_month": train_month, "val_month": val_month,
            "data_source": data_url, "synthetic": is_synthetic(data_url)}


# -- validation -------------------------------------------------------------------------------

def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"The {what} name {name!r} is not valid; use letters, digits, '.', '_' and '-' "
                          "(up to 64, starting with a letter or digit).")


def _flow_name(flow: Any, name: str) -> str:
    flow_name = getattr(flow, "name", flow)
    if flow_name != TRAINING_FLOW:
        raise ConfigError(f"The deployment {name!r} names the flow {flow_name!r}; the only flow is {TRAINING_FLOW!r}.")
    return flow_name


def _parameters(parameters: Any, name: str) -> dict[str, Any]:
    if not isinstance(parameters, Mapping):
        raise ConfigError(f"The parameters of {name!r} must be a dict, not {type(parameters).__name__}.")
    if "date" in parameters:
        raise ConfigError(f"The deployment {name!r} sets the parameter 'date'; each run gets its slot's date, "
                          "so remove it (use trigger --date or backfill for other dates).")
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ConfigError(f"The deployment {name!r} has the unknown parameter {unknown[0]!r}; "
                          f"the training flow takes date and {', '.join(PARAMETERS)}.")
    out = dict(parameters)
    if out.get("data_url"):
        out["data_url"] = normalize_data_url(out["data_url"])
    return out


def _tags(tags: Any, name: str) -> tuple[str, ...]:
    if isinstance(tags, str) or not all(isinstance(t, str) and t for t in tags):
        raise ConfigError(f"The tags of {name!r} must be a list of words, like ['ml'], not {tags!r}.")
    return tuple(tags)


def _catchup(policy: Any, name: str) -> str:
    if policy not in CATCHUP_POLICIES:
        raise ConfigError(f"The catch-up policy {policy!r} of {name!r} is unknown; use one of "
                          f"{', '.join(CATCHUP_POLICIES)}.")
    return policy


def _lateness(value: Any, name: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ConfigError(f"The maximum lateness {value!r} of {name!r} must be a positive number of seconds "
                          "or a timedelta.")
    return float(seconds)
