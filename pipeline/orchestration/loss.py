"""When a process that runs flows must write nothing more to its history: the file deleted, replaced or
damaged (``HistoryFileLost``, ``HistoryDamaged``). Its flows are killed at once (a flow stopped by SIGTERM would
record its end) and end unrecorded, with a line saying so; a file deleted or replaced is abandoned
(``Store.abandon``) and its old log removed. A lease taken by another scheduler (``HistoryLost``) stops the
process too, but normally: that history is sound.
"""
from __future__ import annotations

import logging
import signal
from typing import Any

from ..errors import HistoryDamaged, HistoryFileLost, HistoryLost
from .executor import Exit

logger = logging.getLogger("pipeline.orchestration.scheduler")


class HistoryLoss:
    """What a ``Supervisor`` does when its history is lost (mixed in; it gives ``store``, ``executor``, ``watch``,
    ``clock``, ``fatal``, ``stopping`` and ``hurry``)."""

    store: Any
    executor: Any
    watch: Any
    clock: Any
    fatal: HistoryLost | HistoryDamaged | None

    def _lose_history(self, error: HistoryLost | HistoryDamaged) -> None:
        """Stop: the lease was taken, or the history file was deleted, replaced or damaged. In the last three
        cases nothing more is written to it: the flows are killed (a flow stopped by SIGTERM would record its
        end) and end unrecorded; a file deleted or replaced is abandoned (``Store.abandon``)."""
        if isinstance(error, HistoryDamaged) and hasattr(self.watch, "explain") and not unrecorded(self.fatal):
            error = self.watch.explain(error, self.clock.sleep)  # or a file being copied over the history
        if self.fatal is None:
            logger.error("%s", error)
        if unrecorded(error) and not unrecorded(self.fatal):
            if isinstance(error, HistoryFileLost):
                self.store.abandon(str(error))
            for run_id in self.executor.running():
                self.executor.signal(run_id, signal.SIGKILL)
        if not unrecorded(self.fatal):
            self.fatal = error
        self.stopping.set()
        self.hurry.set()

    def _damaged(self, exit_: Exit) -> None:
        """A flow process found the history damaged and ended recording nothing: say what is damaged, and stop."""
        try:
            self.store.check_damage(thorough=True)  # HistoryDamaged naming the table, or SQLite's findings
        except HistoryDamaged:
            raise
        except Exception:  # noqa: BLE001 - the check itself failed: the flow's word stands
            pass
        raise HistoryDamaged(f"The history {self.store.path} is damaged: the flow process of run {exit_.run_id[:8]} "
                             f"(pid {exit_.pid}) met a damaged page; move the file aside to start a new history, "
                             "or put back a copy.")

    def _drop_flowsunrecorded(self) -> None:
        """The history file was deleted, replaced or damaged: end the flows (killed already) without recording
        them, say so, then remove a lost file's old log so that it never reaches a new file of that name."""
        what = "damaged" if isinstance(self.fatal, HistoryDamaged) else "deleted or replaced"
        for run_id, pid in self.executor.running().items():
            logger.warning("The flow of run %s (pid %d) was stopped and not recorded: its history file was %s.",
                           run_id[:8], pid, what)
        self.executor.close()
        for log in self.store.drop_old_log():
            logger.info("Removed %s, the write-ahead log of the old history.", log)


def unrecorded(error: BaseException | None) -> bool:
    """Whether this reason to stop forbids writing to the history: its file was deleted, replaced or damaged."""
    return isinstance(error, (HistoryFileLost, HistoryDamaged))


