"""Between the client's Python values and the protobuf messages of tollgate.v1.

Each RPC has one function here that checks the arguments, builds the request
and names the converter for the response, returned together as a ``Call``. The
sync and async clients only execute a ``Call``, so everything about the wire
format is written once, in this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import StatusCode

from ._retry import MONEY, NEVER, READ
from ._types import (
    Candidate,
    CommitResult,
    Decision,
    Escalation,
    ExtendResult,
    MessageLike,
    PoolState,
    ReleaseResult,
    Reservation,
    ReserveResult,
    Scope,
    Shadow,
    TaskQuality,
    TierQuality,
    Usage,
)
from .v1 import tollgate_pb2 as pb

__all__ = [
    "Call",
    "commit",
    "commit_request",
    "commit_result",
    "escalate",
    "extend",
    "feedback",
    "get_budget",
    "get_quality",
    "level_name",
    "policy_name",
    "release",
    "reserve",
    "route",
    "timestamp",
]

T = TypeVar("T")

_PRIORITY = {"normal": pb.PRIORITY_NORMAL, "high": pb.PRIORITY_HIGH}


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One RPC ready to send: the stub method's name, its request and the response converter.

    ``retry_on`` are the statuses after which the call may be sent again as it is.
    ``reservation`` is the request's own ``ReservationOptions`` when its
    idempotency key is what makes that safe (Reserve, Route with ``reserve``): the
    client fills the key in before the first attempt when the caller left it empty.
    """

    method: str
    request: Message
    convert: Callable[[Any], T]
    retry_on: frozenset[StatusCode] = MONEY
    reservation: pb.ReservationOptions | None = None


# --- requests ---------------------------------------------------------------


def route(
    scope: Scope,
    *,
    messages: Iterable[MessageLike] | None = None,
    input_tokens: int | None = None,
    task_type: str = "",
    agent_mode: str = "",
    min_tier: str = "",
    needs_tools: bool = False,
    needs_vision: bool = False,
    needs_json: bool = False,
    max_output_tokens: int = 0,
    reserve: bool = False,
    idempotency_key: str = "",
    ttl_ms: int = 0,
    accept_shadow: bool = False,
    latency: str = "",
) -> Call[Decision]:
    """The Route call; see ``RouteOptions`` for the arguments."""
    request = pb.RouteRequest(
        scope=_scope(scope),
        prompt=_prompt(messages, input_tokens),
        signals=pb.TaskSignals(
            task_type=task_type,
            agent_mode=agent_mode,
            min_tier=min_tier,
            needs_tools=needs_tools,
            needs_vision=needs_vision,
            needs_json=needs_json,
            latency=_latency(latency),
        ),
        max_output_tokens=_count("max_output_tokens", max_output_tokens),
        reserve=reserve,
        accept_shadow=accept_shadow,
    )
    if reserve:
        request.reservation.CopyFrom(_reservation_options(idempotency_key, ttl_ms))
        # The key is read when the answer arrives: the client may have filled it in before sending.
        return Call("Route", request, lambda r: _decision(r, request.reservation.idempotency_key),
                    reservation=request.reservation)
    if idempotency_key or ttl_ms:
        # Silently dropping them would leave the caller believing a retry is idempotent.
        raise ValueError("idempotency_key and ttl_ms apply to a reservation: pass reserve=True with them")
    return Call("Route", request, _decision, retry_on=READ)


def reserve(
    scope: Scope,
    model: str,
    *,
    messages: Iterable[MessageLike] | None = None,
    input_tokens: int | None = None,
    task_type: str = "",
    max_output_tokens: int = 0,
    idempotency_key: str = "",
    ttl_ms: int = 0,
) -> Call[ReserveResult]:
    """The Reserve call; see ``ReserveOptions`` for the arguments."""
    if not model:
        raise ValueError("reserve() needs the model to reserve for")
    request = pb.ReserveRequest(
        scope=_scope(scope),
        model=model,
        prompt=_prompt(messages, input_tokens),
        task_type=task_type,
        max_output_tokens=_count("max_output_tokens", max_output_tokens),
        reservation=_reservation_options(idempotency_key, ttl_ms),
    )
    return Call("Reserve", request, lambda r: _reserve_result(r, request.reservation.idempotency_key),
                reservation=request.reservation)


def commit(reservation_id: str, usage: Usage) -> Call[CommitResult]:
    """The Commit call."""
    return Call("Commit", commit_request(reservation_id, usage), commit_result)


def commit_request(reservation_id: str, usage: Usage) -> pb.CommitRequest:
    """A Commit's request, checked: for Commit, and for one commit of a CommitBatch."""
    return pb.CommitRequest(reservation_id=_reservation_id(reservation_id), usage=_usage(usage))


def _usage(usage: Usage) -> pb.Usage:
    if not isinstance(usage, Usage):
        raise TypeError(f"usage must be a Usage, got {type(usage).__name__}; see usage_from_openai()")
    return pb.Usage(
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


_LATENCY = {"": pb.LATENCY_CLASS_UNSPECIFIED, "fast": pb.LATENCY_CLASS_FAST,
            "standard": pb.LATENCY_CLASS_STANDARD, "slow": pb.LATENCY_CLASS_SLOW}


def _latency(latency: str) -> pb.LatencyClass:
    try:
        return _LATENCY[latency]
    except KeyError:
        raise ValueError(f"latency must be one of fast, standard, slow or empty, got {latency!r}") from None


def escalate(
    reservation_id: str,
    scope: Scope,
    *,
    messages: Iterable[MessageLike] | None = None,
    input_tokens: int | None = None,
    model: str = "",
    reason: str = "",
    usage: Usage | None = None,
    needs_tools: bool = False,
    needs_vision: bool = False,
    needs_json: bool = False,
    latency: str = "",
    max_output_tokens: int = 0,
    ttl_ms: int = 0,
) -> Call[Escalation]:
    """The Escalate call: the next attempt of a call whose output failed the application's check."""
    request = pb.EscalateRequest(
        reservation_id=_reservation_id(reservation_id),
        scope=_scope(scope),
        prompt=_prompt(messages, input_tokens),
        signals=pb.TaskSignals(needs_tools=needs_tools, needs_vision=needs_vision, needs_json=needs_json,
                               latency=_latency(latency)),
        max_output_tokens=_count("max_output_tokens", max_output_tokens),
        model=model,
        reason=reason,
        reservation=_reservation_options("", ttl_ms),
    )
    if usage is not None:
        request.usage.CopyFrom(_usage(usage))
    return Call("Escalate", request, _escalation)


def release(reservation_id: str) -> Call[ReleaseResult]:
    """The Release call."""
    return Call("Release", pb.ReleaseRequest(reservation_id=_reservation_id(reservation_id)), _release_result)


def extend(reservation_id: str, ttl_ms: int = 0) -> Call[ExtendResult]:
    """The Extend call."""
    request = pb.ExtendRequest(reservation_id=_reservation_id(reservation_id), ttl_ms=_count("ttl_ms", ttl_ms))
    return Call("Extend", request, _extend_result)


def get_budget(scope: Scope) -> Call[tuple[PoolState, ...]]:
    """The GetBudget call."""
    return Call("GetBudget", pb.GetBudgetRequest(scope=_scope(scope)), _budget, retry_on=READ)


_SOURCES = {
    "user": pb.FEEDBACK_SOURCE_USER,
    "automated_eval": pb.FEEDBACK_SOURCE_AUTOMATED_EVAL,
    "shadow_comparison": pb.FEEDBACK_SOURCE_SHADOW_COMPARISON,
    "human_review": pb.FEEDBACK_SOURCE_HUMAN_REVIEW,
}


def feedback(reservation_id: str, score: float | bool, source: str = "user") -> Call[tuple[str, str]]:
    """The Feedback call; ``score`` in [0, 1], or a thumbs up (True) / down (False)."""
    value = float(score)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"score must be between 0 and 1, got {score!r}")
    if source not in _SOURCES:
        raise ValueError(f"source must be one of {', '.join(_SOURCES)}, got {source!r}")
    request = pb.FeedbackRequest(reservation_id=_reservation_id(reservation_id), score=value,
                                 source=_SOURCES[source])
    return Call("Feedback", request, lambda r: (r.task_type, r.tier), retry_on=NEVER)


def get_quality() -> Call[tuple[TaskQuality, ...]]:
    """The GetQuality call."""
    return Call("GetQuality", pb.GetQualityRequest(), _quality, retry_on=READ)


def _scope(scope: Scope) -> pb.Scope:
    if not isinstance(scope, Scope):
        raise TypeError(f"expected a tollgate_client.Scope, got {type(scope).__name__}")
    return pb.Scope(
        org_id=scope.org,
        team_id=scope.team,
        user_id=scope.user,
        session_id=scope.session,
        tags=dict(scope.tags),
        priority=_PRIORITY[scope.priority],
    )


def _prompt(messages: Iterable[MessageLike] | None, input_tokens: int | None) -> pb.Prompt:
    if messages is not None and input_tokens is None:
        if isinstance(messages, str | bytes | Mapping):
            raise TypeError("messages= takes a list of messages, not a single message or string")
        return pb.Prompt(messages=pb.Messages(items=[_message(m) for m in messages]))
    if input_tokens is not None and messages is None:
        # Set through the constructor so that 0 still selects the oneof branch.
        return pb.Prompt(input_tokens=_count("input_tokens", input_tokens))
    raise ValueError("give exactly one of messages= (the prompt) or input_tokens= (its counted size)")


def _message(message: MessageLike) -> pb.Message:
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    elif isinstance(message, tuple) and len(message) == 2:
        role, content = message
    else:
        raise TypeError(f"a message is a {{'role', 'content'}} mapping or a (role, content) tuple, got {message!r}")
    if not isinstance(role, str) or not role:
        raise ValueError(f"message role must be a non-empty string, got {role!r}")
    return pb.Message(role=role, content=_text(content))


def _text(content: object) -> str:
    """The text of a message's content, as the sidecar counts it.

    Provider SDKs also accept content as a list of parts; only the text parts
    carry tokens the sidecar can count, so the others (images, audio) are left out.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    raise TypeError(f"message content must be a string or a list of content parts, got {type(content).__name__}")


def _reservation_options(idempotency_key: str, ttl_ms: int) -> pb.ReservationOptions:
    return pb.ReservationOptions(idempotency_key=idempotency_key, ttl_ms=_count("ttl_ms", ttl_ms))


def _reservation_id(reservation_id: str) -> str:
    if not isinstance(reservation_id, str) or not reservation_id:
        raise ValueError(f"expected a reservation id string, got {reservation_id!r}")
    return reservation_id


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


# --- responses --------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(ts: Timestamp) -> datetime:
    """A protobuf Timestamp as an aware UTC datetime, to the microsecond (as ``Timestamp.ToDatetime``)."""
    # The arithmetic ToDatetime does, without its conversions of time zone: several per answer add up.
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def _optional_timestamp(message: Message, field: str) -> datetime | None:
    return timestamp(getattr(message, field)) if message.HasField(field) else None


_NAMES: dict[tuple[str, int], str] = {}
"""Enum values already turned into names, by (prefix, value): an answer carries a dozen of them."""


def _enum_name(enum: EnumTypeWrapper, prefix: str, value: int) -> str:
    if value == 0:
        return ""
    key = (prefix, value)
    name = _NAMES.get(key)
    if name is None:
        try:
            name = enum.Name(value).removeprefix(prefix).lower()
        except ValueError:
            # A newer sidecar may send a value this client's descriptors do not know yet.
            return str(value)
        _NAMES[key] = name
    return name


def level_name(value: int) -> str:
    """``PoolLevel.POOL_LEVEL_USER`` → ``"user"``."""
    return _enum_name(pb.PoolLevel, "POOL_LEVEL_", value)


def policy_name(value: int) -> str:
    """``Policy.POLICY_HARD`` → ``"hard"``."""
    return _enum_name(pb.Policy, "POLICY_", value)


def _pool(p: pb.PoolState) -> PoolState:
    return PoolState(
        pool_id=p.pool_id,
        level=level_name(p.level),
        policy=policy_name(p.policy),
        cap_nanos=p.cap_nanos,
        usable_cap_nanos=p.usable_cap_nanos,
        spent_nanos=p.spent_nanos,
        held_nanos=p.held_nanos,
        remaining_nanos=p.remaining_nanos,
        resets_at=_optional_timestamp(p, "resets_at"),
        calls=p.calls,
        max_calls=p.max_calls,
        tokens=p.tokens,
        max_tokens=p.max_tokens,
        warning=p.warning,
    )


def _pools(pools: Iterable[pb.PoolState]) -> tuple[PoolState, ...]:
    return tuple(_pool(p) for p in pools)


def _reservation(r: pb.Reservation, idempotency_key: str = "") -> Reservation:
    return Reservation(
        reservation_id=r.reservation_id,
        model=r.model,
        held_nanos=r.held_nanos,
        expires_at=timestamp(r.expires_at),
        pools=_pools(r.pools),
        replayed=r.replayed,
        idempotency_key=idempotency_key,
    )


def _escalation(response: pb.EscalateResponse) -> Escalation:
    return Escalation(
        decision=_decision(response),
        attempt=response.attempt,
        previous_reservation_id=response.previous_reservation_id,
        previous_commit=commit_result(response.previous_commit) if response.HasField("previous_commit") else None,
    )


def _decision(response: pb.RouteResponse | pb.EscalateResponse, idempotency_key: str = "") -> Decision:
    d = response.decision
    return Decision(
        model=d.chosen.model,
        provider=d.chosen.provider,
        tier=d.chosen.tier,
        reason=d.reason,
        source=_enum_name(pb.DecisionSource, "DECISION_SOURCE_", d.source),
        required_tier=d.required_tier,
        difficulty=d.difficulty,
        estimated_input_tokens=d.estimated_input_tokens,
        estimated_output_tokens=d.estimated_output_tokens,
        estimated_cost_nanos=d.chosen.estimated_cost_nanos,
        outcome=_enum_name(pb.PolicyOutcome, "POLICY_OUTCOME_", d.outcome),
        fallbacks=tuple(_candidate(c) for c in d.fallbacks),
        reservation=(_reservation(response.reservation, idempotency_key) if response.HasField("reservation")
                     else None),
        shadow=_shadow(response.shadow) if isinstance(response, pb.RouteResponse) and response.HasField("shadow")
        else None,
    )


def _shadow(s: pb.Shadow) -> Shadow:
    return Shadow(model=s.model, tier=s.tier, purpose=s.purpose,
                  reservation=_reservation(s.reservation) if s.HasField("reservation") else None)


def _quality(response: pb.GetQualityResponse) -> tuple[TaskQuality, ...]:
    return tuple(
        TaskQuality(
            task_type=t.task_type,
            tiers=tuple(TierQuality(q.tier, q.samples, q.quality, q.quality_low, q.quality_high) for q in t.tiers),
            shadow_samples=t.shadow_samples,
            shadow_match=t.shadow_match,
            shadow_match_low=t.shadow_match_low,
            shadow_match_high=t.shadow_match_high,
            guard_min_tier=t.guard_min_tier,
            guard_since=_optional_timestamp(t, "guard_since"),
            escalation_cost_nanos=t.escalation_cost_nanos,
        )
        for t in response.task_types
    )


def _candidate(c: pb.Candidate) -> Candidate:
    return Candidate(model=c.model, provider=c.provider, tier=c.tier, estimated_cost_nanos=c.estimated_cost_nanos,
                     latency=_enum_name(pb.LatencyClass, "LATENCY_CLASS_", c.latency))


def _reserve_result(response: pb.ReserveResponse, idempotency_key: str = "") -> ReserveResult:
    return ReserveResult(
        reservation=_reservation(response.reservation, idempotency_key),
        estimated_input_tokens=response.estimated_input_tokens,
        estimated_output_tokens=response.estimated_output_tokens,
        estimated_cost_nanos=response.estimated_cost_nanos,
    )


def commit_result(response: pb.CommitResponse) -> CommitResult:
    return CommitResult(
        reservation_id=response.reservation_id,
        charged_nanos=response.charged_nanos,
        overshoot_nanos=response.overshoot_nanos,
        released_nanos=response.released_nanos,
        pools=_pools(response.pools),
        replayed=response.replayed,
    )


def _release_result(response: pb.ReleaseResponse) -> ReleaseResult:
    return ReleaseResult(
        reservation_id=response.reservation_id,
        released_nanos=response.released_nanos,
        pools=_pools(response.pools),
        replayed=response.replayed,
    )


def _extend_result(response: pb.ExtendResponse) -> ExtendResult:
    return ExtendResult(reservation_id=response.reservation_id, expires_at=timestamp(response.expires_at))


def _budget(response: pb.GetBudgetResponse) -> tuple[PoolState, ...]:
    return _pools(response.pools)
