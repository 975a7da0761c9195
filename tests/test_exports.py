"""The pinned exports: ``__all__`` lists exactly what a package means to be public, and every name in it imports.

For the client, each private module's ``__all__`` is its surface (every public class and function it defines, and
in ``_types`` every alias too), and the package's ``__all__`` is the union of those surfaces but for the names kept
internal below. For the sidecar, ``tollgate.app``, ``tollgate.ids`` and ``tollgate.errors`` pin theirs.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import tollgate_client
from tollgate_client import _errors, _types

INTERNAL = {
    "_commits": None,  # the asyncio client's background sender: applications call commit_in_background
    "_errors": {"from_rpc_error", "from_status"},  # the clients call them; applications get their exceptions
    "_retry": {"Attempts", "MONEY", "NEVER", "READ"},  # the clients' retry bookkeeping
    "_wire": None,  # the requests and conversions the clients execute: all of it
}
"""Names of the client's modules' ``__all__`` that the package does not export (None: none of the module's)."""


def _client_modules() -> list[ModuleType]:
    return [importlib.import_module(f"tollgate_client.{info.name}")
            for info in pkgutil.iter_modules(tollgate_client.__path__) if info.name != "v1"]


def _top_level(module: ModuleType, *, aliases: bool = False) -> set[str]:
    """The public classes and functions a module defines, by its source; with ``aliases``, its assignments too."""
    tree = ast.parse(inspect.getsource(module))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif aliases and isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif aliases and isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_") and name != "__all__"}


def test_the_client_package_exports_only_what_imports() -> None:
    exported = tollgate_client.__all__
    assert len(exported) == len(set(exported)), "a name is listed twice"
    missing = [name for name in exported if not hasattr(tollgate_client, name)]
    assert not missing, f"in tollgate_client.__all__ but not importable: {missing}"
    for name in exported:
        value = getattr(tollgate_client, name)
        module = getattr(value, "__module__", "")
        if inspect.isclass(value) or inspect.isfunction(value):
            assert module.startswith("tollgate_client."), f"{name} comes from {module}, not from the package"


@pytest.mark.parametrize("module", _client_modules(), ids=lambda module: module.__name__)
def test_each_client_module_lists_what_it_defines(module: ModuleType) -> None:
    listed = set(module.__all__)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"in {module.__name__}.__all__ but not defined: {missing}"
    defined = _top_level(module, aliases=module is _types)
    assert defined <= listed, f"defined in {module.__name__} but not in its __all__: {sorted(defined - listed)}"


def test_the_client_package_exports_every_modules_surface() -> None:
    expected: set[str] = set()
    for module in _client_modules():
        short = module.__name__.rpartition(".")[2]
        internal = INTERNAL.get(short, set())
        if internal is None:
            continue
        stale = internal - set(module.__all__)
        assert not stale, f"INTERNAL names what {short} no longer has: {stale}"
        expected.update(set(module.__all__) - internal)
    exported = set(tollgate_client.__all__)
    assert not expected - exported, f"public but not in tollgate_client.__all__: {sorted(expected - exported)}"
    assert not exported - expected, f"in tollgate_client.__all__ but internal: {sorted(exported - expected)}"


def test_the_names_applications_need_are_exported() -> None:
    exported = set(tollgate_client.__all__)
    errors = {name for name, value in vars(_errors).items()
              if inspect.isclass(value) and issubclass(value, _errors.TollgateClientError)}
    assert {"TollgateClientError", "BudgetExceededError", "RateLimitedError", "IdempotencyConflictError",
            "EscalationRefusedError", "UnavailableError"} <= errors
    assert errors <= exported, f"error classes not exported: {sorted(errors - exported)}"
    types = _top_level(_types, aliases=True)
    assert {"Scope", "Usage", "Decision", "Priority", "MessageLike", "Escalation", "TaskQuality"} <= types
    assert types <= exported, f"types not exported: {sorted(types - exported)}"
    assert {"AsyncClient", "Client", "Retry", "DEFAULT_RETRY"} <= exported


@pytest.mark.parametrize("name", ["tollgate.app", "tollgate.ids", "tollgate.errors"])
def test_the_sidecars_pinned_exports_import(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"a name is listed twice in {name}.__all__"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"in {name}.__all__ but not importable: {missing}"


def test_every_sidecar_error_is_exported() -> None:
    errors = importlib.import_module("tollgate.errors")
    classes = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, errors.TollgateError)}
    assert "TollgateError" in classes and "RateLimited" in classes
    assert classes <= set(errors.__all__), f"not in tollgate.errors.__all__: {sorted(classes - set(errors.__all__))}"
