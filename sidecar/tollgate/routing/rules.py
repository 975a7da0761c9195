"""Task signals to a minimum tier: the rules that decide before any scoring."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from ..catalog import Capability, Catalog, Latency
from ..config import RoutingConfig

__all__ = ["Signals", "Source", "TierRequirement", "from_difficulty", "from_signals", "near_task_type",
           "task_type_notes"]


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


@lru_cache(maxsize=512)
def near_task_type(name: str, known: tuple[str, ...]) -> str | None:
    """The rule's task type ``name`` is most likely a misspelling of (``summarise`` for ``summarize``), if any.

    Only a close match counts: a task type with no rule is legitimate (the classifier
    then decides, and may know it from training), a near miss of one with a rule is a
    typo that silently loses the rule.
    """
    if name in known:
        return None
    folded = name.strip().lower().replace("-", "_").replace(" ", "_")
    for candidate in known:
        if candidate.lower().replace("-", "_") == folded:
            return candidate
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return close[0] if close else None


def task_type_notes(routing: RoutingConfig) -> list[str]:
    """Warnings about the task types the routing section names: thresholds a rule shadows, likely typos."""
    notes = []
    known = tuple(sorted(routing.task_types))
    for name in sorted(routing.thresholds):
        if name == "default":
            continue
        if name in routing.task_types:
            notes.append(f"routing.thresholds.{name} never applies: routing.task_types.{name} decides first")
            continue
        near = near_task_type(name, known)
        if near is not None:
            notes.append(f"routing.thresholds.{name}: no rule has task type {name!r}; did you mean {near!r}?")
    return notes
