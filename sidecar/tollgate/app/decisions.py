"""The decision log's record of each routing decision: what was chosen and why, never the prompt."""

from __future__ import annotations

from ..routing.rules import Signals
from ..scope import Scope
from .runtime import Runtime
from .types import Prompt, RouteDecision

__all__ = ["log_decision"]


def log_decision(
    rt: Runtime,
    scope: Scope,
    signals: Signals,
    prompt: Prompt,
    base_tokens: int,
    decision: RouteDecision,
    *,
    parent_id: str = "",
    attempt: int = 1,
    escalation_reason: str = "",
) -> None:
    if rt.decision_log is None:
        return
    chosen = decision.chosen
    rt.decision_log.decision(
        reservation_id=decision.reservation.hold.reservation_id if decision.reservation else "",
        org=scope.org,
        team=scope.team,
        tags=scope.tags,
        task_type=signals.task_type,
        agent_mode=signals.agent_mode,
        messages=prompt.messages,
        input_tokens=base_tokens,
        decision={
            "model": chosen.model.name,
            "tier": chosen.model.tier,
            "required_tier": decision.requirement.tier,
            "source": decision.requirement.source,
            "reason": decision.reason,
            "difficulty": round(decision.difficulty, 4),
            "outcome": str(decision.outcome),
            "estimated_cost_nanos": chosen.cost,
        },
        shadow=(
            {"model": decision.shadow.model, "tier": decision.shadow.tier, "purpose": decision.shadow.purpose}
            if decision.shadow else None
        ),
        parent_id=parent_id,
        attempt=attempt,
        escalation_reason=escalation_reason,
    )
