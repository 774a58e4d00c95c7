"""Schedules as validated value objects: cron in an IANA time zone, or a fixed interval.

Cron math comes from cronsim, which follows Debian cron on daylight saving time: a fixed time in
the spring-forward gap runs right after the jump, a fixed time in the fall-back overlap runs
once, and a job with a wildcard (or stepped) hour or minute runs by the clock in both repeated
hours. Intervals shorter than 24 h are a fixed distance in absolute time; intervals of 24 h and
longer keep the local clock time of their anchor across DST changes.

Every fire time is an aware datetime in the schedule's zone; ``fingerprint()`` identifies the
schedule, so that a slot is unique per (deployment, fingerprint, UTC instant).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import ConfigError
from ..formatting import seconds_words  # noqa: F401  (re-exported: schedules spoke it first)

UTC = dt.timezone.utc
DAY = 86_400
DEFAULT_ANCHOR = dt.datetime(2020, 1, 1)  # Prefect's default anchor, in the schedule's zone
CRON_FIELDS = "minute hour day-of-month month day-of-week"


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or ConfigError naming it."""
    try:
        if not isinstance(name, str) or not name.strip():
            raise ValueError
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"The time zone {name!r} is not an IANA time zone name; "
                          "use one like America/New_York, Europe/London or UTC.") from None


def has_dst(tz: ZoneInfo, year: int | None = None) -> bool:
    year = year or dt.date.today().year
    offsets = {dt.datetime(year, month, 1, tzinfo=tz).utcoffset() for month in (1, 4, 7, 10)}
    return len(offsets) > 1


def _aware(moment: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """A naive moment is read in ``tz``; an aware one is kept."""
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


class _Schedule:
    """What cron and interval schedules share: listing fire times, JSON and a fingerprint."""

    timezone: str

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def iter_fire_times(self, after: dt.datetime) -> Iterator[dt.datetime]:
        raise NotImplementedError

    def next_fire_times(self, after: dt.datetime, count: int | None = None,
                        until: dt.datetime | None = None) -> list[dt.datetime]:
        """Fire times strictly after ``after``: ``count`` of them, or up to ``until`` inclusive."""
        if count is None and until is None:
            raise ConfigError("Ask for a number of fire times or an end time, not neither.")
        times: list[dt.datetime] = []
        for moment in self.iter_fire_times(_aware(after, self.tz)):
            if (count is not None and len(times) >= count) or (until is not None and moment > until):
                break
            times.append(moment)
        return times

    def fingerprint(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def from_json(data: dict[str, Any] | str) -> "Schedule":
        """The schedule ``to_json`` wrote (either kind); ``schedule_from_json`` also takes None."""
        return schedule_from_json(data)

    def describe(self) -> str:
        raise NotImplementedError

    def dst_policy(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class CronSchedule(_Schedule):
    """A five-field cron expression read in an IANA time zone (``0 9 15 * *``, America/New_York)."""

    expr: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        object.__setattr__(self, "expr", " ".join(str(self.expr).split()))
        object.__setattr__(self, "timezone", self.tz.key)
        fields = self.expr.split()
        if len(fields) != 5:
            raise ConfigError(f"The cron expression {self.expr!r} has {len(fields)} fields; "
                              f"use five ({CRON_FIELDS}), like '0 9 15 * *'.")
        try:
            CronSim(self.expr, dt.datetime(2026, 1, 1, tzinfo=self.tz))
        except (CronSimError, ValueError, IndexError) as error:
            raise ConfigError(f"The cron expression {self.expr!r} is invalid: {str(error).lower()} field "
                              f"(the fields are {CRON_FIELDS}).") from None

    def iter_fire_times(self, after: dt.datetime) -> Iterator[dt.datetime]:
        after = _aware(after, self.tz)
        for moment in CronSim(self.expr, after.astimezone(self.tz)):
            if moment > after:  # a fold=1 start can make cronsim repeat the first occurrence
                yield moment

    @property
    def fixed_time(self) -> bool:
        """True when cronsim applies Debian's DST handling: hour and minute are not wildcards."""
        minute, hour = self.expr.split()[:2]
        return not minute.startswith("*") and not hour.startswith("*")

    def to_json(self) -> dict[str, Any]:
        return {"type": "cron", "cron": self.expr, "timezone": self.timezone}

    def describe(self) -> str:
        return f"{_cron_words(self.expr)} ({self.timezone})"

    def dst_policy(self) -> str:
        if not has_dst(self.tz):
            return f"{self.timezone} has no daylight saving time changes: runs keep their clock time."
        if self.fixed_time:
            return (f"On daylight saving days in {self.timezone} (Debian cron rules, via cronsim): a run "
                    "time in the spring-forward gap runs right after the jump (02:30 runs at 03:00); a run "
                    "time in the fall-back overlap runs once, at its first occurrence.")
        return (f"On daylight saving days in {self.timezone} (Debian cron rules, via cronsim): a job with "
                "a wildcard or stepped hour or minute follows the clock, so it runs in both repeated "
                "hours of the fall-back overlap and not at all in the skipped spring-forward hour.")


@dataclass(frozen=True)
class IntervalSchedule(_Schedule):
    """Every ``seconds`` from ``anchor`` (read in ``timezone`` when naive; one in the spring-forward gap
    moves forward by the gap, 02:30 becomes 03:30, as it would after a round trip through JSON)."""

    seconds: int
    anchor: dt.datetime = field(default=DEFAULT_ANCHOR)
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        object.__setattr__(self, "timezone", self.tz.key)
        object.__setattr__(self, "seconds", _whole_seconds(self.seconds))
        object.__setattr__(self, "anchor", _anchor(self.anchor, self.tz))

    @property
    def keeps_clock_time(self) -> bool:
        return self.seconds >= DAY

    def fire_time(self, k: int) -> dt.datetime:
        """The k-th fire time (k may be negative: the sequence runs both ways from the anchor)."""
        if not self.keeps_clock_time:
            return (self.anchor.astimezone(UTC) + dt.timedelta(seconds=k * self.seconds)).astimezone(self.tz)
        wall = self.anchor.replace(tzinfo=None) + dt.timedelta(seconds=k * self.seconds)
        return wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC).astimezone(self.tz)

    def iter_fire_times(self, after: dt.datetime) -> Iterator[dt.datetime]:
        elapsed = (_aware(after, self.tz) - self.anchor).total_seconds()
        k = math.floor(elapsed / self.seconds) - 1
        while self.fire_time(k) <= after:
            k += 1
        while True:
            yield self.fire_time(k)
            k += 1

    def to_json(self) -> dict[str, Any]:
        return {"type": "interval", "interval": self.seconds, "anchor": self.anchor.isoformat(),
                "timezone": self.timezone}

    def describe(self) -> str:
        words = seconds_words(self.seconds)
        words = words[2:] if words.startswith("1 ") else words
        return f"Every {words} from {self.anchor.isoformat()} ({self.timezone})"

    def dst_policy(self) -> str:
        if not has_dst(self.tz):
            return f"{self.timezone} has no daylight saving time changes: runs are evenly spaced."
        if not self.keeps_clock_time:
            return (f"Intervals under 24 hours are counted in absolute time: across a daylight saving "
                    f"change in {self.timezone} the local clock time of the runs shifts by the change.")
        return (f"Intervals of 24 hours or more keep the local clock time of the anchor across daylight "
                f"saving changes in {self.timezone}; a clock time in the spring-forward gap moves forward "
                "by the gap (02:30 becomes 03:30), one in the fall-back overlap runs once, at its first "
                "occurrence.")


Schedule = Union[CronSchedule, IntervalSchedule]


def schedule_from_json(data: dict[str, Any] | str | None) -> Schedule | None:
    """The schedule stored as JSON by ``to_json`` (a dict, or its text); None stays None."""
    if data is None:
        return None
    if isinstance(data, str):
        data = json.loads(data)
    kind = data.get("type")
    if kind == "cron":
        return CronSchedule(data["cron"], data.get("timezone", "UTC"))
    if kind == "interval":
        return IntervalSchedule(data["interval"], dt.datetime.fromisoformat(data["anchor"]),
                                data.get("timezone", "UTC"))
    raise ConfigError(f"The schedule type {kind!r} is unknown; use 'cron' or 'interval'.")


def _whole_seconds(value: Any) -> int:
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise ConfigError(f"The interval {value!r} is not valid; use a whole number of seconds of at least 1.")
    return int(value)


def _anchor(value: Any, tz: ZoneInfo) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(f"The anchor {value!r} is not an ISO date and time, like 2026-01-01T09:00.") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        raise ConfigError(f"The anchor {value!r} is not a date and time.")
    return real_local_time(_aware(value, tz), tz)


def real_local_time(moment: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """``moment`` in ``tz`` as a time the clock shows: one in the spring-forward gap moves forward by the gap.

    (``astimezone`` alone keeps a nonexistent 02:30 when ``moment`` is already in ``tz``.)
    """
    return moment.astimezone(UTC).astimezone(tz)


def _cron_words(expr: str) -> str:
    from cron_descriptor import CasingTypeEnum, ExpressionDescriptor, Options

    options = Options()
    options.use_24hour_time_format = True
    options.casing_type = CasingTypeEnum.Sentence
    try:
        return ExpressionDescriptor(expr, options).get_description()
    except Exception:  # noqa: BLE001 - a description is a nicety; the expression itself is valid
        return f"Cron {expr}"
