"""The FHV trip file's schema: what a month must contain to be usable.

The columns and their types (``check_schema``), and the taxi zones: a zone column holds whole
numbers from 1 to 265 or nothing (``zone_slots``). Also the columns' values as numpy views,
without pyarrow's ``to_numpy`` (which imports pandas and copies to fill nulls).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import DataError

PICKUP, DROPOFF, PU, DO = "pickup_datetime", "dropOff_datetime", "PUlocationID", "DOlocationID"
NEEDED_COLUMNS = (PICKUP, DROPOFF, PU, DO)
ALL_COLUMNS = (
    "dispatching_base_num", PICKUP, DROPOFF, PU, DO, "SR_Flag", "Affiliated_base_number",
)
FIRST_ZONE, LAST_ZONE = 1, 265  # the TLC's taxi zones (LocationID)
SLOTS = LAST_ZONE + 2  # a zone code's slot is code + 1: 0 for a missing zone (-1), 2..266 for zones


def _is_location_type(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)


def check_schema(schema: pa.Schema, label: str) -> None:
    """Raise DataError naming ``label`` (a file or month) if a needed column is absent or mistyped."""
    names = set(schema.names)
    missing = [c for c in NEEDED_COLUMNS if c not in names]
    if missing:
        raise DataError(f"{label} has no column {', '.join(repr(c) for c in missing)} "
                        f"(found: {', '.join(schema.names) or 'no columns'}).")
    for column in (PICKUP, DROPOFF):
        kind = schema.field(column).type
        if not pa.types.is_timestamp(kind):
            raise DataError(f"{label}: column {column!r} has type {kind}, expected a timestamp.")
    for column in (PU, DO):
        kind = schema.field(column).type
        if not _is_location_type(kind):
            raise DataError(f"{label}: column {column!r} has type {kind}, expected a number of a taxi zone.")


# --- taxi zones -------------------------------------------------------------------------------

class BadZones(DataError):
    """A zone column holds values that are not taxi zone numbers."""

    def __init__(self, label: str, column: str, count: int, example: float):
        self.column, self.count, self.example = column, count, example
        super().__init__(f"{label}: column {column!r} has {count:,} value(s) that are not a taxi zone "
                         f"number from {FIRST_ZONE} to {LAST_ZONE} (for example {example:.15g}).")


def zone_slots(column, name: str, label: str) -> np.ndarray:
    """Zone slots (code + 1) as int32: 0 for null or NaN, 2..266 for the zones 1..265.

    Anything else fails with ``BadZones``: a hostile or broken file can therefore never make
    the model build more than 2 x 267 features. The common case takes a few cheap passes.
    """
    if pa.types.is_null(column.type):
        return np.zeros(len(column), np.int32)
    column = one_chunk(column)
    if column.type != pa.float64():
        column = column.cast(pa.float64(), safe=False)  # integers: exact up to 2**53, and beyond that no zone
    slots = values_view(column, np.float64) + 1.0
    if column.null_count:
        slots *= present(column)  # null -> 0, unless a null slot holds inf or NaN: then the careful path
    if np.count_nonzero(slots < 2) != column.null_count or not slots.max(initial=0) <= LAST_ZONE + 1:
        return _checked_slots(column, name, label)  # a NaN, or a value outside 1..265
    codes = slots.astype(np.int32)
    if np.not_equal(codes, slots).any():
        raise _bad_zones(_values(column), name, label)
    return codes


def _checked_slots(column: pa.Array, name: str, label: str) -> np.ndarray:
    """The careful path: NaN is missing too; anything else not a zone raises ``BadZones``."""
    values = _values(column)
    missing = np.isnan(values)
    if not _are_zones(values, missing).all():
        raise _bad_zones(values, name, label)
    return np.where(missing, 0.0, values + 1.0).astype(np.int32)


def _values(column: pa.Array) -> np.ndarray:
    """A float64 column's values, NaN where null."""
    values = values_view(column, np.float64)
    return np.where(present(column), values, np.nan) if column.null_count else values


def _are_zones(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    return missing | ((values >= FIRST_ZONE) & (values <= LAST_ZONE) & (values == np.trunc(values)))


def _bad_zones(values: np.ndarray, name: str, label: str) -> BadZones:
    """The error naming the file, the column, how many values are not zones and one of them."""
    bad = ~_are_zones(values, np.isnan(values))
    return BadZones(label, name, int(np.count_nonzero(bad)), float(values[bad][0]))


# --- column values as numpy views ---------------------------------------------------------------

def values_view(column: pa.Array, dtype) -> np.ndarray:
    """A read-only view of a fixed-width column's values."""
    if len(column) == 0:
        return np.empty(0, dtype)
    return np.frombuffer(column.buffers()[1], dtype, len(column), column.offset * np.dtype(dtype).itemsize)


def one_chunk(column) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def present(column: pa.Array) -> np.ndarray:
    """Where ``column`` is not null, from its validity bitmap."""
    if not column.null_count:
        return np.ones(len(column), bool)
    bits = np.unpackbits(np.frombuffer(column.buffers()[0], np.uint8), count=column.offset + len(column),
                         bitorder="little")
    return bits[column.offset:].view(bool)
