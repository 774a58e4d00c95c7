"""The store's contract: the tests every backend of the history passes, written once.

``StoreContract`` holds them; each backend subclasses it and gives the ``location`` fixture (where a fresh,
empty history of that backend is) and, for another class than ``Store``, ``open``: ``TestSQLiteStore`` in
test_store.py, ``TestPostgresStore`` in test_postgres.py. As huey's ``StorageTests`` and dagster's
``TestRunStorage`` do, a third backend implements ``pipeline.store.interfaces.History`` and adds one subclass;
nothing picks tests by name. (The file is not named test_*.py, so pytest collects only the subclasses.)
"""
from __future__ import annotations

import datetime as dt
import hashlib
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import InvalidTransition, NotFound
from pipeline.orchestration import catchup, control
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.enqueue import trigger_run
from pipeline.orchestration.states import TRANSITIONS, State
from pipeline.store import MIGRATIONS, Store, from_db
from pipeline.training import champion
from pipeline.training.flow import FLOW_NAME
from tests.fakes import FakeExecutor
from tests.test_champion_rule import finishing
from tests.test_notify import ended
from tests.test_scheduler import HOUR, StopAfter, at, hourly, make, orphan, runs_of, slot_times, started, ticks, walk

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
NOW = dt.datetime(2026, 2, 1, tzinfo=UTC)  # the model registry's and the outbox's tests
D = dt.date
SCHEDULER_T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)  # the scheduler tests' clock starts there (``FakeClock``)


def make_run(store, state=State.SCHEDULED, when=T0, **fields):
    fields.setdefault("work_queue", "default")
    return store.create_run(flow="fhv-duration-training", name="perky-eel", state=state, now=T0,
                            parameters={"date": "2021-08-15"}, scheduled_time=when, run_date="2021-08-15",
                            train_month="2021-06", val_month="2021-07", **fields)


class StoreContract:
    """The backend-independent tests of the history. A subclass per backend gives ``location``."""

    read_only_errors: tuple[type[BaseException], ...] = ()  # what writing through a read-only store raises

    @pytest.fixture
    def location(self) -> Path | str:
        raise NotImplementedError("a backend's subclass gives the location of a fresh, empty history")

    def open(self, location: Path | str, **options: Any) -> Store:
        """A store on ``location`` (a backend of another class than ``Store`` overrides this)."""
        return Store(location, **options)

    @pytest.fixture
    def store(self, location):
        history = self.open(location)
        yield history
        history.close()

    # -- transactions, migrations and durability -----------------------------------------------------------------------
    def test_a_committed_run_survives_reopening_the_file(self, location):
        first = self.open(location)
        run_id = make_run(first)
        first.close()
        again = self.open(location)
        assert again.get_run(run_id)["parameters"] == {"date": "2021-08-15"}

    def test_migrations_apply_in_order_on_an_empty_file(self, location):
        store = self.open(location)
        assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
        assert store.migrate() == []

    def test_migrating_from_the_previous_schema_keeps_the_runs(self, location):
        old = self.open(location, migrate=False)
        old.migrate(upto=len(MIGRATIONS) - 1)
        old.conn.execute("INSERT INTO flow_runs (id, name, flow, state, created_at) "
                         "VALUES ('r1', 'old-run', 'f', 'COMPLETED', '2021-01-01T00:00:00.000000Z')", {})
        old.close()
        new = self.open(location)
        assert new.applied_migrations()[-1] == MIGRATIONS[-1][0]
        assert new.get_run("r1")["name"] == "old-run"
        assert new.integrity_check() == "ok"

    def test_a_failed_transaction_rolls_back_everything(self, store):
        with pytest.raises(RuntimeError):
            with store.atomic() as conn:
                conn.execute("INSERT INTO flow_runs (id, name, flow, state, created_at) "
                             "VALUES ('x', 'n', 'f', 'PENDING', 't')", {})
                raise RuntimeError("boom")
        with pytest.raises(NotFound):
            store.get_run("x")

    def test_deleting_a_run_removes_its_tasks_logs_and_artifacts(self, store):
        run_id = make_run(store, State.PENDING)
        task_run = store.create_task_run(run_id, "read_data", position=0, attempt=1, state=State.RUNNING, now=T0)
        store.add_log(run_id, level="INFO", message="hello", ts=T0, task_run_id=task_run)
        store.add_artifact(run_id, name="m", path="/p", sha256="0" * 64, size=1, now=T0)
        with store.atomic() as conn:
            conn.execute("DELETE FROM flow_runs WHERE id = :id", {"id": run_id})
        counts = [store.conn.execute(f"SELECT COUNT(*) FROM {t}", {}).fetchone()[0]
                  for t in ("task_runs", "logs", "artifacts")]
        assert counts == [0, 0, 0]

    # -- state changes and claims --------------------------------------------------------------------------------------
    @pytest.mark.parametrize("old, new", [
        (State.COMPLETED, State.RUNNING), (State.SCHEDULED, State.COMPLETED), (State.FAILED, State.PENDING),
    ])
    def test_an_invalid_transition_loses_quietly_and_changes_nothing(self, store, old, new):
        run_id = make_run(store, old)
        assert store.transition(run_id, new, now=T0) is None
        assert store.get_run(run_id)["state"] == old.value

    def test_every_pair_of_the_transition_table_moves_a_run_and_no_other_pair_does(self, store):
        runs = {(old, new): make_run(store, old) for old in State for new in State}
        moved = {pair for pair, run_id in runs.items() if store.transition(run_id, pair[1], now=T0) is not None}
        assert moved == {(old, new) for old, nexts in TRANSITIONS.items() for new in nexts}
        assert all(store.get_run(run_id)["state"] == (new if (old, new) in moved else old)
                   for (old, new), run_id in runs.items())

    def test_of_two_racing_state_changes_exactly_one_wins(self, location):
        """A cancel against a start, from two connections: the conditional UPDATE decides."""
        path = location
        seed = self.open(path)
        run_id = make_run(seed, State.PENDING)
        results = {}

        def change(name, new):
            mine = self.open(path)
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

    def test_a_final_transition_stamps_the_end_time(self, store):
        run_id = make_run(store, State.PENDING)
        store.start_run(run_id, now=T0, pid=123)
        run = store.transition(run_id, State.COMPLETED, now=T0 + dt.timedelta(seconds=3), metrics={"val_rmse": 1.5})
        assert from_db(run["ended_at"]) - from_db(run["started_at"]) == dt.timedelta(seconds=3)
        assert run["metrics"] == {"val_rmse": 1.5}

    def test_only_due_runs_are_claimed_oldest_first(self, store):
        late = make_run(store, when=T0 - dt.timedelta(hours=1))
        make_run(store, when=T0)
        make_run(store, when=T0 + dt.timedelta(hours=1))
        first = store.claim_due_run(now=T0, work_queue="default", claimer="s1")
        second = store.claim_due_run(now=T0, work_queue="default", claimer="s1")
        assert first["id"] == late and first["state"] == "PENDING" and first["claimed_by"] == "s1"
        assert second is not None
        assert store.claim_due_run(now=T0, work_queue="default", claimer="s1") is None

    def test_two_claimers_racing_never_claim_the_same_run(self, location):
        path = location
        seed = self.open(path)
        for _ in range(40):
            make_run(seed)
        claimed: list[str] = []

        def claimer(name):
            mine = self.open(path)
            while (run := mine.claim_due_run(now=T0, work_queue="default", claimer=name)) is not None:
                claimed.append(run["id"])
            mine.close()

        threads = [threading.Thread(target=claimer, args=(f"s{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(claimed) == 40 and len(set(claimed)) == 40

    def test_a_scheduled_slot_is_inserted_once(self, store):
        slot = {"flow": "f", "name": "a", "deployment_id": None, "schedule_fingerprint": "fp",
                "scheduled_time": T0, "work_queue": "default"}
        store.conn.execute("INSERT INTO deployments (id, name, flow, created_at, updated_at) "
                           "VALUES (1, 'd', 'f', 't', 't')", {})
        slot["deployment_id"] = 1
        assert store.insert_scheduled_runs([slot, dict(slot, name="b")], now=T0) == 1
        assert store.insert_scheduled_runs([dict(slot, name="c")], now=T0) == 0
        assert store.count_runs() == 1

    def test_cancelling_a_waiting_run_is_immediate_and_a_running_one_is_requested(self, store):
        waiting = make_run(store)
        running = make_run(store, State.PENDING)
        assert store.request_cancel(waiting, now=T0)["state"] == "CANCELLED"
        assert store.request_cancel(running, now=T0)["cancel_requested"] == 1
        with pytest.raises(InvalidTransition):
            store.request_cancel(waiting, now=T0)

    # -- reads, artifacts, the cache key, deployments ------------------------------------------------------------------
    def test_runs_are_found_by_id_prefix_or_name(self, store):
        run_id = make_run(store)
        assert store.get_run(run_id[:8])["id"] == run_id
        assert store.get_run("perky-eel")["id"] == run_id
        with pytest.raises(NotFound, match="'nope' matches no run"):
            store.get_run("nope")

    def test_run_filters_combine_state_time_and_search(self, store):
        make_run(store, State.SCHEDULED, when=T0)
        make_run(store, State.SCHEDULED, when=T0 + dt.timedelta(days=2))
        assert store.count_runs(states=["SCHEDULED"], since=T0 + dt.timedelta(days=1)) == 1
        assert store.count_runs(search="perky") == 2
        assert store.count_runs(states=["FAILED"]) == 0
        assert store.count_by_state() == {"SCHEDULED": 2}

    def test_the_runs_of_one_flow_are_listed_without_another_flows(self, store):
        training = make_run(store, State.SCHEDULED, when=T0)
        other = store.create_run(flow="fhv-other", name="other-owl", state=State.SCHEDULED, now=T0, scheduled_time=T0,
                                 run_date="2021-08-15", work_queue="default")
        assert [r["id"] for r in store.runs(flow="fhv-other", states=["SCHEDULED"])] == [other]
        assert [r["id"] for r in store.runs(flow=FLOW_NAME)] == [training]
        assert {r["id"] for r in store.runs()} == {training, other}

    def test_a_read_only_store_cannot_write(self, location):
        self.open(location).close()
        reader = self.open(location, readonly=True)
        with pytest.raises(self.read_only_errors):
            make_run(reader)
        reader.close()

    def test_an_artifact_is_kept_in_the_history_and_read_from_it_when_the_local_file_is_gone(self, store, tmp_path):
        run_id = make_run(store, State.PENDING)
        path = tmp_path / "model.bin"
        path.write_bytes(b"\x00weights\xff" * 100)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        for name in ("model.bin", "again.bin"):
            store.add_artifact(run_id, name=name, path=str(path), sha256=sha, size=1000, now=T0, data=path.read_bytes())
        artifacts = store.artifacts(run_id)
        assert [a["stored"] for a in artifacts] == [1, 1]
        assert store.conn.execute("SELECT COUNT(*) FROM artifact_blobs", {}).fetchone()[0] == 1  # the same bytes once
        path.unlink()
        assert store.read_artifact(artifacts[0]) == b"\x00weights\xff" * 100

    def test_artifact_bytes_must_match_their_sha256_and_a_missing_artifact_is_named(self, store, tmp_path):
        run_id = make_run(store, State.PENDING)
        with pytest.raises(ValueError, match="not the recorded " + "0" * 64):
            store.add_artifact(run_id, name="m", path="/nowhere/m", sha256="0" * 64, size=3, now=T0, data=b"abc")
        assert store.artifacts(run_id) == []  # the row went with the refused bytes
        store.add_artifact(run_id, name="m", path=str(tmp_path / "gone"), sha256="0" * 64, size=3, now=T0)
        with pytest.raises(NotFound, match="The artifact m \\(000000000000\\) is neither at"):
            store.read_artifact(store.artifacts(run_id)[0])

    def test_the_change_mark_moves_with_every_commit(self, store):
        """The dashboard's cache key: a read stays cached until the history changes."""
        before = store.change_mark()
        assert store.change_mark() == before
        make_run(store)
        assert store.change_mark() != before

    def test_two_processes_registering_a_new_deployment_at_once_make_it_once(self, location):
        self.open(location).close()
        errors, barrier = [], threading.Barrier(4)

        def register():
            mine = self.open(location)
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
        assert [d["name"] for d in self.open(location).deployments()] == ["nightly"]

    # -- a backfill against a trigger ----------------------------------------------------------------------------------
    def test_a_trigger_between_a_backfills_preview_and_its_confirm_takes_its_date_once(self, location, settings):
        store = self.open(location)
        now = dt.datetime.now(UTC)
        plan = control.plan_backfill(store, settings, deployment=None, start=D(2025, 1, 1), end=D(2025, 3, 31), now=now)
        control.trigger(store, settings, deployment=None, date=D(2025, 2, 15), now=now)
        done = control.backfill(store, settings, plan, now=now)
        assert done.taken == [D(2025, 2, 15)] and [r["run_date"] for r in done.runs] == ["2025-01-15", "2025-03-15"]
        asked = [r["run_date"] for r in store.runs(limit=100) if r["trigger"] != "schedule"]
        assert sorted(asked) == ["2025-01-15", "2025-02-15", "2025-03-15"]
        store.close()

    # -- the model registry --------------------------------------------------------------------------------------------
    def test_the_champion_follows_its_events_and_a_blocked_run_keeps_its_checks(self, location):
        store, now = self.open(location), dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
        a, b = (store.create_run(flow=FLOW_NAME, name=name, state=State.COMPLETED, now=now, metrics={"val_rmse": 1.0})
                for name in ("a", "b"))
        assert store.champion(FLOW_NAME) is None and store.last_model_seq(FLOW_NAME) == 0
        first = store.record_model_event(flow=FLOW_NAME, run_id=a, action="promoted", actor="pipeline", reason="r.",
                                         now=now, after_seq=0, undo_to=None)
        assert store.record_model_event(flow=FLOW_NAME, run_id=b, action="promoted", actor="pipeline", reason="r.",
                                        now=now, after_seq=0, undo_to=None) is None
        store.record_model_event(flow=FLOW_NAME, run_id=b, action="manual", actor="ann", reason="r.", now=now,
                                 after_seq=1, undo_to=first)
        assert store.champion(FLOW_NAME)["id"] == b and store.champion(FLOW_NAME)["metrics"] == {"val_rmse": 1.0}
        events = store.promotion_events(after_id=first)
        assert [(e["run_id"], e["action"], e["actor"], e["at"], e["undo_to"]) for e in events] == \
            [(b, "manual", "ann", now, first)]
        blocked = store.create_run(flow=FLOW_NAME, name="c", state=State.FAILED, now=now, error_task="check_data")
        checks = {"data": {"train": {"rows_kept": 5}}, "drift": {"val_vs_train": None}}
        assert store.keep_blocked_checks(blocked, checks, task="check_data")
        assert not store.keep_blocked_checks(a, checks, task="check_data")
        assert store.get_run(blocked)["metrics"] == checks and store.get_run(a)["metrics"] == {"val_rmse": 1.0}
        store.close()

    def test_two_runs_deciding_together_end_as_if_one_had_finished_first(self, location):
        """The newer run decided (its event waits for its run to complete); a backfill deciding before it completes
        is judged against it, not against the champion of before (there is none here: it would have been first)."""
        store = self.open(location)
        newer = finishing(store, "newer", "2021-06", "2021-07")
        backfill = finishing(store, "backfill", "2017-12", "2018-01")
        common = dict(new_rmse=10.0, val_summary=None, synthetic=False, tolerance=0.0, now=NOW)
        assert champion.challenge(store, run_id=newer, train_month="2021-06", val_month="2021-07", **common)[
            "decision"] == "first"
        late = champion.challenge(store, run_id=backfill, train_month="2017-12", val_month="2018-01", **common)
        assert late["decision"] == "older_months" and late["champion_run_id"] == newer
        for run_id in (backfill, newer):
            store.transition(run_id, State.COMPLETED, now=NOW)
        assert store.champion(FLOW_NAME)["id"] == newer
        assert store.contender(FLOW_NAME, besides=newer)["id"] == newer  # completed now: the champion itself
        store.close()

    def test_a_run_still_finishing_is_the_contender_until_it_ends_otherwise(self, location):
        store = self.open(location)
        pending = finishing(store, "pending", "2021-06", "2021-07")
        store.record_model_event(flow=FLOW_NAME, run_id=pending, action="promoted", actor="pipeline", reason="r.",
                                 now=NOW, after_seq=0, undo_to=None)
        assert store.champion(FLOW_NAME) is None and store.contender(FLOW_NAME)["id"] == pending
        assert store.contender(FLOW_NAME, besides=pending) is None  # a run is never its own contender
        store.transition(pending, State.CRASHED, now=NOW)
        assert store.contender(FLOW_NAME) is None and store.champion(FLOW_NAME) is None
        store.close()

    def test_an_acceptance_is_kept_once_per_subject_and_found_by_run_or_subject(self, location):
        store = self.open(location)
        blocked = store.create_run(flow=FLOW_NAME, name="b", state=State.FAILED, now=NOW, train_month="2021-06",
                                   val_month="2021-07", error_task="check_data", error="The gate max_psi failed: x.")
        common = dict(flow=FLOW_NAME, blocked_run_id=blocked, subject="2021-06/2021-07", now=NOW)
        first = store.record_acceptance(actor="olga", reason="Real.", **common)
        assert first is not None and store.record_acceptance(actor="ivan", reason="Again.", **common) is None
        found = store.acceptance(flow=FLOW_NAME, subject="2021-06/2021-07")
        assert (found["actor"], found["at"], found["blocked_run_name"]) == ("olga", NOW, "b")
        assert store.newest_acceptance(FLOW_NAME)["id"] == first
        assert store.acceptance(flow=FLOW_NAME, blocked_run_id=blocked)["id"] == first
        store.close()

    # -- the notifications outbox --------------------------------------------------------------------------------------
    def test_the_outbox_keeps_an_event_once_per_target_and_every_attempt(self, location, clock):
        history = self.open(location)
        try:
            run_id = ended(history, clock)
            message = dict(event="failed", subject=f"run:{run_id}", run_id=run_id, target="json://h/x", title="t",
                           body="b", level="failure", now=clock.now())
            first = history.add_notification(target_key="k1", **message)
            assert history.add_notification(target_key="k1", **message) is None
            second = history.add_notification(target_key="k2", **message)
            assert second not in (None, first)
            row = history.claim_notification(first, attempts=0, now=clock.now(), until=clock.now() + dt.timedelta(60))
            assert history.claim_notification(first, attempts=0, now=clock.now(), until=clock.now()) is None
            assert history.record_notification_attempt(row, outcome="failed", detail="HTTP 500", started=clock.now(),
                                                       ended=clock.now(), retry_at=clock.now() + dt.timedelta(30))
            assert not history.record_notification_attempt(row, outcome="sent", detail=None, started=clock.now(),
                                                           ended=clock.now(), retry_at=None)  # that attempt is recorded
            assert [(a["outcome"], a["attempt"]) for a in history.notification_attempts(run_id)] == [("failed", 1)]
            assert [n["id"] for n in history.due_notifications(clock.now())] == [second]
            history.set_notify_mark("m", "1")
            history.set_notify_mark("m", "2")
            assert history.notify_mark("m") == "2"
            deployment = register(history, DeploymentSpec(name="team", notify=["json://h/team"]), clock.now())
            register(history, DeploymentSpec(name="team", notify=["json://h/other"]), clock.now())
            assert history.notify_targets() == {deployment["id"]: ["json://h/other"]}
        finally:
            history.close()

    def test_a_notify_targets_first_sight_is_kept(self, location):
        store = self.open(location)
        first = store.note_notify_targets(["a", "b"], NOW)
        later = store.note_notify_targets(["b", "c"], NOW + dt.timedelta(hours=1))
        assert first == {"a": NOW, "b": NOW} and later == {"b": NOW, "c": NOW + dt.timedelta(hours=1)}
        assert store.note_notify_targets([], NOW) == {}
        store.close()

    # -- the scheduler's statements, through the scheduler: claims, lateness, expiry, sweeps, the lease -
    def test_latest_keeps_the_most_recent_missed_slot(self, store, settings, clock):
        register(store, hourly(catchup="latest"), clock.now(), settings=settings)
        walk(make(store, settings, clock, stale_after=HOUR), clock, until=at(0, 30), step=300)
        clock.advance(5 * HOUR)
        walk(make(store, settings, clock, stale_after=HOUR), clock, until=at(5, 40), step=60)
        assert slot_times(runs_of(store, "hourly", "COMPLETED")) == ["2026-01-01T05:00"]

    def test_a_slot_stuck_behind_a_full_queue_is_skipped_past_the_maximum_lateness(self, store, settings, clock):
        register(store, hourly(max_lateness=1800), clock.now(), settings=settings)
        walk(make(store, settings, clock, behaviour="hang"), clock, until=at(2, 40), step=300)
        first, second = runs_of(store, "hourly")[:2]
        assert first["state"] == "RUNNING" and second["state"] == "CANCELLED"
        assert second["late_reason"] == "waiting for a free slot: 1st in line in 'default' (1 of 1 running)"

    def test_expire_cancels_only_scheduled_slots_past_their_maximum_lateness(self, store, settings, clock):
        register(store, hourly(max_lateness=1800), clock.now(), settings=settings)
        manual = trigger_run(store, settings, deployment="hourly", date=dt.date(2025, 6, 15), now=clock.now())
        assert catchup.expire(store, at(1, 30)) == 0
        assert catchup.expire(store, at(1, 31)) == 1
        assert runs_of(store, "hourly", "CANCELLED")[0]["scheduled_time"].startswith("2026-01-01T01:00")
        assert store.get_run(manual["id"])["state"] == "SCHEDULED"

    def test_a_work_queue_runs_at_most_its_limit_and_the_rest_are_late_with_the_reason(self, store, settings, clock):
        for month in (1, 2, 3):
            trigger_run(store, settings, date=dt.date(2025, month, 15), now=clock.now())
        scheduler = make(store, settings, clock, behaviour="hang", late_after=15)
        for limit, running in ((1, 1), (2, 2), (None, 3)):
            store.upsert_work_queue("default", concurrency_limit=limit, now=clock.now())
            scheduler.tick()
            clock.advance(20)
            scheduler.tick()
            runs = [r for r in store.runs(states=["RUNNING", "SCHEDULED", "LATE"]) if r["trigger"] == "manual"]
            assert [r["state"] for r in runs].count("RUNNING") == running
            waiting = [r for r in runs if r["state"] != "RUNNING"]
            assert all(r["state"] == "SCHEDULED" and r["late_reason"].startswith("waiting for a free slot")
                       for r in waiting)
            assert len(waiting) == 3 - running
        assert store.work_queues()[0]["running"] == 3

    def test_enqueued_manual_and_backfill_runs_are_picked_up(self, store, settings, clock):
        run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
        make(store, settings, clock).tick()
        assert store.get_run(run["id"])["state"] == "COMPLETED"

    def test_cancelling_a_waiting_run_is_immediate_and_it_never_starts(self, store, settings, clock):
        run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
        store.request_cancel(run["id"], now=clock.now())
        scheduler = make(store, settings, clock)
        scheduler.tick()
        assert store.get_run(run["id"])["state"] == "CANCELLED" and scheduler.executor.started == []

    def test_a_run_claimed_by_a_dead_scheduler_before_its_process_began_goes_back_to_the_queue(self, store, settings,
                                                                                                clock):
        dead = f"{socket.gethostname()}:{FakeExecutor.PIDS - 2}:abc"
        never_started = orphan(store, clock, claimed_by=dead, start=False)
        scheduler = make(store, settings, clock, stale_after=120)
        scheduler.tick()
        run = store.get_run(never_started)
        assert (run["state"], run["claimed_by"], run["attempts"]) == ("LATE", None, 0)
        assert run["late_reason"] == (f"claimed by the scheduler {dead}, which stopped before starting it; "
                                      "back in the queue")
        store.upsert_work_queue("elsewhere", concurrency_limit=1, now=clock.now())
        scheduler.tick()
        assert store.get_run(never_started)["state"] == "COMPLETED"
        assert [t["task"] for t in store.task_runs(never_started)] == ["read_data"]

    def test_a_flow_that_exits_without_a_final_state_is_crashed_and_frees_its_slot(self, store, settings, clock):
        scheduler, run_id = started(store, settings, clock,
                                    lambda run: "crash" if run["run_date"] == "2025-06-15" else "complete")
        nxt = trigger_run(store, settings, date=dt.date(2025, 7, 15), now=clock.now())
        ticks(scheduler, clock, 2)
        assert store.get_run(run_id)["state_message"] == ("The flow process (pid 4000000) ended with exit code 1 "
                                                          "before recording a final state.")
        assert store.get_run(nxt["id"])["state"] == "COMPLETED"

    def test_run_forever_sleeps_on_the_clock_and_records_a_clean_stop(self, store, settings):
        clock = StopAfter(SCHEDULER_T0, 5)
        clock.scheduler = scheduler = make(store, settings, clock, tick=2, heartbeat=30)
        scheduler.run_forever()
        assert clock.sleeps == pytest.approx([2] * 5, abs=0.2)  # the cadence is schedule's, in real time
        stopped = from_db(store.scheduler_status()["stopped_at"])
        assert abs((stopped - (SCHEDULER_T0 + dt.timedelta(seconds=10))).total_seconds()) < 1
