"""Read a month of FHV trips and turn it into model inputs, on arrays, batch by batch.

The course's steps (shared/FACTS.md) in pandas: duration = dropOff - pickup in minutes
(``total_seconds() / 60``), keep 1 <= duration <= 60, locations missing -> -1, cast to int.
Here the same numbers come from pyarrow columns and numpy, without building a DataFrame.

A month is reduced to a ``MonthSummary`` as it is read: trips and summed durations per
(pickup zone, drop-off zone) cell, the sum of squared durations, zone counts and a histogram
of durations. That is all the model needs: the least-squares problem for two one-hot zone
blocks and an intercept, and the MSE of any weights, depend on the trips only through them.
So ``read_month`` reads a month of 23 million trips in the memory of one batch (and
``data.read_months`` two months at once, on two cores).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from .schema import (DO, DROPOFF, NEEDED_COLUMNS, PICKUP, PU, SLOTS, BadZones, check_schema, one_chunk, present,
                     values_view, zone_slots)

MIN_MINUTES, MAX_MINUTES = 1.0, 60.0
FIRST_SECOND, LAST_SECOND = 60, 3600  # a kept trip lasts this many whole seconds
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


def tune_memory() -> None:
    """Keep the memory of one batch for the next (called once per run; idempotent).

    Arrow keeps its default allocator (mimalloc), and glibc's malloc, which numpy uses, is told
    neither to map and unmap a batch-sized array each time nor to trim its heap after each batch:
    by default it does, and faulting fresh pages in for every batch costs a third of the CPU time
    of a month. The heap then stays at the size of two readers' batches, whatever the month's size.
    """
    try:
        pa.set_memory_pool(pa.mimalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without it: its default
        pass
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)
    except (OSError, AttributeError):  # not glibc: its defaults
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


# --- one batch of trips --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Trips:
    """A batch of trips as arrays, one entry a trip: the 1..60 minute filter, minutes (meaningless
    where a timestamp is missing: ``timed``), whole seconds and the rest in ticks of ``per_second``,
    and zone slots (code + 1: 0 for a missing zone)."""

    keep: np.ndarray
    minutes: np.ndarray
    seconds: np.ndarray
    rest: np.ndarray
    per_second: int
    timed: np.ndarray | None  # None: every trip has both timestamps
    pu: np.ndarray
    do: np.ndarray

    def kept(self) -> Features:
        keep = self.keep
        return Features(self.pu[keep] - 1, self.do[keep] - 1, self.minutes[keep], {})

    def timed_minutes(self) -> tuple[int, float]:
        """How many trips have both timestamps, and their summed minutes."""
        if self.timed is None:
            return len(self.keep), float(self.minutes.sum())
        return int(self.timed.sum()), float(self.minutes[self.timed].sum())


def _short(trips: Trips) -> int:
    """How many trips of a batch have both timestamps and last under a minute."""
    short = trips.seconds < FIRST_SECOND
    if trips.timed is not None:
        short &= trips.timed
    return int(np.count_nonzero(short))


def trip_arrays(table: pa.Table | pa.RecordBatch, label: str) -> Trips:
    """Durations, the filter and zone slots of a table or batch with the four needed columns.

    The filter is taken on integer ticks (60 s <= dropoff - pickup <= 3600 s), which keeps
    exactly the trips whose float minutes are within 1..60.
    """
    pickup, dropoff = table.column(PICKUP), table.column(DROPOFF)
    try:
        ticks, per_second = _tick_difference(pickup, dropoff)
    except pa.ArrowInvalid as exc:  # a timestamp that does not fit the finer unit
        raise DataError(f"{label}: a trip's timestamps are out of range ({exc}).") from exc
    keep = ticks >= int(MIN_MINUTES * 60) * per_second
    keep &= ticks <= int(MAX_MINUTES * 60) * per_second
    timed = _timed(pickup, dropoff)
    if timed is not None:
        keep &= timed
    seconds = ticks // per_second
    ticks -= seconds * per_second
    minutes = _minutes(seconds, ticks, per_second)
    pu, do = zone_slots(table.column(PU), PU, label), zone_slots(table.column(DO), DO, label)
    return Trips(keep, minutes, seconds, ticks, per_second, timed, pu, do)


def trip_minutes(pickup, dropoff) -> np.ndarray:
    """Minutes between two timestamp columns, NaN where either is null."""
    ticks, per_second = _tick_difference(pickup, dropoff)
    whole = ticks // per_second
    minutes = _minutes(whole, ticks - whole * per_second, per_second)
    timed = _timed(pickup, dropoff)
    if timed is not None:
        minutes[~timed] = np.nan
    return minutes


def _tick_difference(pickup, dropoff) -> tuple[np.ndarray, int]:
    """dropoff - pickup in ticks of the finer unit of the two, and ticks a second."""
    unit = max(pickup.type.unit, dropoff.type.unit, key=_UNITS.index)
    return _ticks(dropoff, unit) - _ticks(pickup, unit), _PER_SECOND[unit]


def _minutes(whole: np.ndarray, rest: np.ndarray, per_second: int) -> np.ndarray:
    """Whole seconds plus the remainder, over 60, exactly as pandas 3 ``Series.dt.total_seconds()
    / 60`` computes it, so the floats agree bit for bit."""
    minutes = rest / per_second
    minutes += whole  # in place: the same sum as pandas' ``floor_s + residual / pps``
    minutes /= 60
    return minutes


def _timed(pickup, dropoff) -> np.ndarray | None:
    """Where both timestamps are present, or None when none is missing."""
    if not (pickup.null_count or dropoff.null_count):
        return None
    return present(one_chunk(pickup)) & present(one_chunk(dropoff))


def _ticks(column, unit: str) -> np.ndarray:
    """int64 ticks in ``unit`` (a view of the column's data when it has that unit); null slots hold
    anything (the caller masks them). ``to_numpy`` would import pandas (0.4 s) for nothing."""
    column = one_chunk(column)
    if column.type.unit != unit:
        column = column.cast(pa.timestamp(unit, column.type.tz))
    return values_view(column, np.int64)


# --- a month, summed up -------------------------------------------------------------------------

CELLS = SLOTS * SLOTS
DURATION_BINS = LAST_SECOND - FIRST_SECOND + 2  # bin 0 collects the trips not kept


@dataclass(eq=False)
class MonthSummary:
    """A month reduced to what the model and the month's figures need; ``add`` one batch at a time.

    ``cells[:CELLS]`` counts the kept trips by ``pu_slot * SLOTS + do_slot`` and ``cells[CELLS:]``
    the others; ``cell_minutes`` sums the kept trips' minutes; ``by_second`` counts kept trips
    by whole seconds of duration (60 s in bin 1), and ``by_milli`` (made when first needed) those
    with a fraction of a second, by millisecond, so the median is exact to the millisecond
    (TLC's files are to the second).
    """

    label: str
    raw_rows: int = 0
    timed_rows: int = 0  # raw rows with both timestamps
    raw_minutes: float = 0.0  # their summed durations
    squared_minutes: float = 0.0  # sum of squared durations of the kept trips
    cells: np.ndarray = field(default_factory=lambda: np.zeros(2 * CELLS, np.int64))
    cell_minutes: np.ndarray = field(default_factory=lambda: np.zeros(CELLS, np.float64))
    by_second: np.ndarray = field(default_factory=lambda: np.zeros(DURATION_BINS, np.int64))
    by_milli: np.ndarray | None = None
    short_rows: int = 0  # rows with both timestamps and under a minute (negative durations included)

    def add(self, trips: Trips) -> None:
        keep = trips.keep
        timed, minutes = trips.timed_minutes()
        self.raw_rows, self.timed_rows, self.raw_minutes = (self.raw_rows + len(keep), self.timed_rows + timed,
                                                            self.raw_minutes + minutes)
        self.short_rows += _short(trips)
        cells = np.multiply(trips.pu, SLOTS, dtype=np.int64)
        cells += trips.do
        kept_minutes = trips.minutes * keep  # minutes are finite, even where a timestamp is missing
        self.cell_minutes += np.bincount(cells, weights=kept_minutes, minlength=CELLS)
        self.squared_minutes += float(np.einsum("i,i->", kept_minutes, kept_minutes))  # not BLAS: no threads
        cells += CELLS * ~keep  # the trips not kept count in the upper half
        self.cells += np.bincount(cells, minlength=2 * CELLS)
        self._add_durations(trips)

    def _add_durations(self, trips: Trips) -> None:
        bins = trips.seconds - (FIRST_SECOND - 1)
        bins *= trips.keep  # the trips not kept in bin 0
        self.by_second += np.bincount(bins, minlength=DURATION_BINS)
        if trips.per_second > 1 and trips.rest.any():
            fraction = trips.keep & (trips.rest != 0)
            if self.by_milli is None:
                self.by_milli = np.zeros(DURATION_BINS * 1000, np.int64)
            millis = bins[fraction] * 1000 + trips.rest[fraction] * 1000 // trips.per_second
            self.by_milli += np.bincount(millis, minlength=len(self.by_milli))

    @property
    def cell_trips(self) -> np.ndarray:
        return self.cells[:CELLS]

    @property
    def raw_cells(self) -> np.ndarray:
        return self.cells[:CELLS] + self.cells[CELLS:]

    @property
    def rows(self) -> int:
        return int(self.cell_trips.sum())

    def check(self) -> None:
        """DataError naming the month when it has no trip, or no trip of 1 to 60 minutes."""
        if self.raw_rows == 0:
            raise DataError(f"{self.label} has no trips (0 rows read).")
        if self.rows == 0:
            raise DataError(f"{self.label} has no trips with a duration between 1 and 60 minutes "
                            f"({self.raw_rows} rows read).")

    def zone_counts(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Trips by pickup slot and by drop-off slot of a cell table (``raw_cells`` or ``cell_trips``)."""
        grid = cells.reshape(SLOTS, SLOTS)
        return grid.sum(axis=1), grid.sum(axis=0)

    def stats(self) -> dict:
        """The month in numbers, as the in-memory steps computed them."""
        raw, rows = self.raw_rows, self.rows
        pu, do = self.zone_counts(self.raw_cells)
        return {
            "raw_rows": raw, "rows": rows, "dropped": raw - rows, "dropped_share": (raw - rows) / raw,
            "mean_duration": float(self.cell_minutes.sum() / rows),
            "mean_duration_raw": self.raw_minutes / self.timed_rows if self.timed_rows else float("nan"),
            "median_duration": self.median(),
            "pu_missing_share": float(pu[0] / raw), "do_missing_share": float(do[0] / raw),
            "pu_distinct": int(np.count_nonzero(pu[1:])), "do_distinct": int(np.count_nonzero(do[1:])),
        }

    def dropped_by_rule(self) -> dict[str, int]:
        """The rows not kept, by the first rule that drops them: a missing timestamp, then under a
        minute, then over 60 minutes (a row dropped by one rule is not counted by the next)."""
        missing = self.raw_rows - self.timed_rows
        return {"missing_times": missing, "under_1_min": self.short_rows,
                "over_60_min": self.raw_rows - self.rows - missing - self.short_rows}

    def quantile(self, q: float) -> float:
        """np.quantile of the kept durations (linear interpolation), exact: from the per-second and
        per-millisecond counts, not from bins."""
        position = q * (self.rows - 1)
        below = int(np.floor(position))
        low, high = self._kth(below), self._kth(min(below + 1, self.rows - 1))
        return float(low + (high - low) * (position - below))

    def median(self) -> float:
        """np.median of the kept durations: the middle one, or the mean of the two middle ones."""
        rows = self.rows
        return (self._kth(max(rows - 1, 0) // 2) + self._kth(rows // 2)) / 2

    def _kth(self, k: int) -> float:
        """The k-th smallest kept duration (from 0) in minutes, computed as ``_minutes`` does."""
        kept = self.by_second.copy()
        kept[0] = 0
        second = int(np.searchsorted(np.cumsum(kept), k, side="right"))
        rank = k - int(kept[:second].sum())
        millis = np.zeros(1000, np.int64)
        if self.by_milli is not None:
            millis = self.by_milli[second * 1000:(second + 1) * 1000].copy()
        millis[0] = kept[second] - millis[1:].sum()
        milli = int(np.searchsorted(np.cumsum(millis), rank, side="right"))
        return (milli / 1000 + (second + FIRST_SECOND - 1)) / 60


# --- in memory (tests, and FHV_SOLVER=lsqr) ------------------------------------------------------

def read_trips(path, label: str | None = None) -> pa.Table:
    """Read the four needed columns of a parquet month; DataError names the file if it is bad.

    ``ParquetFile.read`` rather than ``pq.read_table``: the latter loads pyarrow.dataset and
    pandas (0.4 s) for nothing.
    """
    path = Path(path)
    label = label or path.name
    with open_parquet(path, label) as parquet:
        try:
            return parquet.read(columns=list(NEEDED_COLUMNS))
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{label} could not be read ({path}: {exc}).") from exc


def open_parquet(path: Path, label: str) -> pq.ParquetFile:
    """The open parquet file, its schema checked; DataError naming ``label`` otherwise."""
    try:
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)  # a row group's columns in 1 MiB reads
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{label} is not a readable parquet file ({path}: {exc}).") from exc
    try:
        check_schema(parquet.schema_arrow, label)
    except DataError:
        parquet.close()
        raise
    return parquet


def prepare_features(table: pa.Table, label: str) -> Features:
    """Durations, the 1..60 minute filter and zone codes of a whole table, and its figures."""
    check_schema(table.schema, label)
    summary = MonthSummary(label)
    trips = trip_arrays(table, label) if table.num_rows else None
    if trips is not None:
        summary.add(trips)
    summary.check()
    kept = trips.kept()
    return Features(kept.pu, kept.do, kept.duration, summary.stats())


# --- streaming: months read batch by batch, two at once -------------------------------------------

BATCH_ROWS = 1 << 18  # 2 MiB a float column: the arrays of a batch stay in the cache


@dataclass(frozen=True, eq=False)
class Month:
    """A month read: its summary, and its kept trips only when asked for (``FHV_SOLVER=lsqr``)."""

    summary: MonthSummary
    trips: Features | None = None

    @property
    def stats(self) -> dict:
        return self.summary.stats()


class Stopped(Exception):
    """A reader stopped because another one failed or the task was interrupted."""


def read_month(path, label: str, *, keep_trips: bool = False, progress=None, stop=None) -> Month:
    """Read a parquet month batch by batch into a ``MonthSummary``.

    ``progress(rows_done, group_ends)`` after each batch, ``group_ends`` being the cumulative
    rows at the end of each row group.
    """
    summary, kept = MonthSummary(label), []
    with open_parquet(Path(path), label) as parquet:
        meta = parquet.metadata
        ends = np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        for done, trips in _batches(parquet, label, stop):
            summary.add(trips)
            if keep_trips:
                kept.append(trips.kept())
            if progress is not None:
                progress(done, ends)
    return Month(summary, _joined(kept, summary) if keep_trips else None)


def _batches(parquet: pq.ParquetFile, label: str, stop):
    """(rows done, trips) for each batch of the four needed columns."""
    done = 0
    try:
        for batch in _record_batches(parquet):
            if stop is not None and stop.is_set():
                raise Stopped()
            try:
                trips = trip_arrays(batch, label)
            except BadZones as bad:
                raise _count_bad_zones(parquet, label, bad.column) from None
            done += batch.num_rows
            yield done, trips
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{label} could not be read ({exc}).") from exc


def _record_batches(parquet: pq.ParquetFile, columns=NEEDED_COLUMNS):
    """Batches of ``BATCH_ROWS`` rows, whatever the row groups (one of 23 million rows included).

    On this thread: the months are read two at once, which keeps both cores busy already.
    """
    return parquet.iter_batches(batch_size=BATCH_ROWS, columns=list(columns), use_threads=False)


def _count_bad_zones(parquet: pq.ParquetFile, label: str, column: str) -> BadZones:
    """The error for ``column`` counting its bad values in the whole file, not just one batch."""
    count, example = 0, None
    for batch in _record_batches(parquet, [column]):
        try:
            zone_slots(batch.column(0), column, label)
        except BadZones as bad:
            count, example = count + bad.count, bad.example if example is None else example
    return BadZones(label, column, count, example)


def _joined(kept: list[Features], summary: MonthSummary) -> Features | None:
    if not kept:
        return None
    join = (lambda name: np.concatenate([getattr(part, name) for part in kept]))  # noqa: E731
    return Features(join("pu"), join("do"), join("duration"), {})


