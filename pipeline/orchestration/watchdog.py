"""What stops a flow whose own code will not stop: a task past its timeout, a cancel it ignores.

The flow's main thread is asked first: ``TaskTimeout`` from SIGALRM when a task's own timer runs out
(each running task keeps its own timer, nested tasks included), ``Cancelled`` from SIGTERM when its
cancellation is asked. Task code can catch those (a bare ``except:``), so a watchdog thread, outside
that code, gives it a grace period and then ends the run: it records the timeout or the cancel and
ends the process (``os._exit``). A task that swallowed its timeout and returned still fails.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..errors import Cancelled, TaskTimeout

MIN_GRACE, MAX_GRACE = 1.0, 10.0


@dataclass
class Timer:
    """One running task's timeout."""

    name: str
    seconds: float
    due: float  # time.monotonic()
    task_run_id: int | None = None
    fired: bool = False

    @property
    def grace(self) -> float:
        """How long past its timeout the task may take to stop: as long again, from 1 to 10 s."""
        return min(MAX_GRACE, max(MIN_GRACE, self.seconds))

    def error(self) -> TaskTimeout:
        error = TaskTimeout(f"The task {self.name} ran longer than its timeout of {self.seconds:g} s.")
        error.task_name = self.name  # type: ignore[attr-defined]
        return error


@dataclass(frozen=True)
class Expired:
    """Why the watchdog ends the run: the ``timer`` of a task past its timeout and grace (None: a cancel
    ignored for ``grace`` seconds), and the timers of the tasks still running, innermost first."""

    timer: Timer | None
    running: tuple[Timer, ...]
    grace: float


class Watchdog:
    """Per run, in the flow's main thread: the tasks' timers (SIGALRM), the cancel (SIGTERM), and the thread
    that calls ``end(Expired)`` once one of them is ignored past its grace (``end`` must not return)."""

    def __init__(self, end: Callable[[Expired], None], *, cancel_grace: float = 10.0):
        self.end, self.cancel_grace = end, cancel_grace
        self.timers: list[Timer] = []  # the running tasks' timers, outermost first
        self.cancel_due: float | None = None
        self.cancelled = False  # Cancelled was raised in the flow
        self.changed = threading.Condition()
        self.stopped = False
        self.busy = False
        self.saved: tuple[Any, tuple[float, float]] | None = None  # SIGALRM handler and timer before the first task
        self.thread: threading.Thread | None = None  # started with the first timer or cancel: most runs need none

    @contextlib.contextmanager
    def running(self) -> Iterator["Watchdog"]:
        """SIGTERM raises Cancelled (once) while the flow runs; the watchdog thread watches once there is a
        timer or a cancel to watch (a thread's start costs a run of quick tasks more than all its records)."""
        previous = signal.signal(signal.SIGTERM, self._on_term)
        try:
            yield self
        finally:
            with self.changed:
                self.stopped = True
                self.changed.notify()
            signal.signal(signal.SIGTERM, previous)

    def cancel_asked(self) -> None:
        """SIGTERM was sent for a cancel: the flow has ``cancel_grace`` seconds to stop."""
        with self.changed:
            if self.cancel_due is None:
                self.cancel_due = time.monotonic() + self.cancel_grace
                self._watching()
                self.changed.notify()

    @contextlib.contextmanager
    def timing(self, name: str, seconds: float, task_run_id: int | None) -> Iterator[Timer]:
        """The task's own timer while it runs: TaskTimeout when it runs out, then the grace."""
        timer = Timer(name, seconds, time.monotonic() + seconds, task_run_id)
        try:
            with self._quiet():
                self.timers.append(timer)
                self._watching()
                self._arm()
            yield timer
        finally:
            with self._quiet():
                if timer in self.timers:
                    self.timers.remove(timer)
                self._arm()

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Book-keeping under the lock the thread reads with; SIGALRM meanwhile waits (``_on_alarm``)."""
        self.busy = True
        try:
            with self.changed:
                yield
                self.changed.notify()
        finally:
            self.busy = False

    def _arm(self) -> None:
        """SIGALRM for the earliest timer that has not fired; the state before the first task when none runs."""
        if self.timers and self.saved is None:
            self.saved = (signal.signal(signal.SIGALRM, self._on_alarm), signal.setitimer(signal.ITIMER_REAL, 0))
        pending = [t.due for t in self.timers if not t.fired]
        if pending:
            signal.setitimer(signal.ITIMER_REAL, max(min(pending) - time.monotonic(), 1e-4))
        elif self.saved is not None and not self.timers:
            handler, (delay, interval) = self.saved
            self.saved = None
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, handler)
            if delay:
                signal.setitimer(signal.ITIMER_REAL, delay, interval)
        else:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _watching(self) -> None:
        """The watchdog thread, started once, under the lock."""
        if self.thread is None and not self.stopped:
            self.thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
            self.thread.start()

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self.busy:  # in the middle of the book-keeping: come back in a moment
            signal.setitimer(signal.ITIMER_REAL, 1e-3)
            return
        now = time.monotonic()
        due = [t for t in self.timers if not t.fired and t.due <= now + 1e-3]
        for timer in due:
            timer.fired = True
        self._arm()
        if due:
            raise due[0].error()  # the outermost: it covers the tasks inside it

    def _on_term(self, signum: int, frame: Any) -> None:
        if not self.cancelled:
            self.cancelled = True
            raise Cancelled()

    def _watch(self) -> None:
        with self.changed:
            while not self.stopped:
                expired, wait = self._expired(time.monotonic())
                if expired is not None:
                    self.end(expired)
                    return
                self.changed.wait(wait)

    def _expired(self, now: float) -> tuple[Expired | None, float | None]:
        """What was ignored past its grace at ``now``, else how long until the next such moment."""
        running = tuple(reversed(self.timers))
        hard = sorted(((t.due + t.grace, i, t) for i, t in enumerate(self.timers)), key=lambda h: h[:2])
        if hard and hard[0][0] <= now:
            return Expired(hard[0][2], running, hard[0][2].grace), None
        if self.cancel_due is not None and self.cancel_due <= now:
            return Expired(None, running, self.cancel_grace), None
        moments = [h[0] for h in hard] + ([self.cancel_due] if self.cancel_due is not None else [])
        return None, (min(moments) - now if moments else None)
