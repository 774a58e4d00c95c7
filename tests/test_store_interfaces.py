"""The store's interfaces (``pipeline/store/interfaces.py``) against ``Store`` and against their consumers.

Static checks, no database: every method an interface lists is on ``Store`` with the same parameters; every
public method of ``Store`` is listed once; each part of ``Store`` uses only what it defines or declares; and a
consumer annotated with an interface calls only what that interface lists.
"""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from pipeline.store import Store, interfaces
from pipeline.store.interfaces import INTERFACES, Recorder, members

ROOT = Path(__file__).resolve().parents[1]
CONSUMERS = sorted(p for folder in ("pipeline", "dashboard") for p in (ROOT / folder).rglob("*.py")
                   if "store" not in p.relative_to(ROOT).parts)
PARTS = [part for part in Store.__mro__[1:] if part.__module__.startswith("pipeline.store.")]
INTERNAL = {"conn", "row_locks", "lock_queue", "claim_idle_timeout_ms"}  # the parts' shared core (``StoreParts``)


def everything(interface: type) -> set[str]:
    """What an interface offers: its own members and those of the interfaces it extends."""
    return {name for base in interface.__mro__ if base.__module__ == interfaces.__name__ for name in members(base)}


def parameters(function: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("interface", INTERFACES, ids=lambda i: i.__name__)
def test_the_store_has_every_method_of_each_interface_with_the_same_parameters(interface):
    for name in members(interface):
        assert hasattr(Store, name) or any(name in vars(part).get("__annotations__", {}) for part in PARTS), name
        listed, real = getattr(interface, name, None), getattr(Store, name, None)
        if callable(listed) and not isinstance(vars(interface)[name], property):
            assert parameters(real) == parameters(listed), (f"Store.{name} and interfaces.{interface.__name__}.{name} "
                                                            "take different parameters: change both")


def test_every_public_method_of_the_store_is_listed_in_exactly_one_interface():
    listed = [name for interface in INTERFACES for name in members(interface)]
    assert sorted(name for name in set(listed) if listed.count(name) > 1) == [], "listed in two interfaces"
    public = {name for name in dir(Store) if not name.startswith("_")}
    assert sorted(public - set(listed) - INTERNAL) == [], ("a public method of Store in no interface: list it in the "
                                                           "interface of its consumer (pipeline/store/interfaces.py)")


def _self_names(part: type) -> tuple[set[str], set[str]]:
    """The ``self.X`` a part reads, and the ``self.X`` it assigns, in its own source."""
    tree = ast.parse(inspect.getsource(part))
    used, assigned = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            (assigned if isinstance(node.ctx, ast.Store) else used).add(node.attr)
    return used, assigned


def _declared(part: type) -> set[str]:
    """What a part may use: what it and its own bases define, declare (annotate) or assign."""
    names: set[str] = set()
    for base in part.__mro__[:-1]:
        names |= set(vars(base)) | set(vars(base).get("__annotations__", {})) | _self_names(base)[1]
    return names


@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.__name__)
def test_each_part_of_the_store_uses_only_what_it_defines_or_declares(part):
    used, _ = _self_names(part)
    assert sorted(used - _declared(part)) == [], f"{part.__name__} uses another part's members undeclared"


def _annotated(tree: ast.AST) -> list[tuple[ast.AST, str, type]]:
    """(scope, expression text, interface): each parameter or attribute annotated with an interface."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in node.args.args + node.args.kwonlyargs:
                interface = _interface(arg.annotation)
                if interface is not None and arg.arg != "self":
                    found.append((node, arg.arg, interface))
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                interface = _interface(getattr(item, "annotation", None))
                if isinstance(item, ast.AnnAssign) and interface is not None:
                    found.append((node, f"self.{item.target.id}", interface))
            init = next((i for i in node.body if isinstance(i, ast.FunctionDef) and i.name == "__init__"), None)
            for arg in init.args.args[1:] if init else []:
                if (interface := _interface(arg.annotation)) is not None:
                    found.append((node, f"self.{arg.arg}", interface))
    return found


def _interface(annotation: ast.AST | None) -> type | None:
    name = annotation.id if isinstance(annotation, ast.Name) else \
        annotation.value if isinstance(annotation, ast.Constant) else None
    value = vars(interfaces).get(name) if isinstance(name, str) else None
    return value if isinstance(value, type) and value.__module__ == interfaces.__name__ else None


def _calls_outside(scope: ast.AST, holder: str, offered: set[str]) -> set[str]:
    return {node.attr for node in ast.walk(scope) if isinstance(node, ast.Attribute)
            and ast.unparse(node.value) == holder and node.attr not in offered}


@pytest.mark.parametrize("path", CONSUMERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_consumer_calls_only_what_its_interface_lists(path):
    """A flow's code reaches the history through ``context.store``, a ``Recorder``, wherever it is."""
    tree = ast.parse(path.read_text())
    wrong = {f"{holder}: {interface.__name__} has no {', '.join(sorted(names))}"
             for scope, holder, interface in _annotated(tree)
             if (names := _calls_outside(scope, holder, everything(interface)))}
    if names := _calls_outside(tree, "context.store", everything(Recorder)):
        wrong.add(f"context.store: Recorder has no {', '.join(sorted(names))}")
    assert sorted(wrong) == []


def test_the_runtime_the_services_the_dashboard_and_the_model_registry_say_which_interface_they_use():
    wanted = {"pipeline/orchestration/runtime.py": "Recorder", "pipeline/orchestration/scheduler.py": "ServiceHistory",
              "pipeline/orchestration/worker.py": "ServiceHistory", "dashboard/queries.py": "DashboardHistory",
              "pipeline/training/champion.py": "ModelRegistry", "pipeline/training/acceptance.py": "ModelRegistry",
              "pipeline/cli/runs.py": "DashboardHistory", "pipeline/orchestration/services/lease.py": "SchedulerLease"}
    for path, name in wanted.items():
        used = {interface.__name__ for _, _, interface in _annotated(ast.parse((ROOT / path).read_text()))}
        assert name in used, path


def test_every_backend_runs_the_whole_contract_and_no_test_is_picked_by_name():
    from tests.store_contract import StoreContract
    from tests.test_postgres import TestPostgresStore
    from tests.test_store import TestSQLiteStore

    contract = {name for name in vars(StoreContract) if name.startswith("test_")}
    assert len(contract) > 20
    for backend in (TestSQLiteStore, TestPostgresStore):  # a backend may add tests; it drops or rewrites none
        assert issubclass(backend, StoreContract) and not contract & set(vars(backend)), backend.__name__
    picked = [path.name for path in (ROOT / "tests").glob("test_*.py")
              if path.name != Path(__file__).name and "getattr(test_" in path.read_text()]  # another module's tests
    assert picked == []
