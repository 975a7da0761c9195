"""The model catalog: tiers, prices, context windows and capabilities."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import InvalidRequest
from .money import Price

__all__ = ["Capability", "Catalog", "Model"]


class Capability(StrEnum):
    """What a model can do beyond plain text chat."""

    TOOLS = "tools"
    VISION = "vision"
    JSON = "json"


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
            raise InvalidRequest(f"unknown model {name!r}; the catalog has: {known}") from None

    def tier_rank(self, tier: str) -> int:
        """The position of ``tier`` in the tier order, or ``InvalidRequest``."""
        try:
            return self.tiers.index(tier)
        except ValueError:
            raise InvalidRequest(f"unknown tier {tier!r}; tiers are: {', '.join(self.tiers)}") from None
