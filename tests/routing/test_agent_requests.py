"""The shipped router on agent-style requests with no task signals: the failures that cost most never happen.

No frontier-worthy request (planning, architecture, proofs, hard debugging, performance
diagnosis) may land on the cheap tier, and no trivial one (extraction, formatting,
chit-chat) on the frontier tier, at the default operating point. The requests and their
tiers are in ``tests/support/agent_requests.py``.
"""

from __future__ import annotations

from tests.support.agent_requests import AGENT_REQUESTS
from tollgate.app import Prompt, Tollgate
from tollgate.config import load_config
from tollgate.estimate import TokenCounter
from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver
from tollgate.routing.classifier import Classifier, default_model_path
from tollgate.routing.rules import Signals
from tollgate.scope import Scope


def auc(scores: list[float], tiers: list[str]) -> float:
    hard = [s for s, t in zip(scores, tiers, strict=True) if t == "frontier"]
    easy = [s for s, t in zip(scores, tiers, strict=True) if t == "cheap"]
    wins = sum((h > e) + 0.5 * (h == e) for h in hard for e in easy)
    return wins / (len(hard) * len(easy))


def test_the_set_covers_what_agents_send() -> None:
    kinds = {r.kind for r in AGENT_REQUESTS}
    assert {"planning", "architecture", "debugging", "proof", "performance", "code", "extraction", "formatting",
            "chit-chat", "tool-loop"} <= kinds
    assert {r.tier for r in AGENT_REQUESTS} == {"cheap", "medium", "frontier"}


async def test_no_frontier_work_on_cheap_and_no_trivial_work_on_frontier() -> None:
    config = load_config(None)
    gate = Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets)))
    misroutes = []
    for request in AGENT_REQUESTS:
        decision = await gate.route(Scope(org="acme", user="agent"), Prompt(messages=request.messages), Signals())
        assert decision.requirement.source == "difficulty"
        wrong = {"frontier": "cheap", "cheap": "frontier"}.get(request.tier)
        if decision.requirement.tier == wrong:
            misroutes.append(f"{request.kind} ({request.tier}) -> {decision.requirement.tier}: {decision.reason}")
    assert misroutes == []


def test_the_shipped_model_ranks_hard_above_trivial() -> None:
    model = Classifier.load(default_model_path())
    counter = TokenCounter()
    scores = [1 - model.predict(r.messages, counter.count_messages(r.messages)) for r in AGENT_REQUESTS]
    assert auc(scores, [r.tier for r in AGENT_REQUESTS]) >= 0.9

