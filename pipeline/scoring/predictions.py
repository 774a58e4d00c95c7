"""Score a month of trips batch by batch and write the predictions file, in the memory of one batch.

Each batch of the four needed columns gets the training path's durations, 1-60 minute filter and zone
slots (``features.trip_arrays``), so the rows kept are those of the course's steps; the kept trips are
scored with the champion's coefficients by zone (``zones.ZoneModel``) and appended to a parquet file
under a temporary name beside the target, which ``publish`` renames into place. The same pass adds
each batch to a ``MonthSummary`` (the month's figures and drift) and sums the squared errors.

The columns, as the course's week-4 ``score.py`` wrote them: ``ride_id`` (``YYYY/MM_`` and the row's
index in the month's file), ``pickup_datetime``, ``PUlocationID`` and ``DOlocationID`` (the zone, -1
when missing, as the course's steps fill them), ``actual_duration``, ``predicted_duration``, ``diff``
(actual minus predicted) and ``model_version`` (the champion's run id).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow._compute import CastOptions, call_function

from ..errors import ConfigError, DataError
from ..training import features
from ..training.months import parse_month
from ..training.schema import DO, PICKUP, PU, BadZones
from .zones import ZoneModel

SCHEMA_COLUMNS = ("ride_id", PICKUP, PU, DO, "actual_duration", "predicted_duration", "diff", "model_version")


def file_name(month: str) -> str:
    return f"fhv_predictions_{month}.parquet"


def absolute(output: str) -> str:
    """``--output`` as an absolute path or template, so that the run records where it writes."""
    return str(Path(output).expanduser().absolute())


def output_path(output: str | None, default_folder: Path, month: str) -> Path:
    """Where ``month``'s predictions go: ``output`` as a template with ``{month}``, a file path ending in
    ``.parquet`` (the file itself), or a folder (default ``default_folder``) holding
    ``fhv_predictions_YYYY-MM.parquet``."""
    if not output:
        return default_folder / file_name(month)
    if "{month}" in output or output.endswith(".parquet"):
        return Path(output.replace("{month}", month)).expanduser().absolute()
    return Path(output).expanduser().absolute() / file_name(month)


def check_target(target: Path) -> None:
    """Before a month is read: the predictions file can be written at ``target`` (its folder made if need be),
    or a ConfigError naming the path says why not."""
    if target.is_dir():
        raise ConfigError(f"The predictions file {target} is a folder: give a folder to write in, or a file path "
                          "ending in .parquet.")
    blocking = next((p for p in (target.parent, *target.parent.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"The predictions cannot go under {blocking}, which is a file, not a folder.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"The folder {target.parent} for the predictions cannot be made ({exc.strerror}).") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"The folder {target.parent} for the predictions is not writable.")


@dataclass(eq=False)
class Scored:
    """A month scored: its summary, the errors' sums, and the predictions file under its temporary name."""

    summary: features.MonthSummary
    temp: Path
    target: Path
    squared_error: float = 0.0
    predicted_sum: float = 0.0
    sha256: str = ""  # of the file written (hashed as it was written) and its size in bytes
    size: int = 0

    @property
    def rows(self) -> int:
        return self.summary.rows

    def rmse(self) -> float:
        return math.sqrt(self.squared_error / self.rows) if self.rows else float("nan")


MINUTE_BINS = 60  # as the data checks bin durations (training/quality.py minute_hist)


def predicted_minutes(summary: features.MonthSummary, model: ZoneModel) -> list[int]:
    """The kept trips by minute of their predicted duration, binned as the data checks bin the actual ones (bin i:
    i+1 to i+2 minutes; a prediction under 1 minute counts in the first bin, one of 60 or more in the last).
    Read from the month's counts by pair of zones: one prediction a pair, not a pass over the trips."""
    counts = summary.cells[:features.CELLS]
    cells = np.flatnonzero(counts)
    predicted = model.predict(cells // features.SLOTS, cells % features.SLOTS)
    minute = np.clip(np.floor(predicted) - 1, 0, MINUTE_BINS - 1).astype(np.int64)
    return np.bincount(minute, weights=counts[cells], minlength=MINUTE_BINS).astype(np.int64).tolist()


def score_file(path: Path, label: str, month: str, model: ZoneModel, version: str, target: Path) -> Scored:
    """Score the parquet month ``path`` into a temporary file beside ``target`` (removed if anything fails)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    scored = Scored(features.MonthSummary(label), Path(name), target)
    try:
        _score_into(scored, path, label, _prefix(month), model, version)
        scored.summary.check()  # a month without a trip of 1 to 60 minutes: a sentence naming it
    except BaseException:
        scored.temp.unlink(missing_ok=True)
        raise
    return scored


# Written as fast as it compresses well: snappy, dictionaries where values repeat (zones, the version, the
# predictions: one a pair of zones), pickup times as deltas, none for the minutes (random digits do not
# compress); no statistics.
WRITE_OPTIONS = {"compression": {**dict.fromkeys(SCHEMA_COLUMNS, "snappy"), "actual_duration": "none", "diff": "none"},
                 "use_dictionary": ["model_version", PU, DO, "predicted_duration"],
                 "column_encoding": {PICKUP: "DELTA_BINARY_PACKED"}, "write_statistics": False}


def _score_into(scored: Scored, path: Path, label: str, prefix: str, model: ZoneModel, version: str) -> None:
    """Read, score and write batch by batch, in three steps that overlap: a thread reads (decodes) the next
    batch while this one is scored, and another builds its columns (ride ids, pickup times) and writes
    (compresses) them meanwhile; so a month keeps both cores busy, with three batches in memory."""
    with features.open_parquet(Path(path), label) as parquet:
        schema = _schema(parquet.schema_arrow.field(PICKUP).type)
        try:
            with HashedFile(scored) as sink, pq.ParquetWriter(sink, schema, **WRITE_OPTIONS) as writer, \
                    ThreadPoolExecutor(1, thread_name_prefix="write-predictions") as pool:
                pending, offset = None, 0
                with contextlib.closing(_prefetched(features._record_batches(parquet))) as batches:
                    for batch in batches:  # on an error the reader stops before the file is read again below
                        columns = _scored_columns(scored, batch, label, model)
                        if pending is not None:
                            pending.result()
                        pending = pool.submit(_write, writer, schema, batch, columns, offset, prefix, version)
                        offset += batch.num_rows
                if pending is not None:
                    pending.result()
        except BadZones as bad:
            raise features._count_bad_zones(parquet, label, bad.column) from None
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{label} could not be read or its predictions written ({exc}).") from exc


class HashedFile:
    """The temporary predictions file as the parquet writer writes it, start to end: each write is hashed on its
    way (so the file's SHA-256 and size cost no second read) and the file is synced to disk before it closes
    (``publish`` then renames it)."""

    def __init__(self, scored: Scored):
        self.scored, self.file, self.hash, self.size = scored, open(scored.temp, "wb"), hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.file.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.file.flush()

    @property
    def closed(self) -> bool:
        return self.file.closed

    def __enter__(self) -> "HashedFile":
        return self

    def __exit__(self, kind, *_) -> None:
        with self.file:
            if kind is None:
                self.file.flush()
                os.fsync(self.file.fileno())
                self.scored.sha256, self.scored.size = self.hash.hexdigest(), self.size


def _prefetched(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches, each read (decoded) by a thread while the one before is scored."""
    with ThreadPoolExecutor(1, thread_name_prefix="read-month") as reader:
        coming = reader.submit(next, batches, None)
        while (batch := coming.result()) is not None:
            coming = reader.submit(next, batches, None)
            yield batch


def _scored_columns(scored: Scored, batch: pa.RecordBatch, label: str, model: ZoneModel) -> tuple[np.ndarray, ...]:
    """The kept rows of a batch (1 to 60 minutes), their zone slots, actual and predicted minutes and the
    difference; the batch is added to the month's summary and its squared errors to the sums."""
    trips = features.trip_arrays(batch, label)
    scored.summary.add(trips)
    kept = np.flatnonzero(trips.keep)
    pu, do = trips.pu[kept], trips.do[kept]
    predicted = model.predict(pu, do)
    actual = trips.minutes[kept]
    diff = actual - predicted
    scored.squared_error += float(np.einsum("i,i->", diff, diff))
    scored.predicted_sum += float(predicted.sum())
    return kept, pu, do, actual, predicted, diff


def _write(writer: pq.ParquetWriter, schema: pa.Schema, batch: pa.RecordBatch, columns: tuple[np.ndarray, ...],
           offset: int, prefix: str, version: str) -> None:
    kept, pu, do, actual, predicted, diff = columns
    writer.write_batch(pa.record_batch([
        ride_ids(prefix, kept + offset),
        call_function("take", [batch.column(PICKUP), _arrow(kept)]),
        _arrow(pu - 1), _arrow(do - 1), _arrow(actual), _arrow(predicted), _arrow(diff),
        pa.DictionaryArray.from_arrays(_arrow(np.zeros(len(kept), np.int8)), _text(version)),
    ], schema=schema))


def ride_ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    """``prefix`` followed by each number in decimal (Arrow's cast and join). Arrow's functions are called through
    ``pyarrow._compute`` here, which ``pyarrow.compute`` wraps: its import costs 4 ms where ``pyarrow.compute``'s
    (which ``Array.take`` imports too) costs 35 ms."""
    text = call_function("cast", [_arrow(numbers)], CastOptions(target_type=pa.string()))
    return call_function("binary_join_element_wise", [_text(prefix)[0], text, _text("")[0]])


def _arrow(values: np.ndarray) -> pa.Array:
    """A numpy array as an Arrow array over the same memory (``pa.array`` would import pandas, 0.4 s)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def _text(value: str) -> pa.Array:
    """A one-string Arrow array, built from its buffers (``pa.array([value])`` would import pandas)."""
    data = value.encode()
    return pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([0, len(data)], np.int32)),
                                                 pa.py_buffer(data)])


def _schema(pickup: pa.DataType) -> pa.Schema:
    return pa.schema([("ride_id", pa.string()), (PICKUP, pickup), (PU, pa.int32()), (DO, pa.int32()),
                      ("actual_duration", pa.float64()), ("predicted_duration", pa.float64()),
                      ("diff", pa.float64()), ("model_version", pa.dictionary(pa.int8(), pa.string()))])


def _prefix(month: str) -> str:
    year, number = parse_month(month)
    return f"{year:04d}/{number:02d}_"


def publish(scored: Scored) -> Path:
    """Rename the temporary file (synced as it closed) into place, replacing an earlier run's file of the month,
    and sync its folder."""
    os.replace(scored.temp, scored.target)
    handle = os.open(scored.target.parent, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
    return scored.target


def discard(scored: Scored | None) -> None:
    """Remove a scored month's temporary file (a run that failed after scoring leaves no file behind)."""
    if scored is not None:
        scored.temp.unlink(missing_ok=True)
