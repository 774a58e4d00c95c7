"""What every process that runs flows (the scheduler, a worker) is given and how it is stopped: its options,
checked when they are built, and SIGTERM/SIGINT turned into a request to stop."""
from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

from ..errors import ConfigError
from .executor import AwaitData

SHORTEST = 0.01  # seconds: the shortest interval a scheduler's or worker's loop is given


@dataclass(frozen=True)
class ProcessOptions:
    """Intervals and thresholds of a process that runs flows, in seconds (small values make tests fast)."""

    tick: float = 1.0
    heartbeat: float = 5.0
    stale_after: float = 60.0
    cancel_grace: float = 10.0
    shutdown_grace: float = 30.0
    retry_every: float = 6 * 3600.0
    give_up_after: float = 10 * 86400.0

    def __post_init__(self) -> None:
        kind = type(self).__name__.removesuffix("Options").lower() or "process"
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"The {kind} option {name}={value!r} must be a positive number of seconds.")
            if value < SHORTEST:
                raise ConfigError(f"The {kind} option {name}={value:g} s is shorter than the {SHORTEST:g} s its loop "
                                  "can honour (each pass reads the history; its jobs count whole microseconds).")
        if self.stale_after <= self.heartbeat:
            raise ConfigError(f"stale_after={self.stale_after:g} s must be longer than the heartbeat "
                              f"of {self.heartbeat:g} s, or live processes would look dead.")

    @property
    def run_heartbeat(self) -> float:
        """How often a flow process stamps its run: well inside ``stale_after``."""
        return min(5.0, self.stale_after / 4)

    @property
    def await_data(self) -> AwaitData:
        return AwaitData(self.retry_every, self.give_up_after)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
