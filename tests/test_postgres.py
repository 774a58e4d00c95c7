"""The history on PostgreSQL: one sentence per bad setting, ``history copy``, the dashboard's reads
giving the same answers as on SQLite, and artifacts served from the history. A real throwaway
server (``tests/pgserver.py``); the store's contract (``tests/store_contract.py``) runs here as
``TestPostgresStore``."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import streamlit as st
from psycopg.errors import ReadOnlySqlTransaction

from pipeline.cli import main
from pipeline.config import load_settings
from pipeline.errors import ConfigError, StorageError
from pipeline.orchestration.states import State
from pipeline.store import MIGRATIONS, Store
from pipeline.store.base import SCHEMA_VERSION
from pipeline.store.dashboard import SORTS
from pipeline.store import sql as store_sql
from pipeline.store.postgres import check_server_version
from pipeline.training.job import FLOW_NAME as TRAINING
from tests.dashboard_seed import seed_history
from tests.store_contract import StoreContract
from tests.pgserver import PASSWORD, PASSWORD_USER, free_port

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)


# -- configuration: one sentence each ---------------------------------------------------------
def test_fhv_database_url_must_be_a_postgresql_url_and_its_password_is_not_repeated():
    with pytest.raises(ConfigError, match=r"FHV_DATABASE_URL='mysql://\.\.\.' is not a PostgreSQL URL") as caught:
        load_settings({"FHV_DATABASE_URL": "mysql://me:hunter2@db/fhv"})
    assert "hunter2" not in str(caught.value)
    url = "postgresql://me:hunter2@db:5432/fhv"
    settings = load_settings({"FHV_DATABASE_URL": url, "FHV_HOME": "/tmp/x"})
    assert settings.history == url and settings.history_label == "postgresql://me:***@db:5432/fhv"
    assert load_settings({"FHV_HOME": "/tmp/x"}).history == Path("/tmp/x/history.db")


def test_a_closed_port_is_an_unreachable_server(pg_server):
    url = pg_server.url(port=free_port())
    with pytest.raises(StorageError, match=r"The PostgreSQL server of the history postgresql://postgres@127\.0\.0\.1:"
                                           r"\d+/postgres cannot be reached: check the host and port"):
        Store(url)


def test_a_wrong_password_is_refused_with_a_sentence_that_does_not_repeat_it(pg_server):
    with pytest.raises(ConfigError, match=f"PostgreSQL refused the password of the user '{PASSWORD_USER}'") as caught:
        Store(pg_server.url(user=PASSWORD_USER, password="wrong-horse"))
    assert "wrong-horse" not in str(caught.value)
    place = pg_server.fresh_schema()  # a schema of the shared database, given to that user
    schema = place.rsplit("%3D", 1)[1]
    pg_server.admin_in("histories", f"ALTER SCHEMA {schema} OWNER TO {PASSWORD_USER}")
    right = Store(place.replace("//postgres@", f"//{PASSWORD_USER}:{PASSWORD}@"))
    assert right.applied_migrations() == [name for name, _ in MIGRATIONS]
    right.close()


def test_a_missing_database_is_named_with_how_to_create_it(pg_server):
    with pytest.raises(ConfigError, match="The database 'no_such_history' of the history .* does not exist on that "
                                          r"PostgreSQL server: create it \(createdb no_such_history\)"):
        Store(pg_server.url("no_such_history"))


def test_a_server_older_than_13_is_refused_and_13_is_enough():
    url = "postgresql://me:pw@db:5432/fhv"
    with pytest.raises(ConfigError, match=r"runs version 12\.17; the pipeline needs PostgreSQL 13 or newer"):
        check_server_version(120017, url)
    with pytest.raises(ConfigError, match=r"runs version 9\.6\.24"):
        check_server_version(90624, url)
    check_server_version(130000, url)


def test_a_history_written_by_a_newer_schema_is_refused_with_both_versions(pg_schema_url):
    Store(pg_schema_url).conn.execute("INSERT INTO migrations VALUES ('0099_future', 't')", {})
    newer = (f"written by schema version 99; this version of the pipeline knows up to {SCHEMA_VERSION}: upgrade "
             "the pipeline, or point FHV_DATABASE_URL at another database")
    with pytest.raises(StorageError, match=newer):
        Store(pg_schema_url)
    with pytest.raises(StorageError, match=newer):
        Store(pg_schema_url, readonly=True).runs()


def test_the_command_line_says_one_sentence_for_a_bad_database(pg_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FHV_HOME", str(tmp_path))
    monkeypatch.setenv("FHV_DATABASE_URL", pg_server.url("missing_db", password="secret"))
    assert main(["runs", "ls"]) == 2
    err = capsys.readouterr().err
    assert "The database 'missing_db' of the history" in err and "Traceback" not in err and "secret" not in err


def test_a_lost_connection_is_a_storage_error_and_the_next_call_reconnects(pg_server, pg_schema_url):
    store = Store(pg_schema_url)
    pg_server.admin(f"SELECT pg_terminate_backend({store.conn.raw.info.backend_pid})")
    with pytest.raises(StorageError, match="the connection to the PostgreSQL server failed or was lost"):
        store.count_runs()
    assert store.count_runs() == 0
    with pytest.raises(StorageError, match="failed or was lost"):  # lost inside a transaction: nothing half-written
        with store.atomic() as conn:
            conn.execute("INSERT INTO work_queues (name, created_at) VALUES ('half', 't')", {})
            pg_server.admin(f"SELECT pg_terminate_backend({store.conn.raw.info.backend_pid})")
            conn.execute("INSERT INTO work_queues (name, created_at) VALUES ('written', 't')", {})
    assert [q["name"] for q in store.work_queues()] == ["default"]
    store.close()


def test_processes_migrating_at_once_apply_each_migration_once(pg_schema_url):
    errors: list[BaseException] = []

    def open_history():
        try:
            Store(pg_schema_url).close()
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=open_history) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Store(pg_schema_url).applied_migrations() == [name for name, _ in MIGRATIONS]


# -- history copy -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def copied(pg_server, tmp_path_factory):
    """The dashboard's seeded history (with its artifacts' bytes), copied onto PostgreSQL by the CLI."""
    seeded = seed_history(tmp_path_factory.mktemp("seed") / "fhv", now=NOW)
    source = Store(seeded.settings.db_path)
    for run_id in seeded.completed:
        for artifact in source.artifacts(run_id):
            source.put_artifact_blob(artifact["sha256"], Path(artifact["path"]).read_bytes(), now=NOW)
    source.create_run(flow="f", name="pending-one", state=State.PENDING, now=NOW, work_queue="default")
    source.close()
    url = pg_server.fresh_database()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FHV_HOME", str(seeded.settings.home))
        code = main(["history", "copy", "--to", url])
    assert code == 0
    return seeded, Store(seeded.settings.db_path, readonly=True), Store(url), url


def test_history_copy_copies_every_table_row_for_row(copied):
    _, sqlite, postgres, _ = copied
    tables = [r[0] for r in sqlite.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                "AND name NOT IN ('migrations', 'history_identity')").fetchall()]
    assert {"flow_runs", "task_runs", "logs", "deployments", "work_queues", "artifacts",
            "artifact_blobs"} <= set(tables)
    for table in tables:
        order = "ORDER BY 1 NULLS FIRST" if table != "schedulers" else ""
        mine = [tuple(json.loads(v) if k == "fields" else v for k, v in zip(r.keys(), r))  # JSONB there
                for r in sqlite.conn.execute(f"SELECT * FROM {table} {order}").fetchall()]
        theirs = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                  for r in postgres.conn.execute(f"SELECT * FROM {table} {order}", {}).fetchall()]
        assert theirs == mine, table
    assert postgres.history_identity() != sqlite.history_identity()  # another history, with its own id


def test_after_a_copy_new_rows_get_ids_after_the_copied_ones(copied):
    seeded, sqlite, postgres, _ = copied
    last = sqlite.conn.execute("SELECT MAX(id) FROM task_runs").fetchone()[0]
    new = postgres.create_task_run(seeded.completed[0], "extra", position=9, attempt=1, state=State.COMPLETED, now=NOW)
    postgres.conn.execute("DELETE FROM task_runs WHERE id = :id", {"id": new})  # the module's copy stays a copy
    assert new == last + 1


def test_history_copy_refuses_a_database_that_is_not_empty(copied, pg_server, capsys):
    seeded, _, postgres, url = copied
    runs = postgres.count_runs()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FHV_HOME", str(seeded.settings.home))
        assert main(["history", "copy", "--to", url]) == 2
        assert "is not empty (its table" in capsys.readouterr().err
        other = pg_server.fresh_database()
        with Store(other, migrate=False).atomic() as conn:
            conn.execute("CREATE TABLE invoices (x INTEGER)", {})
        assert main(["history", "copy", "--to", other]) == 2
        assert "already has tables that are not a history (invoices)" in capsys.readouterr().err
    assert postgres.count_runs() == runs


# -- the dashboard's reads: the same answers on both backends -------------------------------------
READS = {
    "runs": lambda s: s.runs(limit=500), "upcoming order": lambda s: s.runs(limit=500, order="upcoming"),
    "count_by_state": lambda s: s.count_by_state(), "metric_history": lambda s: s.metric_history(TRAINING),
    "active_runs": lambda s: s.active_runs(), "work_queues": lambda s: s.work_queues(),
    "deployments": lambda s: s.deployments(), "tags_in_use": lambda s: s.tags_in_use(),
    "trend_points": lambda s: s.trend_points(TRAINING, "val_rmse", by="val_month", keys=("train_rmse", "val_rows")),
    "trend_points real": lambda s: s.trend_points(TRAINING, "val_rmse", by="val_month", without="synthetic"),
    "trend_points per run": lambda s: s.trend_points(TRAINING, "val_rmse"),
    "flag_counts": lambda s: s.flag_counts(TRAINING, "synthetic"), "latest_run": lambda s: s.latest_run(now=NOW),
    "latest_run of a flow": lambda s: s.latest_run(now=NOW, flow=TRAINING),
    "overdue_runs": lambda s: s.overdue_runs(now=NOW), "run_timeline": lambda s: s.run_timeline(),
    "upcoming_runs": lambda s: s.upcoming_runs(until=NOW + dt.timedelta(days=400)),
    "due_runs": lambda s: s.due_runs(due_by=NOW), "next_due_time": lambda s: s.next_due_time(after=NOW),
    "scheduler_status": lambda s: s.scheduler_status(), "run_list_points": lambda s: s.run_list_points(),
    "cancellable_ids": lambda s: sorted(s.cancellable_ids()), "search": lambda s: s.run_list(search="2026"),
    "tag filter": lambda s: s.run_list(tag="ml") + s.run_list(tag="nope"),
    "run detail": lambda s: [(s.task_runs(r), s.logs(r), s.log_level_counts(r), s.backfill_batch(r))
                             for r in [x["id"] for x in s.runs(limit=500)]],
    **{f"run_list {sort}": (lambda sort: lambda s: s.run_list(limit=500, sort=sort, metric="val_rmse",
                                                              metrics=("val_rmse", "train_rows")))(sort)
       for sort in SORTS},
    "run_list of a flow": lambda s: s.run_list(limit=500, flow=TRAINING) + s.run_list(flow="nope"),
}


@pytest.mark.parametrize("read", READS)
def test_the_dashboard_reads_give_the_same_answers_on_both_backends(copied, read):
    _, sqlite, postgres, _ = copied
    expected = READS[read](sqlite)
    assert expected not in ([], {}, None, (0, 0))  # the seeded history gives every read something to return
    assert READS[read](postgres) == expected


# -- artifacts served from the history -------------------------------------------------------------
def test_the_dashboard_downloads_artifacts_from_the_history_when_no_local_file_is_there(copied, monkeypatch):
    from tests.test_dashboard import open_page

    seeded, _, postgres, url = copied
    shutil.rmtree(seeded.settings.artifacts_dir)
    monkeypatch.setenv("FHV_HOME", str(seeded.settings.home))
    monkeypatch.setenv("FHV_DATABASE_URL", url)
    try:
        at = open_page("run_detail", id=seeded.completed[-1])
        assert len([b for b in at.download_button if b.key and b.key.startswith("artifact_")]) == 2
        assert not [c for c in at.caption if c.value == "file not found"]
        from dashboard import queries
        for artifact in postgres.artifacts(seeded.completed[-1]):
            data = queries.artifact_data(artifact)
            assert len(data) == artifact["size"] and postgres.read_artifact(artifact) == data
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()


# -- the store's contract, on PostgreSQL ----------------------------------------------------------
class TestPostgresStore(StoreContract):
    """The contract on a fresh database per test (advisory locks, such as the scheduler's, are per database)."""

    read_only_errors = (ReadOnlySqlTransaction,)

    @pytest.fixture
    def location(self, pg_url):
        return pg_url


# -- a real run on PostgreSQL --------------------------------------------------------------------
def test_a_run_on_postgresql_records_its_tasks_and_keeps_its_model_in_the_history(pg_url, tmp_path, monkeypatch,
                                                                                 capsys):
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    monkeypatch.setenv("FHV_DATABASE_URL", pg_url)
    assert main(["run", "--date", "2021-08-15", "--data-url", "demo:2000", "--json"]) == 0
    capsys.readouterr()
    store = Store(pg_url, readonly=True)
    (run,) = store.runs()
    assert run["state"] == "COMPLETED" and run["metrics"]["val_rmse"] > 0
    assert {t["task"] for t in store.task_runs(run["id"])} >= {"read_data", "train_model"}
    artifacts = store.artifacts(run["id"])
    assert artifacts and all(a["stored"] for a in artifacts)
    shutil.rmtree(tmp_path / "fhv" / "artifacts")  # another host: no local files, the history has the bytes
    assert [len(store.read_artifact(a)) for a in artifacts] == [a["size"] for a in artifacts]
    assert not (tmp_path / "fhv" / "history.db").exists()
    store.close()


def test_the_integrity_check_names_an_index_left_invalid(pg_schema_url):
    store = Store(pg_schema_url)
    assert store.integrity_check() == "ok"
    store.conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'flow_runs_created'::regclass",
                       {})
    assert store.integrity_check() == "invalid indexes: flow_runs_created"
    store.close()


def test_a_forked_child_opens_its_own_connection_and_leaves_its_parents_alone(pg_schema_url):
    store = Store(pg_schema_url)
    parent = store.conn
    pid = os.fork()
    if pid == 0:  # the child: a connection of its own, then exit without closing the parent's socket
        try:
            ok = store.conn is not parent and store.count_runs() == 0
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30  # a child that hangs fails the test rather than the suite's timeout
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    if done == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done != (0, 0) and done[1] == 0
    assert store.conn is parent and store.count_runs() == 0
    store.close()


def test_history_copy_needs_a_postgresql_url_and_an_existing_history(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FHV_HOME", str(tmp_path))
    assert main(["history", "copy", "--to", "mysql://me:hunter2@db/fhv"]) == 2
    assert "--to 'mysql://...' is not a PostgreSQL URL" in capsys.readouterr().err
    assert main(["history", "copy", "--to", "postgresql://me@db/fhv"]) == 2
    assert f"There is no history at {tmp_path / 'history.db'} to copy" in capsys.readouterr().err


def test_a_schema_change_by_another_process_does_not_break_a_statement_read_before(pg_schema_url):
    """A newer pipeline on another host migrates the history while this one runs (a rolling upgrade)."""
    mine, theirs = Store(pg_schema_url), Store(pg_schema_url)
    for _ in range(7):  # often enough for a driver that prepares repeated statements
        assert mine.count_runs() == 0 and mine.runs() == []
    theirs.conn.execute("ALTER TABLE flow_runs ADD COLUMN added_by_a_newer_pipeline TEXT", {})
    assert mine.runs() == []
    mine.close()
    theirs.close()


def test_a_user_who_may_only_read_and_write_rows_uses_a_migrated_history(pg_server, pg_schema_url):
    """Migrations by the owner, the services as a user without CREATE: opening the history makes no DDL."""
    Store(pg_schema_url).close()
    schema = pg_schema_url.rsplit("%3D", 1)[1]
    pg_server.admin_in("histories", "CREATE ROLE fhv_rows LOGIN", f"GRANT USAGE ON SCHEMA {schema} TO fhv_rows",
                       f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO fhv_rows",
                       f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO fhv_rows")
    store = Store(pg_schema_url.replace("//postgres@", "//fhv_rows@"))
    assert make_history_run(store) and store.count_runs() == 1
    store.close()


def make_history_run(store: Store) -> str:
    return store.create_run(flow="f", name="by-a-row-user", state=State.SCHEDULED, now=NOW, work_queue="default")


# -- the SQL as PostgreSQL gets it, compiled by SQLAlchemy (no server needed) -------------------------------
@pytest.mark.parametrize("written, postgresql", [
    ("SELECT * FROM t WHERE a = :a AND b LIKE '%?%'", "SELECT * FROM t WHERE a = %(a)s AND b LIKE '%%?%%'"),
    ("SELECT ROW_NUMBER() OVER (PARTITION BY v ORDER BY e DESC NULLS LAST) FROM t ORDER BY x NULLS LAST",
     "SELECT ROW_NUMBER() OVER (PARTITION BY v ORDER BY e DESC NULLS LAST) FROM t ORDER BY x NULLS LAST"),
    (store_sql.json_get("r.metrics", "val_rmse"), "NULLIF((r.metrics)::jsonb -> 'val_rmse', 'null'::jsonb)"),
    (store_sql.json_array_values("d.tags"), "jsonb_array_elements_text((d.tags)::jsonb) AS json_each(value)"),
    (store_sql.json_text("r.fields", "month"), "((r.fields)::jsonb ->> 'month')"),
    (store_sql.json_true("r.fields", "flag"), "(((r.fields)::jsonb -> 'flag') = 'true'::jsonb) IS TRUE"),
    (store_sql.json_merge("fields", "values"), "jsonb_strip_nulls((fields)::jsonb || (:values)::jsonb)"),
    (store_sql.epoch_days("r.ended_at"), "(EXTRACT(EPOCH FROM (r.ended_at)::timestamptz) / 86400.0)"),
])
def test_the_store_s_sql_reaches_postgresql_as_the_history_s_indexes_and_rows_expect(written, postgresql):
    """The spellings existing histories were read with (their expression indexes name these expressions)."""
    sent = store_sql.compiled(written, "postgresql") if isinstance(written, str) else \
        store_sql.fragment(written, "postgresql")
    assert sent == postgresql


def test_a_statement_with_values_by_position_is_refused_with_a_sentence(pg_url):
    store = Store(pg_url)
    with pytest.raises(TypeError, match="binds values by name"):
        store.conn.execute("SELECT name FROM work_queues WHERE name = ?", ("default",))
    store.close()


def test_the_dashboard_s_scheduler_command_names_the_database_but_not_its_password(tmp_path):
    from dashboard import labels

    settings = load_settings({"FHV_HOME": str(tmp_path), "FHV_DATABASE_URL": "postgresql://fhv:hunter2@db:5432/fhv"})
    command = labels.scheduler_command(settings)
    assert "FHV_DATABASE_URL=postgresql://fhv@db:5432/fhv" in command and "hunter2" not in command


def test_a_row_locked_longer_than_the_lock_timeout_is_a_busy_history(pg_schema_url):
    import psycopg

    store = Store(pg_schema_url.replace("?options=", "?options=-c%20lock_timeout%3D200%20"))
    run_id = store.create_run(flow="f", name="held", state=State.PENDING, now=NOW, work_queue="default")
    with psycopg.connect(pg_schema_url) as other:  # another process holds the run's row in its transaction
        other.execute("SELECT 1 FROM flow_runs WHERE id = %s FOR UPDATE", (run_id,))
        with pytest.raises(StorageError, match=r"is busy: another process held a lock for more than"):
            store.transition(run_id, State.RUNNING, now=NOW)
    assert store.transition(run_id, State.RUNNING, now=NOW)["state"] == "RUNNING"
    store.close()


def test_a_user_who_may_not_create_the_tables_is_told_what_to_grant(pg_server):
    pg_server.admin("CREATE ROLE fhv_guest LOGIN")
    url = pg_server.fresh_database().replace("//postgres@", "//fhv_guest@")  # owned by postgres: no CREATE in public
    with pytest.raises(ConfigError, match=r"The PostgreSQL user 'fhv_guest' lacks a right the history .* needs "
                                          r"\(permission denied for schema public\): make it the owner"):
        Store(url)


def test_a_server_left_by_a_killed_test_session_is_stopped_by_the_next(pg_server):
    from tests.pgserver import OWNER, PgServer, stop_orphans

    bin_dir = pg_server.bin  # the session's server is there, so PostgreSQL is (else the fixture said why)
    orphan = PgServer(bin_dir).start()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (orphan.folder / OWNER).write_text(str(dead.pid))  # its session was killed
    alive = PgServer(bin_dir).start()  # this session's own: left alone
    try:
        assert stop_orphans(bin_dir) == [orphan.folder]
        assert not orphan.folder.exists() and (alive.data / "postmaster.pid").exists()
    finally:
        orphan.stop()
        alive.stop()


@pytest.mark.parametrize("password", ["k3y@zq9", "k3y@zq9/xw7@", "k3y/zq9"])
def test_a_password_with_an_unescaped_at_or_slash_is_refused_and_never_partly_shown(password):
    url = f"postgresql://fhv:{password}@db.example:5432/fhv"
    for attempt in (lambda: load_settings({"FHV_DATABASE_URL": url, "FHV_HOME": "/tmp/x"}), lambda: Store(url)):
        with pytest.raises(ConfigError) as caught:
            attempt()
        text = str(caught.value)
        assert "FHV_DATABASE_URL='postgresql://fhv:***@db.example:5432/fhv' has an '@' or '/'" in text, text
        assert not [piece for piece in ("k3y", "zq9", "xw7") if piece in text]
