"""Fetch a month of FHV trips: a local, validated parquet file, downloaded and cached if needed;
then read months, two at once (``read_months``), logging the progress of both.

Sources (``Settings.data_url``):

* ``demo`` / ``demo:ROWS``: synthetic months (``demo.py``), generated on demand and cached.
* an http(s) template with ``{month}``: downloaded once into the cache, streamed to a temp file,
  checked (complete body, parquet footer, needed columns), then renamed into place. A file in
  the cache is therefore always whole and valid, and is reused without a network call.
* a local template (``/dir/fhv_tripdata_{month}.parquet`` or ``file://...``) or a folder holding
  ``fhv_tripdata_YYYY-MM.parquet`` files: used in place, after the same checks.

Downloads log their progress at every tenth (bytes, rate, time left): the scheduler's log and
the run's history, which the dashboard shows on the running task, get these lines; the CLI
also draws a rich progress bar.

Outcomes: HTTP 403/404 or a missing local file raise ``NotPublishedError``; HTTP 5xx, refused or
reset connections, timeouts (``download_timeout`` without a byte, or ``download_deadline`` for the
whole attempt) and truncated bodies raise ``TransientError`` (the runtime retries those); anything
else wrong with the file, a file without a single trip included, raises ``DataError``: it is
never cached. Nothing here retries.
"""
from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import demo, features
from ..config import DATA_ALIASES, TLC_TEMPLATE, Settings, is_synthetic
from ..errors import DataError, NotPublishedError, TransientError
from .months import FIRST_MONTH, parse_month
from .schema import check_schema

if TYPE_CHECKING:  # the download path imports them when it runs: a month read from a folder needs no HTTP
    import http.client

    from .deadline import Deadline

CHUNK = 1 << 20
UNSIZED_STEP = 50_000_000  # without a Content-Length, a log line every 50 MB
USER_AGENT = "fhv-retrain/1.0 (python urllib)"

log = logging.getLogger("pipeline.training.data")


def fetch_month(settings: Settings, month: str, *, progress: bool | None = None) -> Path:
    """Return a local, validated parquet file with the trips of ``month`` (``YYYY-MM``)."""
    parse_month(month)
    if month < FIRST_MONTH:  # the TLC has no file before the first FHV month, and the demo source none either
        raise NotPublishedError(month, first=FIRST_MONTH)
    data_url = _expand(settings.data_url)
    if is_synthetic(data_url):
        return _demo_file(settings.cache_dir, month, demo_rows(data_url))
    if _is_http(data_url):
        return _http_file(settings, data_url, month, _show_progress(progress))
    return _local_file(month, _local_path(data_url, month))


def source_url(data_url: str, month: str) -> str:
    """Where ``month`` comes from: the URL or path, or ``demo:ROWS/fhv_tripdata_YYYY-MM.parquet``."""
    data_url = _expand(data_url)
    if is_synthetic(data_url):
        return f"demo:{demo_rows(data_url)}/{file_name(month)}"
    if _is_http(data_url):
        return data_url.replace("{month}", month)
    return str(_local_path(data_url, month))


def describe_source(data_url: str) -> str:
    """A short human label for a data URL: the demo size, 'TLC cloudfront', a host or a folder."""
    data_url = _expand(data_url)
    if is_synthetic(data_url):
        return f"synthetic demo data ({demo_rows(data_url):,} rows a month)"
    if data_url == TLC_TEMPLATE:
        return "TLC cloudfront"
    if _is_http(data_url):
        return urllib.parse.urlsplit(data_url).netloc
    return str(_local_path(data_url, "{month}").parent)


def demo_rows(data_url: str) -> int:
    """Rows a month for ``demo`` (full size) or ``demo:ROWS``."""
    _, _, rows = data_url.partition(":")
    return int(rows) if rows else demo.FULL_ROWS


def file_name(month: str) -> str:
    return f"fhv_tripdata_{month}.parquet"


def validate_parquet(path: Path, label: str) -> None:
    """Raise DataError naming ``label`` unless ``path`` is a parquet file with the needed columns and a row."""
    try:
        with pq.ParquetFile(path) as parquet:
            schema, rows = parquet.schema_arrow, parquet.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{label} is not a readable parquet file ({_reason(exc)}).") from None
    check_schema(schema, label)
    if rows == 0:
        raise DataError(f"{label} has no trips (0 rows).")


# --- demo ---------------------------------------------------------------------------------------

def _demo_file(cache_dir: Path, month: str, rows: int) -> Path:
    if rows < 1:
        raise DataError(f"demo:{rows}/{file_name(month)} would have no trips; ask for at least 10 rows, like demo:50000.")
    path = cache_dir / f"demo-{rows}" / file_name(month)
    if not path.exists():
        demo.write_month(path, month, rows)
    return path


# --- local files --------------------------------------------------------------------------------

def _local_path(data_url: str, month: str) -> Path:
    is_file_url = data_url.startswith("file://")
    text = urllib.parse.unquote(data_url[len("file://"):]) if is_file_url else data_url
    if "{month}" not in text:
        return Path(text).expanduser() / file_name(month)
    return Path(text.replace("{month}", month)).expanduser()


def _local_file(month: str, path: Path) -> Path:
    if not path.exists():
        raise NotPublishedError(month, path=str(path))
    validate_parquet(path, f"The file {path}")
    return path


# --- http(s) ------------------------------------------------------------------------------------

def _http_file(settings: Settings, template: str, month: str, progress: bool) -> Path:
    url = template.replace("{month}", month)
    path = settings.cache_dir / cache_slug(template) / file_name(month)
    if not path.exists():
        _download(url, month, path, settings, progress)
    return path


def cache_slug(template: str) -> str:
    """A readable folder name for a URL template: host and path, plus a short hash of the whole."""
    parts = urllib.parse.urlsplit(template)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", parts.netloc + parts.path.replace("{month}", "month"))
    digest = hashlib.sha256(template.encode()).hexdigest()[:10]
    return f"{readable.strip('-.')[:80]}-{digest}"


def _download(url: str, month: str, path: Path, settings: Settings, progress: bool) -> None:
    """Stream ``url`` to a temp file beside ``path``, check it, then rename it into place."""
    from .deadline import Deadline

    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = Deadline(settings.download_deadline, url, month)
    try:
        with _temp_file(path) as (tmp, out):
            with _open(url, month, settings.download_timeout, deadline) as response:
                _copy(response, out, deadline, progress)
            out.close()
            validate_parquet(tmp, f"fhv_tripdata_{month} from {url}")
            os.replace(tmp, path)
    finally:
        deadline.close()


@contextmanager
def _temp_file(path: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A temp file in ``path``'s folder that is removed unless it was renamed into place."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield tmp, out
    finally:
        tmp.unlink(missing_ok=True)


def _open(url: str, month: str, timeout: float, deadline: Deadline) -> http.client.HTTPResponse:
    """The response once its headers are in: connecting and the headers count towards the deadline."""
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        return deadline.opener().open(request, timeout=deadline.timeout(timeout))
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _status_error(exc.code, url, month) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, refused, reset, timeout, cut at the deadline
        deadline.check(0)
        raise _network_error(exc, url, month) from None


def _status_error(status: int, url: str, month: str) -> Exception:
    if status in (403, 404):
        return NotPublishedError(month, f"{url} answered HTTP {status}")
    if status >= 500:
        return TransientError(f"Downloading fhv_tripdata_{month} from {url} failed with HTTP {status}, "
                              "a server error that may pass.")
    return DataError(f"Downloading fhv_tripdata_{month} from {url} failed with HTTP {status}.")


def _network_error(exc: BaseException, url: str, month: str) -> TransientError:
    return TransientError(f"Downloading fhv_tripdata_{month} from {url} failed: {_reason(exc)}.")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError):
        return "no answer within the timeout"
    return str(reason).rstrip(".") or type(reason).__name__


def _copy(response: http.client.HTTPResponse, out: BinaryIO, deadline: Deadline, progress: bool) -> None:
    """Copy the body as it arrives; raise TransientError on a stall, a reset, the deadline or a short body.

    ``read1`` returns what one read of the socket gives, so a server trickling bytes cannot keep
    a call waiting for a full chunk past the deadline.
    """
    import http.client

    url, month = deadline.url, deadline.month
    expected = _content_length(response)
    received, report = 0, DownloadLog(f"fhv_tripdata_{month}", expected)
    with _progress_bar(progress, expected, file_name(month)) as advance:
        try:
            while chunk := response.read1(CHUNK):
                out.write(chunk)
                received += len(chunk)
                advance(len(chunk))
                report.update(received)
                deadline.check(received)
        except (OSError, http.client.HTTPException) as exc:
            deadline.check(received)
            raise _network_error(exc, url, month) from None
    deadline.check(received)  # the body may have ended because the deadline cut it
    if expected is not None and received < expected:
        raise TransientError(f"Downloading fhv_tripdata_{month} from {url} stopped after {received:,} of "
                             f"{expected:,} bytes (a truncated body).")


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.strip().isdigit() else None


# --- progress -----------------------------------------------------------------------------------

def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextmanager
def _progress_bar(show: bool, total: int | None, label: str):
    """Yield ``advance(n)``: a rich progress bar on stderr when ``show``, else a no-op."""
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


class DownloadLog:
    """A log line at every tenth of a download (every 50 MB without a size): bytes, rate, time left.

    The scheduler's log and the run's history (which the dashboard shows on the running task)
    both get these lines; the CLI also draws a progress bar.
    """

    def __init__(self, label: str, total: int | None, clock=time.monotonic):
        self.label, self.total, self.clock = label, total, clock
        self.started, self.step = clock(), 0

    def update(self, received: int) -> None:
        step = received * 10 // self.total if self.total else received // UNSIZED_STEP
        if step > self.step:
            self.step = step
            log.info("%s", progress_line(self.label, received, self.total, self.clock() - self.started))


def progress_line(label: str, received: int, total: int | None, seconds: float) -> str:
    """'fhv_tripdata_2018-11: 40 % downloaded (82.4 of 206.0 MB, 11.3 MB/s, about 11 s left).'"""
    rate = received / seconds if seconds > 0 else 0.0
    speed = f"{rate / 1e6:.1f} MB/s"
    if not total:
        return f"{label}: {received / 1e6:.1f} MB downloaded ({speed})."
    left = "done" if received >= total else _time_left((total - received) / rate if rate else float("inf"))
    return (f"{label}: {100 * received // total} % downloaded ({received / 1e6:.1f} of {total / 1e6:.1f} MB, "
            f"{speed}, {left}).")


# --- reading months -----------------------------------------------------------------------------

def read_months(paths: list, labels: list[str], *, keep_trips: bool = False) -> list[features.Month]:
    """Read months at once, a thread each (pyarrow and numpy release the GIL), logging progress here.

    Only this thread logs. If a reader fails, or this thread is interrupted (a task timeout, a
    cancel), the other readers stop at their next batch.
    """
    features.tune_memory()
    events: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    logs = [ReadProgress(label) for label in labels]
    with ThreadPoolExecutor(len(paths), thread_name_prefix="read-month") as pool:
        futures = [pool.submit(features.read_month, path, label, keep_trips=keep_trips, stop=stop,
                               progress=lambda done, ends, i=i: events.put((i, done, ends)))
                   for i, (path, label) in enumerate(zip(paths, labels))]
        try:
            _relay(futures, events, logs, stop)
        finally:
            stop.set()
    return _results(futures)


def _relay(futures: list, events: queue.SimpleQueue, logs: list["ReadProgress"], stop: threading.Event) -> None:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
        if any(future.exception() for future in done):
            stop.set()
        while not events.empty():
            index, rows, ends = events.get()
            logs[index].update(rows, ends)


def _results(futures: list) -> list[features.Month]:
    errors = [f.exception() for f in futures if f.exception() and not isinstance(f.exception(), features.Stopped)]
    if errors:
        raise errors[0]
    return [future.result() for future in futures]


class ReadProgress:
    """Logs a month's reading at every tenth of its rows: row groups done out of total."""

    def __init__(self, label: str):
        self.label, self.logged = label, 0  # tenths

    def update(self, rows: int, ends: np.ndarray) -> None:
        total = int(ends[-1])
        tenths = rows * 10 // max(total, 1)
        if tenths <= self.logged:
            return
        self.logged = tenths
        groups = int(np.searchsorted(ends, rows, side="right"))
        log.info("%s: %d of %d row groups read (%s of %s rows).", self.label, groups, len(ends),
                 f"{rows:,}", f"{total:,}")


def _time_left(seconds: float) -> str:
    if seconds == float("inf"):
        return "time left unknown"
    return f"about {seconds:.0f} s left" if seconds >= 1 else "under a second left"


# --- helpers ------------------------------------------------------------------------------------

def _is_http(data_url: str) -> bool:
    return data_url.lower().startswith(("http://", "https://"))


def _expand(data_url: str) -> str:
    text = str(data_url).strip()
    return DATA_ALIASES.get(text.lower(), text)
