"""The model catalog: tiers, prices, context windows and capabilities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import IntEnum, StrEnum

from .errors import InvalidRequest
from .money import Price

__all__ = ["Capability", "Catalog", "Latency", "Model", "deprecation_notes"]


class Capability(StrEnum):
    """What a model can do beyond plain text chat."""

    TOOLS = "tools"
    VISION = "vision"
    JSON = "json"


class Latency(IntEnum):
    """How quickly a model answers; lower is faster, so a request accepts its class and below."""

    FAST = 1
    STANDARD = 2
    SLOW = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Model:
    """One model as configured."""

    name: str
    provider: str
    tier: str
    tier_rank: int
    price: Price
    context_window: int
    max_output_tokens: int
    capabilities: frozenset[Capability]
    token_ratio_pct: int
    """Tokens of this model's tokenizer per 100 ``cl100k_base`` tokens (100 = exact)."""
    latency: Latency = Latency.STANDARD
    deprecation_date: date | None = None
    """When the provider retires it, if announced."""

    def input_tokens(self, cl100k_tokens: int) -> int:
        """Scale a ``cl100k_base`` count to this model's tokenizer, rounding up."""
        if self.token_ratio_pct == 100:
            return cl100k_tokens
        return -(-cl100k_tokens * self.token_ratio_pct // 100)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every model, and the tier order from cheapest to most capable."""

    tiers: tuple[str, ...]
    models: dict[str, Model]

    def deprecation_notes(self, today: date) -> list[str]:
        """A warning for each model past its deprecation date or reaching it within 90 days."""
        return deprecation_notes({m.name: m.deprecation_date for m in self.models.values()}, today)

    def model(self, name: str) -> Model:
        """The model named ``name``, or ``InvalidRequest`` listing the known ones."""
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise InvalidRequest(f"unknown model {name[:80]!r}; the catalog has: {known}") from None

    def tier_rank(self, tier: str) -> int:
        """The position of ``tier`` in the tier order, or ``InvalidRequest``."""
        try:
            return self.tiers.index(tier)
        except ValueError:
            raise InvalidRequest(f"unknown tier {tier[:80]!r}; tiers are: {', '.join(self.tiers)}") from None


def deprecation_notes(models: Mapping[str, date | None], today: date, *, within_days: int = 90) -> list[str]:
    """A line for each model past its deprecation date, or reaching it within ``within_days``."""
    notes = []
    for name, when in sorted(models.items()):
        if when is None:
            continue
        days = (when - today).days
        if days < 0:
            notes.append(f"model {name} is past its deprecation date ({when.isoformat()}): its provider may refuse "
                         "it; replace it in the catalog")
        elif days <= within_days:
            notes.append(f"model {name} is deprecated on {when.isoformat()}, in {days} days: plan its replacement")
    return notes
