"""Nano-dollar arithmetic: exact, integer, rounded up once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.money import Price, apply_margin, format_usd, parse_margin, parse_usd


def test_parse_usd_is_exact() -> None:
    assert parse_usd("5") == 5_000_000_000
    assert parse_usd("$0.000000001") == 1
    assert parse_usd("1000.25") == 1_000_250_000_000
    # Plain decimals only: what Decimal also reads ("1_000", "2e3") is no way to write money.
    for bad in ("0.0000000001", "-1", "abc", "NaN", "inf", 0.1, True, None, "1_000.25", "2e3", "1,000", ".5", "5."):
        with pytest.raises(ValueError):
            parse_usd(bad)


def test_price_cost_rounds_up_to_the_nano() -> None:
    price = Price.per_million(input="0.075", output="0.30", cached_input="0.0375")
    # 1 token at $0.075/M = 75 nano-dollars; a cached one is 37.5 -> the total rounds up once.
    assert price.cost(input_tokens=1, output_tokens=0) == 75
    assert price.cost(input_tokens=1, cached_input_tokens=1, output_tokens=0) == 38
    assert price.cost(input_tokens=2, cached_input_tokens=2, output_tokens=0) == 75
    # Reasoning tokens bill as output.
    assert price.cost(input_tokens=0, output_tokens=1, reasoning_tokens=1) == 600


@given(
    inp=st.integers(0, 10**7), cached=st.integers(0, 10**7), out=st.integers(0, 10**7), reasoning=st.integers(0, 10**6),
    p_in=st.decimals(0, 100, places=6), p_out=st.decimals(0, 100, places=6), p_cached=st.decimals(0, 100, places=6),
)
def test_price_cost_matches_decimal_reference(inp: int, cached: int, out: int, reasoning: int, p_in: Decimal,
                                              p_out: Decimal, p_cached: Decimal) -> None:
    cached = min(cached, inp)
    price = Price.per_million(input=str(p_in), output=str(p_out), cached_input=str(p_cached))
    exact = ((inp - cached) * p_in + cached * p_cached + (out + reasoning) * p_out) / Decimal(1_000_000) * 10**9
    expected = int(exact.to_integral_value(rounding="ROUND_CEILING"))
    assert price.cost(input_tokens=inp, cached_input_tokens=cached, output_tokens=out,
                      reasoning_tokens=reasoning) == expected


def test_margin() -> None:
    assert parse_margin(1.3) == 13_000 and parse_margin("1.30") == 13_000
    assert apply_margin(10, 13_000) == 13
    assert apply_margin(11, 13_000) == 15  # 14.3 rounds up
    for bad in (0.5, 11, "1.00001", "x"):
        with pytest.raises(ValueError):
            parse_margin(bad)


def test_format_usd() -> None:
    assert format_usd(1) == "$0.000000001"
    assert format_usd(5_000_000_000) == "$5.00"
    assert format_usd(-1_234_567_890, 2) == "-$1.23"
