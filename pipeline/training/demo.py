"""Synthetic FHV months for the offline demo: the data is made up, not TLC's.

``generate_month`` builds a month with exactly the columns and types of the real
``fhv_tripdata_YYYY-MM.parquet`` files (shared/FACTS.md) and statistics close to January 2021:
about 83 % of PUlocationID and 14 % of DOlocationID missing, a right-skewed duration with a
median near 13 minutes, about 2 % of trips over an hour, some under a minute and a few that last
days, and durations that depend on the zones, so that a location-only linear model explains
roughly 15-20 % of the variance.

Everything is vectorised; a month is a pure function of ``(month, rows)``. The zones and the
dispatching bases come from a fixed seed, so a model trained on one synthetic month carries over
to the next; the trips come from a seed derived from the month, with a mild seasonal drift.
A month as big as those of 2018 (23 million trips) is written in parts of ``part_rows`` trips,
each generated from its own seed and written as its own row group, in the memory of one part.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .months import parse_month, shift_month

FULL_ROWS = 1_150_000
ZONES = 265
NEVER_PU = (103, 104, 105, 199)
NEVER_DO = (103, 104, 199)
BASES = 537
PU_MISSING, DO_MISSING = 0.83, 0.14
SHORT_SHARE, LONG_SHARE, OUTLIER_SHARE = 0.011, 0.007, 4e-5
BODY_MEAN, BODY_SHAPE = 15.5, 2.2
PU_EFFECT, DO_EFFECT, DO_MISSING_EFFECT = 0.3, 0.43, 0.12
SEASONAL_SWING = 0.11
ROUNDING_BASES = 0.15  # share of bases whose clocks round to the minute
US_PER_S = 1_000_000

SCHEMA = pa.schema([
    ("dispatching_base_num", pa.string()),
    ("pickup_datetime", pa.timestamp("us")),
    ("dropOff_datetime", pa.timestamp("us")),
    ("PUlocationID", pa.float64()),
    ("DOlocationID", pa.float64()),
    ("SR_Flag", pa.int32()),
    ("Affiliated_base_number", pa.string()),
])


@dataclass(frozen=True)
class World:
    """What stays the same from month to month: zones, their effects, the bases."""

    pu_weights: np.ndarray  # index 0 is zone 1
    do_weights: np.ndarray
    pu_effect: np.ndarray
    do_effect: np.ndarray
    base_names: pa.Array
    affiliated_names: pa.Array  # the base names without trailing spaces, then ""
    base_weights: np.ndarray
    base_rounds: np.ndarray
    hour_weights: np.ndarray
    hour_effect: np.ndarray


def generate_month(month: str, rows: int = FULL_ROWS, part: int = 0) -> pa.Table:
    """A synthetic month of ``rows`` trips with the real FHV schema, the same for the same inputs.

    ``part`` > 0 draws other trips of the same month (the parts of a big month).
    """
    rng = np.random.default_rng(_seed(month if part == 0 else f"{month}/part-{part}"))
    world, drift = _world(), _drift(month)
    pickup = _pickups(rng, world, month, rows)
    base = _bases(rng, world, rows)
    pu = _zones(rng, world.pu_weights, PU_MISSING + drift / 10, rows)
    do = _zones(rng, world.do_weights, DO_MISSING - drift / 10, rows)
    minutes = _durations(rng, world, pu, do, _hours(pickup), drift)
    pickup, dropoff = _clock(rng, pickup, minutes, world.base_rounds[base])
    return pa.Table.from_arrays([
        world.base_names.take(pa.array(base)), _timestamps(pickup), _timestamps(dropoff),
        _locations(pu), _locations(do), pa.nulls(rows, pa.int32()), _affiliated(rng, world, base),
    ], schema=SCHEMA)


def write_month(path: str | os.PathLike, month: str, rows: int = FULL_ROWS, *,
                part_rows: int | None = None, single_row_group: bool = False) -> Path:
    """Write a synthetic month to ``path`` atomically (a temp file beside it, then a rename).

    With ``part_rows`` the month is generated in parts of that many rows, one row group each
    (or all in one row group with ``single_row_group``, which holds the whole month in memory).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        if part_rows is None or part_rows >= rows:
            pq.write_table(generate_month(month, rows), tmp, row_group_size=rows if single_row_group else None)
        else:
            _write_parts(tmp, month, rows, part_rows, single_row_group)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_parts(path: str, month: str, rows: int, part_rows: int, single_row_group: bool) -> None:
    sizes = [min(part_rows, rows - start) for start in range(0, rows, part_rows)]
    if single_row_group:
        parts = [generate_month(month, size, part) for part, size in enumerate(sizes)]
        pq.write_table(pa.concat_tables(parts), path, row_group_size=rows)
        return
    with pq.ParquetWriter(path, SCHEMA) as writer:
        for part, size in enumerate(sizes):
            writer.write_table(generate_month(month, size, part), row_group_size=size)


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(f"fhv-demo/{text}".encode()).digest()[:8], "little")


def _drift(month: str) -> float:
    """A mild seasonal swing of log-durations: none in January, longest trips in July (as in 2021)."""
    _, mon = parse_month(month)
    return SEASONAL_SWING * (1 - float(np.cos(2 * np.pi * (mon - 1) / 12))) / 2


def _world() -> World:
    rng = np.random.default_rng(_seed("world"))
    names = rng.choice(np.arange(14, 3600), BASES - 1, replace=False)
    codes = np.sort(np.append(names, 13))
    text = np.array([f"B{c:05d}" for c in codes], dtype=object)
    text[rng.random(BASES) < 0.03] += " "
    hours = np.array([3, 2, 1.5, 1.5, 2, 3, 5, 7, 7.5, 6.5, 6, 6, 6, 6, 6.5, 7, 7, 7, 6.5, 6, 5.5, 5, 4.5, 4])
    return World(
        pu_weights=_zone_weights(rng, NEVER_PU), do_weights=_zone_weights(rng, NEVER_DO),
        pu_effect=rng.normal(0, PU_EFFECT, ZONES), do_effect=rng.normal(0, DO_EFFECT, ZONES),
        base_names=pa.array(text, pa.string()),
        affiliated_names=pa.array([t.rstrip() for t in text] + [""], pa.string()),
        base_weights=_normalised(rng.lognormal(0, 1.3, BASES)),
        base_rounds=rng.random(BASES) < ROUNDING_BASES, hour_weights=_normalised(hours),
        hour_effect=0.1 * np.sin(2 * np.pi * (np.arange(24) - 11) / 24),
    )


def _zone_weights(rng: np.random.Generator, never: tuple[int, ...]) -> np.ndarray:
    weights = rng.lognormal(0, 1.0, ZONES)
    weights[np.array(never) - 1] = 0
    return _normalised(weights)


def _normalised(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _pickups(rng: np.random.Generator, world: World, month: str, rows: int) -> np.ndarray:
    """Sorted pickup times in whole seconds since the epoch, spread over the month's days."""
    start, end = (_epoch_seconds(m) for m in (month, shift_month(month, 1)))
    days = rng.integers(0, (end - start) // 86400, rows)
    hours = rng.choice(24, rows, p=world.hour_weights)
    return np.sort(start + days * 86400 + hours * 3600 + rng.integers(0, 3600, rows))


def _epoch_seconds(month: str) -> int:
    year, mon = parse_month(month)
    return int(dt.datetime(year, mon, 1, tzinfo=dt.timezone.utc).timestamp())


def _hours(seconds: np.ndarray) -> np.ndarray:
    return (seconds // 3600) % 24


def _bases(rng: np.random.Generator, world: World, rows: int) -> np.ndarray:
    base = rng.choice(BASES, rows, p=world.base_weights)
    every = min(rows, BASES)  # every base shows up at least once in a big enough month
    base[rng.choice(rows, every, replace=False)] = rng.permutation(BASES)[:every]
    return base


def _zones(rng: np.random.Generator, weights: np.ndarray, missing: float, rows: int) -> np.ndarray:
    """Zone numbers 1..265, with 0 for a missing zone."""
    zones = rng.choice(ZONES, rows, p=weights) + 1
    zones[rng.random(rows) < missing] = 0
    return zones


def _durations(rng, world: World, pu: np.ndarray, do: np.ndarray, hours: np.ndarray, drift: float) -> np.ndarray:
    """Trip minutes: a zone-dependent gamma body plus short, long and absurd trips."""
    effect = np.where(pu > 0, world.pu_effect[pu - 1], 0.0)
    effect += np.where(do > 0, world.do_effect[do - 1], DO_MISSING_EFFECT)
    scale = np.exp(np.log(BODY_MEAN / BODY_SHAPE) + drift + effect + world.hour_effect[hours])
    minutes = rng.gamma(BODY_SHAPE, scale)
    kind = rng.random(len(pu))
    short, long = kind < SHORT_SHARE, (kind >= SHORT_SHARE) & (kind < SHORT_SHARE + LONG_SHARE)
    minutes[short] = rng.uniform(0, 1, short.sum())
    minutes[long] = np.exp(rng.uniform(np.log(60), np.log(400), long.sum()))
    absurd = rng.random(len(pu)) < OUTLIER_SHARE
    minutes[absurd] = np.exp(rng.uniform(np.log(1440), np.log(60 * 1440), absurd.sum()))
    return minutes


def _clock(rng, pickup: np.ndarray, minutes: np.ndarray, rounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pickup and drop-off in microseconds; rounding bases floor both to the minute."""
    dropoff = pickup + np.rint(minutes * 60).astype(np.int64)
    pickup = np.where(rounds, pickup // 60 * 60, pickup)
    dropoff = np.where(rounds, dropoff // 60 * 60, dropoff)
    exact = rng.choice(len(pickup), 2 * _handful(len(pickup)), replace=False)
    dropoff[exact] = pickup[exact] + np.repeat([60, 3600], len(exact) // 2)
    return pickup * US_PER_S, dropoff * US_PER_S


def _handful(rows: int) -> int:
    """How many trips last exactly 1.0 and exactly 60.0 minutes (the filter's edges)."""
    return min(5, max(1, rows // 20), rows // 2)


def _timestamps(micros: np.ndarray) -> pa.Array:
    return pa.array(micros.view("datetime64[us]"), pa.timestamp("us"))


def _locations(zones: np.ndarray) -> pa.Array:
    return pa.array(zones.astype(np.float64), pa.float64(), mask=zones == 0)


def _affiliated(rng: np.random.Generator, world: World, base: np.ndarray) -> pa.Array:
    """Mostly the dispatching base itself, sometimes another base, an empty string or null."""
    pick = base.copy()
    draw = rng.random(len(base))
    other = draw < 0.12
    pick[other] = rng.choice(BASES, other.sum(), p=world.base_weights)
    pick[(draw >= 0.12) & (draw < 0.125)] = BASES  # the empty string
    return world.affiliated_names.take(pa.array(pick, mask=(draw >= 0.125) & (draw < 0.135)))
