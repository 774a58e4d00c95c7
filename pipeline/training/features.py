"""Read a month of FHV trips and turn it into model inputs, on arrays.

The course's steps (shared/FACTS.md) in pandas: duration = dropOff - pickup in minutes
(``total_seconds() / 60``), keep 1 <= duration <= 60, locations missing -> -1, cast to int.
Here the same numbers come from pyarrow columns and numpy, without building a DataFrame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from .schema import DO, DROPOFF, NEEDED_COLUMNS, PICKUP, PU, check_schema

MIN_MINUTES, MAX_MINUTES = 1.0, 60.0
FIRST_ZONE, LAST_ZONE = 1, 265  # the TLC's taxi zones (LocationID)
_UNITS = ("s", "ms", "us", "ns")
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


@dataclass(frozen=True, eq=False)
class Features:
    """The filtered trips: zone codes (-1 = missing), duration in minutes, and what happened."""

    pu: np.ndarray
    do: np.ndarray
    duration: np.ndarray
    stats: dict

    def __len__(self) -> int:
        return len(self.duration)


def return_memory_promptly() -> None:
    """Let Arrow free buffers to the OS at once (its default pool keeps them for reuse)."""
    pa.set_memory_pool(pa.system_memory_pool())


def read_trips(path, label: str | None = None) -> pa.Table:
    """Read the four needed columns of a parquet month; DataError names the file if it is bad.

    ``ParquetFile.read`` rather than ``pq.read_table``: the latter loads pyarrow.dataset and
    pandas (0.4 s) for nothing.
    """
    path = Path(path)
    label = label or path.name
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{label} is not a readable parquet file ({path}: {exc}).") from exc
    with parquet:
        check_schema(parquet.schema_arrow, label)
        try:
            return parquet.read(columns=list(NEEDED_COLUMNS))
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{label} could not be read ({path}: {exc}).") from exc


def prepare_features(table: pa.Table, label: str) -> Features:
    """Durations, the 1..60 minute filter and zone codes, as the course computed them."""
    check_schema(table.schema, label)
    if table.num_rows == 0:
        raise DataError(f"{label} has no trips (0 rows read).")
    duration = _durations(table, label)
    pu, pu_missing = location_codes(table.column(PU), PU, label)
    do, do_missing = location_codes(table.column(DO), DO, label)
    keep = (duration >= MIN_MINUTES) & (duration <= MAX_MINUTES)  # NaN compares False
    if not keep.any():
        raise DataError(f"{label} has no trips with a duration between 1 and 60 minutes "
                        f"({table.num_rows} rows read).")
    stats = _stats(duration, keep, (pu, pu_missing), (do, do_missing))
    return Features(pu[keep], do[keep], duration[keep], stats)


def _durations(table: pa.Table, label: str) -> np.ndarray:
    try:
        return trip_minutes(table.column(PICKUP), table.column(DROPOFF))
    except pa.ArrowInvalid as exc:  # a timestamp that does not fit the finer unit
        raise DataError(f"{label}: a trip's timestamps are out of range ({exc}).") from exc


def trip_minutes(pickup: pa.ChunkedArray, dropoff: pa.ChunkedArray) -> np.ndarray:
    """Minutes between two timestamp columns, NaN where either is null.

    Integer ticks split into whole seconds and a remainder, exactly as pandas 3
    ``Series.dt.total_seconds()`` does, so the floats agree bit for bit.
    """
    unit = max(pickup.type.unit, dropoff.type.unit, key=_UNITS.index)
    per_second = _PER_SECOND[unit]
    whole, rest = np.divmod(_ticks(dropoff, unit) - _ticks(pickup, unit), per_second)
    minutes = rest / per_second
    minutes += whole  # in place: the same sum as pandas' ``floor_s + residual / pps``
    minutes /= 60
    for column in (pickup, dropoff):
        if column.null_count:
            minutes[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
    return minutes


def _ticks(column: pa.ChunkedArray, unit: str) -> np.ndarray:
    """int64 ticks in ``unit``, nulls as 0 (the caller masks them)."""
    column = column.cast(pa.timestamp(unit, column.type.tz))
    if column.null_count:
        column = column.fill_null(0)
    return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)


def location_codes(column: pa.ChunkedArray, name: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Zone codes as int64 with -1 for null or NaN (pandas ``fillna(-1).astype(int)``).

    Anything else must be a whole zone number from 1 to 265: a hostile or broken file can
    therefore never make the model build more than 2 x 266 features.
    """
    size = len(column)
    if pa.types.is_null(column.type):
        return np.full(size, -1, np.int64), np.ones(size, bool)
    if pa.types.is_integer(column.type) and column.null_count == 0:
        codes = np.asarray(column.to_numpy(), dtype=np.int64)
        if size and (codes.min() < FIRST_ZONE or codes.max() > LAST_ZONE):
            _bad_zones(codes, np.zeros(size, bool), name, label)
        return codes, np.zeros(size, bool)
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    missing = np.isnan(values)
    present = np.where(missing, float(FIRST_ZONE), values)
    if size and not _all_zones(present):
        _bad_zones(values, missing, name, label)
    return np.where(missing, -1.0, values).astype(np.int64), missing


def _all_zones(values: np.ndarray) -> bool:
    """True when every value is a whole number from 1 to 265 (checked cheaply first, by min and max)."""
    if values.min() < FIRST_ZONE or values.max() > LAST_ZONE:
        return False
    return bool(np.array_equal(values, np.trunc(values)))


def _bad_zones(values: np.ndarray, missing: np.ndarray, name: str, label: str) -> None:
    """Raise DataError naming the file, the column, how many values are not zones and one of them."""
    whole = values == np.trunc(values)
    bad = ~missing & ~((values >= FIRST_ZONE) & (values <= LAST_ZONE) & whole)
    raise DataError(f"{label}: column {name!r} has {int(bad.sum()):,} value(s) that are not a taxi zone "
                    f"number from {FIRST_ZONE} to {LAST_ZONE} (for example {float(values[bad][0]):.15g}).")


def _stats(duration, keep, pu, do) -> dict:
    """The month in numbers; ``pu`` and ``do`` are (codes, missing) before filtering."""
    raw, rows = len(duration), int(keep.sum())
    kept = duration[keep]
    return {
        "raw_rows": raw, "rows": rows, "dropped": raw - rows, "dropped_share": (raw - rows) / raw,
        "mean_duration": float(kept.mean()),
        "mean_duration_raw": float(np.nanmean(duration)),
        "median_duration": float(np.median(kept)),
        "pu_missing_share": float(pu[1].mean()), "do_missing_share": float(do[1].mean()),
        "pu_distinct": _distinct(*pu), "do_distinct": _distinct(*do),
    }


def _distinct(codes: np.ndarray, missing: np.ndarray) -> int:
    """Distinct zones among the non-missing values (pandas ``nunique`` after the int cast)."""
    return int(np.count_nonzero(np.bincount(codes[~missing], minlength=LAST_ZONE + 1)))
