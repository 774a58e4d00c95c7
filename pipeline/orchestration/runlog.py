"""A flow run's log lines, written into its history while it runs (the dashboard shows them)."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
import traceback
from typing import Any, Iterator

UTC = dt.timezone.utc


class HistoryHandler(logging.Handler):
    """Writes log records emitted while a flow runs into the run's history."""

    def __init__(self, context: Any):  # a runtime.RunContext: its store, run_id and task_run_id
        super().__init__(logging.DEBUG)
        self.context = context
        self.failing = False  # the history refused a line: said once per failing streak, not per line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.levelno >= logging.ERROR:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            ts = dt.datetime.fromtimestamp(record.created, UTC)
            self.context.store.add_log(self.context.run_id, level=record.levelname, message=message,
                                       ts=ts, task_run_id=self.context.task_run_id)
            self.failing = False
        except Exception as error:  # noqa: BLE001 - logging must never break the flow
            if not self.failing:
                self.failing = True
                sys.stderr.write(f"Log lines of run {self.context.run_id[:8]} cannot be written to the history "
                                 f"for now ({error}); they still go to this output.\n")


@contextlib.contextmanager
def capture_logs(context: Any) -> Iterator[None]:
    handler = HistoryHandler(context)
    root = logging.getLogger("pipeline")
    previous = root.level
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
