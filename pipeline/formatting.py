"""How durations, numbers and moments are written for people: the one formatter of the CLI and the dashboard.

* ``duration_text``: how long something took (0.042 s, 3.2 s, 4m 05s, 2h 03m);
* ``seconds_words``: a setting in seconds, in words (1 hour, 90 seconds, 2 days);
* ``number``: a metric or a count (1,234 or 10.5285);
* ``utc_text``: a moment in UTC (2026-03-08 14:00:00 UTC);
* a run's flow fields and metrics as its ``FlowEntry`` declares them: ``field_text``, ``metric_text``,
  ``covers`` (what a run covers) and ``headline`` (its headline metric, labelled).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .config import TLC_TEMPLATE

if TYPE_CHECKING:
    from .orchestration.registry import Field, FlowEntry, Metric

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


def source_label(url: str | None) -> str:
    """``TLC (cloudfront)``, ``mirror example.org``, ``local folder /data/fhv`` for a data URL template."""
    if not url:
        return ""
    if url.startswith("demo"):
        return "synthetic demo data"
    if url == TLC_TEMPLATE:
        return "TLC (cloudfront)"
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return f"mirror {parts.netloc}"
    folder = parts.path if parts.scheme == "file" else url
    return f"local folder {Path(folder).parent}"


def field_value(run: dict[str, Any], name: str) -> Any:
    """A run's value of one of its flow's fields (kept under ``fields``, flattened into the row as well)."""
    fields = run.get("fields") or {}
    return fields[name] if name in fields else run.get(name)


def field_text(field: "Field", value: Any) -> str:
    """A field's value as it is shown: a data URL shortened, a flag as its label when set; blank when unset."""
    if value is None or value == "":
        return ""
    if field.kind == "url":
        return source_label(str(value))
    if field.kind == "flag":
        return field.label if value else ""
    return str(value)


def metric_text(metric: "Metric", value: Any) -> str:
    """A metric's value in its declared format (``4.1234``, ``12,034``); blank when the run has none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    try:
        return format(value, metric.format)
    except ValueError:  # an integer format given a float
        return number(value)


def listed_fields(entry: "FlowEntry | None") -> list["Field"]:
    """The fields a list of runs shows for a flow: its listed ones, flags aside (they mark a run instead)."""
    return [f for f in entry.fields if f.listed and f.kind != "flag"] if entry else []


def covers(entry: "FlowEntry | None", run: dict[str, Any]) -> str:
    """What a run covers, by its flow's listed fields: ``Train month 2021-06 · Validation month 2021-07``."""
    shown = [(f.label, field_text(f, field_value(run, f.name))) for f in listed_fields(entry)]
    return " · ".join(f"{label} {text}" for label, text in shown if text)


def headline(entry: "FlowEntry | None", run: dict[str, Any]) -> str:
    """A run's headline metric, labelled (``Validation RMSE 4.1234``); blank when it has none."""
    if entry is None or not entry.metrics:
        return ""
    text = metric_text(entry.metrics[0], (run.get("metrics") or {}).get(entry.metrics[0].key))
    return f"{entry.metrics[0].label} {text}" if text else ""
