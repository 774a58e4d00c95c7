"""The one guarded UPDATE through which every state in the history changes: flow runs, task runs, messages.

``move`` composes ``UPDATE <table> SET state = :to, ... WHERE <which rows> AND state IN (<the states that
may move to the new one, read from the machine's transition table>)``. A row in any other state is left
as it is, and the caller learns from the rows returned (or the row count) whether it won: losing a race
is a normal outcome. No other SQL sets a state (tests/test_state_machine.py scans the code for it).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, NamedTuple

from ..orchestration.states import (ACTIVE_STATES, DELIVERY_TRANSITIONS, TASK_TRANSITIONS, TRANSITIONS, WAITING_STATES,
                                    check_transition, sources)
from .sql import in_list


@dataclass(frozen=True)
class Machine:
    """A table whose rows have a ``state``, and the transition table its states follow."""
    table: str
    what: str  # a row of it, in a sentence
    transitions: Mapping[Any, frozenset] = field(compare=False, repr=False)


FLOW_RUNS = Machine("flow_runs", "A run", TRANSITIONS)
TASK_RUNS = Machine("task_runs", "A task run", TASK_TRANSITIONS)
NOTIFICATIONS = Machine("notifications", "A message", DELIVERY_TRANSITIONS)
MACHINES = (FLOW_RUNS, TASK_RUNS, NOTIFICATIONS)


def sql_list(states: Iterable[str]) -> str:
    """States as the SQL list a read filters on: ``('PENDING', 'RUNNING')``."""
    return "(" + ", ".join(f"'{state}'" for state in sorted(map(str, states))) + ")"


WAITING = sql_list(WAITING_STATES)  # never started, due or not (or waiting to try again)
ACTIVE = sql_list(ACTIVE_STATES)  # claimed: its process starts or runs
LIVE = sql_list(WAITING_STATES | ACTIVE_STATES)


class When(NamedTuple):
    """A new state chosen per row: ``then`` where the SQL ``condition`` holds, else ``otherwise``."""
    condition: str
    then: str
    otherwise: str


class Sql(NamedTuple):
    """A value written as SQL (``attempts + 1``), with its parameters (``:name`` binds)."""
    text: str
    params: Mapping[str, Any] = MappingProxyType({})


def move(conn: Any, machine: Machine, to: str | When, *, where: str = "id = :id",
         params: Mapping[str, Any] = MappingProxyType({}), sets: Mapping[str, Any] | None = None,
         expect: Iterable[str] | None = None, returning: str | None = "*") -> Any:
    """Move the rows ``where`` selects to the state ``to``, those in a state the table lets move there.

    ``where`` and ``params``: ``:name`` binds and their values (``move`` binds ``:to``, ``:to_else``,
    ``:set_<column>`` and ``:guard_<n>`` itself). ``sets``: other columns written in the same UPDATE
    (values, or ``Sql``). ``expect``: only rows in these states (each must be allowed to move to ``to``:
    a pair the table lacks raises InvalidTransition).
    Returns the cursor: its rows with ``returning``, else its row count says how many moved.
    """
    targets = (to.then, to.otherwise) if isinstance(to, When) else (to,)
    guard = _guard(machine, tuple(str(t) for t in targets), None if expect is None else frozenset(map(str, expect)))
    state, values = _state_value(to)
    for column, value in (sets or {}).items():
        if isinstance(value, Sql):
            state += f", {column} = {value.text}"
            values.update(value.params)
        else:
            state += f", {column} = :set_{column}"
            values[f"set_{column}"] = value
    listed, states = _guard_binds(guard)
    sql = f"UPDATE {machine.table} SET state = {state} WHERE {where} AND state IN ({listed})"
    values.update(params)
    values.update(states)
    return conn.execute(sql + (f" RETURNING {returning}" if returning else ""), values)


@functools.lru_cache(maxsize=256)
def _guard_binds(guard: tuple[str, ...]) -> tuple[str, Mapping[str, str]]:
    listed, states = in_list("guard", guard)
    return listed, MappingProxyType(states)


def _state_value(to: str | When) -> tuple[str, dict[str, Any]]:
    if isinstance(to, When):
        return (f"CASE WHEN {to.condition} THEN :to ELSE :to_else END",
                {"to": str(to.then), "to_else": str(to.otherwise)})
    return ":to", {"to": str(to)}


@functools.lru_cache(maxsize=256)
def _guard(machine: Machine, targets: tuple[str, ...], expect: frozenset[str] | None) -> tuple[str, ...]:
    """The states a row may be in to move to every one of ``targets`` (and, with ``expect``, one of those)."""
    allowed = set.intersection(*(set(sources(t, machine.transitions)) for t in targets))
    if expect is None:
        return tuple(sorted(allowed))
    for old in sorted(expect):
        for new in targets:
            check_transition(old, new, machine.transitions, machine.what)
    return tuple(sorted(expect))
