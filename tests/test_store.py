"""The store on SQLite: the contract every backend passes (``tests/store_contract.py``) on a file in tmp_path,
and what only SQLite has (WAL, busy timeout, foreign keys)."""
import datetime as dt
import sqlite3

import pytest

from pipeline.store import Store, from_db, to_db
from tests.store_contract import StoreContract, make_run


class TestSQLiteStore(StoreContract):
    """The contract on a SQLite file: the settings' own, as the scheduler's tests have it."""

    read_only_errors = (sqlite3.OperationalError,)

    @pytest.fixture
    def location(self, settings):
        return settings.db_path


def test_the_history_uses_wal_busy_timeout_and_foreign_keys(tmp_path):
    store = Store(tmp_path / "h.db")
    make_run(store)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert (tmp_path / "h.db-wal").exists()


def test_times_are_stored_as_sortable_utc_text():
    moment = dt.datetime(2026, 3, 8, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    assert to_db(moment) == "2026-03-08T07:00:00.000000Z"
    assert from_db(to_db(moment)) == moment
    with pytest.raises(ValueError, match="naive"):
        to_db(dt.datetime(2026, 1, 1))
