"""Window arithmetic shared by every store: pure functions of time, no I/O.

- **fixed**: calendar windows (hour, day, week from Monday, month) in a time zone,
  so "$5 a day" resets at local midnight, DST included.
- **sliding**: the last ``duration`` split into ``SLIDING_BUCKETS`` buckets; the
  window slides one bucket at a time, which bounds state to a few dozen counters.
- **token bucket**: spend is a debt that drains linearly at ``cap / duration``. The
  debt is kept scaled by ``duration_ms`` (nano-dollar·ms) so draining is exact
  integer arithmetic and does not depend on how often it is computed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "SLIDING_BUCKETS",
    "bucket_ms",
    "drain",
    "fixed_window",
]

SLIDING_BUCKETS = 60


@lru_cache(maxsize=64)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def fixed_window(now_ms: int, period: str, tz: str) -> tuple[int, int]:
    """The ``[start, end)`` in epoch ms of the calendar window containing ``now_ms``."""
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


def drain(debt_scaled: int, elapsed_ms: int, cap: int) -> int:
    """A token bucket's scaled debt after ``elapsed_ms`` of draining at ``cap`` per duration."""
    if elapsed_ms <= 0:
        return debt_scaled
    return max(debt_scaled - elapsed_ms * cap, 0)
