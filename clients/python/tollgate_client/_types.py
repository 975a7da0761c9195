"""The values the client takes and returns.

Everything here is a frozen dataclass of plain Python values: money is an
``int`` of nano-dollars (see ``format_usd``), times are timezone-aware UTC
``datetime`` objects, and the proto enums are lower-case strings without their
prefix (``PoolLevel.POOL_LEVEL_USER`` → ``"user"``; an unset enum is ``""``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict

__all__ = [
    "Candidate",
    "CommitResult",
    "Decision",
    "EscalateOptions",
    "Escalation",
    "ExtendResult",
    "MessageLike",
    "PoolState",
    "Priority",
    "ReleaseResult",
    "Reservation",
    "ReserveOptions",
    "ReserveResult",
    "RouteOptions",
    "Scope",
    "Shadow",
    "TaskQuality",
    "TierQuality",
    "Usage",
]

Priority = Literal["normal", "high"]
"""Request priority: only ``"high"`` may use a pool's priority reserve."""

MessageLike = Mapping[str, Any] | tuple[str, str]
"""One chat message: a ``{"role": ..., "content": ...}`` mapping or a ``(role, content)`` tuple."""

_PRIORITIES: tuple[str, ...] = ("normal", "high")


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is spending. Each level with an id may have a budget pool in the sidecar.

    ``org`` is required; ``team``, ``user`` and ``session`` (or agent-run id) are
    optional. ``tags`` are free-form labels carried into the decision log; they
    never select pools.
    """

    org: str
    team: str = ""
    user: str = ""
    session: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    priority: Priority = "normal"

    def __post_init__(self) -> None:
        if not self.org:
            raise ValueError("Scope.org is required: name the organisation that pays")
        if self.priority not in _PRIORITIES:
            raise ValueError(f"Scope.priority must be 'normal' or 'high', not {self.priority!r}")


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one provider call, as reported to ``commit``.

    ``input_tokens`` includes the cached ones; ``cached_input_tokens`` is the part
    served from the provider's prompt cache. ``output_tokens`` excludes reasoning
    tokens, which are counted in ``reasoning_tokens`` (and billed as output).
    ``usage_from_openai`` and ``usage_from_anthropic`` build one from a response.
    """

    input_tokens: int
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Usage.{name} must be an int, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"Usage.{name} must not be negative, got {value}")
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError(
                f"Usage.cached_input_tokens ({self.cached_input_tokens}) cannot exceed "
                f"input_tokens ({self.input_tokens}): input_tokens includes the cached ones"
            )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A model that could serve the request, with its estimated cost before the margin."""

    model: str
    provider: str
    tier: str
    estimated_cost_nanos: int
    latency: str = ""
    """The model's latency class: ``"fast"``, ``"standard"`` or ``"slow"``."""


@dataclass(frozen=True, slots=True)
class PoolState:
    """The state of one budget pool.

    ``level`` is ``"request"``, ``"session"``, ``"user"``, ``"team"`` or ``"org"``;
    ``policy`` is ``"hard"``, ``"soft"`` or ``"warn"``. ``remaining_nanos`` is
    ``usable_cap - spent - held`` and may be negative after an overshoot.
    ``resets_at`` is ``None`` for pools without a window; ``max_calls`` and
    ``max_tokens`` are 0 when not capped.
    """

    pool_id: str
    level: str
    policy: str
    cap_nanos: int
    usable_cap_nanos: int
    spent_nanos: int
    held_nanos: int
    remaining_nanos: int
    resets_at: datetime | None
    calls: int
    max_calls: int
    tokens: int
    max_tokens: int
    warning: bool


@dataclass(frozen=True, slots=True)
class Reservation:
    """Money held against every pool in a scope until committed, released or expired.

    ``held_nanos`` is the estimated cost times the sidecar's margin. ``replayed``
    is true when the answer repeats an earlier request with the same
    idempotency key. ``idempotency_key`` is the key the reservation was made
    under: the caller's, or the one the client generated so that its retries
    could not hold twice; ``""`` when there was none (retries off, an
    escalation, a shadow call).
    """

    reservation_id: str
    model: str
    held_nanos: int
    expires_at: datetime
    pools: tuple[PoolState, ...]
    replayed: bool
    idempotency_key: str = ""


@dataclass(frozen=True, slots=True)
class Shadow:
    """A sampled request: call ``model`` too, compare the answers, report through ``feedback``.

    ``purpose`` is ``"reference"`` (the model the request would have had without cost
    routing) or ``"probe"`` (the cheap model, checked while its task type is escalated).
    ``reservation`` holds the shadow call against the quality pool, not the product's.
    """

    model: str
    tier: str
    purpose: str
    reservation: Reservation | None


@dataclass(frozen=True, slots=True)
class TierQuality:
    """Direct feedback on one tier of one task type."""

    tier: str
    samples: int
    quality: float
    quality_low: float
    quality_high: float


@dataclass(frozen=True, slots=True)
class TaskQuality:
    """The quality guard's view of one task type."""

    task_type: str
    tiers: tuple[TierQuality, ...]
    shadow_samples: int
    shadow_match: float
    shadow_match_low: float
    shadow_match_high: float
    guard_min_tier: str
    guard_since: datetime | None
    escalation_cost_nanos: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to ``route``: which model to call, why, and what it should cost.

    ``model``, ``provider``, ``tier`` and ``estimated_cost_nanos`` describe the
    chosen candidate; ``fallbacks`` are alternatives to try on provider errors,
    best first. ``source`` is ``"rule"`` or ``"difficulty"``; ``outcome`` is
    ``"admitted"``, ``"downgraded"`` or ``"warned"``. ``reservation`` is set when
    the route asked to reserve.
    """

    model: str
    provider: str
    tier: str
    reason: str
    source: str
    required_tier: str
    difficulty: float
    estimated_input_tokens: int
    estimated_output_tokens: int
    estimated_cost_nanos: int
    outcome: str
    fallbacks: tuple[Candidate, ...]
    reservation: Reservation | None
    shadow: Shadow | None = None
    """Set when the request was sampled for a quality comparison (see ``shadow_compare``)."""

    @property
    def candidate(self) -> Candidate:
        """The chosen model as a ``Candidate``, comparable with the ``fallbacks``."""
        return Candidate(self.model, self.provider, self.tier, self.estimated_cost_nanos)


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """The answer to ``reserve``: the reservation and the estimate it was sized from."""

    reservation: Reservation
    estimated_input_tokens: int
    estimated_output_tokens: int
    estimated_cost_nanos: int


@dataclass(frozen=True, slots=True)
class Escalation:
    """The answer to ``escalate``: the next attempt, reserved.

    ``decision`` is the next attempt's routing decision, with its reservation;
    ``attempt`` is 2 for a first escalation; ``previous_commit`` is the failed
    attempt's commit when its usage was sent along.
    """

    decision: Decision
    attempt: int
    previous_reservation_id: str
    previous_commit: CommitResult | None


@dataclass(frozen=True, slots=True)
class CommitResult:
    """The answer to ``commit``.

    ``charged_nanos`` is the actual cost, charged in full to every pool;
    ``overshoot_nanos`` the part above the hold; ``released_nanos`` the part of
    the hold given back.
    """

    reservation_id: str
    charged_nanos: int
    overshoot_nanos: int
    released_nanos: int
    pools: tuple[PoolState, ...]
    replayed: bool


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """The answer to ``release``: the hold given back and the pools afterwards."""

    reservation_id: str
    released_nanos: int
    pools: tuple[PoolState, ...]
    replayed: bool


@dataclass(frozen=True, slots=True)
class ExtendResult:
    """The answer to ``extend``: the reservation's new expiry."""

    reservation_id: str
    expires_at: datetime


class RouteOptions(TypedDict, total=False):
    """Keyword arguments of ``route``; a key left out takes the default in brackets.

    Exactly one of ``messages`` and ``input_tokens`` must be given.

    - ``messages``: the messages to be sent; the sidecar counts their tokens [None]
    - ``input_tokens``: input tokens already counted by the application [None]
    - ``task_type``: application-defined task type such as ``"extract"`` [""]
    - ``agent_mode``: agent mode such as ``"code"`` or ``"architect"`` [""]
    - ``min_tier``: explicit minimum tier name from the sidecar's tier order [""]
    - ``needs_tools`` / ``needs_vision`` / ``needs_json``: capabilities the call needs [False]
    - ``max_output_tokens``: the output-token limit passed to the provider, 0 for none [0]
    - ``reserve``: also reserve for the chosen model, in the same round trip [False]
    - ``idempotency_key``: with ``reserve``, a retry with the same key returns the same reservation; when
      empty and retries are on, the client generates one, used by every attempt of this call [""]
    - ``ttl_ms``: with ``reserve``, the reservation's time to live, 0 for the sidecar's default [0]
    - ``accept_shadow``: the caller makes shadow calls when sampled (``call_with_shadow``) [False]
    - ``latency``: the slowest latency class acceptable: ``"fast"``, ``"standard"``, ``"slow"``; "" for any [""]
    """

    messages: Iterable[MessageLike] | None
    input_tokens: int | None
    task_type: str
    agent_mode: str
    min_tier: str
    needs_tools: bool
    needs_vision: bool
    needs_json: bool
    max_output_tokens: int
    reserve: bool
    idempotency_key: str
    ttl_ms: int
    accept_shadow: bool
    latency: str


class ReserveOptions(TypedDict, total=False):
    """Keyword arguments of ``reserve``; a key left out takes the default in brackets.

    Exactly one of ``messages`` and ``input_tokens`` must be given.

    - ``messages``: the messages to be sent; the sidecar counts their tokens [None]
    - ``input_tokens``: input tokens already counted by the application [None]
    - ``task_type``: task type, used to estimate output tokens from history [""]
    - ``max_output_tokens``: the output-token limit passed to the provider, 0 for none [0]
    - ``idempotency_key``: a retry with the same key returns the same reservation; when empty and retries
      are on, the client generates one, used by every attempt of this call [""]
    - ``ttl_ms``: the reservation's time to live, 0 for the sidecar's default [0]
    """

    messages: Iterable[MessageLike] | None
    input_tokens: int | None
    task_type: str
    max_output_tokens: int
    idempotency_key: str
    ttl_ms: int


class EscalateOptions(TypedDict, total=False):
    """Keyword arguments of ``escalate``; a key left out takes the default in brackets.

    Exactly one of ``messages`` and ``input_tokens`` must be given: the input of the
    next attempt (it may include the failed answer and what was wrong with it).

    - ``model``: escalate to this model by name instead of one tier up [""]
    - ``reason``: why the output failed, e.g. ``"invalid_json"``; recorded in logs and traces [""]
    - ``usage``: the failed attempt's usage, committed in the same step; else end it yourself [None]
    - ``needs_tools`` / ``needs_vision`` / ``needs_json``, ``latency``: as for ``route``
    - ``max_output_tokens``: the output-token limit of the next attempt [0]
    - ``ttl_ms``: the new reservation's time to live, 0 for the sidecar's default [0]
    """

    messages: Iterable[MessageLike] | None
    input_tokens: int | None
    model: str
    reason: str
    usage: Usage | None
    needs_tools: bool
    needs_vision: bool
    needs_json: bool
    latency: str
    max_output_tokens: int
    ttl_ms: int
