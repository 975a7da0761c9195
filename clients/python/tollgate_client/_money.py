"""Rendering nano-dollar amounts for people."""

from __future__ import annotations

__all__ = ["NANOS_PER_USD", "format_usd"]

NANOS_PER_USD = 1_000_000_000
"""Nano-dollars in one US dollar; every ``*_nanos`` figure is in these units."""


def format_usd(nanos: int) -> str:
    """Render an amount of nano-dollars as dollars, e.g. ``1_234_567_000`` → ``"$1.234567"``.

    Integer arithmetic only, so no digit is lost to float rounding: sub-cent
    amounts (most single LLM calls) keep every significant digit, and at least
    two decimals are always shown.
    """
    if isinstance(nanos, bool) or not isinstance(nanos, int):
        raise TypeError(f"format_usd() takes an int number of nano-dollars, got {type(nanos).__name__}")
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_USD)
    decimals = f"{frac:09d}".rstrip("0").ljust(2, "0")
    return f"{sign}${whole:,}.{decimals}"
