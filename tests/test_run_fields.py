"""A run's flow fields: kept in its ``fields`` (JSON), not as columns of the core's tables; on both backends."""
import datetime as dt

import pytest

from pipeline.errors import ConfigError
from pipeline.orchestration.registry import Field, FlowEntry, register_flow
from pipeline.scoring.job import FLOW_NAME as SCORING
from pipeline.store import MIGRATIONS, Store
from pipeline.store.rows import RUN_COLUMNS

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
BEFORE = [name for name, _ in MIGRATIONS].index("0014_run_fields")
OLD_RUN_COLUMNS = ("id", "name", "state", "ended_at", "run_date", "train_month", "val_month", "data_source",
                   "synthetic", "metrics")
OLD_RUN = ("INSERT INTO flow_runs (id, name, flow, state, created_at, ended_at, run_date, train_month, val_month, "
           "data_source, synthetic, metrics) VALUES (:id, :name, 'trainer', :state, '2021-01-01T00:00:00.000000Z', "
           ":ended_at, :run_date, :train_month, :val_month, :data_source, :synthetic, :metrics)")


@pytest.fixture
def store(location):
    history = Store(location)
    yield history
    history.close()


def named(*values):
    return dict(zip(OLD_RUN_COLUMNS, values))


def _old_history(location) -> None:
    """A history written by the schema before 0014: the flow's fields as columns of flow_runs."""
    old = Store(location, migrate=False)
    old.migrate(upto=BEFORE)
    with old.atomic() as conn:
        conn.execute(OLD_RUN, named("r1", "real", "COMPLETED", "2021-08-02T00:00:00.000000Z", "2021-08-01", "2021-06",
                               "2021-07", "https://tlc/{month}", 0, '{"val_rmse": 7.5}'))
        conn.execute(OLD_RUN, named("r2", "demo", "COMPLETED", "2021-08-03T00:00:00.000000Z", "2021-08-01", "2021-06",
                               "2021-07", "demo://", 1, '{"val_rmse": 6.5}'))
        conn.execute(OLD_RUN, named("r3", "bare", "FAILED", None, None, None, None, None, 0, None))
        conn.execute("INSERT INTO data_acceptances (flow, blocked_run_id, train_month, val_month, actor, at, reason) "
                     "VALUES ('trainer', 'r1', '2021-06', '2021-07', 'olga', '2021-08-02T00:00:00.000000Z', 'Real.')")
    old.close()


def test_a_history_of_the_previous_schema_moves_every_run_s_fields_into_fields_and_drops_the_columns(location):
    _old_history(location)
    new = Store(location)
    assert [new.get_run(i)["fields"] for i in ("r1", "r2", "r3")] == [
        {"train_month": "2021-06", "val_month": "2021-07", "data_source": "https://tlc/{month}", "synthetic": False},
        {"train_month": "2021-06", "val_month": "2021-07", "data_source": "demo://", "synthetic": True},
        {"synthetic": False}]
    assert new.get_run("r1")["run_date"] == "2021-08-01" and new.get_run("r2")["metrics"] == {"val_rmse": 6.5}
    columns = set(new.conn.execute("SELECT * FROM flow_runs WHERE id = 'r1'").fetchone().keys())
    assert columns == RUN_COLUMNS
    assert new.integrity_check() == "ok"


def test_a_history_at_0014_with_its_field_indexes_upgrades_and_keeps_its_fields(location):
    _old_history(location)
    at_0014 = Store(location, migrate=False)
    at_0014.migrate(upto=BEFORE + 1)
    at_0014.index_fields([FlowEntry(name="trainer", execute="x:y", run_fields=dict,
                                    fields=(Field("val_month", "Validation month", indexed=True),))])
    at_0014.close()
    new = Store(location)
    assert new.get_run("r2")["fields"]["synthetic"] is True and new.update_fields("r2", {"val_month": "2021-08"})
    assert new.trend_points("trainer", "val_rmse", by="val_month")[-1]["name"] == "demo"


def test_an_acceptance_of_the_previous_schema_keeps_its_months_as_its_subject(location):
    _old_history(location)
    new = Store(location)
    found = new.acceptance(flow="trainer", subject="2021-06/2021-07")
    assert (found["blocked_run_id"], found["actor"], found["train_month"]) == ("r1", "olga", "2021-06")
    assert new.newest_acceptance("trainer")["id"] == found["id"]


OLD_SCORING_COLUMNS = ("id", "name", "state", "ended_at", "run_date", "metrics")
OLD_SCORING = ("INSERT INTO flow_runs (id, name, flow, state, created_at, ended_at, run_date, data_source, synthetic, "
               f"metrics) VALUES (:id, :name, '{SCORING}', :state, '2021-01-01T00:00:00.000000Z', :ended_at, :run_date, "
               "'demo://', 1, :metrics)")


def _old_scoring_history(location) -> None:
    """Scoring runs written before 0014 (no month of theirs: only data_source and synthetic became fields), and one
    written at 0016 with its month."""
    old = Store(location, migrate=False)
    old.migrate(upto=BEFORE)
    with old.atomic() as conn:
        for row in (("s1", "scored", "COMPLETED", "2021-08-16T00:00:00.000000Z", "2021-08-15",
                     '{"rows_scored": 10, "rmse": 9.5, "month": "2021-07"}'),
                    ("s2", "failed", "FAILED", None, "2021-03-31", None),
                    ("s3", "odd", "FAILED", None, "2021-09-01", '{"month": "2021-06", "mean": NaN, "worst": -Infinity}'),
                    ("s4", "dateless", "FAILED", None, None, None)):
            conn.execute(OLD_SCORING, dict(zip(OLD_SCORING_COLUMNS, row)))
    old.migrate(upto=[name for name, _ in MIGRATIONS].index("0016_flow_read_indexes") + 1)
    old.create_run(flow=SCORING, name="newer", state="FAILED", now=T0, run_date="2021-06-15", month="2021-05",
                   metrics={"month": "2021-04"})
    old.close()


def test_scoring_runs_of_the_previous_schema_get_the_month_they_scored(location):
    _old_history(location)
    _old_scoring_history(location)
    new = Store(location)
    months = {run["name"]: new.get_run(run["id"])["fields"].get("month") for run in new.run_list(flow=SCORING)}
    assert months == {"scored": "2021-07", "failed": "2021-02", "odd": "2021-06", "dateless": None, "newer": "2021-05"}
    assert new.get_run("s1")["fields"] == {"data_source": "demo://", "synthetic": True, "month": "2021-07"}
    assert "month" not in new.get_run("r1")["fields"]  # a training run keeps its own fields
    assert [(p["name"], p["month"]) for p in new.trend_points(SCORING, "rmse", by="month")] == [("scored", "2021-07")]


def test_a_run_keeps_the_fields_its_flow_gives_and_reads_them_flattened(store):
    run_id = store.create_run(flow="trainer", name="n", state="SCHEDULED", now=T0, run_date=dt.date(2021, 8, 1),
                              work_queue="default", train_month="2021-06", synthetic=True, data_source=None)
    run = store.get_run(run_id)
    assert run["fields"] == {"train_month": "2021-06", "synthetic": True}  # a None is left out
    assert (run["run_date"], run["train_month"], run["synthetic"], run["work_queue"]) == \
        ("2021-08-01", "2021-06", True, "default")


def test_update_fields_merges_and_a_none_removes_a_field(store):
    run_id = store.create_run(flow="trainer", name="n", state="PENDING", now=T0, a="1", b="2")
    assert store.update_fields(run_id, {"b": None, "c": True, "a": "3"})
    assert store.get_run(run_id)["fields"] == {"a": "3", "c": True}
    assert not store.update_fields("no-such-run", {"a": "1"})


def test_a_crashed_run_s_retry_keeps_its_fields(store):
    run_id = store.create_run(flow="trainer", name="n", state="RUNNING", now=T0, month="2021-07", flag=False)
    ended, retry = store.end_dead_run(run_id, message="gone", now=T0, retries=1)
    assert store.get_run(retry)["fields"] == {"month": "2021-07", "flag": False}


def _completed(store, name, month, rmse, flag, ended, flow="trainer"):
    run_id = store.create_run(flow=flow, name=name, state="RUNNING", now=T0, run_date=f"{month}-15",
                              month=month, flag=flag)
    store.transition(run_id, "COMPLETED", now=ended, metrics={"rmse": rmse, "rows": 10})
    return run_id


def test_trend_points_give_each_value_s_latest_run_and_flag_counts_count_a_flow_s_flags(store):
    _completed(store, "a", "2021-06", 5.0, False, T0)
    _completed(store, "b", "2021-06", 4.0, True, T0 + dt.timedelta(hours=1))
    _completed(store, "c", "2021-07", 3.0, False, T0)
    _completed(store, "other", "2021-05", 1.0, True, T0, flow="scorer")
    points = store.trend_points("trainer", "rmse", by="month", keys=("rows",))
    assert [(p["name"], p["runs"], p["rmse"], p["rows"], p["month"]) for p in points] == \
        [("b", 2, 4.0, 10, "2021-06"), ("c", 1, 3.0, 10, "2021-07")]
    assert [p["name"] for p in store.trend_points("trainer", "rmse", by="month", without="flag")] == ["a", "c"]
    assert len(store.trend_points("trainer", "rmse")) == 3
    assert store.flag_counts("trainer", "flag") == (1, 3) and store.flag_counts("scorer", "flag") == (1, 1)


def test_the_runs_list_filters_by_flow_and_sorts_by_the_metric_asked(store):
    for name, rmse in (("a", 5.0), ("b", 7.0), ("c", 6.0)):
        _completed(store, name, "2021-06", rmse, False, T0)
    _completed(store, "other", "2021-05", 9.0, True, T0, flow="scorer")
    page = store.run_list(flow="trainer", sort="metric_desc", metric="rmse")
    assert [(r["name"], r["metrics"]) for r in page] == [("b", {"rmse": 7.0}), ("c", {"rmse": 6.0}),
                                                         ("a", {"rmse": 5.0})]
    assert [r["name"] for r in store.run_list(sort="metric_asc", metric="rmse")] == ["a", "c", "b", "other"]
    assert store.count_run_list(flow="scorer") == 1 and len(store.run_list_points(flow="scorer")) == 0
    assert store.latest_run(now=T0, flow="scorer")["name"] == "other"
    with pytest.raises(ValueError, match="rmse; drop"):
        store.run_list(sort="metric_desc", metric="rmse; drop")


def test_an_indexed_field_gets_an_index_once_and_the_registered_flows_have_theirs(store):
    entry = FlowEntry(name="trainer", execute="x:y", run_fields=dict, fields=(Field("day", "Day", indexed=True),
                                                                               Field("note", "Note")))
    assert store.index_fields([entry]) == ["flow_runs_field_day"]
    assert store.index_fields([entry]) == []
    assert {"flow_runs_field_train_month", "flow_runs_field_val_month"} <= store.conn.index_names()


PERIOD_INDEXED = FlowEntry(name="trainer", execute="x:y", run_fields=dict, fields=(Field("period", "Period", indexed=True),))
OLDER_INDEX = {  # the field's index as the versions before SQLAlchemy made it: histories keep it
    "sqlite": "CREATE INDEX flow_runs_field_period ON flow_runs(flow, (CAST(json_extract(fields, '$.period') AS TEXT)))",
    "postgresql": "CREATE INDEX flow_runs_field_period ON flow_runs(flow, (((fields)::jsonb ->> 'period')))",
}
READ_IN_INDEX_ORDER = {  # the plan reads the runs of the flow in the order of the field's index
    "sqlite": "SEARCH c USING INDEX flow_runs_field_period (flow=?)",
    "postgresql": "Presorted Key: ((c.fields ->> 'period'::text))",
}


def _plan(store, read) -> str:
    """The plan of the statement ``read()`` sends: SQLite's EXPLAIN QUERY PLAN of it, PostgreSQL's auto_explain."""
    if store.dialect == "sqlite":
        sent = []
        store.conn.set_trace_callback(sent.append)
        read()
        store.conn.set_trace_callback(None)
        return "\n".join(row[3] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {sent[-1]}").fetchall())
    logged = []
    store.conn.raw.add_notice_handler(lambda diagnostic: logged.append(diagnostic.message_primary))
    for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0", "SET client_min_messages = log",
                    "SET enable_seqscan = off"):  # a few rows: the server would rather scan them
        store.conn.execute(setting, {})
    read()
    return logged[-1]


@pytest.mark.parametrize("made_by", ["index_fields", "an older version"])
def test_a_trend_by_an_indexed_field_reads_the_runs_in_the_order_of_the_field_s_index(store, made_by):
    if made_by == "an older version":
        with store.atomic() as conn:
            conn.execute(OLDER_INDEX[store.dialect], {})
    assert store.index_fields([PERIOD_INDEXED]) == ([] if made_by == "an older version" else ["flow_runs_field_period"])
    for name, period in (("a", "2021-06"), ("b", "2021-06"), ("c", "2021-07")):
        run_id = store.create_run(flow="trainer", name=name, state="RUNNING", now=T0, period=period)
        store.transition(run_id, "COMPLETED", now=T0, metrics={"rmse": 5.0})
    plan = _plan(store, lambda: store.trend_points("trainer", "rmse", by="period"))
    assert READ_IN_INDEX_ORDER[store.dialect] in plan, plan


def test_a_flow_may_not_declare_a_field_named_as_a_core_column():
    entry = FlowEntry(name="clash", execute="x:y", run_fields=dict, fields=(Field("state", "State"),))
    with pytest.raises(ConfigError, match="'state', which is a column every run has"):
        register_flow(entry)
