"""A missing prerequisite skips a test with its reason, but fails it where CI asks for every test."""
from __future__ import annotations

import pytest

from tests.prerequisites import STRICT, unavailable


def test_a_missing_prerequisite_skips_with_its_reason(monkeypatch):
    monkeypatch.delenv(STRICT, raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not installed"):
        unavailable("PostgreSQL is not installed.")


def test_under_strict_mode_a_missing_prerequisite_fails(monkeypatch):
    monkeypatch.setenv(STRICT, "1")
    with pytest.raises(pytest.fail.Exception, match=r"PostgreSQL is not installed. \(FHV_TESTS_STRICT=1: CI must"):
        unavailable("PostgreSQL is not installed.")


def test_ci_runs_the_readme_test_command_in_strict_mode():
    from pathlib import Path

    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert f"{STRICT}=1" in ci and "./test.sh" in ci
