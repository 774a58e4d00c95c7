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

# The transition tables: the one source of the state pairs the history allows. Every state change goes
# through the store's guarded UPDATE (``store/transitions.py``), which only moves a row whose state is a
# source of the new one here; tests/test_state_machine.py checks that no other SQL sets a state.
TRANSITIONS: dict[State, frozenset[State]] = {  # flow runs
    # SCHEDULED/LATE -> FAILED: a slot whose run cannot be made (its deployment's inputs are bad), told why.
    State.SCHEDULED: frozenset({State.PENDING, State.LATE, State.CANCELLED, State.FAILED}),
    State.LATE: frozenset({State.PENDING, State.CANCELLED, State.FAILED}),
    State.AWAITING_RETRY: frozenset({State.PENDING, State.LATE, State.CANCELLED, State.FAILED}),
    # PENDING -> LATE: claimed, but its scheduler died before the process began; back in the queue.
    State.PENDING: frozenset({State.RUNNING, State.LATE, State.CANCELLED, State.CRASHED, State.FAILED}),
    State.RUNNING: frozenset(
        {State.COMPLETED, State.FAILED, State.CANCELLED, State.CRASHED, State.AWAITING_RETRY}
    ),
}
TASK_TRANSITIONS: dict[State, frozenset[State]] = {  # task runs: each attempt is its own record
    # CRASHED: the last task of a run whose process died, as the dashboard draws it.
    State.RUNNING: frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.CRASHED}),
    # A task that never started is recorded NOT_RUN, then stamped with its end and why.
    State.NOT_RUN: frozenset({State.NOT_RUN}),
}
# The notification outbox: a PENDING message is sent, tried again later (PENDING, one attempt more) or FAILED.
DELIVERY_TRANSITIONS: dict[str, frozenset[str]] = {"PENDING": frozenset({"PENDING", "SENT", "FAILED"})}


def allowed_next(state: State | str, table: dict = TRANSITIONS) -> frozenset:
    return table.get(state, frozenset())


def sources(new: State | str, table: dict = TRANSITIONS) -> tuple[str, ...]:
    """The states a row may be in to move to ``new``: the guard of the one conditional UPDATE."""
    return tuple(sorted(str(old) for old, nexts in table.items() if new in nexts))


def check_transition(old: State | str, new: State | str, table: dict = TRANSITIONS, what: str = "A run") -> None:
    """Raise InvalidTransition naming both states unless the table lets ``old`` move to ``new``."""
    if new not in allowed_next(old, table):
        raise InvalidTransition(f"{what} cannot go from {old} to {new}.")
