"""routing.classifier and routing.thresholds: parsing, and how Route uses the classifier."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.support.catalog import suite_config, suite_config_text
from tollgate.app import Prompt, Tollgate
from tollgate.config import load_config, parse_config
from tollgate.errors import ConfigError
from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver
from tollgate.routing.classifier import BUCKETS, DENSE_FEATURES, Classifier
from tollgate.routing.rules import Signals
from tollgate.scope import Scope

SCOPE = Scope(org="acme", user="alice")
PROMPT = Prompt(messages=(("user", "Tell me about otters."),))


def config_text(**routing: Any) -> str:
    """The suite's config with ``routing`` laid over it; without a quality target unless one is given."""
    data = yaml.safe_load(suite_config_text())
    data["routing"].pop("quality_target", None)
    data["routing"].update(routing)
    return yaml.safe_dump(data)


def constant_model(path: Path, p: float) -> Path:
    """A model file that answers ``p`` for every request."""
    Classifier.from_weights(np.zeros(BUCKETS), np.zeros(len(DENSE_FEATURES)), math.log(p / (1 - p))).save(path)
    return path


def gate_for(path: Path) -> Tollgate:
    config = load_config(path)
    return Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets)))


def test_the_shipped_classifier_is_the_default() -> None:
    assert suite_config().routing.classifier == "default"
    assert parse_config(config_text(classifier="none")).routing.classifier == "none"


def test_a_model_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    constant_model(tmp_path / "model.npz", 0.7)
    (tmp_path / "tollgate.yaml").write_text(config_text(classifier="model.npz"))
    assert load_config(tmp_path / "tollgate.yaml").routing.classifier == str((tmp_path / "model.npz").resolve())
    (tmp_path / "missing.yaml").write_text(config_text(classifier="nope.npz"))
    with pytest.raises(ConfigError, match=r"missing.yaml:[0-9]+: routing.classifier: no such model file"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("routing", "message"), [
    ({"classifier": 3}, "routing.classifier: expected a string"),
    ({"classifier": " "}, "routing.classifier: expected default, none or the path"),
    ({"thresholds": {"default": {"ultra": 0.5}}}, "routing.thresholds.default.ultra: unknown tier"),
    ({"thresholds": {"math": {"medium": 0.8, "frontier": 0.3}}},
     "routing.thresholds.math: a higher tier needs a higher difficulty threshold"),
    ({"thresholds": {"math": {"medium": 1.5}}}, "routing.thresholds.math.medium: 1.5 is out of range"),
    ({"thresholds": [0.5]}, "routing.thresholds: expected a mapping"),
    ({"difficulty": {"medium": 0.9, "frontier": 0.2}}, "routing.difficulty: a higher tier needs a higher"),
])
def test_routing_errors_name_the_key(routing: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config_text(**routing), source="t.yaml")


def test_thresholds_parse_per_task_type() -> None:
    routing = parse_config(config_text(thresholds={"default": {"medium": 0.4, "frontier": 0.8},
                                                   "math": {"medium": 0.1}})).routing
    assert routing.thresholds == {"default": ((0.8, "frontier"), (0.4, "medium")), "math": ((0.1, "medium"),)}


async def test_route_uses_the_classifier_when_no_rule_decides(tmp_path: Path) -> None:
    for p, tier in ((0.9, "cheap"), (0.5, "medium"), (0.1, "frontier")):
        model = constant_model(tmp_path / f"m{p}.npz", p)
        (tmp_path / "c.yaml").write_text(config_text(classifier=str(model)))
        d = await gate_for(tmp_path / "c.yaml").route(SCOPE, PROMPT, Signals())
        # Without routing.thresholds the heuristic's (0.35 medium, 0.70 frontier) apply to 1 - p.
        assert d.requirement.tier == tier and d.requirement.source == "difficulty"
        assert d.reason.startswith(f"classifier p(cheap ok)={p:.2f} -> {tier}")
        assert d.difficulty == pytest.approx(1 - p)
        rule = await gate_for(tmp_path / "c.yaml").route(SCOPE, PROMPT, Signals(task_type="extract"))
        assert rule.requirement.source == "rule" and rule.difficulty == 0.0


async def test_thresholds_per_task_type_move_the_choice(tmp_path: Path) -> None:
    model = constant_model(tmp_path / "m.npz", 0.8)
    (tmp_path / "c.yaml").write_text(config_text(classifier=str(model), thresholds={
        "default": {"medium": 0.5}, "math": {"medium": 0.1, "frontier": 0.15}}))
    g = gate_for(tmp_path / "c.yaml")
    assert (await g.route(SCOPE, PROMPT, Signals())).requirement.tier == "cheap"
    assert (await g.route(SCOPE, PROMPT, Signals(task_type="math"))).requirement.tier == "frontier"


async def test_classifier_none_keeps_the_heuristic(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(config_text(classifier="none"))
    d = await gate_for(tmp_path / "c.yaml").route(SCOPE, PROMPT, Signals())
    assert d.reason.startswith("difficulty ") and d.requirement.source == "difficulty"


def test_an_unusable_model_file_stops_startup(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    (tmp_path / "c.yaml").write_text(config_text(classifier="bad.npz"))
    with pytest.raises(ConfigError, match=r"c.yaml(:[0-9]+)?: routing.classifier: .*not a readable classifier file"):
        gate_for(tmp_path / "c.yaml")
