"""The model in use: a run never replaces a model trained on newer months (backfills, reruns, either
order, a race), a person may with a confirmation, an operator accepts a blocked run's data after a
lasting shift, a new notification target hears only of what comes after it, and the model in use
is a series users can watch. Real runs of the flow on demo months, real SQLite (and PostgreSQL where
the store decides), the CLI and the pages through AppTest."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
import streamlit as st

from pipeline import users
from pipeline.cli import main
from pipeline.orchestration import control, notify
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.orchestration.states import State
from pipeline.store import Store
from pipeline.training import acceptance, champion, flow, in_use
from pipeline.training.flow import FLOW_NAME, execute
from pipeline.training.job import run_fields
from tests.conftest import FakeClock
from tests.test_notify import hook

ROWS = 2000
NOW = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)


def run_of(store, settings, clock, date: str, *, tolerance: float = 0.0, deployment: str | None = None) -> dict:
    """One real run of the training flow for ``date`` (through a deployment's trigger when named)."""
    clock.advance(3600)
    if deployment:
        row = control.trigger(store, settings, deployment=deployment, date=dt.date.fromisoformat(date),
                              now=clock.now())
        assert store.claim_due_run(now=clock.now(), work_queue="default", claimer="test")["id"] == row["id"]
        run_id = row["id"]
    else:
        parameters = {"date": date, "promotion_tolerance": tolerance}
        run_id = store.create_run(flow=FLOW_NAME, name=f"run-{date}", state=State.PENDING, now=clock.now(),
                                  parameters=parameters, **run_fields(parameters, settings))
    execute(store, settings, run_id, clock=clock, heartbeat_every=60)
    return store.get_run(run_id)


@pytest.fixture
def home(tmp_path, monkeypatch):
    settings = flow.Settings(home=tmp_path / "fhv", data_url=f"demo:{ROWS}").ensure_dirs()
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_DATA_URL", settings.data_url)
    store = Store(settings.db_path)
    yield settings, store, FakeClock()
    store.close()
    st.cache_data.clear()
    st.cache_resource.clear()


def decision(run: dict) -> dict:
    return run["metrics"]["promotion"]


# -- the rule, as a pure function ----------------------------------------------------------------------
HELD = {"id": "c" * 36, "name": "champ", "synthetic": 0, "train_month": "2021-06"}


@pytest.mark.parametrize("new, train, val, held, decided, said", [
    (1.0, "2017-12", "2018-01", 10.0, "older_months", "Trained on 2017-12, older than the champion champ (cccccccc) "
                                                      "trained on 2021-06"),
    (9.0, "2021-06", "2021-07", 10.0, "promoted", "on 2021-07 (a rerun on the champion's own months)"),
    (11.0, "2021-06", "2021-07", 10.0, "kept", "on 2021-07 (a rerun on the champion's own months)"),
    (9.0, "2021-09", "2021-10", 10.0, "promoted", "on 2021-10 (the newest month)"),
    (11.0, "2021-09", "2021-10", 10.0, "kept", "on 2021-10 (the newest month)"),
])
def test_a_version_trained_on_older_months_is_never_promoted_by_a_run(new, train, val, held, decided, said):
    record = champion.decide(new_rmse=new, synthetic=False, champion=HELD, champion_rmse=held, tolerance=0.0,
                             train_month=train, val_month=val)
    assert record["decision"] == decided and said in record["reason"]
    assert (record["train_month"], record["champion_train_month"]) == (train, "2021-06")


def test_a_synthetic_champion_is_still_replaced_by_real_data_trained_on_older_months():
    record = champion.decide(new_rmse=12.0, synthetic=False, champion={**HELD, "synthetic": 1}, champion_rmse=10.0,
                             tolerance=0.0, train_month="2017-12", val_month="2018-01")
    assert record["decision"] == "promoted"


# -- backfills, reruns and the order runs finish in ------------------------------------------------------
def test_a_backfill_of_old_months_keeps_the_model_in_use_and_its_folder(home, capsys):
    settings, store, clock = home
    newest = run_of(store, settings, clock, "2021-08-15")
    card = (champion.current_dir(settings) / "card.json").read_text()
    old = run_of(store, settings, clock, "2018-02-15")
    assert old["state"] == "COMPLETED" and decision(old)["decision"] == "older_months"
    assert "Trained on 2017-12, older than the champion" in decision(old)["reason"] and "2021-06" in \
        decision(old)["reason"]
    assert decision(old)["champion_rmse"] is None  # not scored: nothing it could show would let it win
    assert store.champion(FLOW_NAME)["id"] == newest["id"]
    assert (champion.current_dir(settings) / "card.json").read_text() == card
    assert main(["models", "ls", "--json"]) == 0
    listed = {v["run_id"]: v for v in json.loads(capsys.readouterr().out)}
    assert listed[old["id"]]["decision"] == "older_months" and listed[newest["id"]]["champion"] is True


@pytest.mark.parametrize("order", ["backfill first", "newer first"])
def test_the_champion_is_the_same_whichever_order_a_backfill_and_a_newer_run_finish(home, order):
    settings, store, clock = home
    run_of(store, settings, clock, "2021-06-15")  # the champion before both: trained on 2021-04
    dates = ["2021-03-15", "2021-07-15"] if order == "backfill first" else ["2021-07-15", "2021-03-15"]
    runs = {date: run_of(store, settings, clock, date, tolerance=100.0) for date in dates}
    assert decision(runs["2021-03-15"])["decision"] == "older_months"
    assert decision(runs["2021-07-15"])["decision"] == "promoted"
    assert store.champion(FLOW_NAME)["id"] == runs["2021-07-15"]["id"]


def finishing(store, name: str, train: str, val: str) -> str:
    """A RUNNING run of the flow about to decide (it has no artifacts: a run that would need to score it
    could not, which these races never need)."""
    return store.create_run(flow=FLOW_NAME, name=name, state=State.RUNNING, now=NOW, run_date="2021-01-15",
                            train_month=train, val_month=val)


# -- by hand ----------------------------------------------------------------------------------------------
def test_promoting_an_older_version_by_hand_asks_and_names_both_months(home, capsys):
    settings, store, clock = home
    newest = run_of(store, settings, clock, "2021-08-15")
    old = run_of(store, settings, clock, "2018-02-15")
    assert main(["models", "promote", old["id"][:8]]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "was trained on 2017-12, older than the champion" in err and "trained on 2021-06" in err
    assert "--yes" in err and store.champion(FLOW_NAME)["id"] == newest["id"]
    assert main(["models", "promote", old["id"][:8], "--yes"]) == 0
    assert store.champion(FLOW_NAME)["id"] == old["id"] and "2017-12" in store.promotion_events()[-1]["reason"]


# -- after a lasting shift: accepting a blocked run's data ---------------------------------------------------
@pytest.fixture
def gated(home):
    settings, store, clock = home
    register(store, DeploymentSpec(name="gated", gates={"max_psi": 0, "mode": "block"}), clock.now(),
             settings=settings)
    return settings, store, clock


def test_an_operator_accepts_a_blocked_runs_data_and_the_rerun_passes_the_gate_said(gated, capsys):
    settings, store, clock = gated
    blocked = run_of(store, settings, clock, "2021-08-15", deployment="gated")
    assert blocked["state"] == "FAILED" and acceptance.blocked(blocked)
    assert main(["models", "accept", blocked["id"][:8], "--reason", "The new zones are real.", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["blocked_run_id"], found["reason"], found["train_month"]) == (blocked["id"],
                                                                              "The new zones are real.", "2021-06")
    assert found["actor"] and found["rerun"]["run_date"] == "2021-08-15" and found["rerun"]["trigger"] == "manual"
    due = dt.datetime.now(dt.timezone.utc)  # the CLI enqueued it at the machine's time
    assert store.claim_due_run(now=due, work_queue="default", claimer="test")["id"] == found["rerun"]["id"]
    execute(store, settings, found["rerun"]["id"], clock=clock, heartbeat_every=60)
    rerun = store.get_run(found["rerun"]["id"])
    assert rerun["state"] == "COMPLETED" and decision(rerun)["decision"] == "first"
    warnings = rerun["metrics"]["warnings"]
    assert warnings and all("; passed because " in w and "accepted the data of 2021-06 and 2021-07" in w and
                            "The new zones are real." in w for w in warnings)
    assert rerun["metrics"]["accepted"]["blocked_run_id"] == blocked["id"]
    assert main(["models", "accept", blocked["id"][:8], "--reason", "Again."]) == 2
    assert "was accepted already" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("what, sentence", [
    ("completed", "was not stopped by a data gate (COMPLETED): there is nothing to accept."),
    ("no reason", "Say why the data of 2021-06 and 2021-07 is accepted"),
])
def test_accepting_what_cannot_be_accepted_is_one_sentence(gated, capsys, what, sentence):
    settings, store, clock = gated
    run = run_of(store, settings, clock, "2021-08-15", deployment=None if what == "completed" else "gated")
    assert main(["models", "accept", run["id"], "--reason", " "]) == 2
    out, err = capsys.readouterr()
    assert sentence in " ".join(err.split()) and "Traceback" not in err
    assert store.acceptance(flow=FLOW_NAME, blocked_run_id=run["id"]) is None


def test_later_runs_measure_drift_against_the_accepted_month(gated):
    settings, store, clock = gated
    run_of(store, settings, clock, "2021-07-15")  # the champion, trained on 2021-05
    blocked = run_of(store, settings, clock, "2021-08-15", deployment="gated")  # trained on 2021-06
    assert blocked["metrics"]["drift"]["train_vs_champion"]["reference"] == "2021-05"
    acceptance.accept(store, settings, blocked["id"], actor="olga", reason="A lasting shift.", now=clock.now())
    assert acceptance.baseline(store)["month"] == "2021-06"  # newer than the champion's, whatever the rerun does
    later = run_of(store, settings, clock, "2021-09-15")
    assert later["metrics"]["drift"]["train_vs_champion"]["reference"] == "2021-06"


def test_the_run_page_lets_an_operator_accept_and_shows_a_viewer_why_not(gated, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.test_models import APP, PASSWORD, signed_in

    settings, store, clock = gated
    blocked = run_of(store, settings, clock, "2021-08-15", deployment="gated")
    path = users.users_path(settings.home)
    users.add(path, "olga", PASSWORD, "operator")
    users.add(path, "victor", PASSWORD, "viewer")

    def page(user: str) -> AppTest:
        signed_in(monkeypatch, settings.home, user)
        at = AppTest.from_file(APP, default_timeout=30)
        at.query_params["id"] = blocked["id"]
        at.run()
        at.switch_page("app_pages/run_detail.py").run()
        assert not at.exception, at.exception[0].value
        return at

    viewer = page("victor")
    assert viewer.text_input(key="accept_reason").disabled
    assert "only an operator may accept a blocked run's data" in " ".join(c.value for c in viewer.caption)
    at = page("olga")
    at.text_input(key="accept_reason").input("The shift is real.")
    at.button(key="FormSubmitter:accept_data-Accept the data and retrain").click().run()
    assert not at.exception
    found = store.acceptance(flow=FLOW_NAME, blocked_run_id=blocked["id"])
    assert found["actor"] == "olga" and found["reason"] == "The shift is real." and found["rerun_id"]


# -- notifications: a new target is not told of the past --------------------------------------------------
def test_a_target_configured_after_the_history_hears_only_what_comes_after(home, http_server):
    settings, store, clock = home
    run_of(store, settings, clock, "2021-07-15")
    failed = store.create_run(flow=FLOW_NAME, name="broken", state=State.FAILED, now=clock.now(), error="boom.")
    store.transition(failed, State.FAILED, now=clock.now())
    clock.advance(1)
    settings = dataclasses.replace(settings, notify=(hook(http_server, "/hook"),), notify_timeout=2.0)
    targets = notify.Targets.load(store, settings)
    notify.scan(store, settings, targets, clock.now())
    assert store.notifications() == []  # the promotion and the failure came before the target
    clock.advance(60)
    newer = run_of(store, settings, clock, "2021-08-15", tolerance=100.0)
    notify.scan(store, settings, targets, clock.now())
    told = {n["event"]: n for n in store.notifications()}
    assert {n["run_id"] for n in told.values()} == {newer["id"]} and "promoted" in told
    assert "Event id: fhv:promoted:model_event:" in told["promoted"]["body"]


# -- watching the model in use -----------------------------------------------------------------------------
def test_the_model_in_use_is_a_series_by_new_month_with_its_promotions(home, capsys):
    settings, store, clock = home
    runs = [run_of(store, settings, clock, date) for date in ("2021-06-15", "2021-07-15", "2021-08-15")]
    run_of(store, settings, clock, "2018-02-15")  # a backfill adds no point: it was not judged on a new month
    points = in_use.on_new_months(store)
    assert [p["val_month"] for p in points] == ["2021-05", "2021-06", "2021-07"]
    assert [p["run_id"] for p in points] == [r["id"] for r in runs]
    for point, run in zip(points, runs):
        assert point["retrained_rmse"] == run["metrics"]["val_rmse"]
        assert point["in_use_rmse"] == decision(run)["champion_rmse"]
        assert point["promoted"] == (decision(run)["decision"] in ("first", "promoted"))
    assert points[0]["in_use_rmse"] is None and points[1]["in_use_rmse"] > 0
    assert main(["models", "history", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(points))
    assert main(["models", "history"]) == 0
    table = capsys.readouterr().out
    assert "The model in use on each new month" in table and "never promoted by a run" in " ".join(table.split())


def test_the_models_page_draws_the_model_in_use_and_states_the_rule(home):
    from tests.test_models import models_page, page_text

    settings, store, clock = home
    for date in ("2021-06-15", "2021-07-15"):
        run_of(store, settings, clock, date)
    at = models_page()
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [trace.get("name") for trace in figure["data"]]
    assert names[:2] == ["model in use", "retrained"] and "promoted" in names
    assert figure["data"][1]["y"] and len(figure["data"][1]["y"]) == 2
    assert "never promoted by a run, only by hand" in page_text(at)


def test_the_demo_start_ends_with_the_newest_version_as_champion(home):
    """demo.sh trains 2021-06..08-15, then backfills January to May 2021: the backfills keep the champion."""
    settings, store, clock = home
    for date in ("2021-06-15", "2021-07-15", "2021-08-15", "2021-01-15", "2021-02-15", "2021-03-15",
                 "2021-04-15", "2021-05-15"):
        run_of(store, settings, clock, date)
    assert store.champion(FLOW_NAME)["train_month"] == "2021-06"


# -- the stable copy, repaired when seen -----------------------------------------------------------------------
def test_a_truncated_stable_copy_is_written_again_when_models_current_sees_it(home, capsys):
    settings, store, clock = home
    run_of(store, settings, clock, "2021-07-15")
    model = champion.current_dir(settings) / "model.bin"
    whole = model.read_bytes()
    model.write_bytes(whole[: len(whole) // 2])
    assert main(["models", "current"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "did not hold the champion's files (truncated or changed): written again now" in out
    assert model.read_bytes() == whole and champion.load_current(champion.current_dir(settings))[0]["run_id"]
    assert main(["models", "current", "--json"]) == 0
    folder = json.loads(capsys.readouterr().out)["folder"]
    assert folder["up_to_date"] is True and folder["repaired"] is False


def test_an_operator_writes_the_stable_copy_again_from_the_models_page(home, monkeypatch):
    from tests.test_models import PASSWORD, models_page

    settings, store, clock = home
    run_of(store, settings, clock, "2021-07-15")
    users.add(users.users_path(settings.home), "olga", PASSWORD, "operator")
    model = champion.current_dir(settings) / "model.bin"
    whole = model.read_bytes()
    model.write_bytes(b"")
    at = models_page(user="olga", monkeypatch=monkeypatch, home=settings.home)
    assert "does not hold the champion's files" in " ".join(w.value for w in at.warning)
    at.button(key="models_repair").click().run()
    assert not at.exception and model.read_bytes() == whole


def test_a_backfill_and_a_newer_run_racing_in_two_processes_end_with_the_newer_one(home):
    """Two real processes on one empty history, started together: whichever decides first, the newer version
    is the champion (the backfill is older_months, or first and then beaten on the newest month)."""
    import os
    import subprocess
    import sys

    settings, store, clock = home
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "FHV_HOME": str(settings.home), "FHV_DATA_URL": settings.data_url, "PYTHONPATH": root}
    for month in ("2017-12", "2018-01", "2021-06", "2021-07"):  # generated once, not by both at the same time
        flow.data.fetch_month(settings, month)
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--date", date, "--json"], env=env, cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for date in ("2018-02-15", "2021-08-15")]
    backfill, newer = (json.loads(p.communicate(timeout=120)[0]) for p in procs)
    assert backfill["state"] == newer["state"] == "COMPLETED"
    assert backfill["promotion"]["decision"] in ("older_months", "first")
    assert newer["promotion"]["decision"] in ("first", "promoted")
    assert store.champion(FLOW_NAME)["id"] == newer["run_id"]


def test_a_stopping_scheduler_lets_the_messages_on_the_wire_be_recorded_and_starts_no_more(home, http_server):
    """A clean stop used to abandon the sending thread: messages delivered but unrecorded went again later."""
    import threading
    import time

    settings, store, clock = home
    settings = dataclasses.replace(settings, notify=(hook(http_server, "/slow", delay=0.5),), notify_timeout=3.0)
    notifier = notify.Notifier(store, settings, clock=clock)
    clock.advance(1)
    for i in range(notify.SENDERS + 2):
        failed = store.create_run(flow=FLOW_NAME, name=f"broken-{i}", state=State.RUNNING, now=clock.now())
        store.transition(failed, State.FAILED, now=clock.now(), error="boom.")
    notifier.poke()
    time.sleep(0.2)  # the first batch is on the wire
    notifier.finish()
    assert not any(t.name == "notifications" and t.is_alive() for t in threading.enumerate())
    states = sorted(n["state"] for n in store.notifications())
    assert states == ["PENDING"] * 2 + ["SENT"] * notify.SENDERS
    assert all(n["attempts"] == 0 for n in store.notifications() if n["state"] == "PENDING")
    notifier.poke()  # a stopped notifier starts no round
    assert http_server.count("/slow") == notify.SENDERS


def test_a_gate_passed_by_an_acceptance_names_the_operator_as_written():
    from pipeline.training import quality
    from pipeline.training.gates import Gates

    figures = {"train": {"month": "2021-06", "rows_kept": 10}}
    said = "Olga Ivanova accepted the data of 2021-06 and 2021-07 at 2026-12-06 21:00 UTC: real."
    (warning,) = quality.apply_gates(Gates(min_rows_kept=100, mode="block"), figures, {}, said)
    assert warning.endswith(f"; passed because {said}") and warning.startswith("The gate min_rows_kept failed")
