"""Config validation: the shipped config is valid, and every error names file, key and problem."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tollgate.config import Policy, WindowKind, default_config_text, load_config, parse_config
from tollgate.errors import ConfigError
from tollgate.scope import Level

ROOT = Path(__file__).resolve().parents[2]


def test_default_config_is_valid_and_realistic() -> None:
    config = load_config(None)
    assert config.catalog.tiers == ("cheap", "medium", "frontier")
    assert {m.tier for m in config.catalog.models.values()} == {"cheap", "medium", "frontier"}
    assert config.estimation.margin_bp == 13_000
    assert config.budgets.templates[Level.ORG].window.kind is WindowKind.FIXED
    assert config.routing.task_types["extract"] == "cheap"
    assert config.routing.task_types["debugging"] == "frontier"


def test_readme_budget_example_parses() -> None:
    block = re.search(r"```yaml\n(budgets:.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    data = yaml.safe_load(default_config_text())
    data["budgets"] = yaml.safe_load(block.group(1))["budgets"]
    config = parse_config(yaml.safe_dump(data))
    alice = config.budgets.overrides["user:acme/alice"]
    assert alice.window.kind is WindowKind.TOKEN_BUCKET and alice.window.duration_ms == 3_600_000
    assert alice.policy is Policy.SOFT  # inherited from the user template
    assert alice.cap == 50_000_000_000


def _with(edit: str, value: object) -> str:
    data = yaml.safe_load(default_config_text())
    node = data
    *path, last = edit.split(".")
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("budgets.templates.user.cap", "5$", "budgets.templates.user.cap: '5$' is not a USD amount"),
        ("budgets.templates.user.cap", 0.1, "budgets.templates.user.cap: expected a USD amount as a string"),
        ("budgets.templates.user.policy", "strict", "budgets.templates.user.policy: 'strict' is not one of"),
        ("budgets.templates.user.window", {"kind": "fixed", "period": "fortnight"}, "window.period"),
        ("budgets.templates.user.window", {"kind": "fixed", "period": "day", "tz": "Mars/Olympus"},
         "unknown time zone"),
        ("budgets.templates.user.window", {"kind": "sliding", "duration": "soon"}, "expected a duration"),
        ("budgets.templates.user.colour", "red", "budgets.templates.user.colour: unknown key"),
        ("budgets.templates.galaxy", {"cap": "1"}, "budgets.templates.galaxy: unknown scope level"),
        ("budgets.overrides", {"user:alice": {"cap": "1"}}, "override keys are pool ids"),
        ("budgets.templates.user.warn_at", 1.5, "warn_at: 1.5 is out of range"),
        ("models.claude-haiku-4-5.price", {"input": "2.50"},
         "models.claude-haiku-4-5.price: needs input and output prices"),
        ("models.claude-haiku-4-5.tier", "ultra", "models.claude-haiku-4-5.tier: 'ultra' is not one of"),
        ("models.claude-haiku-4-5.context_window", -1, "context_window: -1 is out of range"),
        ("routing.task_types.extract", "premium", "routing.task_types.extract"),
        ("estimation.margin", 0.9, "estimation.margin"),
        ("reservations.ttl", "2h", "ttl: the default ttl must not exceed max_ttl"),
        ("store.kind", "postgres", "store.kind"),
        ("store.url", "http://cache:6379", "store.url: expected a redis://, rediss:// or unix:// URL"),
        ("store.url", "rediss://cache:6379/0?ssl_ca_certs=/nonexistent/ca.pem",
         "store.url: ssl_ca_certs: no such file: /nonexistent/ca.pem"),
        ("store.url", "rediss://cache:6379/0?ssl_ca_certs=ca.pem", "store.url: ssl_ca_certs must be an absolute path"),
        ("store.url", "redis://cache:6379/0?ssl_ca_certs=/", "store.url: ssl_ca_certs needs a rediss:// URL (TLS)"),
        ("store.url", "rediss://cache:6379/0?ssl_ca_cert=/", "store.url: unknown TLS option ssl_ca_cert; known: "),
        ("store.sentinels", ["cache"], "store.sentinels.0: expected host:port"),
        ("store.fail_open_allowance", "lots", "store.fail_open_allowance: 'lots' is not a USD amount"),
        ("reservations.retention", "1d", "reservations.retention: retention must outlast the longest pool window"),
        ("budgets.templates.user.max_open", -2, "budgets.templates.user.max_open: -2 is out of range"),
        ("server.host", "10.0.0.7", "server.host: 10.0.0.7 is not a loopback address"),
        ("server.tls", {"cert": "nope.pem", "key": "nope.key"}, "server.tls.cert: no such file"),
        ("auth.callers", [{"name": "app", "token_sha256": "hunter2", "grants": ["acme"]}],
         "auth.callers.0.token_sha256: expected the 64 hex digits of the token's SHA-256"),
        ("auth.callers", [{"name": "app", "grants": ["acme"]}], "auth.callers.0: a caller needs token_sha256"),
        ("auth.callers", [{"name": "app", "token_sha256": "a" * 64, "grants": ["acme/team/x"]}],
         "auth.callers.0.grants.0: expected ORG, ORG/TEAM or *"),
        ("auth.callers", [{"name": "app", "token_sha256": "a" * 64, "grants": []}],
         "auth.callers.0.grants: expected a non-empty list"),
        ("auth.callers", [{"name": "app", "subject": "x", "grants": ["a"]}, {"name": "app", "subject": "y",
                                                                            "grants": ["b"]}],
         "auth: caller name 'app' is used twice"),
        ("auth.callers_file", "missing.yaml", "auth.callers_file: no such file"),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path: Path, key: str, value: object, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(_with(key, value))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    # The file and the line the key is on, then the key and the problem.
    assert re.match(rf"{re.escape(str(path))}:[0-9]+: ", text), text
    assert message in text, text


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_check_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(default_config_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(_with("budgets.templates.org.cap", "lots"))
    env = {"PYTHONPATH": str(ROOT / "sidecar")}
    ok = subprocess.run([sys.executable, "-m", "tollgate.cli", "check", str(good)], capture_output=True, text=True,
                        env=env)
    assert ok.returncode == 0 and "OK" in ok.stdout and "claude-opus-4-7" in ok.stdout
    fail = subprocess.run([sys.executable, "-m", "tollgate.cli", "check", str(bad)], capture_output=True, text=True,
                          env=env)
    assert fail.returncode == 2
    assert re.search(rf"{re.escape(str(bad))}:[0-9]+: budgets.templates.org.cap: 'lots' is not a USD amount",
                     fail.stderr), fail.stderr


def test_callers_file_holds_the_secrets(tmp_path: Path) -> None:
    (tmp_path / "callers.yaml").write_text(yaml.safe_dump({"callers": [
        {"name": "app", "token_sha256": "ab" * 32, "grants": ["acme", "bravo/search"], "rate": 50},
    ]}))
    path = tmp_path / "tollgate.yaml"
    path.write_text(_with("auth.callers_file", "callers.yaml"))
    (caller,) = load_config(path).auth.callers
    assert caller.name == "app" and caller.token_sha256 == bytes.fromhex("ab" * 32) and caller.rate == 50
    assert caller.permits("acme") and caller.permits("bravo", "search")
    assert not caller.permits("bravo") and not caller.permits("bravo", "ads") and not caller.permits("other")


def test_quality_seed_makes_shadow_sampling_repeat() -> None:
    from tollgate.app import Tollgate
    from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver

    data = yaml.safe_load(default_config_text())
    data["quality"] = {"seed": 7}
    config = parse_config(yaml.safe_dump(data))
    assert config.quality.seed == 7
    assert load_config(None).quality.seed is None

    def plans() -> list[bool]:
        gate = Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets)))
        return [gate.quality.plan_shadow("extract", "cheap", None, "claude-opus-4-1") is not None
                for _ in range(200)]

    first = plans()
    assert plans() == first
    assert 0 < sum(first) < 200
