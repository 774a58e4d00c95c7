"""The catch-up of a deployment whose runs cannot be made (its data folder vanished): each slot it passes is a
run FAILED with the sentence, exactly once, instead of a catch-up held forever; a fault of the history still
holds it (fake clock, real SQLite)."""
from __future__ import annotations

import datetime as dt
import shutil
import threading

import pytest

from pipeline.errors import HistoryUnreachable, StorageError
from pipeline.orchestration import catchup
from pipeline.orchestration.deployments import register
from pipeline.orchestration.scheduler import SchedulerOptions
from pipeline.store import Store
from pipeline.formatting import utc_text
from tests.test_orchestrator_edges import T0, HOUR, hourly, make, walk
from tests.test_scheduler import runs_of, slot_times

MISSED = [f"2026-01-01T0{h}:00" for h in range(1, 6)]  # the slots that pass from 00:30 to 05:30
POLICIES = [("all", 5, 0), ("latest", 1, 4), ("none", 0, 5)]


def at(hours, minutes=0):
    return T0 + dt.timedelta(hours=hours, minutes=minutes)


def with_folder(tmp_path, store, settings, clock, policy):
    """The deployment ``local`` reading a data folder, and ``good`` beside it; their slots up to 03:00 are made."""
    folder = tmp_path / "months"
    folder.mkdir()
    register(store, hourly("good", catchup=policy), clock.now(), settings=settings)
    register(store, hourly("local", catchup=policy, parameters={"data_url": str(folder / "fhv_tripdata_{month}.parquet")}),
             clock.now(), settings=settings)
    return folder


def says(run, folder):
    """The one sentence of a slot that could not run: the deployment, the slot, the folder gone."""
    return (f"The run of local for its slot {utc_text(run['scheduled_time'])} could not be made: the data folder "
            f"{folder} does not exist (data URL '{folder}/fhv_tripdata_{{month}}.parquet').")


def by_state(runs):
    return {state: [r for r in runs if r["state"] == state] for state in ("FAILED", "CANCELLED", "COMPLETED")}


@pytest.mark.parametrize("policy, failed, skipped", POLICIES)
def test_after_a_downtime_the_slots_of_a_deployment_whose_data_folder_vanished_fail_once_each_with_the_sentence(
        tmp_path, store, settings, clock, policy, failed, skipped):
    folder = with_folder(tmp_path, store, settings, clock, policy)
    walk(make(store, settings, clock), clock, until=at(0, 30))
    shutil.rmtree(folder)
    clock.advance(5 * HOUR)  # no scheduler from 00:30 to 05:30 (01:00 to 03:00 were made, 04:00 and 05:00 not)
    walk(make(store, settings, clock), clock, until=at(7, 10), step=60)
    due = [r for r in runs_of(store, "local") if r["scheduled_time"] < "2026-01-01T07:30"]
    assert slot_times(due) == MISSED + ["2026-01-01T06:00", "2026-01-01T07:00"]  # each slot once, none lost
    fates = by_state(due[:5])
    assert (len(fates["FAILED"]), len(fates["CANCELLED"])) == (failed, skipped)
    assert [r["state"] for r in due[5:]] == ["FAILED", "FAILED"]  # fell due while the scheduler served
    assert all(r["state_message"] == r["error"] == says(r, folder) for r in due if r["state"] == "FAILED")
    assert all(f"Skipped by the catch-up policy '{policy}' of local" in r["state_message"] for r in fates["CANCELLED"])
    assert not any(r["started_at"] for r in due)
    good = by_state([r for r in runs_of(store, "good") if r["scheduled_time"] < "2026-01-01T07:30"])
    assert (len(good["COMPLETED"]), len(good["CANCELLED"]), good["FAILED"]) == (failed + 2, skipped, [])
    assert store.get_deployment("local")["last_error"].startswith("materialise: The data folder")


def test_two_schedulers_racing_over_the_catch_up_of_a_broken_deployment_record_each_slot_once(
        tmp_path, store, settings, clock):
    shutil.rmtree(with_folder(tmp_path, store, settings, clock, "all"))
    options = SchedulerOptions(heartbeat=60, stale_after=HOUR)
    histories, errors = [Store(settings.db_path) for _ in range(2)], []
    start = threading.Barrier(2)

    def scheduler(history):
        start.wait()
        try:
            catchup.catch_up(history, settings, options, since=at(0, 30), now=at(5, 30))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=scheduler, args=(history,)) for history in histories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    catchup.catch_up(store, settings, options, since=at(0, 30), now=at(5, 30))  # and the round once more
    for history in histories:
        history.close()
    assert errors == []
    broken = [r for r in runs_of(store, "local") if r["scheduled_time"] < "2026-01-01T05:30"]
    assert slot_times(broken) == MISSED and {r["state"] for r in broken} == {"FAILED"}
    assert {r["state"] for r in runs_of(store, "good") if r["scheduled_time"] < "2026-01-01T05:30"} == {"LATE"}


class FaultyHistory(Store):
    """The history failing to list a deployment's missed runs while ``fault`` is set."""

    fault: Exception | None = None

    def missed_runs(self, *args, **kwargs):
        if self.fault is not None:
            raise self.fault
        return super().missed_runs(*args, **kwargs)


@pytest.mark.parametrize("fault", [StorageError("The history h.db could not be read or written."),
                                   HistoryUnreachable("The history cannot be reached (the server restarts).")],
                         ids=["storage-error", "unreachable"])
def test_a_history_fault_holds_the_catch_up_of_a_broken_deployment_which_fails_nothing_until_it_is_applied(
        tmp_path, settings, clock, fault):
    history = FaultyHistory(settings.db_path)
    folder = with_folder(tmp_path, history, settings, clock, "latest")
    walk(make(history, settings, clock), clock, until=at(0, 30))
    shutil.rmtree(folder)
    clock.advance(5 * HOUR)
    scheduler, history.fault = make(history, settings, clock), fault
    scheduler.tick()
    clock.advance(60)
    scheduler.tick()
    held = runs_of(history, "local")
    assert {r["state"] for r in held} <= {"SCHEDULED", "LATE"} and slot_times(held) == MISSED[:3]  # nothing written
    history.fault = None
    for _ in range(3):
        clock.advance(60)
        scheduler.tick()
    missed = [r for r in runs_of(history, "local") if r["scheduled_time"] < "2026-01-01T05:30"]
    assert slot_times(missed) == MISSED
    assert [r["state"] for r in missed] == ["CANCELLED"] * 4 + ["FAILED"]
    assert missed[-1]["state_message"] == says(missed[-1], folder)
    history.close()


def test_a_slot_of_a_broken_deployment_past_its_maximum_lateness_is_skipped_as_any_slot(tmp_path, store, settings,
                                                                                        clock):
    folder = tmp_path / "months"
    folder.mkdir()
    register(store, hourly("local", catchup="all", max_lateness=2 * HOUR,
                           parameters={"data_url": str(folder / "fhv_tripdata_{month}.parquet")}),
             clock.now(), settings=settings)
    shutil.rmtree(folder)
    catchup.catch_up(store, settings, SchedulerOptions(heartbeat=60, stale_after=HOUR), since=at(0, 30), now=at(5, 30))
    missed = runs_of(store, "local")
    assert [r["state"] for r in missed] == ["CANCELLED"] * 3 + ["FAILED"] * 2  # 01:00 .. 03:00 are over 2 hours late
    assert "could not start within the maximum lateness of 2 hours of local" in missed[0]["state_message"]
    assert missed[-1]["state_message"] == says(missed[-1], folder)
