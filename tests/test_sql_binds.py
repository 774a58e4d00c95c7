"""The store's statements bind their values by name (``:name`` and a dict), which SQLAlchemy compiles per backend:
no ``?`` placeholder is left for a regular expression to rewrite (issue 21)."""
from __future__ import annotations

import re

import pytest

from tests.test_state_machine import ROOT, strings_of

SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|WHERE|VALUES)\b")
CONVERTED = ["runs.py", "triggers.py", "transitions.py", "artifacts.py", "models.py"]


def positional(text: str) -> bool:
    """SQL text with a ``?`` outside its string literals."""
    return bool(SQL.search(text)) and "?" in re.sub(r"'[^']*'", "", text)


def test_positional_sql_is_recognised():
    assert positional("SELECT * FROM flow_runs WHERE id = ?")
    assert not positional("SELECT * FROM flow_runs WHERE id = :id AND name <> '?'")
    assert not positional("Is the run done?")


@pytest.mark.parametrize("module", CONVERTED)
def test_a_converted_store_module_binds_every_value_by_name(module):
    path = ROOT / "pipeline" / "store" / module
    assert [line for line, text in strings_of(path) if positional(text)] == []
