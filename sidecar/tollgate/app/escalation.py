"""Escalate: the next attempt of a call whose output failed the application's own check."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..errors import EscalationRefused, IdempotencyConflict, InvalidRequest, ReservationNotFound
from ..ids import escalation_id, parse_reservation_id
from ..ledger import ReserveOutcome
from ..money import apply_margin
from ..routing.rules import Signals, Source, TierRequirement
from ..scope import Scope
from . import limits
from .admission import HoldTerms, hold_request
from .decisions import log_decision
from .types import Escalation, Outcome, Prompt, RouteDecision, Usage

if TYPE_CHECKING:
    from .facade import Tollgate

__all__ = ["escalate"]


async def escalate(
    gate: Tollgate,
    reservation_id: str,
    scope: Scope,
    prompt: Prompt,
    signals: Signals,
    *,
    max_output_tokens: int = 0,
    model: str = "",
    reason: str = "",
    usage: Usage | None = None,
    ttl_ms: int = 0,
) -> Escalation:
    """Route and reserve the next attempt of a failed call, one tier up or on ``model``.

    The new reservation's id is derived from the failed one's, so a retried
    Escalate returns the same attempt. A soft pool refuses an escalation as a hard
    one does: downgrading it would retry the tier that just failed.
    """
    rt = gate.runtime
    cfg = rt.config
    if parse_reservation_id(reservation_id).org != scope.org:
        raise InvalidRequest(f"reservation {reservation_id} belongs to another organisation than scope.org_id")
    limits.check_escalation_reason(reason)
    limits.check_max_output(max_output_tokens, cfg.limits)
    if usage is not None:
        limits.check_usage(usage, cfg.limits)
    ttl = limits.ttl(ttl_ms, cfg.reservations)
    parent = await gate.store.describe(reservation_id)
    if parent.attempt > cfg.routing.max_escalations:
        raise EscalationRefused(
            f"reservation {reservation_id} is attempt {parent.attempt}; routing.max_escalations="
            f"{cfg.routing.max_escalations} allows no further escalation of this call"
        )
    failed = cfg.catalog.models.get(parent.model)
    if failed is None:
        raise InvalidRequest(f"model {parent.model!r} of this reservation is no longer in the catalog")
    signals = dataclasses.replace(signals, task_type=parent.task_type)
    tokens = limits.count_prompt(prompt, cfg.limits, rt.counter)
    priced = gate.planner.priced(rt, scope, signals, tokens, max_output_tokens)
    why = f" after {reason}" if reason else ""
    if model:
        target = cfg.catalog.model(model)
        requirement = TierRequirement(target.tier, target.tier_rank,
                                      f"escalation of {failed.name}{why} -> {target.name}", Source.ESCALATION)
        options = [p for p in priced if p.model is target]
        if not options:
            raise InvalidRequest(f"{target.name} lacks the capabilities, context window, latency or provider "
                                 f"this request needs ({tokens} input tokens)")
    else:
        rank = failed.tier_rank + 1
        if rank >= len(cfg.catalog.tiers):
            raise EscalationRefused(
                f"{failed.name} is in the top tier ({failed.tier}); name a model to retry on another one"
            )
        tier = cfg.catalog.tiers[rank]
        requirement = TierRequirement(tier, rank, f"escalation of {failed.name} ({failed.tier}){why} -> {tier}",
                                      Source.ESCALATION)
        options = gate.planner.capable(rt, priced, requirement, scope, signals, tokens, max_output_tokens)
    previous = await gate.commit(reservation_id, usage) if usage is not None else None
    pools = gate.planner.pools(rt, scope)
    new_id = escalation_id(reservation_id)
    try:
        existing = await gate.store.get(new_id)
    except ReservationNotFound:
        existing = None
    if existing is not None:
        chosen = next((p for p in options if p.model.name == existing.model), None)
        if chosen is None:
            raise IdempotencyConflict(
                f"reservation {reservation_id} was already escalated to {existing.model}, which this request "
                "would not route to"
            )
        snapshots = await gate.store.snapshot(pools, high_priority=scope.priority == "high")
        reservation = ReserveOutcome(existing, tuple(snapshots), replayed=True)
    else:
        chosen = options[0]
        terms = HoldTerms(ttl_ms=ttl, task_type=parent.task_type)
        amount = apply_margin(chosen.cost, gate.planner.margin(rt, pools))
        request = hold_request(scope, pools, chosen, amount, terms)
        # The id derives from the parent's, so a retried Escalate must find its first reserve.
        request = dataclasses.replace(request, reservation_id=new_id, parent_id=reservation_id,
                                      attempt=parent.attempt + 1, fresh=False)
        reservation = await gate.store.reserve(request)
    outcome = Outcome.WARNED if any(p.warning for p in reservation.pools) else Outcome.ADMITTED
    decision = RouteDecision(
        chosen=chosen,
        fallbacks=gate.planner.fallbacks(rt, options, chosen, requirement),
        requirement=requirement,
        reason=requirement.reason,
        difficulty=0.0,
        outcome=outcome,
        reservation=reservation,
    )
    if not reservation.replayed:
        log_decision(rt, scope, signals, prompt, tokens, decision, parent_id=reservation_id,
                           attempt=parent.attempt + 1, escalation_reason=reason)
    return Escalation(decision=decision, parent_id=reservation_id, attempt=parent.attempt + 1,
                      failed_tier=failed.tier, previous_commit=previous)
