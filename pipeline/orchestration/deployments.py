"""Deployments: a flow, a schedule and parameters, written as a Python spec like Prefect's DeploymentSpec.

A deployment file is plain Python; every ``DeploymentSpec`` bound to a module-level name (or in a
module-level list or tuple) is a spec::

    from pipeline import CronSchedule, DeploymentSpec

    nightly = DeploymentSpec(name="nightly", schedule=CronSchedule("0 2 * * *", "Europe/London"), tags=["ml"])

``python -m pipeline deployment create FILE.py`` registers them; running it again updates them, except
``active``, which only sets how a new deployment starts (then ``deployment pause|resume NAME``).
Each run of a deployment gets the parameter ``date`` = the date of its slot in the schedule's zone.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..config import Settings
from ..errors import ConfigError
from ..formatting import utc_text
from ..store import DeploymentRow, Store, from_db
from .registry import UnknownFlow, default_flow, flow_entries, flow_entry, slot_parameters
from .runtime import new_run_name
from .schedules import CronSchedule, IntervalSchedule, Schedule, schedule_from_json
from .triggers import AfterCompletion, check_trigger

CATCHUP_POLICIES = ("all", "latest", "none")
MAX_RETRIES = 10
logger = logging.getLogger("pipeline.orchestration.deployments")
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
    ``retries`` is how many times a run that CRASHED (its process died) is run again; off by default.
    Any other keyword must be one the flow declares (``FlowEntry.spec_options``, such as the training
    flow's data checks): it reaches the flow as the run parameter of that name (None leaves it to the
    flow's default) and reads back as an attribute of the spec.
    """

    name: str
    schedule: Schedule | None = None
    flow: Any = None  # a registered flow's name (or a flow object); None: ``registry.default_flow()``
    parameters: Mapping[str, Any] = field(default_factory=dict)
    tags: Iterable[str] = ()
    work_queue: str = "default"
    catchup: str = "latest"
    max_lateness: float | dt.timedelta | None = None
    active: bool = True
    description: str | None = None
    retries: int = 0
    notify: Iterable[str] = ()  # Apprise URLs told of this deployment's events, besides FHV_NOTIFY
    trigger: AfterCompletion | str | None = None  # run once for each completed run of another deployment
    options: Mapping[str, Any] = field(default_factory=dict)  # the flow's own keywords (``spec_options``)

    def __post_init__(self) -> None:
        check_name(self.name, "deployment")
        check_name(self.work_queue, "work queue")
        if self.schedule is not None and not isinstance(self.schedule, (CronSchedule, IntervalSchedule)):
            raise ConfigError(f"The schedule of {self.name!r} must be a CronSchedule or an IntervalSchedule, "
                              f"not {type(self.schedule).__name__}.")
        object.__setattr__(self, "flow", _flow_name(self.flow, self.name))
        object.__setattr__(self, "parameters", _parameters(_with_options(self), self.name, self.flow))
        object.__setattr__(self, "options", {key: self.parameters.get(key) for key in flow_entry(self.flow).spec_options})
        object.__setattr__(self, "retries", _retries(self.retries, self.name))
        object.__setattr__(self, "tags", _tags(self.tags, self.name))
        object.__setattr__(self, "catchup", _catchup(self.catchup, self.name))
        object.__setattr__(self, "max_lateness", _lateness(self.max_lateness, self.name))
        object.__setattr__(self, "active", bool(self.active))
        object.__setattr__(self, "notify", _notify(self.notify, self.name))
        object.__setattr__(self, "trigger", check_trigger(self.trigger, self.name))

    def __getattr__(self, name: str) -> Any:
        """A flow's own keyword reads back as an attribute, as its run parameter says it."""
        options = self.__dict__.get("options") or {}
        if name in options:
            return options[name]
        raise AttributeError(f"'DeploymentSpec' object has no attribute {name!r}")

    def to_row(self) -> dict[str, Any]:
        """The deployments columns for this spec."""
        schedule = self.schedule
        return {"name": self.name, "flow": self.flow, "parameters": dict(self.parameters),
                "schedule": schedule.to_json() if schedule else None,
                "schedule_fingerprint": schedule.fingerprint() if schedule else None,
                "tags": list(self.tags), "work_queue": self.work_queue, "catchup": self.catchup,
                "max_lateness": self.max_lateness, "active": self.active, "description": self.description,
                "retries": self.retries, "after_deployment": self.trigger.deployment if self.trigger else None}


_SPEC_FIELDS = frozenset(f for f in DeploymentSpec.__dataclass_fields__ if f != "options")
_spec_init = DeploymentSpec.__init__


def _init_with_options(self: DeploymentSpec, *args: Any, **keywords: Any) -> None:
    """DeploymentSpec(..., keyword=...): a keyword that is not the spec's own is one of its flow's options."""
    options = {key: keywords.pop(key) for key in list(keywords) if key not in _SPEC_FIELDS}
    _spec_init(self, *args, **keywords, options={**keywords.pop("options", {}), **options})


DeploymentSpec.__init__ = _init_with_options  # type: ignore[method-assign]


def default_specs() -> list[DeploymentSpec]:
    """The default deployments of the registered flows that declare one (``FlowEntry.default_deployment``)."""
    return [spec for spec in (entry.default_spec() for entry in flow_entries()) if spec is not None]


def default_deployment(name: str | None = None) -> DeploymentSpec | None:
    """The default deployment named ``name`` (None: the first registered flow's that declares one; ConfigError
    when none does), or None when no flow declares one of that name."""
    specs = default_specs()
    if name is None and not specs:
        raise ConfigError("No registered flow declares a default deployment, so name the deployment to run.")
    return specs[0] if name is None else next((spec for spec in specs if spec.name == name), None)


def load_specs(path: str | Path, *, python: str | None = None, timeout: float | None = None) -> list[DeploymentSpec]:
    """Run a deployment file (in a process of its own, within ``timeout`` seconds) and return the specs it
    defines at module level; see ``deployment_files.py``."""
    from .deployment_files import LOAD_TIMEOUT, load_file

    return load_file(Path(path), python=python, timeout=LOAD_TIMEOUT if timeout is None else timeout)


def register(store: Store, spec: DeploymentSpec, now: dt.datetime, *,
             settings: Settings | None = None, source_file: str | None = None) -> DeploymentRow:
    """Create or update a deployment; re-registering never duplicates its scheduled runs.

    The spec's ``active`` applies only when the deployment is created: later, a deployment paused
    or resumed (CLI, dashboard) stays so however often its file is registered again. When its
    schedule, parameters, queue or flow change, the upcoming runs made for the old version are
    dropped. With ``settings``, the spec's upcoming runs are computed before anything is written
    (a schedule that cannot be computed is refused) and made at once.
    """
    if settings is not None:
        check_computable(spec, settings, now)
    with store.atomic():
        store.ensure_work_queue(spec.work_queue, now=now)
        fields = spec.to_row() | ({"source_file": source_file} if source_file else {})
        row, stale = store.upsert_deployment(fields, now=now)
        store.set_notify_targets(row["id"], spec.notify)  # kept apart: the URLs hold tokens
        if stale:
            store.drop_upcoming_runs(row["id"], now)
    if settings is not None:
        materialise(store, settings, row, now)
    return store.get_deployment(spec.name)


def check_computable(spec: DeploymentSpec, settings: Settings, now: dt.datetime) -> None:
    """Compute the spec's next slots and their runs' fields, or refuse it with a sentence."""
    if spec.schedule is None:
        return
    try:
        slots = upcoming_slots(spec.schedule, now)
    except (OverflowError, ValueError, ArithmeticError) as error:
        raise ConfigError(f"The schedule of {spec.name!r} ({spec.schedule.describe()}) cannot be computed from "
                          f"{utc_text(now)}: {error}.") from None
    if not slots:
        raise ConfigError(f"The schedule of {spec.name!r} ({spec.schedule.describe()}) never fires after "
                          f"{utc_text(now)}.")
    row = spec.to_row() | {"id": None}
    slot_run(row, slots[0], settings, spec.schedule.fingerprint())


def ensure_defaults(store: Store, now: dt.datetime, *, settings: Settings | None = None) -> list[DeploymentRow]:
    """Register the default deployment of each registered flow that declares one, when the history has none of
    its name; returns the rows registered now."""
    names = {row["name"] for row in store.deployments()}
    return [register(store, spec, now, settings=settings) for spec in default_specs() if spec.name not in names]


def schedule_of(row: Mapping[str, Any]) -> Schedule | None:
    """The row's schedule; ConfigError with a sentence if the stored schedule cannot be read."""
    stored = row.get("schedule")
    try:
        return schedule_from_json(stored)
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as error:  # a row changed by hand holds anything
        text = stored if isinstance(stored, str) else json.dumps(stored, default=str)
        raise ConfigError(f"The stored schedule {text!r} cannot be read ({type(error).__name__}: {error}).") from None


def spec_of(row: Mapping[str, Any]) -> DeploymentSpec:
    """The spec a stored deployment row stands for, every field checked as ``deployment create`` checks a
    file's; ConfigError: one sentence naming the deployment and what is wrong with its row."""
    try:
        spec = DeploymentSpec(name=row["name"], schedule=schedule_of(row), flow=row["flow"], tags=row["tags"],
                              work_queue=row["work_queue"], catchup=row["catchup"], max_lateness=row["max_lateness"],
                              active=row["active"], description=row.get("description"), retries=row["retries"],
                              trigger=row.get("after_deployment"))
        if not isinstance(row["parameters"], Mapping):
            raise ConfigError(f"The parameters of {spec.name!r} must be a dict, not {row['parameters']!r}.")
        # their names, not their values: a data folder that vanished is the materialise job's to say
        flow_entry(spec.flow).check_parameters(row["parameters"], spec.name, normalize=False)
        return spec
    except ConfigError as error:
        reason = str(error)
    except Exception as error:  # noqa: BLE001 - a row changed by hand (or by another version) holds anything
        reason = f"{type(error).__name__}: {error}"
    raise ConfigError(f"The deployment {row.get('name')!r} cannot be scheduled: {clause(reason, row.get('name'))}")


def clause(sentence: str, deployment: Any = None) -> str:
    """A sentence as the clause after a colon: not "The deployment 'x' ..." again after one naming it."""
    named = f"The deployment {deployment!r} "
    if deployment is not None and sentence.startswith(named):
        rest = sentence[len(named):]
        return rest.removeprefix("cannot run: ") if rest.startswith("cannot run: ") else f"it {rest}"
    return sentence[0].lower() + sentence[1:] if sentence.startswith("The ") else sentence


def row_problem(row: Mapping[str, Any]) -> str | None:
    """What is wrong with a stored deployment row, in one sentence, or None."""
    try:
        spec_of(row)
    except ConfigError as error:
        return str(error)
    return None


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


@dataclass(frozen=True)
class Skipped:
    """Slots in (after, before) that the catch-up cap left unmade: how many, the first and the last."""

    count: int
    first: dt.datetime
    last: dt.datetime
    at_least: bool = False  # counting stopped at COUNT_LIMIT


COUNT_LIMIT = 100_000


def skipped_slots(schedule: Schedule, after: dt.datetime, before: dt.datetime) -> Skipped | None:
    """The slots strictly between ``after`` and ``before`` (the first slot made), counted up to a limit."""
    count, first, last = 0, None, None
    for moment in schedule.iter_fire_times(after):
        if moment >= before:
            break
        count, first, last = count + 1, first or moment, moment
        if count >= COUNT_LIMIT:
            return Skipped(count, first, last, at_least=True)
    return Skipped(count, first, last) if count else None


def materialise(store: Store, settings: Settings, row: DeploymentRow, now: dt.datetime) -> int:
    """Make the runs of an active deployment's slots, from where it left off to the horizon.

    Slots start after the latest one already made for this schedule (or when the schedule
    started counting), so slots missed while no scheduler ran are made too (then the catch-up
    policy decides which of them run). At most the latest 100 missed slots within 100 days are
    made; the older ones are recorded as skipped, with the reason. Returns how many runs were new.
    """
    schedule = spec_of(row).schedule
    if schedule is None or not row["active"]:
        return 0
    run_columns(row["flow"], run_parameters(row, now.date()), settings)  # still valid (a data folder may vanish)
    return make_runs(store, row, schedule, now, lambda slot, fingerprint: slot_run(row, slot, settings, fingerprint))


def make_runs(store: Store, row: DeploymentRow, schedule: Schedule, now: dt.datetime,
              run_of: Callable[[dt.datetime, str], dict[str, Any]], *, ahead: bool = True) -> int:
    """Make ``run_of(slot, fingerprint)`` for the slots after ``slot_start`` up to ``now`` (at most 100, the older
    ones recorded as skipped) and, with ``ahead``, up to the horizon; returns how many runs were new."""
    fingerprint = schedule.fingerprint()
    start = slot_start(store, row, fingerprint, now)
    missed = missed_slots(schedule, start, now)
    slots = missed + ([t for t in upcoming_slots(schedule, now) if t > start] if ahead else [])
    runs = [run_of(slot, fingerprint) for slot in slots]
    skipped = skipped_slots(schedule, start, slots[0]) if missed else None
    with store.atomic():
        if skipped:
            _record_skipped(store, row, skipped, now)
        return store.insert_scheduled_runs(runs, now) if runs else 0


def slot_start(store: Store, row: DeploymentRow, fingerprint: str, now: dt.datetime) -> dt.datetime:
    """Where the deployment's slots left off: its latest slot made for this schedule, or when the schedule started
    counting (``now`` when neither is known)."""
    marks = (from_db(row.get("schedule_since")), store.slot_watermark(row["id"], fingerprint))
    return max((m for m in marks if m is not None), default=now)


def _record_skipped(store: Store, row: DeploymentRow, skipped: Skipped, now: dt.datetime) -> None:
    many = f"at least {skipped.count:,}" if skipped.at_least else f"{skipped.count:,}"
    reason = (f"{many} slot(s) of {row['name']} from {utc_text(skipped.first)} to {utc_text(skipped.last)} passed "
              f"while no scheduler ran and were not made into runs: after a downtime only the latest {MAX_RUNS} "
              f"missed slots within {MAX_AHEAD.days} days are made and judged by the catch-up policy "
              f"'{row['catchup']}'.")
    store.record_skipped_slots(row["id"], first=skipped.first, last=skipped.last, count=skipped.count,
                               at_least=skipped.at_least, reason=reason, now=now)
    logger.warning("%s", reason)


def slot_run(row: Mapping[str, Any], slot: dt.datetime, settings: Settings, fingerprint: str) -> dict[str, Any]:
    """The flow_runs columns of a scheduled run for ``slot``."""
    run = bare_slot_run(row, slot, fingerprint)
    return run | run_columns(row["flow"], run["parameters"], settings)


def bare_slot_run(row: Mapping[str, Any], slot: dt.datetime, fingerprint: str) -> dict[str, Any]:
    """A scheduled run for ``slot`` without its flow's fields (``catchup.fail_unmakeable``: they cannot be computed)."""
    parameters = run_parameters(row, slot.astimezone(schedule_of(row).tz).date(), asked=False)
    return {"name": new_run_name(), "flow": row["flow"], "deployment_id": row["id"],
            "work_queue": row["work_queue"], "schedule_fingerprint": fingerprint, "scheduled_time": slot,
            "parameters": parameters}


def run_parameters(row: Mapping[str, Any], run_date: dt.date, *, asked: bool = True) -> dict[str, Any]:
    """A run's parameters for ``run_date``: a slot's (``asked`` False) or a trigger's or backfill's."""
    keep = flow_entry(row["flow"]).deployment_date
    return slot_parameters(row.get("parameters"), run_date, asked=asked, keep_deployment_date=keep)


def run_columns(flow: str, parameters: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The business columns of a run, as its flow registered them (for training: date, months, data source)."""
    return flow_entry(flow).fields_for(parameters, settings)


# -- validation -------------------------------------------------------------------------------

def check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"The {what} name {name!r} is not valid; use letters, digits, '.', '_' and '-' "
                          "(up to 64, starting with a letter or digit).")


def _flow_name(flow: Any, name: str) -> str:
    flow_name = default_flow() if flow is None else getattr(flow, "name", flow)
    try:
        return flow_entry(flow_name).name
    except UnknownFlow as error:
        raise ConfigError(f"The deployment {name!r} cannot run: its flow {error.flow!r} is not registered "
                          f"({error.hint}).") from None
    except ConfigError as error:
        raise ConfigError(f"The deployment {name!r} cannot run: its flow {flow_name!r} cannot be loaded: "
                          f"{clause(str(error))}") from None


def _parameters(parameters: Any, name: str, flow: str) -> dict[str, Any]:
    if not isinstance(parameters, Mapping):
        raise ConfigError(f"The parameters of {name!r} must be a dict, not {type(parameters).__name__}.")
    return flow_entry(flow).check_parameters(parameters, name)


def _with_options(spec: DeploymentSpec) -> Any:
    """The spec's parameters with the flow's own keywords it was given, which its runs get as parameters."""
    takes = flow_entry(spec.flow).spec_options
    unknown = sorted(set(spec.options) - set(takes))
    if unknown:
        known = ", ".join(takes) if takes else "none"
        raise ConfigError(f"DeploymentSpec {spec.name!r} got the unknown keyword {unknown[0]!r}; the flow "
                          f"{spec.flow!r} takes these besides DeploymentSpec's own: {known}.")
    extra = {key: value for key, value in spec.options.items() if value is not None}
    if not extra or not isinstance(spec.parameters, Mapping):
        return spec.parameters
    twice = sorted(set(extra) & set(spec.parameters))
    if twice:
        raise ConfigError(f"The deployment {spec.name!r} sets {twice[0]!r} both as a field and in its parameters; "
                          "keep one.")
    return {**spec.parameters, **extra}


def _retries(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise ConfigError(f"The retries {value!r} of {name!r} must be a whole number from 0 to {MAX_RETRIES}.")
    return value


def _tags(tags: Any, name: str) -> tuple[str, ...]:
    if isinstance(tags, str) or not all(isinstance(t, str) and t for t in tags):
        raise ConfigError(f"The tags of {name!r} must be a list of words, like ['ml'], not {tags!r}.")
    return tuple(tags)


def _catchup(policy: Any, name: str) -> str:
    if policy not in CATCHUP_POLICIES:
        raise ConfigError(f"The catch-up policy {policy!r} of {name!r} is unknown; use one of "
                          f"{', '.join(CATCHUP_POLICIES)}.")
    return policy


def _notify(urls: Any, name: str) -> tuple[str, ...]:
    """Apprise URLs, each checked by Apprise (a sentence names the deployment, never the URL's secrets)."""
    if not isinstance(urls, (list, tuple)) or not all(isinstance(url, str) and url.strip() for url in urls):
        raise ConfigError(f"The notify list of {name!r} must be a list of Apprise URLs, like [\"json://host/path\"].")
    from .notify import deployment_targets

    return tuple(t.url for t in deployment_targets([url.strip() for url in urls], name))


def _lateness(value: Any, name: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ConfigError(f"The maximum lateness {value!r} of {name!r} must be a positive number of seconds "
                          "or a timedelta.")
    return float(seconds)
