"""Run date -> training and validation months, and date parsing with clear errors."""
from __future__ import annotations

import datetime as dt
import re

from ..errors import ConfigError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
FIRST_MONTH = "2015-01"  # the first month of FHV trip records TLC published
FIRST_RUN_DATE = dt.date(2015, 1, 1)  # run dates before the first FHV month are refused; January and February 2015
# are allowed and fail (or, from the schedule or a backfill, await data) like the TLC's missing 2014 files


def parse_date(text: str | dt.date | None, *, today: dt.date | None = None) -> dt.date:
    """Parse ``YYYY-MM-DD``; None means today."""
    if text is None:
        return today or dt.date.today()
    if isinstance(text, dt.date):
        return text
    try:
        day = dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise ConfigError(f"The date {text!r} is not a valid date; use YYYY-MM-DD, for example 2021-08-15.") from None
    check_first_month(day)
    return day


def shift_month(month: str, delta: int) -> str:
    """``shift_month('2021-01', -2) == '2020-11'``."""
    year, mon = parse_month(month)
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def parse_month(month: str) -> tuple[int, int]:
    match = _MONTH.match(str(month))
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ConfigError(f"The month {month!r} is not a valid month; use YYYY-MM, for example 2021-06.")
    return int(match.group(1)), int(match.group(2))


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def months_for(run_date: dt.date) -> tuple[str, str]:
    """Training month = two months before the run date, validation month = the month before."""
    this_month = month_of(run_date)
    return shift_month(this_month, -2), shift_month(this_month, -1)


def months_between(start: dt.date, end: dt.date) -> list[str]:
    """Every month from start's to end's, inclusive."""
    if end < start:
        raise ConfigError(f"The end date {end.isoformat()} is before the start date {start.isoformat()}.")
    first, last = month_of(start), month_of(end)
    months = [first]
    while months[-1] != last:
        months.append(shift_month(months[-1], 1))
    return months


def check_run_date(run_date: dt.date, today: dt.date) -> None:
    """Refuse a run date that trains before the first FHV month or validates on a month not over yet
    (the one rule of ``run``, ``trigger``, ``backfill`` and the dashboard: no month is published before it ends)."""
    check_first_month(run_date)
    val_month = months_for(run_date)[1]
    if val_month >= month_of(today):
        when = "a month not over yet" if val_month == month_of(today) else "a month in the future"
        raise ConfigError(f"The run date {run_date.isoformat()} would validate on {val_month}, {when} (today is "
                          f"{today.isoformat()}); use a run date up to {last_allowed_run_date(today).isoformat()}.")


def check_first_month(run_date: dt.date) -> None:
    """Refuse a run date before the first FHV month (2015-01)."""
    if run_date < FIRST_RUN_DATE:
        raise ConfigError(f"The run date {run_date.isoformat()} is before the first FHV month {FIRST_MONTH}; use a "
                          f"run date from {FIRST_RUN_DATE.isoformat()} on.")


def last_allowed_run_date(today: dt.date) -> dt.date:
    """The last day of this month: its validation month, last month, has ended."""
    first_after = (today.replace(day=1) + dt.timedelta(days=31)).replace(day=1)
    return first_after - dt.timedelta(days=1)
