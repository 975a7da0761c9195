"""Task signals to a minimum tier: the rules that decide before any scoring."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..catalog import Capability, Catalog, Latency
from ..config import RoutingConfig

__all__ = ["Signals", "Source", "TierRequirement", "from_difficulty", "from_signals"]


@dataclass(frozen=True, slots=True)
class Signals:
    """What the application knows about the request."""

    task_type: str = ""
    agent_mode: str = ""
    min_tier: str = ""
    needs: frozenset[Capability] = frozenset()
    latency: Latency | None = None
    """The slowest latency class the caller accepts; ``None``: any."""


class Source(StrEnum):
    """What decided a request's minimum tier."""

    RULE = "rule"
    DIFFICULTY = "difficulty"
    ESCALATION = "escalation"


@dataclass(frozen=True, slots=True)
class TierRequirement:
    """The minimum tier a request needs, and why."""

    tier: str
    rank: int
    reason: str
    source: Source


def from_signals(signals: Signals, routing: RoutingConfig, catalog: Catalog) -> TierRequirement | None:
    """The highest minimum tier any known signal asks for, or ``None`` if no rule applies.

    Several signals can apply at once (task type ``extract`` in agent mode ``debug``);
    the strictest wins, because a rule states what a request needs at least.
    """
    hits: list[tuple[int, str, str]] = []
    if signals.min_tier:
        hits.append((catalog.tier_rank(signals.min_tier), signals.min_tier, f"min_tier={signals.min_tier}"))
    tier = routing.task_types.get(signals.task_type) if signals.task_type else None
    if tier is not None:
        hits.append((catalog.tier_rank(tier), tier, f"task_type={signals.task_type}"))
    tier = routing.agent_modes.get(signals.agent_mode) if signals.agent_mode else None
    if tier is not None:
        hits.append((catalog.tier_rank(tier), tier, f"agent_mode={signals.agent_mode}"))
    if not hits:
        return None
    rank, tier, _ = max(hits)
    why = ", ".join(h[2] for h in hits)
    return TierRequirement(tier=tier, rank=rank, reason=f"rule {why} -> {tier}", source=Source.RULE)


def from_difficulty(
    score: float, reasons: tuple[str, ...], routing: RoutingConfig, catalog: Catalog
) -> TierRequirement:
    """The tier whose difficulty threshold the score reaches (the cheapest tier below all)."""
    tier = catalog.tiers[0]
    for threshold, name in routing.difficulty:  # highest threshold first
        if score >= threshold:
            tier = name
            break
    features = f" ({', '.join(reasons)})" if reasons else ""
    return TierRequirement(
        tier=tier,
        rank=catalog.tier_rank(tier),
        reason=f"difficulty {score:.2f}{features} -> {tier}",
        source=Source.DIFFICULTY,
    )
