"""Nano-dollar arithmetic.

All money in Tollgate is an ``int`` number of nano-dollars (1e-9 USD). Prices are
configured in USD per million tokens as decimals and converted once, exactly,
to *milli-nanos per token* (1e-12 USD), so a call's cost is an integer sum that is
rounded up to the next nano-dollar exactly once. No float ever touches money.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = [
    "MAX_CAP_NANOS",
    "NANOS_PER_USD",
    "Price",
    "apply_margin",
    "ceil_div",
    "format_usd",
    "parse_margin",
    "parse_usd",
]

NANOS_PER_USD = 1_000_000_000
MAX_CAP_NANOS = 2**52
"""The largest cap a pool may have, configured or after admin changes (about 4.5 million USD).

The shared store's script does its arithmetic in Lua doubles, exact below 2^53: with
caps below 2^52, a pool's spend plus its holds stays exact, and every figure fits the
wire's int64 with room to spare."""
# USD per million tokens -> milli-nanos per token: 1e9 nanos * 1e3 milli / 1e6 tokens.
_MILLINANOS_PER_TOKEN_PER_USD_PER_MTOK = 1_000_000


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative ``a`` and positive ``b`` in exact integers."""
    return -(-a // b)


def parse_usd(value: object) -> int:
    """Parse a USD amount (``5``, ``"5.25"``, ``"$0.000001"``) into nano-dollars.

    Raises ``ValueError`` if the value is not a finite non-negative decimal or has
    more precision than a nano-dollar.
    """
    return _scaled_exactly(value, NANOS_PER_USD, what="USD amount", example="5.00",
                           precision="a nano-dollar (9 decimal places)")


def format_usd(nanos: int, places: int = 9) -> str:
    """Render nano-dollars for people, e.g. ``$1.234567``.

    With ``places`` < 9 the figure is rounded half up for display; money itself is
    never rounded this way.
    """
    places = min(max(places, 2), 9)
    sign = "-" if nanos < 0 else ""
    magnitude = abs(nanos)
    if places < 9:
        step = 10 ** (9 - places)
        magnitude = (magnitude + step // 2) // step * step
    whole, frac = divmod(magnitude, NANOS_PER_USD)
    text = f"{frac:09d}"
    # Full precision drops trailing zeros; a display precision keeps its columns aligned.
    text = text[:places] if places < 9 else text.rstrip("0").ljust(2, "0")
    return f"{sign}${whole:,}.{text}"


def apply_margin(cost_nanos: int, margin_bp: int) -> int:
    """``cost × margin`` rounded up, with the margin in basis points (1.30 → 13000)."""
    return ceil_div(cost_nanos * margin_bp, 10_000)


def parse_margin(value: object) -> int:
    """Parse a multiplier such as ``1.30`` or ``"1.3"`` into basis points (13000)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a multiplier like 1.30, got {value!r}")
    try:
        # Floats from YAML are fine here: a margin has at most 4 decimals, and the
        # string form of a parsed float round-trips those exactly.
        margin = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    bp = margin * 10_000
    if not bp.is_finite() or bp != bp.to_integral_value():
        raise ValueError(f"{value!r} must be a multiplier with at most 4 decimal places")
    if not 10_000 <= bp <= 100_000:
        raise ValueError(f"{value!r} must be between 1.0 and 10.0")
    return int(bp)


@dataclass(frozen=True, slots=True)
class Price:
    """A model's list prices as exact integers: milli-nanos (1e-12 USD) per token."""

    input: int
    cached_input: int
    output: int

    @classmethod
    def per_million(cls, *, input: object, output: object, cached_input: object | None = None) -> Price:
        """Build from USD per million tokens; cached input defaults to the input price."""
        return cls(
            input=_per_million_to_millinanos(input),
            cached_input=_per_million_to_millinanos(input if cached_input is None else cached_input),
            output=_per_million_to_millinanos(output),
        )

    def cost(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> int:
        """The cost of a call in nano-dollars, rounded up.

        ``input_tokens`` includes the cached ones, as providers report it; reasoning
        tokens bill at the output price.
        """
        uncached = max(input_tokens - cached_input_tokens, 0)
        cached = min(cached_input_tokens, input_tokens)
        millinanos = (
            uncached * self.input
            + cached * self.cached_input
            + (output_tokens + reasoning_tokens) * self.output
        )
        return ceil_div(millinanos, 1000)


def _per_million_to_millinanos(value: object) -> int:
    return _scaled_exactly(value, _MILLINANOS_PER_TOKEN_PER_USD_PER_MTOK, what="price", example="0.15",
                           precision="6 decimal places per million tokens")


_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _scaled_exactly(value: object, scale: int, *, what: str, example: str, precision: str) -> int:
    """``value × scale`` as an exact integer, or ``ValueError`` saying what to write instead."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        # A YAML float (``cap: 0.1``) has already lost exactness; demand a string.
        raise ValueError(f"expected a {what} as a string like \"{example}\", got {value!r}")
    text = str(value).strip().removeprefix("$")
    # Plain decimals only: Decimal would also read "2e3" and "1_000", which nobody writes for money on purpose.
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise ValueError(f"{value!r} is not a {what}: write a plain decimal like \"{example}\"")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a {what}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{value!r} must be a finite, non-negative {what}")
    scaled = amount * scale
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} is more precise than {precision}")
    return int(scaled)
