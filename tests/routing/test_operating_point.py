"""routing.quality_target: from a target to thresholds on a model's validation curve, and Route using them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.support.catalog import suite_config_text
from tollgate.app import Prompt, Tollgate
from tollgate.config import load_config, parse_config
from tollgate.errors import ConfigError
from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver
from tollgate.routing.classifier import BUCKETS, DENSE_FEATURES, Classifier
from tollgate.routing.operating_point import ValidationError, curve_of, derive
from tollgate.routing.rules import Signals
from tollgate.scope import Scope

SCOPE = Scope(org="acme", user="alice")
PROMPT = Prompt(messages=(("user", "Tell me about otters."),))

# Four kinds of validation request, hardest first: the weak model fails the first, half-fails the
# second. Each kind 250 times over, so that the bootstrap's margin is small and the thresholds fall
# where the arithmetic below says.
CURVE = curve_of([0.1, 0.4, 0.6, 0.9] * 250, [0.0, 0.72, 1.0, 1.0] * 250, [1.0] * 1000, "four kinds")


def test_the_fewest_requests_up_that_reach_the_target() -> None:
    point = derive(CURVE, 0.96, frontier_share=0.25)
    # Weak alone: 68 %. Up with the hardest kind: 93 %; with the two hardest: 100 %.
    assert point.weak_quality == pytest.approx(0.68)
    assert point.medium == pytest.approx(1 - (0.4 + 0.6) / 2) and point.share_up == 0.5
    assert point.quality == pytest.approx(1.0) and point.met
    # The frontier tier takes the hardest quarter: the hardest kind alone.
    assert point.frontier == pytest.approx(1 - (0.1 + 0.4) / 2) and point.share_frontier == 0.25
    assert "quality_target 0.96 -> difficulty thresholds medium 0.500, frontier 0.750" in point.describe()


def test_the_frontier_share_never_splits_equal_predictions() -> None:
    # A fifth of the requests would split the hardest kind (a quarter of them): none go to frontier then.
    point = derive(CURVE, 0.96, frontier_share=0.2)
    assert point.share_frontier == 0.0 and point.frontier == 1.0
    # A share wider than what leaves the cheap tier is capped by it.
    wide = derive(CURVE, 0.96, frontier_share=0.9)
    assert wide.frontier == wide.medium and wide.share_frontier == wide.share_up


def test_a_target_the_cheap_tier_meets_alone_sends_nothing_up() -> None:
    point = derive(CURVE, 0.6)
    assert point.medium == 1.0 and point.frontier == 1.0 and point.share_up == 0.0


def test_equal_predictions_move_together() -> None:
    tied = curve_of([0.3, 0.3, 0.8] * 300, [0.0, 1.0, 1.0] * 300, [1.0] * 900)
    point = derive(tied, 0.8)
    # Sending the failed third of them would do, but a threshold cannot split equal predictions.
    assert point.share_up == pytest.approx(2 / 3) and point.medium == pytest.approx(1 - (0.3 + 0.8) / 2)


def test_a_small_validation_set_buys_a_margin() -> None:
    # Weak fails one request in ten, at random with respect to the prediction (a router with no skill):
    # the point estimate reaches 0.90 at once, the 95 % lower bound only with requests sent up.
    rng = np.random.default_rng(1)
    p = rng.random(60)
    weak = (rng.random(60) > 0.1).astype(float)
    small = derive(curve_of(p, weak, [1.0] * 60), 0.9)
    assert small.share_up > 0 and small.quality >= 0.9
    big = derive(curve_of(np.tile(p, 50), np.tile(weak, 50), [1.0] * 3000), 0.9)
    assert big.share_up < small.share_up


@pytest.mark.parametrize("target", [0.0, -0.1, 1.5])
def test_a_target_outside_the_unit_interval_is_refused(target: float) -> None:
    with pytest.raises(ValidationError, match="quality_target must be in"):
        derive(CURVE, target)


def config_text(**routing: Any) -> str:
    data = yaml.safe_load(suite_config_text())
    data["routing"].update(routing)
    return yaml.safe_dump(data)


@pytest.mark.parametrize(("value", "message"), [
    (95, "95 is a percentage; write a share of the strong tier's quality, such as 0.95"),
    (0, "above 0, such as 0.95"),
    ("high", "expected a number"),
])
def test_quality_target_errors_say_what_to_write(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=f"routing.quality_target: .*{message}"):
        parse_config(config_text(quality_target=value), source="t.yaml")


def model_with_curve(path: Path, p: float, curve: bool = True) -> Path:
    """A model answering ``p`` for every request, with CURVE as its validation data."""
    meta = {"validation": CURVE.to_metadata()} if curve else {}
    Classifier.from_weights(np.zeros(BUCKETS), np.zeros(len(DENSE_FEATURES)), math.log(p / (1 - p)),
                            metadata=meta).save(path)
    return path


def gate_for(path: Path) -> Tollgate:
    config = load_config(path)
    return Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets)))


@pytest.mark.parametrize(("p", "tier"), [(0.55, "cheap"), (0.45, "medium"), (0.2, "frontier")])
async def test_route_uses_the_thresholds_the_target_derives(tmp_path: Path, p: float, tier: str) -> None:
    model = model_with_curve(tmp_path / "m.npz", p)
    (tmp_path / "c.yaml").write_text(config_text(classifier=str(model), quality_target=0.96, frontier_share=0.25))
    decision = await gate_for(tmp_path / "c.yaml").route(SCOPE, PROMPT, Signals())
    # Derived: medium at difficulty 0.50, frontier at 0.75.
    assert decision.requirement.tier == tier


async def test_explicit_thresholds_win_over_the_target(tmp_path: Path) -> None:
    model = model_with_curve(tmp_path / "m.npz", 0.45)
    (tmp_path / "c.yaml").write_text(config_text(classifier=str(model), quality_target=0.95,
                                                 thresholds={"default": {"medium": 0.9}}))
    assert (await gate_for(tmp_path / "c.yaml").route(SCOPE, PROMPT, Signals())).requirement.tier == "cheap"


def test_a_target_needs_a_model_with_a_validation_curve(tmp_path: Path) -> None:
    model = model_with_curve(tmp_path / "m.npz", 0.5, curve=False)
    (tmp_path / "c.yaml").write_text(config_text(classifier=str(model), quality_target=0.95))
    with pytest.raises(ConfigError, match=r"routing.quality_target: .*has no validation curve.*tollgate train"):
        gate_for(tmp_path / "c.yaml")


def test_a_replacement_without_a_curve_keeps_the_loaded_model(tmp_path: Path) -> None:
    path = model_with_curve(tmp_path / "m.npz", 0.45)
    clock = [0.0]
    model = Classifier.load(path, clock=lambda: clock[0])
    model_with_curve(tmp_path / "new.npz", 0.9, curve=False).replace(path)
    clock[0] = 5.0
    assert not model.reload_if_changed()
    assert model.predict((("user", "hi"),), 3) == pytest.approx(0.45)
    assert model.operating_point(0.95) is not None


def test_requests_with_a_task_type_have_their_own_calibration_and_curve(tmp_path: Path) -> None:
    typed_curve = curve_of([0.2, 0.9] * 500, [0.0, 1.0] * 500, [1.0] * 1000, "typed")
    meta = {"validation": CURVE.to_metadata(), "validation_typed": typed_curve.to_metadata()}
    path = tmp_path / "m.npz"
    Classifier.from_weights(np.zeros(BUCKETS), np.zeros(len(DENSE_FEATURES)), 0.0, platt=(1.0, 1.0, 1.0, -1.0),
                            metadata=meta).save(path)
    model = Classifier.load(path)
    messages = (("user", "hi"),)
    assert model.predict(messages, 3, "math") == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert model.predict(messages, 3) == pytest.approx(1 / (1 + math.exp(1.0)))
    untyped, typed = model.operating_point(0.96, 0.25), model.operating_point(0.96, 0.25, typed=True)
    assert untyped is not None and typed is not None
    assert untyped.medium == pytest.approx(0.5) and untyped.frontier == pytest.approx(0.75)
    assert typed.medium == pytest.approx(1 - (0.2 + 0.9) / 2) and typed.share_up == 0.5


def test_the_points_are_derived_at_start_and_on_reload_not_by_a_route(tmp_path: Path) -> None:
    path = model_with_curve(tmp_path / "m.npz", 0.45)
    (tmp_path / "c.yaml").write_text(config_text(classifier=str(path), quality_target=0.96, frontier_share=0.25))
    gate = gate_for(tmp_path / "c.yaml")
    model = gate.classifier
    assert model is not None
    # Both kinds of request have their thresholds before any request arrives.
    assert set(model._points) == {(0.96, 0.25, False), (0.96, 0.25, True)}
    # A replacement with another curve: the points in use are derived again as the file is read.
    other = curve_of([0.1, 0.9] * 500, [0.0, 1.0] * 500, [1.0] * 1000, "other")
    Classifier.from_weights(np.zeros(BUCKETS), np.zeros(len(DENSE_FEATURES)), 0.0,
                            metadata={"validation": other.to_metadata()}).save(tmp_path / "new.npz")
    (tmp_path / "new.npz").replace(path)
    assert model.reload_if_changed()
    point = model._points[(0.96, 0.25, False)]
    assert point is not None and point.source == "other" and point.medium == pytest.approx(0.5)
