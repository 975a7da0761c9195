"""Window arithmetic: calendar windows across DST, and token-bucket draining within double precision."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from tollgate.ledger.pools import PoolState
from tollgate.ledger.windows import _fixed_window, bucket_debt, drained, fixed_window


def ms(text: str, tz: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def test_day_windows_follow_local_midnight_across_dst() -> None:
    tz = "Europe/Paris"
    # 2026-03-29 is 23 hours long in Paris, 2026-10-25 is 25 hours long.
    start, end = fixed_window(ms("2026-03-29T12:00", tz), "day", tz)
    assert (start, end) == (ms("2026-03-29T00:00", tz), ms("2026-03-30T00:00", tz))
    assert end - start == 23 * 3_600_000
    start, end = fixed_window(ms("2026-10-25T12:00", tz), "day", tz)
    assert end - start == 25 * 3_600_000


def test_week_and_month_windows() -> None:
    tz = "America/New_York"
    week = fixed_window(ms("2026-11-26T15:00", tz), "week", tz)
    assert week == (ms("2026-11-23T00:00", tz), ms("2026-11-30T00:00", tz))  # Monday to Monday
    month = fixed_window(ms("2026-02-14T01:00", tz), "month", tz)
    assert month == (ms("2026-02-01T00:00", tz), ms("2026-03-01T00:00", tz))
    assert fixed_window(ms("2026-12-31T23:59", tz), "month", tz)[1] == ms("2027-01-01T00:00", tz)


@given(elapsed=st.integers(0, 10**11), cap=st.integers(1, 10**13), duration=st.integers(1, 10**10))
def test_drained_is_exact_or_cautious_and_double_safe(elapsed: int, cap: int, duration: int) -> None:
    exact = elapsed * cap // duration
    got = drained(elapsed, cap, duration)
    chunk = max(2**53 // cap, 1)
    assert got <= exact  # never drains more than the true rate
    assert exact - got <= elapsed // chunk + 1  # under one nano-dollar per chunk
    assert chunk * cap <= 2**53 or chunk == 1  # every product a double holds exactly
    if elapsed * cap < 2**53:
        assert got == exact


def test_bucket_debt_never_negative() -> None:
    assert bucket_debt(100, 0, 10**9, cap=5, duration_ms=1) == 0
    assert bucket_debt(1_000, 0, 500, cap=1_000, duration_ms=1_000) == 500


@given(st.integers(min_value=0, max_value=4_102_444_800_000), st.sampled_from(["hour", "day", "week", "month"]),
       st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]))
def test_remembered_windows_match_the_calendar(now_ms: int, period: str, tz: str) -> None:
    # The cache answers for every instant of the window it remembers, and only those.
    expected = _fixed_window(now_ms, period, tz)
    assert fixed_window(now_ms, period, tz) == expected
    assert fixed_window(expected[0], period, tz) == expected
    assert fixed_window(expected[1] - 1, period, tz) == expected
    assert fixed_window(expected[1], period, tz) == _fixed_window(expected[1], period, tz) != expected


_COUNTS = st.integers(min_value=-(2**53), max_value=2**53)


@given(st.lists(_COUNTS, min_size=7, max_size=7),
       st.dictionaries(st.integers(min_value=0, max_value=2**40), st.lists(_COUNTS, min_size=3, max_size=3),
                       max_size=60))
def test_pool_state_text_round_trips_and_reads_the_old_json(counts: list[int], buckets: dict[int, list[int]]) -> None:
    state = PoolState("user:acme/alice", *counts, buckets=buckets)
    assert PoolState.decode(state.pool_id, state.encode()) == state
    legacy = json.dumps(state.to_dict())
    assert PoolState.decode(state.pool_id, legacy) == state
