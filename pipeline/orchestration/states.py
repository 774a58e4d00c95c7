"""Run states and the one place that checks transitions (rq ``JobStatus``, Prefect ``StateType``)."""
from __future__ import annotations

from enum import Enum

from ..errors import InvalidTransition


class State(str, Enum):
    SCHEDULED = "SCHEDULED"
    LATE = "LATE"
    AWAITING_RETRY = "AWAITING_RETRY"  # data not published yet: the run waits and tries again
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    NOT_RUN = "NOT_RUN"  # a task that never started because an upstream task failed

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").title()


FINAL_STATES = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.CRASHED, State.NOT_RUN})
WAITING_STATES = frozenset({State.SCHEDULED, State.LATE, State.AWAITING_RETRY})
ACTIVE_STATES = frozenset({State.PENDING, State.RUNNING})

_ALLOWED: dict[State, frozenset[State]] = {
    State.SCHEDULED: frozenset({State.PENDING, State.LATE, State.CANCELLED}),
    State.LATE: frozenset({State.PENDING, State.CANCELLED}),
    State.AWAITING_RETRY: frozenset({State.PENDING, State.LATE, State.CANCELLED, State.FAILED}),
    # PENDING -> LATE: claimed, but its scheduler died before the process began; back in the queue.
    State.PENDING: frozenset({State.RUNNING, State.LATE, State.CANCELLED, State.CRASHED, State.FAILED}),
    State.RUNNING: frozenset(
        {State.COMPLETED, State.FAILED, State.CANCELLED, State.CRASHED, State.AWAITING_RETRY}
    ),
}


def allowed_next(state: State) -> frozenset[State]:
    return _ALLOWED.get(State(state), frozenset())


def sources(new: State | str) -> tuple[str, ...]:
    """The states a run may be in to move to ``new``: the guard of the one conditional UPDATE."""
    new = State(new)
    return tuple(sorted(old.value for old, nexts in _ALLOWED.items() if new in nexts))


def check_transition(old: State | str, new: State | str) -> State:
    """Return ``new`` as a State, or raise InvalidTransition naming both states."""
    old, new = State(old), State(new)
    if new not in allowed_next(old):
        raise InvalidTransition(f"A run cannot go from {old.value} to {new.value}.")
    return new
