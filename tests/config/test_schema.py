"""The published JSON Schema of the config: valid, satisfied by every shipped config, and in step with the parser.

Editors complete and check a config with it (``# yaml-language-server: $schema=...``). A schema
that drifts from the parser is worse than none, so the key sets are compared with the parser's
own lists of allowed keys (its ``node.only(...)`` calls), section by section.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.catalog import suite_config_data
from tollgate.config import default_config_text, parse_config
from tollgate.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "sidecar" / "tollgate" / "config" / "schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# Where each parser function's allowed keys live in the schema.
SECTIONS_OF = {
    "parse_routing": ("routing",),
    "_parse_model": ("models", "*"),
    "_parse_model.price": ("models", "*", "price"),
    "parse_window": ("budgets", "templates", "org", "window"),
    "parse_pool": ("budgets", "templates", "org"),
    "parse_budgets": ("budgets",),
    "parse_estimation": ("estimation",),
    "parse_reservations": ("reservations",),
    "parse_quality": ("quality",),
    "parse_store": ("store",),
    "parse_tls": ("server", "tls"),
    "parse_auth": ("auth",),
    "parse_auth.secret": None,  # the callers file: `callers:` alone, outside the config
    "parse_caller": ("auth", "callers", "[]"),
    "parse_server": ("server",),
    "parse_telemetry": ("telemetry",),
    "parse_limits": ("limits",),
    "parse_provider_rule": ("routing", "providers", "*"),
    "parse_decision_log": ("routing", "decision_log"),
    "parse_config": (),
}


def errors(data: Any) -> list[str]:
    """Every failure, as "dotted.path: message", looking into the branches of ``anyOf`` for the deepest ones."""
    found = []
    stack = list(VALIDATOR.iter_errors(data))
    while stack:
        error = stack.pop()
        if error.context:
            stack.extend(error.context)
        else:
            found.append(f"{'.'.join(map(str, error.absolute_path))}: {error.message}")
    return sorted(found)


def node_at(path: tuple[str, ...]) -> dict[str, Any]:
    """The object schema at ``path``: a property, ``*`` for any entry of a map, ``[]`` for a list item."""
    node: dict[str, Any] = SCHEMA
    for part in path:
        node = _object_of(node)
        if part == "*":
            node = node["additionalProperties"]
        elif part == "[]":
            node = node["items"]
        else:
            node = node["properties"][part]
    return _object_of(node)


def _object_of(node: dict[str, Any]) -> dict[str, Any]:
    """The object branch of ``node``, looking through ``anyOf`` (nullable sections, windows)."""
    if node.get("type") in ("object", ["object", "null"]):
        return node
    for branch in node.get("anyOf", []):
        if branch.get("type") == "object":
            return branch
    if node.get("type") in ("array", ["array", "null"]):
        return node
    raise AssertionError(f"no object schema in {node}")


def parser_key_sets() -> dict[str, set[str]]:
    """Each ``node.only(...)`` call of the config package: its function (and node variable) -> keys."""
    found: dict[str, set[str]] = {}
    constants: dict[str, set[str]] = {}
    for path in sorted((ROOT / "sidecar" / "tollgate" / "config").glob("*.py")):
        tree = ast.parse(path.read_text())
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Tuple):
                names = [e.value for e in stmt.value.elts if isinstance(e, ast.Constant)]
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        constants[target.id] = set(names)
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            for call in ast.walk(func):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "only" and isinstance(call.func.value, ast.Name)):
                    continue
                keys: set[str] = set()
                for arg in call.args:
                    if isinstance(arg, ast.Constant):
                        keys.add(arg.value)
                    elif isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name):
                        keys |= constants.get(arg.value.id, set())
                var = call.func.value.id
                name = func.name if var in ("node", "root") else f"{func.name}.{var.removesuffix('_node')}"
                found[name] = keys
    return found


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_every_section_of_the_parser_has_the_same_keys_in_the_schema() -> None:
    found = parser_key_sets()
    assert set(found) == set(SECTIONS_OF), "a parser section without a place in the schema (or the reverse)"
    for name, keys in found.items():
        path = SECTIONS_OF[name]
        if path is None:
            continue
        node = node_at(path)
        listed = set(node["properties"])
        where = ".".join(path) or "top level"
        assert listed == keys, f"{name} (schema {where}): parser {sorted(keys)}, schema {sorted(listed)}"
        assert node["additionalProperties"] is False, f"{'.'.join(path)} must refuse unknown keys, as the parser does"


def shipped_configs() -> list[Path]:
    return [ROOT / "sidecar" / "tollgate" / "default.yaml", ROOT / "k8s" / "base" / "tollgate.yaml",
            ROOT / "k8s" / "overlays" / "shared-redis" / "tollgate.yaml"]


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates_and_names_the_schema(path: Path) -> None:
    text = path.read_text()
    assert errors(yaml.safe_load(text)) == []
    assert "# yaml-language-server: $schema=" in text


def test_the_suites_config_and_a_budgets_only_file_validate() -> None:
    assert errors(suite_config_data()) == []
    budgets_only = {"budgets": {"overrides": {"org:acme": {"cap": "250.00"}, "team:acme/web": {"cap": "20",
                                                                                             "policy": "soft"}}}}
    assert errors(budgets_only) == []
    assert errors({"models": {"gpt-6-luna": None}}) == []


@pytest.mark.parametrize(("change", "where"), [
    ({"budgets": {"overrides": {"org:acme": {"cap": "2e3"}}}}, "budgets.overrides.org:acme.cap"),
    ({"budgets": {"overrides": {"org:acme": {"cap": "1_000"}}}}, "budgets.overrides.org:acme.cap"),
    ({"budgets": {"overrides": {"org:acme": {"cap": 0.1}}}}, "budgets.overrides.org:acme.cap"),
    ({"budgets": {"overrides": {"org:acme": {"cap": "5", "policy": "strict"}}}}, "budgets.overrides.org:acme.policy"),
    ({"budgets": {"overrides": {"org:acme": {"cap": "5", "window": {"kind": "fixed", "period": "fortnight"}}}}},
     "budgets.overrides.org:acme.window"),
    ({"budgets": {"overrides": {"acme": {"cap": "5"}}}}, "budgets.overrides"),
    ({"routing": {"quality_target": "high"}}, "routing.quality_target"),
    ({"routing": {"fallback": 3}}, "routing"),
    ({"server": {"port": 70000}}, "server.port"),
    ({"reservations": {"ttl": "five minutes"}}, "reservations.ttl"),
    ({"models": {"m": {"provider": "x", "tier": "cheap", "context_window": 8, "price": {"input": "1"}}}},
     "models.m.price"),
    ({"estimation": {"margin": 0.9}}, "estimation.margin"),
    ({"extra": {}}, ""),
])
def test_what_the_parser_refuses_the_schema_refuses_too(change: dict[str, Any], where: str) -> None:
    found = errors(change)
    assert found and any(e.startswith(where) for e in found), found
    with pytest.raises(ConfigError):
        parse_config(yaml.safe_dump(change), source="t.yaml", over_defaults=True)


def test_the_schema_ships_inside_the_package() -> None:
    from importlib import resources

    assert json.loads(resources.files("tollgate").joinpath("config/schema.json").read_text()) == SCHEMA
    assert "config/schema.json" in (ROOT / "pyproject.toml").read_text()
    assert default_config_text().startswith("# yaml-language-server: $schema=")


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_modeline_points_at_the_schema_file(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    target = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert target == SCHEMA_PATH
