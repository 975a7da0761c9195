"""Selection under every constraint, and escalation with its ledger links, in the domain."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from tests.support.catalog import suite_config, suite_config_text
from tollgate.app import Prompt, Tollgate, Usage
from tollgate.catalog import Capability, Latency
from tollgate.config import Config, Policy, PoolSpec, load_config
from tollgate.errors import BudgetExceeded, EscalationRefused, InvalidRequest
from tollgate.ledger import LocalLedger, MemoryJournal, SqliteJournal, spec_resolver
from tollgate.routing.rules import Signals
from tollgate.scope import Scope

SCOPE = Scope(org="acme", team="legal", user="alice")
PROMPT = Prompt(input_tokens=2_000)


def config_with(tmp_path: Path, edit: dict) -> Config:  # type: ignore[type-arg]
    data = yaml.safe_load(suite_config_text())
    for section, values in edit.items():
        data.setdefault(section, {}).update(values)
    path = tmp_path / "tollgate.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def gate(config: Config, journal: object | None = None) -> Tollgate:
    return Tollgate(config, LocalLedger(journal or MemoryJournal(), specs=spec_resolver(config.budgets)))


# -- providers, latency, fallbacks ---------------------------------------------------------------


async def test_provider_lists_apply_at_every_level_of_the_scope(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"routing": {"providers": {
        "org:acme": {"deny": ["google"]},
        "team:acme/legal": {"allow": ["anthropic"]},
    }}})
    g = gate(config)
    d = await g.route(SCOPE, PROMPT, Signals(task_type="classify"))
    # The org denies google; the legal team allows only anthropic: both hold.
    assert d.chosen.model.name == "claude-haiku-4-5"
    assert {p.model.provider for p in (d.chosen, *d.fallbacks)} == {"anthropic"}
    # Another team of the same org only has the org's deny list.
    d = await g.route(Scope(org="acme", team="search"), PROMPT, Signals(task_type="classify"))
    assert d.chosen.model.name == "gpt-4o-mini"
    assert all(p.model.provider != "google" for p in (d.chosen, *d.fallbacks))
    # Another org has no list at all.
    d = await g.route(Scope(org="other"), PROMPT, Signals(task_type="classify"))
    assert d.chosen.model.name == "gemini-2.0-flash"
    # The team allows only anthropic, whose models lack JSON: a clear error naming the lists.
    with pytest.raises(InvalidRequest, match=r"provider lists of team:acme/legal, org:acme\)"):
        await g.route(SCOPE, PROMPT, Signals(task_type="classify", needs=frozenset({Capability.JSON})))


async def test_star_provider_rule_applies_to_everyone(tmp_path: Path) -> None:
    g = gate(config_with(tmp_path, {"routing": {"providers": {"*": {"deny": ["anthropic"]}}}}))
    d = await g.route(Scope(org="zeta"), PROMPT, Signals(task_type="codegen"))
    assert d.chosen.model.name == "gpt-4o"
    assert all(p.model.provider != "anthropic" for p in (d.chosen, *d.fallbacks))
    # The only frontier model is Anthropic's: the request cannot be served, and says why.
    with pytest.raises(InvalidRequest, match=r"provider lists of \*"):
        await g.route(Scope(org="zeta"), PROMPT, Signals(task_type="planning"))


async def test_latency_class_keeps_slow_models_out(tmp_path: Path) -> None:
    data = yaml.safe_load(suite_config_text())
    data["models"]["gemini-2.0-flash"]["latency"] = "fast"
    data["models"]["gpt-4o-mini"]["latency"] = "fast"
    data["models"]["claude-opus-4-1"]["latency"] = "slow"
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    assert config.catalog.models["claude-haiku-4-5"].latency is Latency.STANDARD
    g = gate(config)
    d = await g.route(SCOPE, PROMPT, Signals(task_type="classify", latency=Latency.FAST))
    assert {p.model.name for p in (d.chosen, *d.fallbacks)} == {"gemini-2.0-flash", "gpt-4o-mini"}
    # Standard admits fast and standard models, never slow ones.
    d = await g.route(SCOPE, PROMPT, Signals(task_type="codegen", latency=Latency.STANDARD))
    assert all(p.model.latency <= Latency.STANDARD for p in (d.chosen, *d.fallbacks))
    with pytest.raises(InvalidRequest, match="latency=standard"):
        await g.route(SCOPE, PROMPT, Signals(task_type="planning", latency=Latency.STANDARD))
    d = await g.route(SCOPE, PROMPT, Signals(task_type="planning"))
    assert d.chosen.model.name == "claude-opus-4-1"


async def test_fallbacks_put_other_providers_first_then_tier_fit_then_price(tmp_path: Path) -> None:
    g = gate(suite_config())
    d = await g.route(SCOPE, PROMPT, Signals(task_type="classify"))
    names = [p.model.name for p in d.fallbacks]
    assert d.chosen.model.name == "gemini-2.0-flash"
    # Other providers' best same-tier models first (cheapest first), before any medium model.
    assert names == ["gpt-4o-mini", "claude-haiku-4-5", "gpt-4o"]
    providers = [p.model.provider for p in (d.chosen, *d.fallbacks)]
    assert len(set(providers[:3])) == 3
    d = await g.route(SCOPE, PROMPT, Signals(task_type="codegen"))
    assert d.chosen.model.name == "gpt-4o"
    # Medium tier of another provider first; then the frontier model (another provider
    # still); never a cheap model, which would not meet the requirement.
    assert [p.model.name for p in d.fallbacks] == ["claude-sonnet-4-5", "claude-opus-4-1"]


def test_provider_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"routing\.providers\.org:acme\.deny\.0: .*one of"):
        config_with(tmp_path, {"routing": {"providers": {"org:acme": {"deny": ["googel"]}}}})
    with pytest.raises(Exception, match=r"routing\.providers\.acme: expected a pool id"):
        config_with(tmp_path, {"routing": {"providers": {"acme": {"deny": ["google"]}}}})
    with pytest.raises(Exception, match=r"models\.gpt-4o\.latency: .*one of"):
        data = yaml.safe_load(suite_config_text())
        data["models"]["gpt-4o"]["latency"] = "quick"
        (tmp_path / "l.yaml").write_text(yaml.safe_dump(data))
        load_config(tmp_path / "l.yaml")


# -- escalation ----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    return MemoryJournal() if request.param == "memory" else SqliteJournal(tmp_path / "ledger.db")


async def test_escalation_goes_one_tier_up_and_links_the_attempts(journal: object) -> None:
    g = gate(suite_config(), journal)
    first = await g.route(SCOPE, PROMPT, Signals(task_type="extract"), reserve=True)
    assert first.reservation is not None and first.chosen.model.tier == "cheap"
    parent_id = first.reservation.hold.reservation_id
    esc = await g.escalate(parent_id, SCOPE, PROMPT, Signals(), reason="invalid_json",
                           usage=Usage(input_tokens=2_000, output_tokens=300))
    assert esc.attempt == 2 and esc.parent_id == parent_id and esc.failed_tier == "cheap"
    d = esc.decision
    assert d.chosen.model.tier == "medium" and d.requirement.source == "escalation"
    assert "invalid_json" in d.reason and all(p.model.tier_rank >= 1 for p in d.fallbacks)
    # The failed attempt was committed in the same step; the new one is held and linked.
    assert esc.previous_commit is not None and esc.previous_commit.hold.state == "committed"
    assert d.reservation is not None
    hold = await g.store.get(d.reservation.hold.reservation_id)
    assert hold.parent_id == parent_id and hold.attempt == 2 and hold.state == "open"
    assert hold.task_type == "extract"  # the task type travels with the call
    # A retried Escalate returns the same attempt and holds nothing more.
    held = sum(p.held for p in await g.budget(SCOPE) if p.pool_id == "org:acme")
    again = await g.escalate(parent_id, SCOPE, PROMPT, Signals(), reason="invalid_json",
                             usage=Usage(input_tokens=2_000, output_tokens=300))
    assert again.decision.reservation is not None and again.decision.reservation.replayed
    assert again.decision.reservation.hold.reservation_id == hold.reservation_id
    assert sum(p.held for p in await g.budget(SCOPE) if p.pool_id == "org:acme") == held
    # The second escalation reaches the top tier; a third is past the depth limit (2).
    top = await g.escalate(hold.reservation_id, SCOPE, PROMPT, Signals(), reason="tests_failed")
    assert top.attempt == 3 and top.decision.chosen.model.tier == "frontier"
    with pytest.raises(EscalationRefused, match=r"attempt 3; routing\.max_escalations=2"):
        await g.escalate(top.decision.reservation.hold.reservation_id, SCOPE, PROMPT, Signals())  # type: ignore[union-attr]
    # The attempt left open (no usage given) is still the app's to end.
    await g.release(hold.reservation_id)
    assert (await g.store.audit()).ok


async def test_escalation_to_a_named_model_and_its_refusals(tmp_path: Path) -> None:
    g = gate(config_with(tmp_path, {"routing": {"max_escalations": 5}}))
    first = await g.route(SCOPE, PROMPT, Signals(task_type="planning"), reserve=True)
    assert first.reservation is not None and first.chosen.model.tier == "frontier"
    rid = first.reservation.hold.reservation_id
    with pytest.raises(EscalationRefused, match="top tier"):
        await g.escalate(rid, SCOPE, PROMPT, Signals())
    # Naming a model moves sideways (another provider of any tier).
    esc = await g.escalate(rid, SCOPE, PROMPT, Signals(), model="gpt-4o")
    assert esc.decision.chosen.model.name == "gpt-4o" and esc.attempt == 2
    with pytest.raises(InvalidRequest, match="unknown model"):
        await g.escalate(rid, SCOPE, PROMPT, Signals(), model="gpt-9")
    with pytest.raises(InvalidRequest, match="another organisation"):
        await g.escalate(rid, Scope(org="evil"), PROMPT, Signals())
    with pytest.raises(InvalidRequest, match="reason must be"):
        await g.escalate(rid, SCOPE, PROMPT, Signals(), reason="bad\nreason")
    with pytest.raises(InvalidRequest, match="lacks the capabilities"):
        await g.escalate(rid, SCOPE, PROMPT, Signals(needs=frozenset({Capability.JSON})), model="claude-opus-4-1")


async def test_escalation_obeys_budgets_and_never_downgrades() -> None:
    config = suite_config()
    cap = PoolSpec(cap=30_000_000, policy=Policy.SOFT, priority_reserve_bp=0)  # $0.03: cheap fits, medium not
    budgets = dataclasses.replace(config.budgets, overrides={**config.budgets.overrides, "user:acme/alice": cap})
    g = gate(dataclasses.replace(config, budgets=budgets))
    first = await g.route(SCOPE, PROMPT, Signals(task_type="extract"), reserve=True, max_output_tokens=500)
    assert first.reservation is not None
    with pytest.raises(BudgetExceeded) as refused:
        await g.escalate(first.reservation.hold.reservation_id, SCOPE, Prompt(input_tokens=8_000), Signals(),
                         usage=Usage(input_tokens=2_000, output_tokens=100))
    assert refused.value.refusal.pool_id == "user:acme/alice"
    # The failed attempt's usage was still committed: that money was spent.
    hold = await g.store.get(first.reservation.hold.reservation_id)
    assert hold.state == "committed" and hold.charged > 0
    assert (await g.store.audit()).ok


# -- the decision log -------------------------------------------------------------------------------


async def test_decision_log_has_features_not_text_and_joins_feedback(tmp_path: Path) -> None:
    log_path = tmp_path / "decisions.jsonl"
    config = config_with(tmp_path, {"routing": {"decision_log": {"path": "decisions.jsonl"}}})
    assert config.routing.decision_log is not None and config.routing.decision_log.path == str(log_path)
    g = gate(config)
    secret = "the launch code is swordfish-7731"
    prompt = Prompt(messages=(("user", f"Summarize this memo: {secret}"),))
    d = await g.route(SCOPE, prompt, Signals(task_type="summarize"), reserve=True)
    assert d.reservation is not None
    rid = d.reservation.hold.reservation_id
    await g.feedback(rid, 1.0)
    await g.route(SCOPE, prompt, Signals(task_type="summarize"))  # no reservation: logged, not joinable
    assert g.decision_log is not None
    g.decision_log.flush()
    text = log_path.read_text()
    assert "swordfish" not in text and "launch" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [x["kind"] for x in lines] == ["decision", "feedback", "decision"]
    decision = lines[0]
    assert decision["reservation_id"] == rid and decision["model"] == d.chosen.model.name
    assert decision["tier"] == "cheap" and decision["source"] == "rule" and decision["org"] == "acme"
    assert decision["features"]["scheme"] == "tollgate-hash-v1" and decision["features"]["slots"]
    assert lines[1] == {"kind": "feedback", "at_ms": lines[1]["at_ms"], "reservation_id": rid, "score": 1.0,
                        "source": "user"}
