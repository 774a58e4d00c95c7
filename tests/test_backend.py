"""The one interface a backend implements (``store/backend.py``); the SQL compiled per dialect (``store/sql.py``)."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.store import Store
from pipeline.store import sql as store_sql
from pipeline.store.backend import Backend
from pipeline.store.base import HistoryConnection
from pipeline.store.postgres import PgConnection

ROOT = Path(__file__).resolve().parents[1]
METHODS = [name for name in dir(Backend) if not name.startswith("_")]  # methods and properties
ATTRIBUTES = list(Backend.__annotations__)  # set on each connection (or its class)


@pytest.mark.parametrize("backend", [HistoryConnection, PgConnection], ids=["sqlite", "postgresql"])
def test_each_backend_has_every_member_of_the_interface_with_its_parameters(backend):
    missing = [name for name in METHODS if not hasattr(backend, name)]
    assert not missing, f"{backend.__name__} lacks {missing}"
    for name in METHODS:
        wanted = getattr(Backend, name, None)
        if inspect.isfunction(wanted):
            theirs = list(inspect.signature(getattr(backend, name)).parameters)
            assert theirs == list(inspect.signature(wanted).parameters), f"{backend.__name__}.{name}"


def test_a_store_on_each_backend_hands_out_connections_that_are_backends(tmp_path, pg_url):
    for location in (tmp_path / "history.db", pg_url):
        store = Store(location)
        try:
            assert isinstance(store.conn, Backend)
            assert all(hasattr(store.conn, name) for name in ATTRIBUTES)
            assert store.conn.dialect in store_sql.DIALECT_NAMES
        finally:
            store.close()


CONSTRUCTS = [store_sql.json_get("r.fields", "month"), store_sql.json_text("fields", "month"),
              store_sql.json_true("r.fields", "synthetic"), store_sql.json_merge("fields", "changes"),
              store_sql.epoch_days("r.ended_at"), store_sql.json_array_values("d.tags")]


@pytest.mark.parametrize("dialect", store_sql.DIALECT_NAMES)
def test_every_construct_has_a_spelling_in_every_dialect(dialect):
    """A third backend that forgets one ``@compiles`` fails here, not in a user's history."""
    for construct in CONSTRUCTS:
        assert store_sql.fragment(construct, dialect)  # SQLAlchemy raises for a construct it cannot spell


def test_a_statement_takes_each_drivers_bind_style_and_keeps_its_percent_signs():
    statement = "SELECT name FROM runs WHERE id = :id AND name LIKE 'bulk%' AND at < '2026-01-01T00:00:00Z'"
    assert store_sql.compiled(statement, "sqlite") == statement
    assert store_sql.compiled(statement, "postgresql") == (
        "SELECT name FROM runs WHERE id = %(id)s AND name LIKE 'bulk%%' AND at < '2026-01-01T00:00:00Z'")


def test_json_keys_and_columns_that_are_not_plain_names_are_refused_before_they_reach_sql():
    with pytest.raises(ValueError, match="not a plain SQL name"):
        store_sql.json_get("fields", "month') OR 1=1 --")
    with pytest.raises(ValueError, match="not a plain SQL name"):
        store_sql.json_text("fields; DROP TABLE flow_runs", "month")
    with pytest.raises(ValueError, match="not a plain SQL name"):
        store_sql.json_get("r.metrics", "rmse\n")


def test_an_in_list_binds_each_value_and_an_empty_one_matches_nothing(tmp_path):
    store = Store(tmp_path / "history.db")
    names, params = store_sql.in_list("name", ["default", "missing"])
    rows = store.conn.execute(f"SELECT name FROM work_queues WHERE name IN ({names})", params).fetchall()
    assert [r[0] for r in rows] == ["default"]
    names, params = store_sql.in_list("name", [])
    assert store.conn.execute(f"SELECT name FROM work_queues WHERE name IN ({names})", params).fetchall() == []


def test_every_dialect_spells_every_construct():
    from pipeline.store import dialects

    assert set(dialects.DIALECTS) == set(store_sql.DIALECT_NAMES)
    assert {(construct, dialect) for construct in dialects.CONSTRUCTS.values()
            for dialect in dialects.DIALECTS} == set(dialects.SPELLINGS)


STATEMENTS = """
import sys
from pipeline.store import Store
store = Store(sys.argv[1])
store.runs()
store.count_runs()
print("sqlalchemy" in sys.modules)
"""


def run_statements(tmp_path, cache: str) -> str:
    env = {**os.environ, "FHV_SQL_CACHE": cache}
    done = subprocess.run([sys.executable, "-c", STATEMENTS, str(tmp_path / "history.db")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_process_that_compiled_a_statement_before_compiles_nothing_and_imports_no_sqlalchemy(tmp_path):
    cache = tmp_path / "sql-cache"
    assert run_statements(tmp_path, str(cache)) == "True"  # the first compiles (and migrates the history)
    [written] = cache.glob("sql-*.json")
    assert any("SELECT" in compiled for compiled in json.loads(written.read_text()).values())
    assert run_statements(tmp_path, str(cache)) == "False"  # the next one reads every compilation


def test_a_damaged_cache_file_is_compiled_again_and_rewritten(tmp_path):
    cache = tmp_path / "sql-cache"
    run_statements(tmp_path, str(cache))
    [written] = cache.glob("sql-*.json")
    written.write_text('{"sqlite\\u0000SELECT 1": ')  # half a file
    assert run_statements(tmp_path, str(cache)) == "True"
    assert json.loads(written.read_text())  # whole again
    assert run_statements(tmp_path, str(cache)) == "False"


def test_with_the_cache_off_nothing_is_written(tmp_path):
    assert run_statements(tmp_path, "off") == "True"
    assert not list(tmp_path.rglob("sql-*.json"))



def test_a_cache_file_past_its_cap_starts_anew_with_what_the_last_process_used(tmp_path):
    cache = tmp_path / "sql-cache"
    run_statements(tmp_path, str(cache))
    [written] = cache.glob("sql-*.json")
    junk = {f"sqlite\0SELECT {i}": f"SELECT {i}" for i in range(store_sql.MAX_REMEMBERED)}
    written.write_text(json.dumps({**json.loads(written.read_text()), **junk}))
    script = STATEMENTS.replace("store.count_runs()", "store.conn.execute('SELECT 42 AS fresh', {})")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "history.db")], cwd=ROOT, timeout=120,
                          env={**os.environ, "FHV_SQL_CACHE": str(cache)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    kept = json.loads(written.read_text())
    assert "sqlite\0SELECT 42 AS fresh" in kept and "sqlite\0SELECT 7" not in kept
    assert len(kept) < store_sql.MAX_REMEMBERED
