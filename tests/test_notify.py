"""Notifications through Apprise's json:// to real HTTP receivers on 127.0.0.1: one that answers 200,
one that answers 500 (then 200), one that hangs; every event, masking, ``notify test``, no duplicates."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pipeline.cli import main
from pipeline.config import load_settings, notify_urls
from pipeline.errors import ConfigError, NotPublishedError
from pipeline.orchestration import notify, registry
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.enqueue import trigger_run
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from pipeline.orchestration.schedules import CronSchedule
from pipeline.orchestration.states import State
from pipeline.store import Store
from tests.fakes import FakeExecutor
from tests.flows import echo

FLOW = "fhv-duration-training"
HOUR = 3600
APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def hook(server, path: str, **route) -> str:
    """A receiver at ``path`` of the test server, as Apprise's json:// URL."""
    server.route(path, methods=("POST",), **route)
    return server.url(path).replace("http://", "json://")


def configured(settings, *urls: str, timeout: float = 0.3):
    return dataclasses.replace(settings, notify=tuple(urls), notify_timeout=timeout)


def received(server, path: str) -> list[dict]:
    return [json.loads(r.body) for r in server.requests if r.path == path]


def ended(store, clock, state="FAILED", *, error="boom.", error_task="train_model", metrics=None, trigger="manual",
          deployment_id=None, flow=FLOW) -> str:
    run_id = store.create_run(flow=flow, name="brave-run", state=State.PENDING, now=clock.now(), trigger=trigger,
                              scheduled_time=clock.now(), deployment_id=deployment_id, run_date="2021-03-15")
    store.start_run(run_id, now=clock.now(), pid=1)
    failed = state != "COMPLETED"
    store.transition(run_id, State(state), now=clock.now(), error=error if failed else None,
                     error_task=error_task if failed else None, metrics=metrics)
    return run_id


def round_trip(store, settings, clock, policy=None) -> int:
    targets = notify.Targets.load(store, settings)
    notify.scan(store, settings, targets, clock.now())
    return notify.deliver_due(store, targets, policy or notify.RetryPolicy.for_settings(settings), clock)


def outcomes(store) -> list[list[str]]:
    return [[a["outcome"] for a in n["attempts_made"]] for n in store.notifications()]


# -- delivery ----------------------------------------------------------------------------------------

def test_a_failed_run_reaches_each_target_once_as_a_json_message(store, settings, clock, http_server):
    settings = configured(settings, hook(http_server, "/a"), hook(http_server, "/b"))
    run_id = ended(store, clock)
    assert round_trip(store, settings, clock) == 2
    clock.advance(60)
    assert round_trip(store, settings, clock) == 0
    (message,) = received(http_server, "/a")
    assert received(http_server, "/b") == [message]
    assert message["type"] == "failure" and message["title"] == "FHV run brave-run: FAILED"
    assert message["message"] == f"Run brave-run ({run_id[:8]}) for 2021-03-15 FAILED in train_model: boom.\n\n" \
        f"Event id: fhv:failed:run:{run_id} (a repeat of this message carries the same id)."
    assert [(n["event"], n["state"], n["run_id"]) for n in store.notifications()] == [("failed", "SENT", run_id)] * 2


def test_a_receiver_answering_500_is_retried_after_the_backoff_then_sent(store, settings, clock, http_server):
    settings = configured(settings, hook(http_server, "/flaky", fail_times=1))
    ended(store, clock)
    assert round_trip(store, settings, clock) == 0
    (row,) = store.notifications()
    assert (row["state"], row["attempts"]) == ("PENDING", 1) and "error=500" in row["last_error"]
    clock.advance(29)
    assert round_trip(store, settings, clock) == 0 and http_server.count("/flaky") == 1  # not due yet
    clock.advance(1)
    assert round_trip(store, settings, clock) == 1
    assert outcomes(store) == [["failed", "sent"]] and store.notifications()[0]["state"] == "SENT"


def test_attempts_stop_at_the_policy_and_the_message_is_failed(store, settings, clock, http_server):
    settings = configured(settings, hook(http_server, "/down", status=500))
    policy = notify.RetryPolicy(attempts=2, backoff=1, timeout=0.3)
    ended(store, clock)
    for _ in range(4):
        round_trip(store, settings, clock, policy)
        clock.advance(10)
    assert outcomes(store) == [["failed", "failed"]] and http_server.count("/down") == 2
    assert store.notifications()[0]["state"] == "FAILED"


def test_a_hanging_receiver_times_out_and_holds_nothing_up(store, settings, clock, http_server):
    settings = configured(settings, hook(http_server, "/hang", delay=30), hook(http_server, "/ok"))
    run_id = ended(store, clock)
    began = time.monotonic()
    assert round_trip(store, settings, clock) == 1
    assert time.monotonic() - began < 2.0
    by_target = {n["target"].rsplit("/", 1)[1]: n for n in store.notifications()}
    assert [a["outcome"] for a in by_target["hang"]["attempts_made"]] == ["timeout"]
    assert by_target["hang"]["last_error"] == "no answer within 0.3 seconds" and by_target["hang"]["state"] == "PENDING"
    assert by_target["ok"]["state"] == "SENT" and store.get_run(run_id)["state"] == "FAILED"


def test_a_target_no_longer_configured_is_dropped_not_retried(store, settings, clock, http_server):
    ended(store, clock)
    round_trip(store, configured(settings, hook(http_server, "/down", status=500)), clock)
    clock.advance(HOUR)
    round_trip(store, configured(settings, hook(http_server, "/other")), clock)
    # the run ended before /other was configured: a new target is not told of the past
    assert sorted(map(tuple, outcomes(store))) == [("failed", "dropped")] and http_server.count("/other") == 0


# -- events --------------------------------------------------------------------------------------------

NOT_PUBLISHED = str(NotPublishedError("2025-11"))


@pytest.mark.parametrize("state, fields, kinds", [
    ("FAILED", {}, ["failed"]),
    ("CRASHED", {"error_task": None, "error": "Its process died."}, ["crashed"]),
    ("FAILED", {"error_task": "check_data", "error": "The gate min_rows saw 10 rows; its limit is 100."},
     ["gate_blocked"]),
    ("FAILED", {"error_task": "check_data", "error": "Unexpected error in check_data: KeyError: 'hist'"}, ["failed"]),
    ("FAILED", {"error_task": "check_data", "error": "The task check_data ran longer than its timeout of 600 s."},
     ["failed"]),
    ("FAILED", {"error_task": "read_data", "error": NOT_PUBLISHED, "trigger": "schedule"}, ["gave_up"]),
    ("FAILED", {"error_task": "read_data", "error": NOT_PUBLISHED, "trigger": "manual"}, ["failed"]),
    ("COMPLETED", {"metrics": {"warnings": ["PSI of pickups is 0.4; its limit is 0.2."]}}, ["gate_warned"]),
    ("COMPLETED", {"metrics": {"val_rmse": 7.1, "warnings": []}}, []),
    ("CANCELLED", {"error": "Cancelled on request."}, []),
])
def test_each_event_of_an_ended_run_is_found_in_the_history(store, settings, clock, state, fields, kinds):
    ended(store, clock, state, **fields)
    assert [e.kind for e in notify.find_events(store, settings, clock.now())] == kinds


GATE_TEXT = "The gate min_rows saw 10 rows; its limit is 100."


@pytest.mark.parametrize("fields, kinds", [
    ({"error_task": "shout", "error": f"{echo.REFUSED}'nope'."}, ["gate_blocked"]),
    ({"error_task": "count", "error": f"{echo.REFUSED}'nope'."}, ["failed"]),  # its gate is in shout only
    ({"error_task": "shout", "error": echo.NOT_YET, "trigger": "schedule"}, ["gave_up"]),
    ({"error_task": "shout", "error": echo.NOT_YET, "trigger": "backfill"}, ["gave_up"]),
    ({"error_task": "shout", "error": echo.NOT_YET, "trigger": "manual"}, ["failed"]),
    # the training flow's texts mean nothing in another flow
    ({"error_task": "check_data", "error": GATE_TEXT}, ["failed"]),
    ({"error_task": "read_data", "error": NOT_PUBLISHED, "trigger": "schedule"}, ["failed"]),
])
def test_a_third_flows_own_classification_decides_the_kind_of_its_failure(store, settings, clock, monkeypatch,
                                                                          fields, kinds):
    monkeypatch.setattr(registry, "_FLOWS", {**registry._FLOWS, echo.FLOW_NAME: echo.ENTRY})
    ended(store, clock, flow=echo.FLOW_NAME, **fields)
    assert [e.kind for e in notify.find_events(store, settings, clock.now())] == kinds


def test_a_failure_of_a_flow_this_process_does_not_know_is_told_as_failed(store, settings, clock):
    ended(store, clock, flow="gone-flow", error_task="check_data", error=GATE_TEXT)
    ended(store, clock, flow="gone-flow", error_task="read_data", error=NOT_PUBLISHED, trigger="schedule")
    assert [e.kind for e in notify.find_events(store, settings, clock.now())] == ["failed", "failed"]


def test_a_flow_whose_classification_raises_is_told_as_failed_and_logged(store, settings, clock, monkeypatch,
                                                                         caplog):
    broken = dataclasses.replace(echo.ENTRY, classify_failure=lambda run: run["no such field"])
    monkeypatch.setattr(registry, "_FLOWS", {**registry._FLOWS, echo.FLOW_NAME: broken})
    ended(store, clock, flow=echo.FLOW_NAME, error_task="shout", error=f"{echo.REFUSED}'nope'.")
    assert [e.kind for e in notify.find_events(store, settings, clock.now())] == ["failed"]
    assert "The flow 'echo' could not classify the failure of run" in caplog.text


def test_a_late_run_is_told_only_past_the_threshold(store, settings, clock):
    settings = dataclasses.replace(settings, notify_late_after=HOUR)
    run_id = store.create_run(flow=FLOW, name="slow-run", state=State.SCHEDULED, now=clock.now(),
                              scheduled_time=clock.now(), trigger="schedule")
    clock.advance(HOUR / 2)
    store.mark_late(run_id, "the scheduler is stopping", clock.now())
    assert notify.find_events(store, settings, clock.now()) == []
    clock.advance(HOUR / 2)
    (event,) = notify.find_events(store, settings, clock.now())
    assert (event.kind, event.run_id, event.level) == ("late", run_id, "warning")
    assert "passed 1 hour ago and it has not started (the scheduler is stopping)" in event.body


def test_promotions_are_told_once_their_run_completed_and_rollbacks_too(store, settings, clock):
    first = ended(store, clock, "COMPLETED", metrics={"val_rmse": 7.0})
    store.record_model_event(flow=FLOW, run_id=first, action="promoted", actor="pipeline", reason="the first model.",
                             now=clock.now(), after_seq=0, undo_to=None)
    running = store.create_run(flow=FLOW, name="new-run", state=State.PENDING, now=clock.now())
    store.start_run(running, now=clock.now(), pid=1)
    promoted = store.record_model_event(flow=FLOW, run_id=running, action="promoted", actor="pipeline",
                                        reason="RMSE 6.5 beats 7.0.", now=clock.now(), after_seq=1, undo_to=None)
    assert [(e.kind, e.run_id) for e in notify.find_events(store, settings, clock.now())] == [("promoted", first)]
    assert notify.find_events(store, settings, clock.now()) == []  # the running run's event waits for its end
    store.transition(running, State.COMPLETED, now=clock.now())
    store.record_model_event(flow=FLOW, run_id=first, action="rollback", actor="ops", reason="6.5 was a fluke.",
                             now=clock.now(), after_seq=2, undo_to=promoted)
    events = [(e.kind, e.run_id) for e in notify.find_events(store, settings, clock.now())]
    assert events == [("promoted", running), ("rolled_back", first)]


def test_what_happened_before_notifications_were_set_up_is_not_told(store, settings, clock):
    old = ended(store, clock, "COMPLETED")
    ended(store, clock, "FAILED")
    store.record_model_event(flow=FLOW, run_id=old, action="promoted", actor="pipeline", reason="the first model.",
                             now=clock.now(), after_seq=0, undo_to=None)
    clock.advance(notify.LOOKBACK.total_seconds() + 1)
    assert notify.find_events(store, settings, clock.now()) == []
    store.record_model_event(flow=FLOW, run_id=old, action="manual", actor="ops", reason="kept by hand.",
                             now=clock.now(), after_seq=1, undo_to=None)
    assert [e.kind for e in notify.find_events(store, settings, clock.now())] == ["promoted"]


def test_a_deployment_adds_its_own_targets_for_its_runs_only(store, settings, clock, http_server):
    own = hook(http_server, "/team")
    settings = configured(settings, hook(http_server, "/all"))
    team = register(store, DeploymentSpec(name="team", notify=[own]), clock.now())
    other = register(store, DeploymentSpec(name="other"), clock.now())
    ended(store, clock, deployment_id=team["id"])
    ended(store, clock, deployment_id=other["id"])
    round_trip(store, settings, clock)
    assert len(received(http_server, "/all")) == 2 and len(received(http_server, "/team")) == 1
    assert "/team" not in json.dumps(store.deployments())  # the URLs are kept apart from what is shown
    with pytest.raises(ConfigError, match="The notification URL nope://… in the notify list of 'bad' is not one"):
        DeploymentSpec(name="bad", notify=["nope://secret@host"])
    with pytest.raises(ConfigError, match="The notify list of 'bad' must be a list of Apprise URLs"):
        DeploymentSpec(name="bad", notify="json://host/path")


def test_secrets_are_masked_in_the_history_and_everything_it_shows(store, settings, clock, http_server, capsys,
                                                                   monkeypatch):
    url = hook(http_server, "/hook").replace("json://", "json://robot:s3cretpass@") + "?+X-Api-Key=k3yvalue"
    settings = configured(settings, url)
    ended(store, clock)
    assert round_trip(store, settings, clock) == 1
    assert http_server.requests[-1].headers["X-Api-Key"] == "k3yvalue"  # the real URL was used to send
    assert store.notifications()[0]["target"] == f"json://robot:****@127.0.0.1:{http_server.port}/hook"
    store.close()
    history = b"".join(p.read_bytes() for p in settings.home.glob("history.db*"))
    assert b"s3cretpass" not in history and b"k3yvalue" not in history
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    assert main(["notifications", "ls", "--json"]) == 0
    assert "s3cretpass" not in capsys.readouterr().out


@pytest.mark.parametrize("url, label", [
    ("json://127.0.0.1:9/services/T0A1B2C3D4/hook", "json://127.0.0.1:9/services/T0****/hook"),
    ("jsons://hooks.example.com/abcdefghijklmnopqrstuvwxyz", "jsons://hooks.example.com/ab****"),
    ("json://127.0.0.1:9/ops/fhv-alerts", "json://127.0.0.1:9/ops/fhv-alerts"),  # words are not tokens
])
def test_a_token_in_a_webhooks_path_is_masked_too(url, label):
    item = notify.target(url)
    assert item.label == label
    assert "T0A1B2C3D4" not in notify.scrub(f"POST to {url} failed", item)


def test_what_apprise_says_about_an_attempt_is_scrubbed_of_the_url_secrets():
    item = notify.target("json://robot:s3cretpass@127.0.0.1:9/hook?+X-Api-Key=k3yvalue")
    said = "POST to json://robot:s3cretpass@127.0.0.1:9/hook with X-Api-Key k3yvalue failed"
    scrubbed = notify.scrub(said, item)
    assert "s3cretpass" not in scrubbed and "k3yvalue" not in scrubbed
    assert scrubbed.startswith("POST to json://robot:****@127.0.0.1:9/hook with ") and scrubbed.endswith(" failed")


@pytest.mark.parametrize("text, urls", [
    ("", ()),
    ("json://a/x json://b/y", ("json://a/x", "json://b/y")),
    ("json://a/x,json://b/y\n  slack://T/B/C", ("json://a/x", "json://b/y", "slack://T/B/C")),
    ("json://a/x?+X-Tags=one,two", ("json://a/x?+X-Tags=one,two",)),  # a comma inside a URL stays
])
def test_fhv_notify_holds_urls_separated_by_spaces_or_commas(text, urls):
    assert notify_urls(text) == urls
    assert load_settings({"FHV_NOTIFY": text}).notify == urls


# -- the command line ------------------------------------------------------------------------------------

@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_NOTIFY_TIMEOUT", "0.3")
    return monkeypatch


def test_notify_test_says_what_happened_to_each_target(settings, cli_env, http_server, capsys):
    urls = [hook(http_server, "/ok"), hook(http_server, "/bad", status=500), hook(http_server, "/hang", delay=30)]
    cli_env.setenv("FHV_NOTIFY", ", ".join(urls))
    assert main(["notify", "test"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sent    json://127.0.0.1:") and lines[0].endswith("/ok")
    assert lines[1].startswith("failed  json://") and "/bad: Failed to send JSON POST notification" in lines[1]
    assert "error=500" in lines[1]
    assert lines[2].startswith("timeout json://") and lines[2].endswith("/hang: no answer within 0.3 seconds")
    assert lines[3] == "1 of 3 target(s) took the test message."
    promise = " ".join(lines[4:])
    assert "receives the events that happen from when it was first configured" in promise
    assert "never replayed" in promise and "at least once" in promise and "same event id" in promise
    assert received(http_server, "/ok")[0]["title"] == "FHV pipeline: test message"
    assert main(["notifications", "ls", "--json"]) == 0
    assert sorted(n["state"] for n in json.loads(capsys.readouterr().out)) == ["FAILED", "FAILED", "SENT"]
    assert main(["notifications", "ls"]) == 0
    table = capsys.readouterr().out
    assert "Notifications" in table and table.count("│ Failed ") == 2 and table.count("│ Sent ") == 1
    assert main(["notifications", "ls", "--run", "no-such-run"]) == 2
    assert "The run id 'no-such-run' matches no run in the history." in capsys.readouterr().err
    cli_env.setenv("FHV_NOTIFY", urls[0])
    assert main(["notify", "test", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert {k: result[k] for k in ("target", "outcome", "detail")} == {"target": urls[0], "outcome": "sent",
                                                                      "detail": None}
    assert result["receives_events_from"].startswith("20")


@pytest.mark.parametrize("notify_env, sentence", [
    ("", "No notification target is configured: set FHV_NOTIFY"),
    ("nope://token@host", "The notification URL nope://… in FHV_NOTIFY is not one Apprise can send to"),
])
def test_notify_test_without_a_usable_target_says_so_in_one_sentence(cli_env, capsys, notify_env, sentence):
    cli_env.setenv("FHV_NOTIFY", notify_env)
    assert main(["notify", "test"]) == 2
    err = capsys.readouterr().err
    assert sentence in " ".join(err.split()) and "Traceback" not in err and "token" not in err


def test_a_foreground_run_is_told_after_its_state_is_recorded_and_a_hanging_target_changes_nothing(
        settings, cli_env, http_server, capsys):
    cli_env.setenv("FHV_NOTIFY", f"{hook(http_server, '/hang', delay=30)} {hook(http_server, '/ok')}")
    assert main(["run", "--date", "2015-01-20", "--data-url", "demo:1000", "--json"]) == 1  # 2014-11: unpublished
    run = json.loads(capsys.readouterr().out)
    assert run["state"] == "FAILED"
    (message,) = received(http_server, "/ok")
    assert message["type"] == "failure" and run["name"] in message["title"]
    with contextlib.closing(Store(settings.db_path)) as history:
        rows = history.notifications(run_id=run["run_id"])
        assert sorted(r["attempts_made"][0]["outcome"] for r in rows) == ["sent", "timeout"]
        assert all(r["created_at"] >= history.get_run(run["run_id"])["ended_at"] for r in rows)
        assert history.get_run(run["run_id"])["state"] == "FAILED"


# -- the scheduler -----------------------------------------------------------------------------------------

def scheduler(store, settings, clock, behaviour, **options):
    options = SchedulerOptions(**({"heartbeat": 60, "stale_after": 3 * 86400, "materialise_every": 60} | options))
    executor = FakeExecutor(store, clock=clock, await_data=options.await_data, behaviour=lambda run: behaviour)
    return Scheduler(store, settings, options=options, clock=clock, executor=executor)


def tick(made, clock, seconds=60):
    clock.advance(seconds)
    made.tick()
    made.notifier.wait(5)


def test_an_event_is_sent_once_across_scheduler_ticks_and_restarts(store, settings, clock, http_server):
    settings = configured(settings, hook(http_server, "/ops"))
    run = trigger_run(store, settings, date=dt.date(2025, 6, 15), now=clock.now())
    first = scheduler(store, settings, clock, "fail")
    for _ in range(3):
        tick(first, clock)
    assert store.get_run(run["id"])["state"] == "FAILED"
    again = scheduler(store, settings, clock, "fail")  # a restart: a new scheduler on the same history
    for _ in range(3):
        tick(again, clock)
    (message,) = received(http_server, "/ops")
    assert message["title"] == f"FHV run {run['name']}: FAILED" and "stand-in failure" in message["message"]


def test_a_month_still_unpublished_after_its_give_up_time_is_told_to_the_deployment(store, settings, clock,
                                                                                     http_server):
    spec = DeploymentSpec(name="daily", schedule=CronSchedule("0 9 * * *", "UTC"), notify=[hook(http_server, "/d")])
    register(store, spec, clock.now(), settings=settings)
    made = scheduler(store, settings, clock, "not_published", retry_every=HOUR, give_up_after=2 * HOUR)
    for _ in range(13):
        tick(made, clock, HOUR)
    (message,) = received(http_server, "/d")
    assert message["title"].endswith(": gave up waiting for data") and "daily" in message["message"]
    assert "is not published yet" in message["message"]


def test_the_scheduler_never_waits_for_a_hanging_receiver(store, settings, clock, http_server):
    settings = configured(settings, hook(http_server, "/hang", delay=30), timeout=10)
    ended(store, clock)
    made = scheduler(store, settings, clock, "complete")
    began = time.monotonic()
    made.tick()
    assert time.monotonic() - began < 5 and made.notifier._thread.is_alive()  # the receiver still hangs
    reached = time.monotonic() + 10  # the notifier's thread queues the message, then sends it: wait for the request
    while not http_server.count("/hang") and time.monotonic() < reached:
        time.sleep(0.02)
    assert http_server.count("/hang") == 1 and outcomes(store) == [[]]  # still hanging, not recorded as sent
    http_server.stop()  # the receiver answers at last
    made.notifier.wait(5)
    assert outcomes(store) == [["sent"]]


def test_a_bad_fhv_notify_stops_the_scheduler_at_start_up(store, settings, clock):
    with pytest.raises(ConfigError, match="in FHV_NOTIFY is not one Apprise can send to"):
        scheduler(store, configured(settings, "nope://x"), clock, "complete")


# -- the dashboard -------------------------------------------------------------------------------------------

def test_the_run_page_shows_every_attempt_with_its_masked_target(store, settings, clock, http_server, monkeypatch):
    settings = configured(settings, hook(http_server, "/flaky", fail_times=1).replace("json://", "json://u:pw@"))
    run_id = ended(store, clock)
    round_trip(store, settings, clock)
    clock.advance(30)
    round_trip(store, settings, clock)
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    try:
        at = AppTest.from_file(APP, default_timeout=30)
        at.query_params["id"] = run_id
        at.run()
        at.switch_page("app_pages/run_detail.py").run()
        assert not at.exception
        (expander,) = [e for e in at.expander if e.label.startswith("Notifications")]
        assert expander.label == "Notifications · 2 attempt(s), 1 sent"
        frame = next(d.value for d in at.dataframe if "Outcome" in d.value.columns)
        assert list(frame["Outcome"]) == ["failed", "sent"] and set(frame["Event"]) == {"failed"}
        assert list(frame["Attempt"]) == [1, 2] and "error=500" in frame["Detail"][0]
        assert set(frame["Target"]) == {f"json://u:****@127.0.0.1:{http_server.port}/flaky"}
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


# -- the outbox's SQL on both backends ------------------------------------------------------------------------

def test_a_hanging_target_costs_a_round_one_timeout_not_one_per_message(store, settings, clock, http_server):
    settings = configured(settings, hook(http_server, "/hang", delay=30), hook(http_server, "/ok"))
    for _ in range(notify.SENDERS + 4):
        ended(store, clock)
    began = time.monotonic()
    assert round_trip(store, settings, clock) == notify.SENDERS + 4
    assert time.monotonic() - began < 3.0
    hang = [n for n in store.notifications(limit=100) if n["target"].endswith("/hang")]
    assert sum(n["attempts"] for n in hang) <= notify.SENDERS and all(n["state"] == "PENDING" for n in hang)


def test_a_history_not_yet_migrated_to_notifications_shows_no_attempts_on_the_run_page(settings, clock):
    from dashboard.notify_view import attempts_of
    from pipeline.store import MIGRATIONS

    old = Store(settings.db_path, migrate=False)
    old.migrate(upto=[name for name, _ in MIGRATIONS].index("0008_notifications"))
    with old.atomic() as conn:  # a run as that schema wrote it
        conn.execute("INSERT INTO flow_runs (id, name, flow, state, created_at) VALUES ('r1', 'brave-run', :flow, "
                     "'FAILED', '2026-01-01T00:00:00.000000Z')", {"flow": FLOW})
    run_id = "r1"
    old.close()
    with contextlib.closing(Store(settings.db_path, readonly=True)) as history:
        assert attempts_of(history, run_id) == []
    with contextlib.closing(Store(settings.db_path)) as history:  # migrates
        assert attempts_of(history, run_id) == []
        history.add_notification(event="failed", subject=f"run:{run_id}", run_id=run_id, target_key="k",
                                 target="json://h/x", title="t", body="b", level="failure", now=clock.now())
        row = history.claim_notification(1, attempts=0, now=clock.now(), until=clock.now())
        history.record_notification_attempt(row, outcome="sent", detail=None, started=clock.now(),
                                            ended=clock.now(), retry_at=None)
        assert [a["outcome"] for a in attempts_of(history, run_id)] == ["sent"]


# -- through the real training flow ------------------------------------------------------------------------

def test_real_runs_tell_of_their_gates_and_of_the_first_model_promoted(store, settings, clock, http_server):
    from pipeline.orchestration import control
    from pipeline.training import flow

    settings = dataclasses.replace(configured(settings, hook(http_server, "/team")), data_url="demo:1000")

    def run(gates: dict) -> dict:
        register(store, DeploymentSpec(name="gated", gates=gates), clock.now(), settings=settings)
        row = control.trigger(store, settings, deployment="gated", date=dt.date(2021, 8, 15), now=clock.now())
        store.claim_due_run(now=clock.now(), work_queue="default", claimer="test")
        flow.execute(store, settings, row["id"], clock=clock)
        round_trip(store, settings, clock)
        return store.get_run(row["id"])

    warned = run({"min_rows_kept": 10**7})
    blocked = run({"max_psi": 0, "min_rows_kept": 10, "mode": "block"})
    told = {(m["title"].split(": ", 1)[-1], m["type"]) for m in received(http_server, "/team")}
    assert told == {("data-check warning", "warning"), ("FHV model promoted", "success"),
                    ("blocked by a data check", "failure")}
    by_event = {(n["event"], n["run_id"]) for n in store.notifications()}
    assert by_event == {("gate_warned", warned["id"]), ("promoted", warned["id"]), ("gate_blocked", blocked["id"])}
    (blocked_message,) = [m for m in received(http_server, "/team") if m["type"] == "failure"]
    assert blocked["error"] in blocked_message["message"] and "The gate max_psi failed" in blocked_message["message"]


def test_a_round_with_its_time_budget_spent_leaves_the_rest_due(store, settings, clock, http_server):
    settings = configured(settings, hook(http_server, "/ok"))
    ended(store, clock)
    targets = notify.Targets.load(store, settings)
    notify.scan(store, settings, targets, clock.now())
    assert notify.deliver_due(store, targets, notify.RetryPolicy(), clock, budget=0) == 0
    assert len(store.due_notifications(clock.now())) == 1 and http_server.count("/ok") == 0
