"""What the application is asked and what it answers: plain values, no gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..ledger import CommitOutcome, ReserveOutcome
from ..quality import ShadowPlan
from ..routing.rules import TierRequirement
from ..routing.select import Priced

__all__ = ["Escalation", "Outcome", "Prompt", "ReserveResult", "RouteDecision", "Usage"]


class Outcome(StrEnum):
    """What budget policy did to a routed request."""

    ADMITTED = "admitted"
    DOWNGRADED = "downgraded"
    WARNED = "warned"


@dataclass(frozen=True, slots=True)
class Prompt:
    """The input of a call: messages to count, or a token count the caller made."""

    messages: tuple[tuple[str, str], ...] | None = None
    input_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the provider reported it."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDecision:
    """A routing decision, with the reservation when one was asked for."""

    chosen: Priced
    fallbacks: tuple[Priced, ...]
    requirement: TierRequirement
    reason: str
    difficulty: float
    outcome: Outcome
    reservation: ReserveOutcome | None
    downgraded_by: str = ""
    """The level of the soft pool that forced a downgrade, if one did."""
    shadow: ShadowPlan | None = None
    """Set when the request was sampled for a quality comparison."""
    shadow_reservation: ReserveOutcome | None = None
    """The shadow call's hold on the quality pool."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation:
    """The next attempt of a call whose output failed the application's check."""

    decision: RouteDecision
    parent_id: str
    attempt: int
    failed_tier: str
    previous_commit: CommitOutcome | None = None


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """A reservation on a named model, with its estimate."""

    estimate: Priced
    reservation: ReserveOutcome
