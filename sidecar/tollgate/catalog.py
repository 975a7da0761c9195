"""The model catalog: tiers, prices, context windows and capabilities."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import IntEnum, StrEnum

from .errors import InvalidRequest
from .money import Price

__all__ = ["Capability", "Catalog", "Latency", "Model"]


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
