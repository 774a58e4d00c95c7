"""The heartbeat of running flows: one thread per process stamps each run's heartbeat, so that crash
detection can tell the run lives, and tells the run when the history says its cancellation was asked for.

One thread serves every run of the process: started with the first run, it sleeps while none runs.
A thread started and stopped for each run cost a flow of quick tasks more than all its records
(0.2 to 0.4 ms on 2 cores, twice as much as its task runs). It is per process, like the logging tree,
and made again in a forked child, where the parent's thread does not run. A flow process runs one flow;
where one process runs several at once (flows in threads), a heartbeat that waits on its history delays
the others' by as long.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from ..store.interfaces import Recorder

logger = logging.getLogger("pipeline.orchestration.runtime")


@dataclass(eq=False)
class Beat:
    """One running flow's heartbeat: stamped every ``every`` seconds until the run ends (``done``)."""

    store: Recorder  # heartbeat_run(run_id, now) -> whether the run's cancel was asked, close()
    run_id: str
    clock: Any  # a Clock: now()
    every: float
    on_cancel: Callable[[], None]  # called (in the heartbeat thread) when the history asks to cancel the run
    due: float  # time.monotonic()
    failing: bool = False
    stamped: bool = False  # this thread opened a connection to ``store`` for it
    done: bool = False


class Heartbeats:
    """The process's heartbeat thread and the runs it beats for."""

    def __init__(self) -> None:
        self.beats: list[Beat] = []
        self.ended: list[Any] = []  # stores of ended runs: this thread's connection to them is closed
        self.changed = threading.Condition()
        self.wakes_at = float("inf")
        self.thread: threading.Thread | None = None

    @contextlib.contextmanager
    def beating(self, store: Recorder, run_id: str, clock: Any, every: float,
                on_cancel: Callable[[], None]) -> Iterator[Beat]:
        """Stamp the run's heartbeat every ``every`` seconds while the block runs."""
        beat = Beat(store, run_id, clock, every, on_cancel, time.monotonic() + every)
        with self.changed:
            self.beats.append(beat)
            self._start()
            if beat.due < self.wakes_at:  # else the thread wakes in time anyway: no switch to it now
                self.changed.notify()
        try:
            yield beat
        finally:
            with self.changed:  # the thread closes its connection to the store, at once if it opened one
                beat.done = True
                self.beats.remove(beat)
                self.ended.append(store)
                if beat.stamped:
                    self.changed.notify()

    def _start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        with self.changed:
            while True:
                self._close_ended()
                due = [beat for beat in self.beats if beat.due <= time.monotonic()]
                if due:
                    self.changed.release()
                    try:
                        for beat in due:
                            _stamp(beat)
                    finally:
                        self.changed.acquire()
                    continue
                self.wakes_at = min((beat.due for beat in self.beats), default=float("inf"))
                self.changed.wait(None if self.wakes_at == float("inf") else self.wakes_at - time.monotonic())
                self.wakes_at = float("inf")

    def _close_ended(self) -> None:
        """This thread's connection to the stores no run beats for any more."""
        running = {id(beat.store) for beat in self.beats}
        for store in [s for s in self.ended if id(s) not in running]:
            with contextlib.suppress(Exception):
                store.close()
        self.ended = [s for s in self.ended if id(s) in running]


def _stamp(beat: Beat) -> None:
    """One heartbeat: logged once per failing streak; the run told when its cancellation was asked for."""
    beat.due, beat.stamped = time.monotonic() + beat.every, True
    try:
        cancel = beat.store.heartbeat_run(beat.run_id, beat.clock.now())
    except Exception as error:  # noqa: BLE001 - the flow goes on; the failure is logged
        if not beat.failing:
            logger.warning("Could not record the heartbeat of run %s: %s", beat.run_id[:8], _said(error))
        beat.failing = True
        return
    if beat.failing:
        logger.info("The heartbeat of run %s is recorded again.", beat.run_id[:8])
    beat.failing = False
    if cancel and not beat.done:
        try:
            beat.on_cancel()
        except Exception:  # noqa: BLE001 - never the thread every run's heartbeat depends on
            logger.exception("Telling run %s of its cancel failed.", beat.run_id[:8])


def _said(error: BaseException) -> str:
    from .runtime import _describe  # the runtime's words for an error (it imports this module)

    return _describe(error)


_PROCESS: tuple[int, Heartbeats] | None = None


def heartbeats() -> Heartbeats:
    """This process's heartbeat thread (a new one in a forked child: the parent's thread does not run there)."""
    global _PROCESS
    if _PROCESS is None or _PROCESS[0] != os.getpid():
        _PROCESS = (os.getpid(), Heartbeats())
    return _PROCESS[1]
