"""Routing and estimation in the domain, on an in-memory store: no gRPC involved."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.catalog import suite_config
from tollgate.app import Outcome, Prompt, Tollgate, Usage
from tollgate.catalog import Capability
from tollgate.config import Config, Policy, PoolSpec
from tollgate.errors import BudgetExceeded, InvalidRequest
from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver
from tollgate.routing.rules import Signals
from tollgate.scope import Level, Scope


def gate(**overrides: PoolSpec) -> Tollgate:
    config = suite_config()
    budgets = dataclasses.replace(config.budgets, overrides={**config.budgets.overrides, **overrides})
    config = dataclasses.replace(config, budgets=budgets)
    return Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets)))


def cfg(g: Tollgate) -> Config:
    return g.config


SCOPE = Scope(org="acme", user="alice")
PROMPT = Prompt(input_tokens=2_000)


async def test_strictest_signal_wins() -> None:
    g = gate()
    d = await g.route(SCOPE, PROMPT, Signals(task_type="extract", agent_mode="debug"))
    assert d.requirement.tier == "frontier" and d.chosen.model.tier == "frontier"
    assert "task_type=extract" in d.reason and "agent_mode=debug" in d.reason
    d = await g.route(SCOPE, PROMPT, Signals(task_type="extract", min_tier="medium"))
    assert d.chosen.model.tier == "medium"


async def test_cheapest_capable_model_is_chosen() -> None:
    g = gate()
    d = await g.route(SCOPE, PROMPT, Signals(task_type="classify"))
    assert d.chosen.model.name == "gemini-2.0-flash"
    assert [p.cost for p in (d.chosen, *d.fallbacks)] == sorted(p.cost for p in (d.chosen, *d.fallbacks))
    # JSON output excludes the Claude models, whose catalog entries lack it.
    d = await g.route(SCOPE, PROMPT, Signals(task_type="codegen", needs=frozenset({Capability.JSON})))
    assert d.chosen.model.name == "gpt-4o"
    assert all(Capability.JSON in p.model.capabilities for p in d.fallbacks)
    # The only frontier model cannot do JSON: a clear error, not a silent downgrade.
    with pytest.raises(InvalidRequest, match=r"no model of tier frontier .*needs=\['json'\]"):
        await g.route(SCOPE, PROMPT, Signals(task_type="planning", needs=frozenset({Capability.JSON})))
    with pytest.raises(InvalidRequest, match="no model of tier frontier"):
        await g.route(SCOPE, Prompt(input_tokens=190_000), Signals(task_type="planning"), max_output_tokens=20_000)


async def test_soft_pool_downgrades_without_reserving_too() -> None:
    g = gate(**{"user:acme/alice": PoolSpec(cap=20_000_000, policy=Policy.SOFT, priority_reserve_bp=0)})
    d = await g.route(SCOPE, PROMPT, Signals(task_type="debugging"), max_output_tokens=1_000)
    assert d.outcome == Outcome.DOWNGRADED and d.chosen.model.tier != "frontier"
    assert d.reservation is None
    assert (await g.budget(SCOPE))[0].held == 0  # a route without reserve holds nothing


async def test_hard_pool_refuses_route() -> None:
    g = gate(**{"user:acme/alice": PoolSpec(cap=20_000_000, policy=Policy.HARD, priority_reserve_bp=0)})
    with pytest.raises(BudgetExceeded) as refused:
        await g.route(SCOPE, PROMPT, Signals(task_type="debugging"), reserve=True)
    assert refused.value.refusal.pool_id == "user:acme/alice"


async def test_warn_pool_admits_and_flags() -> None:
    g = gate(**{"user:acme/alice": PoolSpec(cap=1_000, policy=Policy.WARN)})
    d = await g.route(SCOPE, PROMPT, Signals(task_type="planning"), reserve=True)
    assert d.outcome == Outcome.WARNED and d.reservation is not None
    user = next(p for p in d.reservation.pools if p.level is Level.USER)
    assert user.warning and user.remaining < 0


async def test_output_estimate_learns_from_commits_and_is_bounded() -> None:
    g = gate()
    signals = Signals(task_type="summarize")
    first = await g.route(SCOPE, PROMPT, signals, max_output_tokens=16_000, reserve=True)
    assert first.chosen.output_tokens == cfg(g).estimation.default_output_tokens  # no history yet
    assert first.reservation is not None
    await g.commit(first.reservation.hold.reservation_id, Usage(input_tokens=2_000, output_tokens=200))
    for i in range(40):
        d = await g.route(SCOPE, PROMPT, signals, max_output_tokens=16_000, reserve=True)
        assert d.reservation is not None
        await g.commit(d.reservation.hold.reservation_id, Usage(input_tokens=2_000, output_tokens=150 + i * 5))
    learned = await g.route(SCOPE, PROMPT, signals, max_output_tokens=16_000)
    # The 90th percentile of what was really produced, not the 16k maximum.
    assert 300 <= learned.chosen.output_tokens <= 350
    bounded = await g.route(SCOPE, PROMPT, signals, max_output_tokens=100)
    assert bounded.chosen.output_tokens == 100
    errors = g.outputs.errors()
    assert errors[("summarize", learned.chosen.model.name)].count == 41


async def test_hold_uses_the_most_cautious_margin_in_scope() -> None:
    g = gate(**{"user:acme/alice": PoolSpec(cap=10**12, margin_bp=15_000)})
    r = await g.reserve(SCOPE, "gpt-4o", PROMPT, max_output_tokens=100)
    assert r.reservation.hold.amount == -(-r.estimate.cost * 15 // 10)
    other = await g.reserve(Scope(org="acme", user="bob"), "gpt-4o", PROMPT, max_output_tokens=100)
    assert other.reservation.hold.amount == -(-other.estimate.cost * 13 // 10)


async def test_the_estimate_of_a_hold_takes_off_the_margin_it_was_held_with() -> None:
    # The estimation-error figures compare the commit with this estimate: dividing by the global
    # margin when a pool held with its own would skew them by the ratio of the two margins.
    g = gate(**{"user:acme/alice": PoolSpec(cap=10**12, margin_bp=20_000)})
    cautious = await g.reserve(Scope(org="acme", user="alice"), "gpt-4o", PROMPT, max_output_tokens=100)
    assert cautious.reservation.hold.amount == -(-cautious.estimate.cost * 2)
    assert g.estimated_cost(cautious.reservation.hold) == cautious.estimate.cost
    plain = await g.reserve(Scope(org="acme", user="bob"), "gpt-4o", PROMPT, max_output_tokens=100)
    assert g.estimated_cost(plain.reservation.hold) == plain.estimate.cost


async def test_fresh_reservation_ids_are_ordered_by_creation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Time-ordered ids are what let the embedded store append each new reservation beside the
    # last ones; they must stay unique within a millisecond and round-trip through Commit.
    import tollgate.ids

    g = gate()
    now = [1_796_205_557_446]
    monkeypatch.setattr(tollgate.ids, "now_ms", lambda: now[0])
    ids = []
    for _ in range(3):
        ids.append((await g.reserve(SCOPE, "gpt-4o", PROMPT)).reservation.hold.reservation_id)
        ids.append((await g.reserve(SCOPE, "gpt-4o", PROMPT)).reservation.hold.reservation_id)
        now[0] += 1
    assert len(set(ids)) == len(ids)
    assert all(rid.endswith(".acme") and len(rid.split(".")[0]) == 24 for rid in ids)
    ms = [rid[:10] for rid in ids]
    assert ms == sorted(ms) and len(set(ms)) == 3
    assert ids[0::2] == sorted(ids[0::2])
    committed = await g.commit(ids[0], Usage(input_tokens=2_000, output_tokens=10))
    assert committed.hold.reservation_id == ids[0] and committed.hold.charged > 0
