"""Window arithmetic shared by every store: pure functions of time, no I/O.

- **fixed**: calendar windows (hour, day, week from Monday, month) in a time zone,
  so "$5 a day" resets at local midnight, DST included.
- **sliding**: the last ``duration`` split into ``SLIDING_BUCKETS`` buckets; the
  window slides one bucket at a time, which bounds state to a few dozen counters.
- **token bucket**: spend is a debt that drains at ``cap / duration``. The state is
  an *anchor*: the debt right after the last charge and its time. Only a charge
  moves the anchor; reads compute ``anchor debt − drained(now − anchor time)``, so
  the debt depends on the charges alone, never on how often it was read, and the
  audit replays it exactly. ``drained`` is integer arithmetic whose every
  intermediate stays below 2**53, so the Redis store's Lua (double precision)
  computes the very same figures.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "SLIDING_BUCKETS",
    "adjacent_windows",
    "bucket_debt",
    "bucket_ms",
    "drained",
    "fixed_window",
]

SLIDING_BUCKETS = 60


@lru_cache(maxsize=64)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


_LAST_WINDOW: dict[tuple[str, str], tuple[int, int]] = {}


def fixed_window(now_ms: int, period: str, tz: str) -> tuple[int, int]:
    """The ``[start, end)`` in epoch ms of the calendar window containing ``now_ms``."""
    # Every pool of every request asks for the same few windows: the last answer per
    # (period, zone) holds until the clock leaves it, and spares the calendar arithmetic.
    last = _LAST_WINDOW.get((period, tz))
    if last is not None and last[0] <= now_ms < last[1]:
        return last
    window = _fixed_window(now_ms, period, tz)
    _LAST_WINDOW[(period, tz)] = window
    return window


@lru_cache(maxsize=256)
def adjacent_windows(start_ms: int, end_ms: int, period: str, tz: str) -> tuple[int, int]:
    """The start of the window before ``[start_ms, end_ms)`` and the end of the one after it."""
    return _fixed_window(start_ms - 1, period, tz)[0], _fixed_window(end_ms, period, tz)[1]


def _fixed_window(now_ms: int, period: str, tz: str) -> tuple[int, int]:
    zone = _zone(tz)
    local = datetime.fromtimestamp(now_ms / 1000, zone)
    if period == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        # Adding an hour in UTC, not in wall time, so DST changes cannot skip or repeat a window.
        start_ms = int(start.timestamp() * 1000)
        return start_ms, start_ms + 3_600_000
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if period == "day":
        first, nxt = day, day + timedelta(days=1)
    elif period == "week":
        first = day - timedelta(days=day.weekday())
        nxt = first + timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown fixed window period {period!r}")
    return _local_ms(first, zone), _local_ms(nxt, zone)


def _local_ms(naive: datetime, zone: ZoneInfo) -> int:
    return int(naive.replace(tzinfo=zone).timestamp() * 1000)


def bucket_ms(duration_ms: int) -> int:
    """The width of one sliding-window bucket."""
    return max(duration_ms // SLIDING_BUCKETS, 1)


_EXACT = 2**53  # the largest range in which a double holds every integer


def drained(elapsed_ms: int, cap: int, duration_ms: int) -> int:
    """How much a token bucket drains in ``elapsed_ms``: ``floor(elapsed × cap / duration)``.

    Computed in chunks of ``floor(2**53 / cap)`` ms so no product leaves the exact
    range of a double; each chunk rounds down, so the result errs on the cautious
    side by under one nano-dollar per chunk (a chunk is ~2.5 hours at a $1,000 cap).
    """
    if elapsed_ms <= 0 or cap <= 0:
        return 0
    chunk = max(_EXACT // cap, 1)
    full, rest = divmod(elapsed_ms, chunk)
    return full * (chunk * cap // duration_ms) + rest * cap // duration_ms


def bucket_debt(anchor_debt: int, anchor_ms: int, now_ms: int, cap: int, duration_ms: int) -> int:
    """A token bucket's debt at ``now_ms``, from its anchor."""
    return max(anchor_debt - drained(now_ms - anchor_ms, cap, duration_ms), 0)
