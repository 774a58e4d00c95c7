"""One state machine: every state change is the store's one guarded UPDATE (``store/transitions.py::move``),
driven by the transition tables of ``orchestration/states.py``; no other SQL sets a state."""
from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import pytest

from pipeline.errors import InvalidTransition
from pipeline.orchestration import states
from pipeline.orchestration.states import State
from pipeline.store import Store, to_db
from pipeline.store import transitions
from pipeline.store.transitions import FLOW_RUNS, MACHINES, NOTIFICATIONS, TASK_RUNS, move

ROOT = Path(__file__).resolve().parents[1]
THE_ONE = ROOT / "pipeline" / "store" / "transitions.py"
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
STATEFUL = re.compile(rf"\b({'|'.join(m.table for m in MACHINES)})\b")
SET_CLAUSE = re.compile(r"\bSET\b(.*?)(?=\bWHERE\b|\bRETURNING\b|$)", re.S | re.I)
FIELD = "\ufffc"  # an f-string's field: columns assigned there cannot be seen by reading the code
ASSIGNS_STATE = re.compile(rf"(?<![\w.])state\s*=|{FIELD}", re.I)


# -- (a) no SQL but the one function sets a state ------------------------------------------------
def sets_a_state(sql: str) -> bool:
    """Whether this SQL text sets ``state`` on a table with states (or assigns columns there unseen)."""
    return any(re.search(r"\bUPDATE\b", statement, re.I) and STATEFUL.search(statement)
               and any(ASSIGNS_STATE.search(clause) for clause in SET_CLAUSE.findall(statement))
               for statement in sql.split(";"))


def strings_of(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module with its line, an f-string's fields shown as FIELD."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else FIELD for v in node.values)
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def sources_to_scan() -> list[Path]:
    return sorted(p for folder in ("pipeline", "bench") for p in (ROOT / folder).rglob("*.py") if p != THE_ONE)


def test_no_sql_but_the_one_guarded_update_sets_a_state():
    offenders = {f"{path.relative_to(ROOT)}:{line}" for path in sources_to_scan()
                 for line, text in strings_of(path) if sets_a_state(text)}
    assert offenders == set(), "SQL outside store/transitions.py sets a state: " + ", ".join(sorted(offenders))


def test_the_scan_reads_the_stores_sql_and_sees_a_state_set_by_hand():
    updates = [text for path in sources_to_scan() if path.parent.name == "store"
               for _, text in strings_of(path) if re.search(r"UPDATE (flow_runs|notifications)", text)]
    assert len(updates) >= 6  # the scan is looking at the store's SQL, not at nothing
    assert sets_a_state("UPDATE flow_runs SET state = 'RUNNING', pid = :pid WHERE id = :id AND state = 'PENDING'")
    assert sets_a_state("UPDATE flow_runs SET claimed_by = NULL,\n state = CASE WHEN x THEN 'LATE' END WHERE id = :id")
    assert sets_a_state(f"UPDATE task_runs SET {FIELD} WHERE id = :id")
    assert not sets_a_state("UPDATE flow_runs SET fields = json_patch('{}', :fields) WHERE id = :id")
    assert sets_a_state("SELECT 1; UPDATE notifications SET attempts = 1, state = :state WHERE id = :id")
    assert not sets_a_state("UPDATE flow_runs SET state_message = :message WHERE id = :id AND state = 'CANCELLED'")
    assert not sets_a_state("UPDATE deployments SET active = 0, state = 'x' WHERE id = :id")


# -- (b) every pair of the tables moves, every other pair is refused, on both backends -------------
def _rows(store: Store, machine, old: str) -> str | int:
    """A row of ``machine`` in state ``old`` (what the code under test would have made)."""
    run_id = store.create_run(flow="fhv-duration-training", name="brave-run", state=old if machine is FLOW_RUNS
                              else State.RUNNING, now=T0)
    if machine is FLOW_RUNS:
        return run_id
    if machine is TASK_RUNS:
        return store.create_task_run(run_id, "read_data", position=0, attempt=1, state=old, now=T0)
    with store.atomic() as conn:
        return conn.execute(
            "INSERT INTO notifications (event, subject, run_id, target_key, target, title, body, level, state, "
            "next_attempt_at, created_at) VALUES ('run.failed', :subject, :run_id, 'k', 't', 'x', 'x', 'error', "
            ":state, :now, :now) RETURNING id",
            {"subject": f"{run_id}:{old}", "run_id": run_id, "state": old, "now": to_db(T0)}).fetchone()[0]


def _states(machine) -> list[str]:
    return list(states.DELIVERY_TRANSITIONS) + ["SENT", "FAILED"] if machine is NOTIFICATIONS else list(State)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.table)
def test_every_pair_of_the_table_moves_and_every_other_pair_is_refused(location, machine):
    store = Store(location)
    pairs = [(old, new) for old in _states(machine) for new in _states(machine)]
    rows = [_rows(store, machine, old) for old, _ in pairs]
    with store.atomic() as conn:
        won = [move(conn, machine, new, params={"id": row}, returning="state").fetchone() for (_, new), row in
               zip(pairs, rows)]
    moved = {(str(old), str(new)) for (old, new), row in zip(pairs, won) if row is not None}
    table = {(str(old), str(new)) for old, nexts in machine.transitions.items() for new in nexts}
    assert moved == table
    assert all(row[0] == str(new) for (_, new), row in zip(pairs, won) if row is not None)
    left = [store.conn.execute(f"SELECT state FROM {machine.table} WHERE id = :id", {"id": row}).fetchone()[0]
            for (old, new), row in zip(pairs, rows) if (str(old), str(new)) not in table]
    assert left == [str(old) for old, new in pairs if (str(old), str(new)) not in table]
    store.close()


def test_a_path_that_expects_a_pair_the_table_lacks_is_told_so(store):
    run_id = store.create_run(flow="fhv-duration-training", name="brave-run", state=State.COMPLETED, now=T0)
    with pytest.raises(InvalidTransition, match="A run cannot go from COMPLETED to RUNNING"):
        store.transition(run_id, State.RUNNING, now=T0, expect=(State.COMPLETED,))
    assert store.get_run(run_id)["state"] == "COMPLETED"


@pytest.mark.parametrize("old, new, path", [
    (State.PENDING, State.RUNNING, lambda s, r: s.start_run(r, now=T0, pid=1)),
    (State.SCHEDULED, State.PENDING, lambda s, r: s.claim_due_run(now=T0, work_queue="default", claimer="me")),
    (State.PENDING, State.LATE, lambda s, r: s.requeue_unstarted(r, reason="its scheduler stopped", now=T0)),
    (State.SCHEDULED, State.CANCELLED, lambda s, r: s.request_cancel(r, now=T0)),
    (State.SCHEDULED, State.LATE, lambda s, r: s.mark_late(r, "no scheduler", T0)),
    (State.PENDING, State.CRASHED, lambda s, r: s.end_dead_run(r, message="gone", now=T0)[0]),
])
def test_every_path_of_the_store_takes_its_pair_from_the_table(location, monkeypatch, old, new, path):
    store = Store(location)
    run_id = store.create_run(flow="fhv-duration-training", name="brave-run", state=old, now=T0,
                              scheduled_time=T0, work_queue="default")
    monkeypatch.setitem(states.TRANSITIONS, old, states.TRANSITIONS[old] - {new})
    transitions._guard.cache_clear()
    try:
        with pytest.raises(InvalidTransition, match=f"from {old} to {new}"):
            path(store, run_id)
    finally:
        monkeypatch.undo()
        transitions._guard.cache_clear()
    assert store.get_run(run_id)["state"] == old
    assert path(store, run_id)["state"] == new
    store.close()
