"""The FHV trip file's schema: what a month must contain to be usable."""
from __future__ import annotations

import pyarrow as pa

from ..errors import DataError

PICKUP, DROPOFF, PU, DO = "pickup_datetime", "dropOff_datetime", "PUlocationID", "DOlocationID"
NEEDED_COLUMNS = (PICKUP, DROPOFF, PU, DO)
ALL_COLUMNS = (
    "dispatching_base_num", PICKUP, DROPOFF, PU, DO, "SR_Flag", "Affiliated_base_number",
)


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
