"""A user's file laid over the shipped defaults, and config errors that say where and what to write."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.sidecar_process import SidecarProcess
from tollgate.config import Config, load_config
from tollgate.errors import ConfigError, ConfigErrors
from tollgate.money import NANOS_PER_USD, Price
from tollgate_client import Client, Scope


def load_config_of(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "tollgate.yaml"
    path.write_text(text)
    return load_config(path)


def _error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "tollgate.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value


BUDGETS_ONLY = """\
budgets:
  templates:
    user: {cap: "3.00"}
    org: {cap: "250.00"}
"""


def test_a_budgets_only_file_is_a_whole_config(tmp_path: Path) -> None:
    config = load_config_of(tmp_path, BUDGETS_ONLY)
    defaults = load_config()
    assert config.catalog == defaults.catalog and config.routing == defaults.routing
    user = config.budgets.templates["user"]
    # Merged key by key: the cap is the file's, the window and policy the defaults'.
    assert user.cap == 3 * NANOS_PER_USD
    assert (user.window, user.policy) == (defaults.budgets.templates["user"].window,
                                          defaults.budgets.templates["user"].policy)
    assert config.budgets.templates["org"].cap == 250 * NANOS_PER_USD


def test_a_models_entry_adds_or_replaces_one_model_and_null_removes_one(tmp_path: Path) -> None:
    defaults = load_config().catalog.models
    removed = next(name for name, m in defaults.items() if m.tier == "medium")
    config = load_config_of(tmp_path, f"""\
models:
  my-model:
    provider: openai
    tier: cheap
    price: {{input: "0.10", output: "0.40"}}
    context_window: 128000
  claude-haiku-4-5:
    provider: openai
    tier: cheap
    price: {{input: "0.20", output: "0.80"}}
    context_window: 64000
  {removed}: null
""")
    models = config.catalog.models
    assert set(models) == (set(defaults) | {"my-model"}) - {removed}
    # Replaced whole: the default's other fields do not leak into the user's entry.
    assert models["claude-haiku-4-5"].context_window == 64_000
    assert models["claude-haiku-4-5"].capabilities == frozenset()
    assert models["claude-haiku-4-5"].price == Price.per_million(input="0.20", output="0.80")
    assert models["claude-haiku-4-5"].price != defaults["claude-haiku-4-5"].price


def test_tiers_of_its_own_make_the_catalog_the_files_alone(tmp_path: Path) -> None:
    config = load_config_of(tmp_path, """\
tiers: [small, big]
models:
  a: {provider: openai, tier: small, price: {input: "0.1", output: "0.2"}, context_window: 8000}
  b: {provider: openai, tier: big, price: {input: "1", output: "2"}, context_window: 8000}
""")
    assert set(config.catalog.models) == {"a", "b"} and config.catalog.tiers == ("small", "big")


def test_a_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    error = _error(tmp_path, """\
budgets:
  overrides:
    org:acme: {cap: "5.00"}
    org:beta: {cap: "6.00"}
    org:acme: {cap: "50.00"}
""")
    assert error.line == 5 and error.key == "budgets.overrides.org:acme"
    assert "duplicate key 'org:acme': first on line 3, again on line 5" in str(error)


@pytest.mark.parametrize("written", ['"2e3"', '"1_000"', '"1,000"', '" 5 USD"'])
def test_money_is_a_plain_decimal(tmp_path: Path, written: str) -> None:
    error = _error(tmp_path, f"budgets:\n  templates:\n    user: {{cap: {written}}}\n")
    assert error.key == "budgets.templates.user.cap" and error.line == 3
    assert 'write a plain decimal like "5.00"' in str(error)


def test_every_error_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    error = _error(tmp_path, """\
budgets:
  templates:
    user: {cap: "lots"}
    team: {cap: "5.00", policy: strict}
limits:
  max_messages: -1
models:
  cheapo: {provider: openai, tier: cheap, context_window: 8000}
""")
    assert isinstance(error, ConfigErrors)
    found = {(e.key, e.line) for e in error.errors}
    assert found == {("budgets.templates.user.cap", 3), ("budgets.templates.team.policy", 4),
                     ("limits.max_messages", 6), ("models.cheapo.price", 8)}, str(error)
    lines = str(error).splitlines()
    assert len(lines) == 4 and all(re.match(r".*tollgate\.yaml:[0-9]+: ", line) for line in lines)


@pytest.mark.parametrize(("text", "key", "says"), [
    ("models:\n  m: {provider: openai, tier: cheap, context_window: 8000}\n", "models.m.price",
     'is required: USD per million tokens, e.g. price: {input: "0.15", output: "0.60"}'),
    ("budgets:\n  templates:\n    user:\n      cap: \"5\"\n      window: {kind: fixed}\n",
     "budgets.templates.user.window", "a fixed window needs a period: one of hour, day, week, month"),
    ("budgets:\n  overrides:\n    user:acme/al ice: {cap: \"1\"}\n", "budgets.overrides.user:acme/al ice",
     "character ' ' is not allowed"),
    ("server: [1, 2]\n", "server", "expected a mapping of key: value lines, got [1, 2]"),
    ("models:\n  m: {provider: openai, price: {input: \"1\", output: \"1\"}, context_window: 8000}\n",
     "models.m.tier", "is required: one of cheap, medium, frontier"),
])
def test_weak_messages_say_what_to_write(tmp_path: Path, text: str, key: str, says: str) -> None:
    error = _error(tmp_path, text)
    assert error.key == key and says in str(error), str(error)
    assert error.file.endswith("tollgate.yaml") and error.line > 0


def test_a_yaml_error_names_the_file_and_line(tmp_path: Path) -> None:
    error = _error(tmp_path, "budgets:\n  templates:\n    user: {cap: \"5\"\n  overrides: {}\n")
    assert error.file.endswith("tollgate.yaml") and "not valid YAML" in str(error) and error.line >= 3
    assert "<unicode string>" not in str(error)


def test_check_show_prints_the_resolved_config(tmp_path: Path) -> None:
    path = tmp_path / "tollgate.yaml"
    path.write_text(BUDGETS_ONLY)
    shown = subprocess.run([sys.executable, "-m", "tollgate.cli", "check", "--show", str(path)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    resolved = yaml.safe_load(shown.stdout)
    assert resolved["budgets"]["templates"]["user"]["cap"] == "3.00"
    assert resolved["budgets"]["templates"]["user"]["window"] == {"kind": "fixed", "period": "day", "tz": "UTC"}
    assert "gpt-5.4-mini" in resolved["models"]
    # What it prints is itself a config that loads to the same thing.
    again = tmp_path / "resolved.yaml"
    again.write_text(shown.stdout)
    assert load_config(again).budgets == load_config(path).budgets


def test_a_sidecar_starts_on_a_budgets_only_file(tmp_path: Path) -> None:
    path = tmp_path / "tollgate.yaml"
    path.write_text(BUDGETS_ONLY + "telemetry: {metrics_port: 0}\n")
    with SidecarProcess(tmp_path, config=path, store="memory") as sidecar, Client(sidecar.target) as client:
        decision = client.route(Scope(org="acme", user="ann"), input_tokens=200, task_type="extract", reserve=True)
        assert decision.reservation is not None
        pools = {p.level: p for p in client.get_budget(Scope(org="acme", user="ann"))}
    assert pools["user"].cap_nanos == 3 * NANOS_PER_USD and pools["org"].cap_nanos == 250 * NANOS_PER_USD
