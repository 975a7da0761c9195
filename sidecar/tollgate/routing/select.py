"""Selection: which catalog models can serve a request, cheapest first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..catalog import Capability, Catalog, Latency, Model

__all__ = ["Priced", "eligible", "fallbacks"]


@dataclass(frozen=True, slots=True)
class Priced:
    """A model with the estimate of this request on it."""

    model: Model
    input_tokens: int
    output_tokens: int
    cost: int
    """Estimated cost before the margin, in nano-dollars."""


def eligible(
    catalog: Catalog,
    *,
    needs: frozenset[Capability],
    base_input_tokens: int,
    max_output_tokens: int,
    output_estimate: Callable[[Model], int],
    latency: Latency | None = None,
    provider_ok: Callable[[str], bool] = lambda provider: True,
) -> list[Priced]:
    """Every model with the capabilities, context window, latency and provider for the request, priced.

    The context must hold the input plus the output the call may produce: the
    caller's ``max_output_tokens`` when set, else the estimate. Sorted by estimated
    cost, then tier, then name, so the order is stable.
    """
    out = []
    for model in catalog.models.values():
        if not needs <= model.capabilities or not provider_ok(model.provider):
            continue
        if latency is not None and model.latency > latency:
            continue
        input_tokens = model.input_tokens(base_input_tokens)
        output_tokens = min(output_estimate(model), model.max_output_tokens)
        if max_output_tokens and max_output_tokens > model.max_output_tokens:
            continue
        if input_tokens + (max_output_tokens or output_tokens) > model.context_window:
            continue
        cost = model.price.cost(input_tokens=input_tokens, output_tokens=output_tokens)
        out.append(Priced(model, input_tokens, output_tokens, cost))
    out.sort(key=lambda p: (p.cost, p.model.tier_rank, p.model.name))
    return out


def fallbacks(capable: list[Priced], chosen: Priced, count: int) -> tuple[Priced, ...]:
    """Alternatives to ``chosen`` for provider errors: by tier fit then price, other providers first.

    Tier fit is the distance above ``chosen``'s tier: a same-tier model is the
    closest substitute. Among those, each provider's best model comes before any
    second model of a provider already listed (``chosen``'s counts as listed), so
    one provider's outage cannot take down every fallback.
    """
    ranked = sorted(
        (p for p in capable if p is not chosen),
        key=lambda p: (abs(p.model.tier_rank - chosen.model.tier_rank), p.cost, p.model.name),
    )
    seen = {chosen.model.provider}
    first: list[Priced] = []
    rest: list[Priced] = []
    for p in ranked:
        (rest if p.model.provider in seen else first).append(p)
        seen.add(p.model.provider)
    return tuple([*first, *rest][:count])
