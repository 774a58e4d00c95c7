"""Data checks: each month's figures against plain pandas, PSI and JS distance against independent
computations, the gates through real runs, and the deployment settings."""
import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.spatial.distance import jensenshannon

from pipeline.errors import ConfigError
from pipeline.orchestration import control
from pipeline.orchestration.deployments import DeploymentSpec, register
from pipeline.training import flow, quality
from pipeline.training.demo import generate_month
from pipeline.training.features import read_month
from pipeline.training.gates import Gates, check_gates

ROWS = 6000


def plain_psi(expected: list[float], actual: list[float], eps: float = 1e-4) -> float:
    """PSI as the textbook writes it, in plain Python: shares, empty shares as eps."""
    e_total, a_total = sum(expected), sum(actual)
    total = 0.0
    for e, a in zip(expected, actual):
        e_share, a_share = (e / e_total) or eps, (a / a_total) or eps
        total += (a_share - e_share) * math.log(a_share / e_share)
    return total


# --- PSI and JS distance ---------------------------------------------------------------------------

DISTRIBUTIONS = [
    ([10, 20, 30, 40], [10, 20, 30, 40]),
    ([10, 20, 30, 40], [40, 30, 20, 10]),
    ([5, 0, 7, 100], [0, 3, 7, 90]),
    ([1, 0], [0, 1]),
    ([1000, 1, 1, 1], [1, 1, 1, 1000]),
]


@pytest.mark.parametrize("expected, actual", DISTRIBUTIONS)
def test_psi_agrees_with_a_plain_python_psi(expected, actual):
    assert quality.psi(np.array(expected), np.array(actual)) == pytest.approx(plain_psi(expected, actual), abs=1e-12)


@pytest.mark.parametrize("expected, actual", DISTRIBUTIONS)
def test_js_distance_agrees_with_scipy_in_base_2(expected, actual):
    assert quality.js_distance(np.array(expected), np.array(actual)) == pytest.approx(
        jensenshannon(expected, actual, base=2), abs=1e-12)


def test_identical_months_have_no_drift_and_disjoint_ones_the_most():
    assert quality.psi(np.array([3, 4]), np.array([3, 4])) == 0 and quality.js_distance([3, 4], [6, 8]) == 0
    assert quality.js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)


def test_zone_maps_are_aligned_over_the_union_and_zones_that_came_or_went_are_listed():
    ref = {"hist": {"pickup": {"1": 5, "2": 5, "missing": 10}, "dropoff": {"7": 3}, "duration": [1] * 60},
           "month": "2021-01", "pu_missing_share": 0.5, "do_missing_share": 0.25}
    cur = {"hist": {"pickup": {"2": 5, "3": 5, "missing": 10}, "dropoff": {"7": 9}, "duration": [1] * 60},
           "month": "2021-02", "pu_missing_share": 0.4, "do_missing_share": 0.25}
    drift = quality.drift(ref, cur)
    assert drift["zones_appeared"] == {"pickup": [3], "dropoff": []}
    assert drift["zones_vanished"] == {"pickup": [1], "dropoff": []}
    assert drift["pickup"]["psi"] == pytest.approx(plain_psi([5, 5, 0, 10], [0, 5, 5, 10]))
    assert drift["dropoff"] == {"psi": 0.0, "js": 0.0} and drift["duration"]["psi"] == 0.0
    assert drift["pu_missing_change"] == pytest.approx(-0.1) and drift["do_missing_change"] == 0.0


# --- a month's figures against pandas ----------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    """A demo month with some timestamps removed, so that every drop rule has rows."""
    table = generate_month("2021-06", ROWS)
    pickup = table.column("pickup_datetime").to_pylist()
    for i in range(0, ROWS, 97):
        pickup[i] = None
    table = table.set_column(1, "pickup_datetime", pa.array(pickup, pa.timestamp("us")))
    path = tmp_path_factory.mktemp("quality") / "fhv_tripdata_2021-06.parquet"
    pq.write_table(table, path)
    return path


def pandas_figures(path) -> dict:
    df = pd.read_parquet(path)
    minutes = (df.dropOff_datetime - df.pickup_datetime).dt.total_seconds() / 60
    kept = df[(minutes >= 1) & (minutes <= 60)]
    duration = minutes[kept.index]
    return {
        "rows_read": len(df), "rows_kept": len(kept),
        "dropped": {"missing_times": int(minutes.isna().sum()), "under_1_min": int((minutes < 1).sum()),
                    "over_60_min": int((minutes > 60).sum())},
        "pu_missing_share": df.PUlocationID.isna().mean(), "do_missing_share": df.DOlocationID.isna().mean(),
        "duration_p5": duration.quantile(0.05), "duration_p50": duration.quantile(0.5),
        "duration_p95": duration.quantile(0.95),
        "pu_zones": df.PUlocationID.nunique(), "do_zones": df.DOlocationID.nunique(),
        "pickup": zone_counts(kept.PUlocationID), "dropoff": zone_counts(kept.DOlocationID),
        "duration": np.bincount(np.minimum(np.floor(duration - 1), 59).astype(int), minlength=60).tolist(),
    }


def zone_counts(column: pd.Series) -> dict[str, int]:
    counts = column.fillna(-1).astype(int).value_counts()
    return {("missing" if zone == -1 else str(zone)): int(n) for zone, n in counts.items()}


def test_a_months_figures_match_a_plain_pandas_computation(demo_file):
    ours = quality.month_figures(read_month(demo_file, "june").summary, "2021-06")
    expected = pandas_figures(demo_file)
    assert ours["month"] == "2021-06" and all(expected["dropped"].values())
    for key in ("rows_read", "rows_kept", "dropped", "pu_zones", "do_zones"):
        assert ours[key] == expected[key], key
    for key in ("pu_missing_share", "do_missing_share", "duration_p5", "duration_p50", "duration_p95"):
        assert ours[key] == pytest.approx(expected[key], rel=1e-12), key
    assert ours["hist"] == {side: expected[side] for side in ("pickup", "dropoff", "duration")}


@pytest.mark.parametrize("fraction_us, tolerance", [(1000, 0.0), (1, 1 / 60_000)])  # ms: exact; us: within 1 ms
def test_quantiles_of_sub_second_times_are_exact_to_the_millisecond(tmp_path, fraction_us, tolerance):
    table = generate_month("2021-06", 3000)
    shift = np.random.default_rng(7).integers(0, 1000, table.num_rows) * fraction_us
    dropoff = pa.array(table.column("dropOff_datetime").to_numpy() + shift.astype("timedelta64[us]"))
    path = tmp_path / "sub_second.parquet"
    pq.write_table(table.set_column(2, "dropOff_datetime", dropoff), path)
    ours, expected = quality.month_figures(read_month(path, "s").summary, "2021-06"), pandas_figures(path)
    for key in ("duration_p5", "duration_p50", "duration_p95"):
        assert ours[key] == pytest.approx(expected[key], rel=1e-12, abs=tolerance)


# --- gates ----------------------------------------------------------------------------------------

def figures(month: str, kept: int, pu_missing: float, pickup: dict) -> dict:
    return {"month": month, "rows_kept": kept, "pu_missing_share": pu_missing, "do_missing_share": 0.1,
            "hist": {"pickup": pickup, "dropoff": {"1": 10}, "duration": [1] * 60}}


def test_each_gate_that_fails_gives_one_sentence_naming_its_value_and_limit():
    train, val = figures("2021-06", 900, 0.5, {"1": 10, "2": 10}), figures("2021-07", 5000, 0.7, {"1": 19, "2": 1})
    drifts = {"train_vs_champion": None, "val_vs_train": quality.drift(train, val)}
    found = quality.breaches(Gates(), {"train": train, "val": val}, drifts)
    assert [b.gate for b in found] == ["min_rows_kept", "max_psi", "max_missing_change"]
    assert found[0].sentence == ("The gate min_rows_kept failed: 2021-06 kept 900 trips of 1 to 60 minutes, fewer "
                                 "than the limit of 1,000.")
    assert "pickup zones of the validation month 2021-07 against the training month 2021-06 is 1.325," \
        in found[1].sentence
    assert found[2].sentence.endswith("moved by +20.0 points in the validation month 2021-07 against the training "
                                      "month 2021-06, more than the limit of 10 points.")
    assert quality.breaches(Gates(min_rows_kept=900, max_psi=2, max_missing_change=0.2), {"train": train}, drifts) == []


@pytest.fixture
def deployed(store, settings, clock):
    """Run a demo run of a deployment with ``gates`` through the real flow; the run's row."""
    def run(gates: dict):
        register(store, DeploymentSpec(name="gated", gates=gates), clock.now(), settings=settings)
        row = control.trigger(store, settings, deployment="gated", date=dt.date(2021, 8, 15), now=clock.now())
        assert store.claim_due_run(now=clock.now(), work_queue="default", claimer="test")["id"] == row["id"]
        flow.execute(store, settings, row["id"], clock=clock)
        return store.get_run(row["id"])
    return run


def test_a_gate_in_warn_mode_marks_the_run_which_completes(deployed):
    run = deployed({"min_rows_kept": 10**7})
    assert run["state"] == "COMPLETED" and run["parameters"]["gates"]["mode"] == "warn"
    data = run["metrics"]["data"]
    month = min(data.values(), key=lambda m: m["rows_kept"])  # the gate names the month with fewer trips
    assert run["metrics"]["warnings"] == [f"The gate min_rows_kept failed: {month['month']} kept "
                                          f"{month['rows_kept']:,} trips of 1 to 60 "
                                          "minutes, fewer than the limit of 10,000,000."]
    assert run["metrics"]["drift"]["val_vs_train"]["current"] == "2021-07"


def test_a_gate_in_block_mode_fails_the_run_in_check_data_with_its_sentence(deployed, store):
    run = deployed({"max_psi": 0, "mode": "block"})
    assert run["state"] == "FAILED" and run["error_task"] == "check_data"
    assert run["error"].startswith("The gate max_psi failed: the PSI of ") and "above the limit of 0." in run["error"]
    states = {t["task"]: t["state"] for t in store.task_runs(run["id"])}
    assert states["check_data"] == "FAILED" and states["train_model"] == "NOT_RUN"
    assert store.artifacts(run["id"]) == []
    # the blocked run keeps the figures that made the gate fail (no warnings: its error says it)
    assert set(run["metrics"]) == {"data", "drift"} and run["metrics"]["data"]["val"]["month"] == "2021-07"
    drift = run["metrics"]["drift"]["val_vs_train"]
    worst = max(drift[side]["psi"] for side in ("pickup", "dropoff", "duration"))
    assert f"is {worst:.3f}, above the limit of 0." in run["error"]


def test_a_blocked_run_shows_its_data_report_and_the_gate_that_stopped_it(deployed, settings, monkeypatch):
    import streamlit as st

    from tests.test_dashboard import open_page, texts

    run = deployed({"max_psi": 0, "mode": "block"})
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_DATA_URL", settings.data_url)
    try:
        at = open_page("run_detail", id=run["id"])
        shown = texts(at)
        assert not at.exception and run["error"] in shown and "Every data gate passed." not in shown
        assert any("Rows kept" in t.value.columns for t in at.table) and "No metrics: the run did not complete." in shown
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


def test_a_run_without_gate_failures_has_no_warnings(deployed):
    run = deployed({"min_rows_kept": 10, "max_psi": 100, "max_missing_change": 1})
    assert run["state"] == "COMPLETED" and run["metrics"]["warnings"] == []
    assert set(run["metrics"]["data"]) == {"train", "val"} and run["metrics"]["data"]["val"]["month"] == "2021-07"


# --- deployment settings --------------------------------------------------------------------------

def test_a_deployments_gates_and_tolerance_become_run_parameters_with_the_defaults_filled_in():
    spec = DeploymentSpec(name="q", gates={"mode": "block"}, promotion_tolerance=0.02)
    assert spec.gates == {"min_rows_kept": 1000, "max_psi": 0.25, "max_missing_change": 0.1, "mode": "block"}
    assert spec.to_row()["parameters"] == {"gates": spec.gates, "promotion_tolerance": 0.02}
    assert DeploymentSpec(name="plain").to_row()["parameters"] == {}
    assert check_gates(None) == Gates() and check_gates(Gates(max_psi=1)).max_psi == 1.0


@pytest.mark.parametrize("fields, message", [
    ({"gates": {"max_psi": -1}}, "The gate max_psi -1 must be a number from 0 to 100."),
    ({"gates": {"max_missing_change": 1.5}}, "The gate max_missing_change 1.5 must be a number from 0 to 1."),
    ({"gates": {"min_rows_kept": 2.5}}, "The gate min_rows_kept 2.5 must be a whole number of at least 0, like 1000."),
    ({"gates": {"mode": "stop"}}, "The gate mode 'stop' is unknown; use 'warn' or 'block'."),
    ({"gates": {"max_rows": 3}}, "The gate setting 'max_rows' is unknown; the settings are min_rows_kept, max_psi, "
                                 "max_missing_change, mode."),
    ({"gates": "strict"}, "The gates must be a dict like {'max_psi': 0.25, 'mode': 'block'}, not 'strict'."),
    ({"promotion_tolerance": -0.1}, "The promotion tolerance -0.1 must be a number of at least 0, like 0.01."),
    ({"promotion_tolerance": float("nan")}, "The promotion tolerance nan must be a number of at least 0, like 0.01."),
    ({"gates": {}, "parameters": {"gates": {}}}, "The deployment 'q' sets 'gates' both as a field and in its "
                                                 "parameters; keep one."),
])
def test_bad_gate_settings_are_refused_with_one_sentence(fields, message):
    with pytest.raises(ConfigError) as error:
        DeploymentSpec(name="q", **fields)
    assert str(error.value) == message


def test_the_training_month_drifts_against_the_champions_training_month(store, settings, clock):
    first = store.get_run(flow.run_now(store, settings, date="2021-08-15", name="first", clock=clock).run_id)
    second = store.get_run(flow.run_now(store, settings, date="2021-09-15", name="second", clock=clock).run_id)
    assert first["metrics"]["drift"]["train_vs_champion"] is None  # no champion yet
    drift = second["metrics"]["drift"]["train_vs_champion"]
    assert (drift["reference"], drift["current"]) == ("2021-06", "2021-07")
    before, now = first["metrics"]["data"]["train"]["hist"], second["metrics"]["data"]["train"]["hist"]
    keys = sorted(set(before["dropoff"]) | set(now["dropoff"]))
    assert drift["dropoff"]["psi"] == pytest.approx(plain_psi([before["dropoff"].get(k, 0) for k in keys],
                                                              [now["dropoff"].get(k, 0) for k in keys]))


def test_the_reference_month_is_the_champions_not_the_previous_runs(store, settings, clock):
    from pipeline.training import champion

    first = flow.run_now(store, settings, date="2021-08-15", name="first", clock=clock).run_id
    flow.run_now(store, settings, date="2021-09-15", name="second", clock=clock)
    if store.champion(flow.FLOW_NAME)["id"] != first:  # second may have been promoted: make first the champion again
        champion.promote(store, settings, first, actor="ann", now=clock.now())
    third = store.get_run(flow.run_now(store, settings, date="2021-10-15", name="third", clock=clock).run_id)
    drift = third["metrics"]["drift"]["train_vs_champion"]
    assert (drift["reference"], drift["current"]) == ("2021-06", "2021-08")  # first's training month, not second's


def test_run_json_and_runs_show_json_carry_data_drift_and_warnings(tmp_path):
    env = {**os.environ, "FHV_HOME": str(tmp_path), "FHV_DATA_URL": "demo:500",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cli = [sys.executable, "-m", "pipeline"]
    done = subprocess.run([*cli, "run", "--date", "2021-08-15", "--json"], env=env, capture_output=True, text=True,
                          timeout=120)
    ran = json.loads(done.stdout)
    assert done.returncode == 0 and ran["data"]["train"]["rows_read"] == 500
    assert ran["drift"]["val_vs_train"]["reference"] == "2021-06" and ran["drift"]["train_vs_champion"] is None
    assert ran["warnings"] == [  # 500 trips a month: too few, and too few for the zones' shares to be stable
        "The gate min_rows_kept failed: 2021-06 kept 466 trips of 1 to 60 minutes, fewer than the limit of 1,000.",
        "The gate max_psi failed: the PSI of drop-off zones of the validation month 2021-07 against the training "
        "month 2021-06 is 1.325, above the limit of 0.25."]
    shown = subprocess.run([*cli, "runs", "show", ran["run_id"], "--json"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert {k: json.loads(shown.stdout)[k] for k in ("data", "drift", "warnings")} == {
        k: ran[k] for k in ("data", "drift", "warnings")}
    plain = subprocess.run([*cli, "runs", "show", ran["run_id"]], env=env, capture_output=True, text=True,
                           timeout=60, check=True)
    assert "Warning: The gate min_rows_kept failed: 2021-06 kept 466" in " ".join(plain.stdout.split())


# --- dashboard ------------------------------------------------------------------------------------

@pytest.fixture
def two_runs(tmp_path, monkeypatch):
    """A history with two real demo runs (the second one drifts against the first, its champion)."""
    import streamlit as st

    from pipeline.config import Settings
    from pipeline.store import Store
    from tests.conftest import FakeClock

    settings = Settings(home=tmp_path / "fhv", data_url="demo:500").ensure_dirs()
    store = Store(settings.db_path)
    ids = [flow.run_now(store, settings, date=day, name=f"run-{day}", clock=FakeClock()).run_id
           for day in ("2021-08-15", "2021-09-15")]
    store.close()
    monkeypatch.setenv("FHV_HOME", str(settings.home))
    monkeypatch.setenv("FHV_DATA_URL", "demo:500")
    yield ids
    st.cache_data.clear()
    st.cache_resource.clear()


def test_a_runs_page_shows_its_data_report(two_runs):
    from tests.test_dashboard import open_page, texts

    at = open_page("run_detail", id=two_runs[1])
    shown = texts(at)
    assert "Data checks" in [h.value for h in at.subheader] and "The gate min_rows_kept failed: 2021-07 kept" in shown
    assert "training vs champion's" in shown and "vanished" in shown
    months = next(t.value for t in at.table if "Rows kept" in t.value.columns)
    assert list(months.index) == ["training 2021-07", "validation 2021-08"]
    drift = next(t.value for t in at.table if "PSI" in t.value.columns)
    assert len(drift) == 6  # two comparisons, three distributions each


def test_the_trends_page_shows_the_data_checks_across_months(two_runs):
    from tests.test_dashboard import open_page, table

    at = open_page("trends")
    trend = table(at, "psi_pickup")
    assert list(trend["months"]) == ["train 2021-07 → val 2021-08", "train 2021-06 → val 2021-07"]
    assert (trend["warnings"] >= 1).all() and trend["psi_duration"].notna().all()


def test_the_data_charts_draw_their_data_and_say_when_there_is_none():
    from dashboard import charts, training_charts
    from dashboard import quality as view

    data = {"train": {"month": "2021-06", "hist": {"duration": [1] * 60}},
            "val": {"month": "2021-07", "hist": {"duration": [2] * 30 + [0] * 30}}}
    figure = charts.duration_shares(view.duration_shares(data))
    assert [t.name for t in figure.data] == ["training 2021-06", "validation 2021-07"]
    assert sum(figure.data[1].y) == pytest.approx(1.0) and figure.data[1].y[0] == pytest.approx(1 / 30)
    assert charts.duration_shares(view.duration_shares({})).layout.annotations[0].text.startswith("No duration")
    assert training_charts.drift_trends(view.trend_frame([])).layout.annotations[0].text.startswith("No completed run")
