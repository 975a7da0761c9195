"""Recompute every pool's counters from the reservation records (ledger invariant 3).

For each pool: ``held*`` must equal the sums over its open reservations, and
``spent``/``calls``/``tokens`` the sums over reservations that ended with a charge
(committed, or expired under the charge policy) inside the pool's current window.
A token bucket's debt is replayed from the charges in time order and compared as it
stands now, drained to the audit's instant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from ..scope import Level
from .pools import PoolState
from .spec import PoolSpec, WindowKind
from .types import AuditReport, Hold, HoldState, Mismatch
from .windows import SLIDING_BUCKETS, bucket_debt, bucket_ms, fixed_window

__all__ = ["audit_pools"]

_CHARGED = (HoldState.COMMITTED, HoldState.EXPIRED)


def audit_pools(
    pools: Mapping[str, PoolState],
    records: Sequence[Hold],
    specs: Callable[[str], tuple[Level, PoolSpec] | None],
    now_ms: int,
) -> AuditReport:
    """Compare stored pool counters with what ``records`` imply; see the module docstring."""
    by_pool: dict[str, list[Hold]] = defaultdict(list)
    for hold in records:
        for pool_id in hold.pool_ids:
            by_pool[pool_id].append(hold)
    mismatches: list[Mismatch] = []
    for pool_id in sorted(set(pools) | set(by_pool)):
        state = pools.get(pool_id) or PoolState(pool_id=pool_id)
        resolved = specs(pool_id)
        spec = resolved[1] if resolved else PoolSpec(cap=0)
        expected = _recompute(state, spec, by_pool.get(pool_id, []), now_ms)
        for counter, value in expected.items():
            # A token bucket's debt is compared as it stands now: its anchor may have moved (a
            # charge taken back moves it) without changing what is owed.
            stored = (state.spent_nanos(spec, now_ms) if counter == "spent" and spec.window.kind is
                      WindowKind.TOKEN_BUCKET else getattr(state, counter))
            if stored != value:
                mismatches.append(Mismatch(pool_id, counter, stored, value))
    overshoots = [h.overshoot for h in records if h.state is HoldState.COMMITTED and h.overshoot > 0]
    return AuditReport(
        pools_checked=len(set(pools) | set(by_pool)),
        reservations_checked=len(records),
        mismatches=tuple(mismatches),
        overshoot_total=sum(overshoots),
        overshoot_count=len(overshoots),
    )


def _recompute(state: PoolState, spec: PoolSpec, holds: list[Hold], now_ms: int) -> dict[str, int]:
    open_holds = [h for h in holds if h.state is HoldState.OPEN]
    charged = [h for h in holds if h.state in _CHARGED]
    expected = {
        "held": sum(h.amount for h in open_holds),
        "held_calls": len(open_holds),
        "held_tokens": sum(h.tokens for h in open_holds),
    }
    kind = spec.window.kind
    if kind is WindowKind.TOKEN_BUCKET:
        if state.archived[1]:
            # Charges older than the retention are gone; a replay from the rest cannot
            # know the debt they left (retention far above the duration makes it zero).
            return expected
        debt, last = 0, 0
        for hold in sorted(charged, key=lambda h: h.ended_ms):
            debt = bucket_debt(debt, last, hold.ended_ms, spec.cap, spec.window.duration_ms) + hold.charged
            last = hold.ended_ms
        expected["spent"] = bucket_debt(debt, last, now_ms, spec.cap, spec.window.duration_ms)
        return expected
    if kind is WindowKind.FIXED:
        start, end = fixed_window(state.mark_ms, spec.window.period, spec.window.tz) if state.mark_ms else (0, 0)
        charged = [h for h in charged if start <= h.ended_ms < end]
    elif kind is WindowKind.SLIDING:
        width = bucket_ms(spec.window.duration_ms)
        charged = [h for h in charged if state.mark_ms - SLIDING_BUCKETS < h.ended_ms // width <= state.mark_ms]
    # Pruned records can only matter to a pool without a window: retention outlasts every window.
    arch = state.archived if kind is WindowKind.NONE else (0, 0, 0)
    expected["spent"] = arch[0] + sum(h.charged for h in charged)
    expected["calls"] = arch[1] + len(charged)
    expected["tokens"] = arch[2] + sum(h.used_tokens for h in charged)
    return expected
