"""How durations, numbers and moments are written for people: the one formatter of the CLI and the dashboard.

* ``duration_text``: how long something took (0.042 s, 3.2 s, 4m 05s, 2h 03m);
* ``seconds_words``: a setting in seconds, in words (1 hour, 90 seconds, 2 days);
* ``number``: a metric or a count (1,234 or 10.5285);
* ``utc_text``: a moment in UTC (2026-03-08 14:00:00 UTC).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

UTC = dt.timezone.utc
DAY = 86_400


def duration_text(seconds: float) -> str:
    """Sub-second durations stay readable: 0.042 s, 3.2 s, 4m 05s, 2h 03m."""
    if seconds < 10:
        return f"{seconds:.3f} s" if seconds < 1 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s" if minutes else f"{secs} s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def seconds_words(seconds: float) -> str:
    """3600 -> '1 hour', 90 -> '90 seconds', 172800 -> '2 days', 1.5 -> '1.5 seconds'."""
    for unit, size in (("day", DAY), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def number(value: Any, digits: int = 4) -> str:
    """A count with thousands separators, a float with ``digits`` decimals, '-' for nothing."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def utc_text(moment: dt.datetime | str | None) -> str:
    """An aware moment (or the store's UTC text) as '2026-03-08 14:00:00 UTC'; '-' for nothing."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment.replace("Z", "+00:00")) if moment else None
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"
