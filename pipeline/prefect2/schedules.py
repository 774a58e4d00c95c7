"""Prefect 2.0 beta's ``IntervalSchedule`` and ``CronSchedule``, as the file wrote them.

They stay plain values (JSON for a file loaded in another interpreter) until a deployment is
registered, where ``to_schedule()`` makes the orchestrator's schedule; so a file can be read in an
environment without this product's requirements.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..errors import ConfigError


@dataclass(frozen=True)
class PrefectSchedule:
    kind: str  # "cron" or "interval"
    timezone: str = "UTC"
    cron: str | None = None
    seconds: float | None = None
    anchor_date: str | None = None  # ISO 8601

    def to_schedule(self) -> Any:
        """The orchestrator's CronSchedule or IntervalSchedule (ConfigError for a bad expression or zone)."""
        from ..orchestration.schedules import CronSchedule as Cron
        from ..orchestration.schedules import IntervalSchedule as Interval

        if self.kind == "cron":
            return Cron(self.cron, self.timezone)
        anchor = dt.datetime.fromisoformat(self.anchor_date) if self.anchor_date else dt.datetime(2020, 1, 1)
        return Interval(dt.timedelta(seconds=self.seconds or 0), anchor, self.timezone)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "PrefectSchedule | None":
        return cls(**data) if data else None


def IntervalSchedule(interval: dt.timedelta | float | None = None, anchor_date: dt.datetime | None = None,  # noqa: N802
                     timezone: str | None = None, **unsupported: Any) -> PrefectSchedule:
    """``IntervalSchedule(interval=timedelta(minutes=5), anchor_date=...)``; the anchor defaults to 2020-01-01."""
    _refuse(unsupported, "IntervalSchedule")
    if interval is None:
        raise ConfigError("IntervalSchedule needs an interval, like interval=timedelta(minutes=5).")
    seconds = interval.total_seconds() if isinstance(interval, dt.timedelta) else float(interval)
    zone = timezone or getattr(getattr(anchor_date, "tzinfo", None), "key", None) or "UTC"
    return PrefectSchedule("interval", zone, seconds=seconds,
                           anchor_date=anchor_date.isoformat() if anchor_date is not None else None)


def CronSchedule(cron: str | None = None, timezone: str | None = None, day_or: bool = True,  # noqa: N802
                 **unsupported: Any) -> PrefectSchedule:
    """``CronSchedule(cron="0 9 15 * *", timezone="America/New_York")``; without a zone, UTC."""
    _refuse(unsupported, "CronSchedule")
    if not day_or:
        raise ConfigError("CronSchedule(day_or=False) is not supported here: day-of-month and day-of-week "
                          "combine as in cron (either matches).")
    if not cron:
        raise ConfigError("CronSchedule needs a cron expression, like cron=\"0 9 15 * *\".")
    return PrefectSchedule("cron", timezone or "UTC", cron=str(cron))


def RRuleSchedule(*args: Any, **kwargs: Any) -> None:  # noqa: N802
    raise ConfigError("RRuleSchedule is not supported here; use a CronSchedule or an IntervalSchedule.")


def _refuse(unsupported: Mapping[str, Any], what: str) -> None:
    if unsupported:
        raise ConfigError(f"{what}({', '.join(f'{k}=...' for k in unsupported)}) is not supported here.")
