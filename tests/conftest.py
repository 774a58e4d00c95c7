"""Shared fixtures: a history in tmp_path, settings pointing at it, a fake clock."""
from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable

import pytest

from pipeline.config import Settings
from pipeline.flows import load_flows
from pipeline.store import Store
from tests import sql_audit

pytest_plugins = ["tests.httpserver", "tests.pgserver"]

load_flows()  # as every entry point does: importing ``pipeline`` registers no flow
sql_audit.install()  # every ORDER BY term that may meet a NULL says where NULLs go (SQLite and PostgreSQL differ)

UTC = dt.timezone.utc


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it and records the delay."""

    def __init__(self, start: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=UTC)):
        self.moment = start
        self.sleeps: list[float] = []

    def now(self) -> dt.datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> dt.datetime:
        self.moment += dt.timedelta(seconds=seconds)
        return self.moment


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` (real time) until it returns something true, and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "fhv", data_url="demo:4000").ensure_dirs()


@pytest.fixture
def store(settings) -> Store:
    history = Store(settings.db_path)
    yield history
    history.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """Where a contract test's history lives: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "h.db"
    return request.getfixturevalue("pg_schema_url")
