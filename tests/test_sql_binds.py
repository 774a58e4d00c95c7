"""The store's statements bind their values by name (``:name`` and a dict), which SQLAlchemy compiles per backend:
no ``?`` placeholder is left for a regular expression to rewrite (issue 21)."""
from __future__ import annotations

import ast
import re

import pytest

from tests.test_state_machine import ROOT, strings_of

SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|WHERE|VALUES)\b")
CONVERTED = ["runs.py", "triggers.py", "transitions.py", "artifacts.py", "models.py", "scheduling.py", "workers.py",
             "transfer.py", "notifications.py", "files.py"]


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


def sent_the_old_way(path) -> list[int]:
    """The lines where a module sends a statement with a tuple or list of values, or with no parameters at all
    (PostgreSQL would then get the text translated, not compiled: a statement without values passes ``{}``)."""
    lines = []
    for call in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.args
                and call.func.attr in ("execute", "executemany", "_one", "_all")
                and (len(call.args) < 2 or isinstance(call.args[1], (ast.Tuple, ast.List)))):
            lines.append(call.lineno)
    return lines


@pytest.mark.parametrize("module", CONVERTED)
def test_a_converted_store_module_sends_every_statement_with_a_dict(module):
    assert sent_the_old_way(ROOT / "pipeline" / "store" / module) == []
