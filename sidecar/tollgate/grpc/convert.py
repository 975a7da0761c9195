"""Protobuf in, domain values out, and back: the only translation between the wire and the app.

Request conversions bound what they build (counts before tuples, so a refused request
costs no memory) and raise ``InvalidRequest`` naming the field to fix.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from tollgate_client.v1 import tollgate_pb2 as pb

from ..app import Outcome, Prompt, RouteDecision, Usage
from ..catalog import Capability, Latency
from ..config import Policy
from ..errors import InvalidRequest
from ..ledger import CommitOutcome, PoolSnapshot, ReserveOutcome
from ..routing.rules import Signals, Source
from ..routing.select import Priced
from ..scope import Level, Priority, Scope

__all__ = [
    "LEVEL",
    "POLICY",
    "candidate",
    "commit_response",
    "decision",
    "pool",
    "prompt",
    "reservation",
    "scope",
    "signals",
    "timestamp",
    "usage",
]

LEVEL = {
    Level.REQUEST: pb.POOL_LEVEL_REQUEST,
    Level.SESSION: pb.POOL_LEVEL_SESSION,
    Level.USER: pb.POOL_LEVEL_USER,
    Level.TEAM: pb.POOL_LEVEL_TEAM,
    Level.ORG: pb.POOL_LEVEL_ORG,
    Level.QUALITY: pb.POOL_LEVEL_QUALITY,
}
POLICY = {Policy.HARD: pb.POLICY_HARD, Policy.SOFT: pb.POLICY_SOFT, Policy.WARN: pb.POLICY_WARN}
OUTCOME = {
    Outcome.ADMITTED: pb.POLICY_OUTCOME_ADMITTED,
    Outcome.DOWNGRADED: pb.POLICY_OUTCOME_DOWNGRADED,
    Outcome.WARNED: pb.POLICY_OUTCOME_WARNED,
}
LATENCY: dict[pb.LatencyClass, Latency | None] = {
    pb.LATENCY_CLASS_UNSPECIFIED: None,
    pb.LATENCY_CLASS_FAST: Latency.FAST,
    pb.LATENCY_CLASS_STANDARD: Latency.STANDARD,
    pb.LATENCY_CLASS_SLOW: Latency.SLOW,
}
LATENCY_PB = {v: k for k, v in LATENCY.items() if v is not None}
SOURCE = {
    Source.RULE: pb.DECISION_SOURCE_RULE,
    Source.DIFFICULTY: pb.DECISION_SOURCE_DIFFICULTY,
    Source.ESCALATION: pb.DECISION_SOURCE_ESCALATION,
}


def scope(msg: pb.Scope | None, max_tags: int) -> Scope:
    """The request's scope; its tags are counted before anything is built from them."""
    if msg is None:
        raise InvalidRequest("scope is required: set scope.org_id to the organisation that pays")
    # Counted before anything is built from them: a rejected request must cost no memory.
    if len(msg.tags) > max_tags:
        raise InvalidRequest(f"scope.tags has {len(msg.tags)} entries; limits.max_tags allows {max_tags}")
    if msg.priority == pb.PRIORITY_HIGH:
        priority = Priority.HIGH
    elif msg.priority in (pb.PRIORITY_UNSPECIFIED, pb.PRIORITY_NORMAL):
        priority = Priority.NORMAL
    else:
        raise InvalidRequest(f"scope.priority {msg.priority} is not a known Priority value")
    return Scope(
        org=msg.org_id,
        team=msg.team_id,
        user=msg.user_id,
        session=msg.session_id,
        tags=dict(msg.tags),
        priority=priority,
    )


def prompt(msg: pb.Prompt, max_messages: int) -> Prompt:
    which = msg.WhichOneof("input")
    if which == "messages":
        items = msg.messages.items
        # Counted before anything is built from them: a rejected request must cost no memory.
        if len(items) > max_messages:
            raise InvalidRequest(f"{len(items)} messages exceed the limit of {max_messages} (limits.max_messages)")
        return Prompt(messages=tuple([(m.role, m.content) for m in items]))
    if which == "input_tokens":
        return Prompt(input_tokens=msg.input_tokens)
    raise InvalidRequest("prompt is required: set prompt.messages or prompt.input_tokens")


def usage(u: pb.Usage) -> Usage:
    return Usage(
        input_tokens=u.input_tokens,
        cached_input_tokens=u.cached_input_tokens,
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
    )


def commit_response(outcome: CommitOutcome) -> pb.CommitResponse:
    return pb.CommitResponse(
        reservation_id=outcome.hold.reservation_id,
        charged_nanos=outcome.hold.charged,
        overshoot_nanos=outcome.hold.overshoot,
        released_nanos=outcome.released,
        pools=[pool(p) for p in outcome.pools],
        replayed=outcome.replayed,
    )


def signals(s: pb.TaskSignals) -> Signals:
    needs = frozenset(
        cap
        for cap, wanted in (
            (Capability.TOOLS, s.needs_tools),
            (Capability.VISION, s.needs_vision),
            (Capability.JSON, s.needs_json),
        )
        if wanted
    )
    if s.latency not in LATENCY:
        raise InvalidRequest(f"signals.latency {s.latency} is not a known LatencyClass value")
    return Signals(
        task_type=s.task_type, agent_mode=s.agent_mode, min_tier=s.min_tier, needs=needs, latency=LATENCY[s.latency]
    )


def decision(d: RouteDecision) -> pb.Decision:
    return pb.Decision(
        chosen=candidate(d.chosen),
        fallbacks=[candidate(p) for p in d.fallbacks],
        reason=d.reason,
        source=SOURCE[d.requirement.source],
        required_tier=d.requirement.tier,
        difficulty=d.difficulty,
        estimated_input_tokens=d.chosen.input_tokens,
        estimated_output_tokens=d.chosen.output_tokens,
        outcome=OUTCOME[d.outcome],
    )


def timestamp(ms: int) -> Timestamp:
    return Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def candidate(priced: Priced) -> pb.Candidate:
    m = priced.model
    return pb.Candidate(
        model=m.name, provider=m.provider, tier=m.tier, estimated_cost_nanos=priced.cost, latency=LATENCY_PB[m.latency]
    )


def pool(snap: PoolSnapshot) -> pb.PoolState:
    spec = snap.spec
    resets = snap.resets_at_ms
    return pb.PoolState(
        pool_id=snap.pool_id,
        level=LEVEL[snap.level],
        policy=POLICY[spec.policy],
        cap_nanos=spec.cap,
        usable_cap_nanos=snap.usable_cap,
        spent_nanos=snap.spent,
        held_nanos=snap.held,
        remaining_nanos=snap.remaining,
        calls=snap.calls,
        max_calls=spec.max_calls,
        tokens=snap.tokens,
        max_tokens=spec.max_tokens,
        warning=snap.warning,
        resets_at=None if resets is None else timestamp(resets),
    )


def reservation(outcome: ReserveOutcome) -> pb.Reservation:
    hold = outcome.hold
    return pb.Reservation(
        reservation_id=hold.reservation_id,
        model=hold.model,
        held_nanos=hold.amount,
        expires_at=timestamp(hold.expires_ms),
        pools=[pool(p) for p in outcome.pools],
        replayed=outcome.replayed,
    )
