"""A task type one letter off a rule's loses the rule: the decision and the check say which one it meant."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.catalog import suite_config_text
from tollgate.app import Prompt, Tollgate
from tollgate.config import load_config, parse_config
from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver
from tollgate.routing.check import routing_lines
from tollgate.routing.rules import Signals, near_task_type, task_type_notes
from tollgate.scope import Scope

RULES = ("classify", "debugging", "extract", "planning", "summarize")


@pytest.mark.parametrize(("name", "meant"), [
    ("summarise", "summarize"), ("Extract", "extract"), ("debuging", "debugging"), ("plan-ning", "planning"),
    ("chat", None), ("college_physics", None), ("extract", None), ("math", None),
])
def test_only_a_near_miss_of_a_rule_gets_a_hint(name: str, meant: str | None) -> None:
    assert near_task_type(name, RULES) == meant


def config_text(**routing: Any) -> str:
    data = yaml.safe_load(suite_config_text())
    data["routing"].update(routing)
    return yaml.safe_dump(data)


def test_check_names_thresholds_a_rule_shadows_and_likely_typos() -> None:
    config = parse_config(config_text(thresholds={"extract": {"medium": 0.5}, "summarise": {"medium": 0.5},
                                                  "math": {"medium": 0.2}}))
    notes = task_type_notes(config.routing)
    assert "routing.thresholds.extract never applies: routing.task_types.extract decides first" in notes
    assert "routing.thresholds.summarise: no rule has task type 'summarise'; did you mean 'summarize'?" in notes
    assert not any("math" in note for note in notes)
    warnings, _ = routing_lines(config)
    assert set(notes) <= set(warnings)


async def test_the_decision_names_the_rule_a_typo_missed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "c.yaml").write_text(config_text(classifier="none"))
    config = load_config(tmp_path / "c.yaml")
    gate = Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets)))
    prompt = Prompt(messages=(("user", "The meeting moved to Thursday because the venue was booked."),))
    with caplog.at_level(logging.WARNING, logger="tollgate.app.planner"):
        for _ in range(3):
            d = await gate.route(Scope(org="acme", user="alice"), prompt, Signals(task_type="summarise"))
    assert d.reason.endswith("task_type 'summarise' has no rule, did you mean 'summarize'?")
    assert d.requirement.source == "difficulty"
    # Logged once per name, not once per request.
    assert sum("close one does" in r.getMessage() for r in caplog.records) == 1
    right = await gate.route(Scope(org="acme", user="alice"), prompt, Signals(task_type="summarize"))
    assert right.requirement.source == "rule" and "did you mean" not in right.reason
