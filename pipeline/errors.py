"""The named exceptions of the pipeline.

Every message is one sentence that names the offending value, month or file.
The runtime catches unexpected errors at exactly one boundary (``runtime.py``).
"""
from __future__ import annotations

import sysconfig
import traceback
from pathlib import Path


class PipelineError(Exception):
    """Base class for every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """A setting, date, cron expression, time zone or interval is invalid."""


class DataError(PipelineError):
    """A data file is missing, unreadable or has the wrong shape; retrying will not help."""


class NotPublishedError(DataError):
    """The month is not published yet (HTTP 403/404 or a missing local file)."""

    def __init__(self, month: str, detail: str = "", *, path: str | None = None, first: str | None = None):
        self.month = month
        if first is not None:  # before the first month of the records: the TLC answers 404 for these too
            super().__init__(f"fhv_tripdata_{month} is not published: the FHV trip records start in {first}.")
            return
        if path is not None:
            super().__init__(f"fhv_tripdata_{month} is not in the data folder yet: there is no file {path}.")
            return
        text = f"fhv_tripdata_{month} is not published yet (TLC publishes with about two months' delay)"
        super().__init__(f"{text}; {detail}." if detail else f"{text}.")


class TransientError(PipelineError):
    """A failure that may go away on retry: HTTP 5xx, a reset connection, a timeout."""


class TaskTimeout(BaseException):
    """A task ran longer than its timeout.

    A BaseException, like ``Cancelled``: task code that catches ``Exception`` (a logging
    handler, a retry loop) cannot swallow it; the runtime records the task as FAILED.
    """


class InvalidTransition(PipelineError):
    """A state change that the state machine does not allow."""


class NeedsConfirmation(InvalidTransition):
    """A change a person may make but must confirm (promoting a version older than the champion)."""


class NotFound(PipelineError):
    """A run, deployment or work queue that does not exist."""


class SchedulerLocked(PipelineError):
    """Another scheduler already holds the history."""


class StorageError(PipelineError):
    """The history file cannot be used: corrupt, truncated, read-only, disk full, I/O error, newer schema."""


class HistoryDamaged(StorageError):
    """The history file is damaged (a corrupt page, a table gone): a process serving it stops, recording nothing."""


class HistoryUnreachable(StorageError):
    """The history's PostgreSQL server cannot be reached (a restart, a failover, a cut network): a scheduler
    or worker waits for it to come back."""


class HistoryLost(PipelineError):
    """The history file was deleted or replaced under a running scheduler, or its lease was taken."""


class HistoryFileLost(HistoryLost):
    """The history file was deleted or replaced under this process: nothing more may be written to it."""


class Cancelled(BaseException):
    """Raised inside a running flow when its cancellation was requested (SIGTERM).

    A BaseException so that ``except Exception`` in task code cannot swallow it.
    """


def user_line(error: BaseException) -> str:
    """`` (line 12 of homework.py)``: where the user's code raised ``error`` (not a library's line), or ''."""
    libraries = {Path(p).resolve() for p in (sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"))}
    libraries.add(Path(__file__).resolve().parent)  # the ``pipeline`` package
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<")
              and not any(Path(f.filename).resolve().is_relative_to(folder) for folder in libraries)]
    return f" (line {frames[-1].lineno} of {Path(frames[-1].filename).name})" if frames else ""


_PACKAGES = {"sklearn": "scikit-learn", "dotenv": "python-dotenv", "yaml": "pyyaml", "PIL": "pillow"}  # module: package


def package_of(module: str | None) -> str:
    """What to ``pip install`` for a missing ``module`` (``sklearn.metrics``: scikit-learn)."""
    top = (module or "?").split(".")[0]
    return _PACKAGES.get(top, top)
