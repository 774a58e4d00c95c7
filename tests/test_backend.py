"""The one interface a backend implements (``store/backend.py``) and the SQL compiled per dialect (``store/sql.py``)."""
from __future__ import annotations

import inspect

import pytest

from pipeline.store import Store
from pipeline.store import sql as store_sql
from pipeline.store.backend import Backend
from pipeline.store.base import HistoryConnection
from pipeline.store.postgres import PgConnection

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
            assert store.conn.dialect in store_sql.DIALECTS
        finally:
            store.close()


CONSTRUCTS = [store_sql.json_get("r.fields", "month"), store_sql.json_text("fields", "month"),
              store_sql.json_true("r.fields", "synthetic"), store_sql.json_merge("fields", "changes"),
              store_sql.epoch_days("r.ended_at"), store_sql.json_array_values("d.tags")]


@pytest.mark.parametrize("dialect", sorted(store_sql.DIALECTS))
def test_every_construct_has_a_spelling_in_every_dialect(dialect):
    """A third backend that forgets one ``@compiles`` fails here, not in a user's history."""
    for construct in CONSTRUCTS:
        text = store_sql.fragment(construct, dialect)
        assert text and type(construct).__name__ not in text  # SQLAlchemy's generic fallback names the class


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


def test_an_in_list_binds_each_value_and_an_empty_one_matches_nothing(tmp_path):
    store = Store(tmp_path / "history.db")
    names, params = store_sql.in_list("name", ["default", "missing"])
    rows = store.conn.execute(f"SELECT name FROM work_queues WHERE name IN ({names})", params).fetchall()
    assert [r[0] for r in rows] == ["default"]
    names, params = store_sql.in_list("name", [])
    assert store.conn.execute(f"SELECT name FROM work_queues WHERE name IN ({names})", params).fetchall() == []
