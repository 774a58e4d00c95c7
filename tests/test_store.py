import datetime as dt
import hashlib
import sqlite3
import threading

import pytest

from pipeline.errors import InvalidTransition, NotFound
from pipeline.orchestration.states import State
from pipeline.store import MIGRATIONS, Store, from_db, to_db

try:
    from psycopg.errors import ReadOnlySqlTransaction
except ImportError:  # without psycopg only the SQLite half runs
    ReadOnlySqlTransaction = sqlite3.OperationalError

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)


def make_run(store, state=State.SCHEDULED, when=T0, **fields):
    fields.setdefault("work_queue", "default")
    return store.create_run(flow="fhv-duration-training", name="perky-eel", state=state, now=T0,
                            parameters={"date": "2021-08-15"}, scheduled_time=when, run_date="2021-08-15",
                            train_month="2021-06", val_month="2021-07", **fields)


@pytest.fixture
def store(location):
    """The contract suite: each test below that takes ``store`` or ``location`` runs on both backends."""
    history = Store(location)
    yield history
    history.close()


def test_a_committed_run_survives_reopening_the_file(location):
    first = Store(location)
    run_id = make_run(first)
    first.close()
    again = Store(location)
    assert again.get_run(run_id)["parameters"] == {"date": "2021-08-15"}


def test_the_history_uses_wal_busy_timeout_and_foreign_keys(tmp_path):
    store = Store(tmp_path / "h.db")
    make_run(store)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert (tmp_path / "h.db-wal").exists()


def test_migrations_apply_in_order_on_an_empty_file(location):
    store = Store(location)
    assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
    assert store.migrate() == []


def test_migrating_from_the_previous_schema_keeps_the_runs(location):
    old = Store(location, migrate=False)
    old.migrate(upto=len(MIGRATIONS) - 1)
    old.conn.execute("INSERT INTO flow_runs (id, name, flow, state, created_at) "
                     "VALUES ('r1', 'old-run', 'f', 'COMPLETED', '2021-01-01T00:00:00.000000Z')")
    old.close()
    new = Store(location)
    assert new.applied_migrations()[-1] == MIGRATIONS[-1][0]
    assert new.get_run("r1")["name"] == "old-run"
    assert new.integrity_check() == "ok"


def test_a_failed_transaction_rolls_back_everything(store):
    with pytest.raises(RuntimeError):
        with store.atomic() as conn:
            conn.execute("INSERT INTO flow_runs (id, name, flow, state, created_at) VALUES ('x', 'n', 'f', 'PENDING', 't')")
            raise RuntimeError("boom")
    with pytest.raises(NotFound):
        store.get_run("x")


def test_deleting_a_run_removes_its_tasks_logs_and_artifacts(store):
    run_id = make_run(store, State.PENDING)
    task_run = store.create_task_run(run_id, "read_data", position=0, attempt=1, state=State.RUNNING, now=T0)
    store.add_log(run_id, level="INFO", message="hello", ts=T0, task_run_id=task_run)
    store.add_artifact(run_id, name="m", path="/p", sha256="0" * 64, size=1, now=T0)
    with store.atomic() as conn:
        conn.execute("DELETE FROM flow_runs WHERE id = ?", (run_id,))
    counts = [store.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("task_runs", "logs", "artifacts")]
    assert counts == [0, 0, 0]


@pytest.mark.parametrize("old, new", [
    (State.COMPLETED, State.RUNNING), (State.SCHEDULED, State.COMPLETED), (State.FAILED, State.PENDING),
])
def test_an_invalid_transition_loses_quietly_and_changes_nothing(store, old, new):
    run_id = make_run(store, old)
    assert store.transition(run_id, new, now=T0) is None
    assert store.get_run(run_id)["state"] == old.value


def test_of_two_racing_state_changes_exactly_one_wins(location):
    """A cancel against a start, from two connections: the conditional UPDATE decides."""
    path = location
    seed = Store(path)
    run_id = make_run(seed, State.PENDING)
    results = {}

    def change(name, new):
        mine = Store(path)
        results[name] = mine.transition(run_id, new, now=T0, expect=(State.PENDING,))
        mine.close()

    threads = [threading.Thread(target=change, args=(n, s)) for n, s in (("start", State.RUNNING),
                                                                         ("cancel", State.CANCELLED))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, row in results.items() if row is not None]
    assert len(winners) == 1
    assert seed.get_run(run_id)["state"] == {"start": "RUNNING", "cancel": "CANCELLED"}[winners[0]]


def test_a_final_transition_stamps_the_end_time(store):
    run_id = make_run(store, State.PENDING)
    store.start_run(run_id, now=T0, pid=123)
    run = store.transition(run_id, State.COMPLETED, now=T0 + dt.timedelta(seconds=3), metrics={"val_rmse": 1.5})
    assert from_db(run["ended_at"]) - from_db(run["started_at"]) == dt.timedelta(seconds=3)
    assert run["metrics"] == {"val_rmse": 1.5}


def test_only_due_runs_are_claimed_oldest_first(store):
    late = make_run(store, when=T0 - dt.timedelta(hours=1))
    make_run(store, when=T0)
    make_run(store, when=T0 + dt.timedelta(hours=1))
    first = store.claim_due_run(now=T0, work_queue="default", claimer="s1")
    second = store.claim_due_run(now=T0, work_queue="default", claimer="s1")
    assert first["id"] == late and first["state"] == "PENDING" and first["claimed_by"] == "s1"
    assert second is not None
    assert store.claim_due_run(now=T0, work_queue="default", claimer="s1") is None


def test_two_claimers_racing_never_claim_the_same_run(location):
    path = location
    seed = Store(path)
    for _ in range(40):
        make_run(seed)
    claimed: list[str] = []

    def claimer(name):
        mine = Store(path)
        while (run := mine.claim_due_run(now=T0, work_queue="default", claimer=name)) is not None:
            claimed.append(run["id"])
        mine.close()

    threads = [threading.Thread(target=claimer, args=(f"s{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_a_scheduled_slot_is_inserted_once(store):
    slot = {"flow": "f", "name": "a", "deployment_id": None, "schedule_fingerprint": "fp",
            "scheduled_time": T0, "work_queue": "default"}
    store.conn.execute("INSERT INTO deployments (id, name, flow, created_at, updated_at) VALUES (1, 'd', 'f', 't', 't')")
    slot["deployment_id"] = 1
    assert store.insert_scheduled_runs([slot, dict(slot, name="b")], now=T0) == 1
    assert store.insert_scheduled_runs([dict(slot, name="c")], now=T0) == 0
    assert store.count_runs() == 1


def test_cancelling_a_waiting_run_is_immediate_and_a_running_one_is_requested(store):
    waiting = make_run(store)
    running = make_run(store, State.PENDING)
    assert store.request_cancel(waiting, now=T0)["state"] == "CANCELLED"
    assert store.request_cancel(running, now=T0)["cancel_requested"] == 1
    with pytest.raises(InvalidTransition):
        store.request_cancel(waiting, now=T0)


def test_runs_are_found_by_id_prefix_or_name(store):
    run_id = make_run(store)
    assert store.get_run(run_id[:8])["id"] == run_id
    assert store.get_run("perky-eel")["id"] == run_id
    with pytest.raises(NotFound, match="'nope' matches no run"):
        store.get_run("nope")


def test_run_filters_combine_state_time_and_search(store):
    make_run(store, State.SCHEDULED, when=T0)
    make_run(store, State.SCHEDULED, when=T0 + dt.timedelta(days=2))
    assert store.count_runs(states=["SCHEDULED"], since=T0 + dt.timedelta(days=1)) == 1
    assert store.count_runs(search="perky") == 2
    assert store.count_runs(states=["FAILED"]) == 0
    assert store.count_by_state() == {"SCHEDULED": 2}


def test_a_read_only_store_cannot_write(location):
    Store(location).close()
    reader = Store(location, readonly=True)
    with pytest.raises((sqlite3.OperationalError, ReadOnlySqlTransaction)):
        make_run(reader)
    reader.close()


def test_times_are_stored_as_sortable_utc_text():
    moment = dt.datetime(2026, 3, 8, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    assert to_db(moment) == "2026-03-08T07:00:00.000000Z"
    assert from_db(to_db(moment)) == moment
    with pytest.raises(ValueError, match="naive"):
        to_db(dt.datetime(2026, 1, 1))


def test_an_artifact_is_kept_in_the_history_and_read_from_it_when_the_local_file_is_gone(store, tmp_path):
    run_id = make_run(store, State.PENDING)
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00weights\xff" * 100)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    store.add_artifact(run_id, name="model.bin", path=str(path), sha256=sha, size=1000, now=T0, data=path.read_bytes())
    store.add_artifact(run_id, name="again.bin", path=str(path), sha256=sha, size=1000, now=T0, data=path.read_bytes())
    artifacts = store.artifacts(run_id)
    assert [a["stored"] for a in artifacts] == [1, 1]
    assert store.conn.execute("SELECT COUNT(*) FROM artifact_blobs").fetchone()[0] == 1  # the same bytes once
    path.unlink()
    assert store.read_artifact(artifacts[0]) == b"\x00weights\xff" * 100


def test_artifact_bytes_must_match_their_sha256_and_a_missing_artifact_is_named(store, tmp_path):
    run_id = make_run(store, State.PENDING)
    with pytest.raises(ValueError, match="not the recorded " + "0" * 64):
        store.add_artifact(run_id, name="m", path="/nowhere/m", sha256="0" * 64, size=3, now=T0, data=b"abc")
    assert store.artifacts(run_id) == []  # the row went with the refused bytes
    store.add_artifact(run_id, name="m", path=str(tmp_path / "gone"), sha256="0" * 64, size=3, now=T0)
    with pytest.raises(NotFound, match="The artifact m \\(000000000000\\) is neither at"):
        store.read_artifact(store.artifacts(run_id)[0])


def test_the_change_mark_moves_with_every_commit(store):
    """The dashboard's cache key: a read stays cached until the history changes."""
    before = store.change_mark()
    assert store.change_mark() == before
    make_run(store)
    assert store.change_mark() != before


def test_two_processes_registering_a_new_deployment_at_once_make_it_once(location):
    Store(location).close()
    errors, barrier = [], threading.Barrier(4)

    def register():
        mine = Store(location)
        try:
            barrier.wait()
            mine.upsert_deployment({"name": "nightly", "flow": "f", "work_queue": "default"}, now=T0)
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)
        finally:
            mine.close()

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [d["name"] for d in Store(location).deployments()] == ["nightly"]
