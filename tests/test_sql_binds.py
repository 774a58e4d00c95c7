"""The product's statements bind their values by name (``:name`` and a dict), which SQLAlchemy compiles per backend,
and spell nothing only one backend reads outside the backends' own modules: nothing is left to rewrite."""
from __future__ import annotations

import ast
import re

import pytest

from tests.test_state_machine import ROOT, strings_of

SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|WHERE|VALUES)\b")
MODULES = sorted(path.relative_to(ROOT / "pipeline").as_posix() for path in (ROOT / "pipeline").rglob("*.py"))
STORE = [module for module in MODULES if module.startswith("store/")]
SPELLED_BY_ONE_BACKEND = re.compile(r"\b(json_extract|julianday|json_patch|json_each|json_set|randomblob|"
                                    r"jsonb\w*|to_char)\s*\(|strftime\('%Y-%m-%dT|BEGIN IMMEDIATE|::jsonb")
# the backends' own modules, where one dialect's SQL belongs; the shipped migrations; the constructs
OWN_SPELLING = {"store/base.py", "store/postgres.py", "store/dialects.py", "store/migrations.py",
                "store/migrations_postgres.py", "store/files.py", "store/transfer.py"}


def positional(text: str) -> bool:
    """SQL text with a ``?`` outside its string literals."""
    return bool(SQL.search(text)) and "?" in re.sub(r"'[^']*'", "", text)


def test_positional_sql_is_recognised():
    assert positional("SELECT * FROM flow_runs WHERE id = ?")
    assert not positional("SELECT * FROM flow_runs WHERE id = :id AND name <> '?'")
    assert not positional("Is the run done?")


@pytest.mark.parametrize("module", MODULES)
def test_a_module_binds_every_value_by_name(module):
    path = ROOT / "pipeline" / module
    assert [line for line, text in strings_of(path) if positional(text)] == []


@pytest.mark.parametrize("module", sorted(set(MODULES) - OWN_SPELLING))
def test_a_module_spells_nothing_only_one_backend_reads(module):
    path = ROOT / "pipeline" / module
    assert [line for line, text in strings_of(path) if SQL.search(text) and SPELLED_BY_ONE_BACKEND.search(text)] == []


def sent_by_position(path) -> list[int]:
    """The lines where a module sends a statement with a tuple or list of values (PostgreSQL's connection refuses
    them: the store binds by name)."""
    lines = []
    for call in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and len(call.args) >= 2
                and call.func.attr in ("execute", "_one", "_all")
                and isinstance(call.args[1], (ast.Tuple, ast.List))):
            lines.append(call.lineno)
    return lines


@pytest.mark.parametrize("module", STORE)
def test_a_store_module_sends_every_statement_with_a_dict(module):
    assert sent_by_position(ROOT / "pipeline" / module) == []
