"""The in-process ledger behind the embedded (SQLite) and in-memory stores.

Every mutation runs to completion without awaiting, so on one event loop it is
atomic by construction: admission across all pools is one step (no check-then-
spend). Each mutation works on copies of the pool counters, hands the copies and
the reservation record to the journal in one transaction, and installs them only
after the journal succeeded, so a failed write leaves memory and disk unchanged.

Why one long module: its atomicity rests on every mutation running without an await in one
class; the journals (memory, SQLite) are apart.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from ..errors import (
    BudgetExceeded,
    IdempotencyConflict,
    ReservationEnded,
    ReservationNotFound,
    StoreUnavailable,
)
from ..ids import pool_org, reservation_org
from ..scope import Level
from .audit import audit_pools
from .pools import PoolState, check_admission, stateful_pools
from .spec import ExpiryPolicy, PoolSpec
from .types import (
    AuditReport,
    CommitOutcome,
    CommitRequest,
    Hold,
    HoldRequest,
    HoldState,
    PoolRef,
    PoolSnapshot,
    ReleaseOutcome,
    ReserveOutcome,
)

__all__ = ["Journal", "LocalLedger", "SpecResolver", "refuse_ended", "wall_clock_ms"]

SpecResolver = Callable[[str], "tuple[Level, PoolSpec] | None"]
"""Looks up a pool's level and current spec by pool id (``None`` if no longer configured)."""


def refuse_ended(hold: Hold, action: str) -> None:
    """Raise ``ReservationEnded`` saying how ``hold`` ended, unless it is still open."""
    if hold.state is HoldState.OPEN:
        return
    if hold.state is HoldState.EXPIRED:
        raise ReservationEnded(
            f"cannot {action} reservation {hold.reservation_id}: it expired "
            f"(charged {hold.charged} nano-USD by the expiry policy); Extend long calls before they expire"
        )
    raise ReservationEnded(f"cannot {action} reservation {hold.reservation_id}: it was already {hold.state}")


def wall_clock_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


RECENT_HOLDS = 8_192
"""Reservation records kept in memory, most recent first out of the journal's way."""
_COMPACT_BATCH = 1_024
RECENT_POOLS = 16_384
"""Pool states kept in memory; the others are read from the journal when a request names them."""

class Journal(Protocol):
    """Durable storage of pool counters and reservation records for ``LocalLedger``."""

    def load(self) -> list[tuple[int, str]]:
        """The (expiry, id) of every open reservation."""
        ...

    def find_pool(self, pool_id: str) -> PoolState | None:
        """A pool's stored state, if it has one."""
        ...

    def pools(self) -> dict[str, PoolState]:
        """Every stored pool state, for the audit."""
        ...

    def find(self, reservation_id: str) -> Hold | None:
        """A reservation record in any state."""
        ...

    def write(self, pools: Iterable[PoolState], hold: Hold) -> None:
        """Persist changed pools and one reservation record in one transaction."""
        ...

    def records(self) -> Iterable[Hold]:
        """Every reservation record, for the audit."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


class LocalLedger:
    """A budget store for one process. See the module docstring for why it is atomic."""

    suspends = False  # every call runs to its end without an await

    def __init__(
        self,
        journal: Journal,
        *,
        specs: SpecResolver,
        expiry_policy: ExpiryPolicy = ExpiryPolicy.CHARGE,
        clock: Callable[[], int] = wall_clock_ms,
        recent_holds: int = RECENT_HOLDS,
        recent_pools: int = RECENT_POOLS,
        compact_batch: int = _COMPACT_BATCH,
    ) -> None:
        self._journal = journal
        self._recent_holds = max(recent_holds, 1)
        self._recent_pools = max(recent_pools, 1)
        self._compact_batch = max(compact_batch, 1)
        self._specs = specs
        self._expiry_policy = expiry_policy
        self._clock = clock
        self._deadlines = journal.load()
        heapq.heapify(self._deadlines)
        # Reservations ended since the deadlines were last compacted: their entries are dead weight.
        self._ended_ids: set[str] = set()
        # Reservations and pools live in the journal; memory keeps the open ones'
        # deadlines, the most recent records (a commit usually follows its reserve
        # within seconds) and the most recently used pools. So memory stays flat
        # however many reservations are open and however many pools exist.
        self._recent: OrderedDict[str, Hold] = OrderedDict()
        self._pools: OrderedDict[str, PoolState] = OrderedDict()
        self.expired_total = 0

    # -- the store interface ---------------------------------------------------

    def set_specs(self, specs: SpecResolver) -> None:
        """Pool specs of a reloaded config: every later call resolves pools by them."""
        self._specs = specs

    async def reserve(self, request: HoldRequest) -> ReserveOutcome:
        """Hold ``request.amount`` on every pool, or raise ``BudgetExceeded`` and hold nothing."""
        now = self._clock()
        self._expire_due(now)
        existing = None if request.fresh else self._find(request.reservation_id)
        if existing is not None:
            if existing.fingerprint != request.fingerprint:
                raise IdempotencyConflict(
                    f"reservation {request.reservation_id} already exists for a different request under this "
                    "idempotency key; use a new key for a new call"
                )
            return ReserveOutcome(existing, self._snapshots(request.pools, now, request.high_priority), replayed=True)

        changed: list[PoolState] = []
        stateful = stateful_pools(request)
        for ref in stateful:
            state = self._state(ref.pool_id).copy()
            state.roll(ref.spec, now)
            changed.append(state)
            refusal = check_admission(
                ref.pool_id,
                state,
                ref.level,
                ref.spec,
                amount=request.amount,
                tokens=request.tokens,
                high_priority=request.high_priority,
                now_ms=now,
            )
            if refusal is not None:
                raise BudgetExceeded(refusal)
        for state in changed:
            state.held += request.amount
            state.held_calls += 1
            state.held_tokens += request.tokens
        hold = Hold(
            reservation_id=request.reservation_id,
            pool_ids=tuple(s.pool_id for s in changed),
            amount=request.amount,
            tokens=request.tokens,
            created_ms=now,
            expires_ms=now + request.ttl_ms,
            model=request.model,
            task_type=request.task_type,
            fingerprint=request.fingerprint,
            parent_id=request.parent_id,
            attempt=request.attempt,
        )
        self._apply(changed, hold)
        heapq.heappush(self._deadlines, (hold.expires_ms, hold.reservation_id))
        # The states just written are rolled to now: snapshot them as they are.
        snapshots = tuple(
            state.snapshot(ref.level, ref.spec, now, high_priority=request.high_priority)
            for state, ref in zip(changed, stateful, strict=True)
        )
        return ReserveOutcome(hold, snapshots)

    async def commit(self, request: CommitRequest) -> CommitOutcome:
        """Charge the actual cost in full and release the hold; idempotent by id and figures."""
        now = self._clock()
        hold = self._open_or_ended(request.reservation_id, now)
        if hold.state is HoldState.COMMITTED:
            if hold.commit_fingerprint != request.fingerprint:
                raise IdempotencyConflict(
                    f"reservation {hold.reservation_id} was already committed with different usage; "
                    "nothing was charged again"
                )
            return CommitOutcome(hold, self._snapshots_by_id(hold.pool_ids, now), replayed=True)
        refuse_ended(hold, "commit")
        ended = hold.ended(HoldState.COMMITTED, now, charged=request.cost, used_tokens=request.tokens,
                           commit_fingerprint=request.fingerprint)
        return CommitOutcome(ended, self._end(ended, now))

    async def release(self, reservation_id: str) -> ReleaseOutcome:
        """End a reservation without charging; a repeated release returns the first result."""
        now = self._clock()
        hold = self._open_or_ended(reservation_id, now)
        if hold.state is HoldState.RELEASED:
            return ReleaseOutcome(hold, self._snapshots_by_id(hold.pool_ids, now), replayed=True)
        refuse_ended(hold, "release")
        ended = hold.ended(HoldState.RELEASED, now)
        return ReleaseOutcome(ended, self._end(ended, now))

    async def extend(self, reservation_id: str, ttl_ms: int) -> Hold:
        """Move an open reservation's expiry to ``now + ttl_ms``."""
        now = self._clock()
        hold = self._open_or_ended(reservation_id, now)
        refuse_ended(hold, "extend")
        extended = replace(hold, expires_ms=now + ttl_ms)
        self._write([], extended)
        self._remember(extended)
        heapq.heappush(self._deadlines, (extended.expires_ms, reservation_id))
        return extended

    async def snapshot(self, pools: Sequence[PoolRef], *, high_priority: bool = False) -> list[PoolSnapshot]:
        """The pools as a request of this priority would see them now."""
        return list(self._snapshots(pools, self._clock(), high_priority))

    async def expire_due(self) -> int:
        """Resolve every reservation past its expiry by the expiry policy; returns how many."""
        return self._expire_due(self._clock())

    async def get(self, reservation_id: str) -> Hold:
        """A reservation record, or ``ReservationNotFound``."""
        hold = self._find(reservation_id)
        if hold is None:
            raise ReservationNotFound(f"no reservation {reservation_id!r}")
        return hold

    async def describe(self, reservation_id: str) -> Hold:
        """A reservation's fixed facts (model, task type, pools, amount); here simply its record."""
        return await self.get(reservation_id)

    async def audit(self, orgs: Sequence[str] | None = None) -> AuditReport:
        """Recompute every pool (of ``orgs``, default all) from the reservation records and compare."""
        now = self._clock()
        records = list(self._journal.records())
        pools = self._journal.pools()
        if orgs is not None:
            wanted = set(orgs)
            records = [h for h in records if reservation_org(h.reservation_id) in wanted]
            pools = {k: v for k, v in pools.items() if pool_org(k) in wanted}
        return audit_pools(pools, records, self._specs, now)

    async def close(self) -> None:
        """Close the journal."""
        self._journal.close()

    # -- internals --------------------------------------------------------------

    def _find(self, reservation_id: str) -> Hold | None:
        hold = self._recent.get(reservation_id)
        return hold if hold is not None else self._journal.find(reservation_id)

    def _remember(self, hold: Hold) -> None:
        _keep_recent(self._recent, hold.reservation_id, hold, self._recent_holds)

    def _open_or_ended(self, reservation_id: str, now: int) -> Hold:
        hold = self._find(reservation_id)
        if hold is None:
            raise ReservationNotFound(
                f"no reservation {reservation_id!r}: use the reservation_id returned by Reserve or Route"
            )
        if hold.state is HoldState.OPEN and now >= hold.expires_ms:
            # Past its TTL but not yet swept: resolve it now so the answer is the same
            # whether or not the sweeper got there first.
            self._expire(hold, now)
            hold = self._find(reservation_id)
            assert hold is not None
        return hold

    def _state(self, pool_id: str) -> PoolState:
        cache = self._pools
        state = cache.get(pool_id)
        if state is not None:
            cache.move_to_end(pool_id)
            return state
        state = self._journal.find_pool(pool_id) or PoolState(pool_id=pool_id)
        self._cache_pool(state)
        return state

    def _cache_pool(self, state: PoolState) -> None:
        _keep_recent(self._pools, state.pool_id, state, self._recent_pools)

    def _end(self, ended: Hold, now: int) -> tuple[PoolSnapshot, ...]:
        """End a reservation in every pool; returns the pools after it, as a normal-priority request sees them."""
        changed = []
        snapshots = []
        for pool_id in ended.pool_ids:
            state = self._state(pool_id).copy()
            resolved = self._specs(pool_id)
            spec = resolved[1] if resolved else None
            if spec is not None:
                state.roll(spec, now)
            state.held -= ended.amount
            state.held_calls -= 1
            state.held_tokens -= ended.tokens
            if ended.state in (HoldState.COMMITTED, HoldState.EXPIRED):
                state.charge(spec or PoolSpec(cap=0), ended.charged, ended.used_tokens, now)
            changed.append(state)
            if resolved is not None:
                # Rolled to now and changed: the same figures a fresh snapshot would show, without redoing them.
                snapshots.append(state.snapshot(resolved[0], resolved[1], now, high_priority=False))
        self._apply(changed, ended)
        return tuple(snapshots)

    def _apply(self, changed: list[PoolState], hold: Hold) -> None:
        self._write(changed, hold)
        for state in changed:
            self._cache_pool(state)
        self._remember(hold)
        if hold.state is not HoldState.OPEN:
            self._forget_deadline(hold.reservation_id)

    def _forget_deadline(self, reservation_id: str) -> None:
        """Drop ended reservations' deadline entries in batches, so the heap tracks open ones only.

        Every reservation ends exactly once, so an ended id never needs its entries again.
        Compacting when the dead entries outnumber the live ones keeps the cost amortised O(1)
        and the heap below twice the open reservations (plus the batch).
        """
        ended = self._ended_ids
        ended.add(reservation_id)
        if len(ended) >= self._compact_batch and 2 * len(ended) >= len(self._deadlines):
            self._deadlines = [entry for entry in self._deadlines if entry[1] not in ended]
            heapq.heapify(self._deadlines)
            ended.clear()

    def _write(self, changed: list[PoolState], hold: Hold) -> None:
        try:
            self._journal.write(changed, hold)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"the embedded store failed to write: {exc}") from exc

    def _expire(self, hold: Hold, now: int) -> None:
        if self._expiry_policy is ExpiryPolicy.CHARGE:
            ended = hold.ended(HoldState.EXPIRED, now, charged=hold.amount, used_tokens=hold.tokens)
        else:
            ended = hold.ended(HoldState.EXPIRED, now)
        self._end(ended, now)
        self.expired_total += 1

    def _expire_due(self, now: int) -> int:
        count = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, reservation_id = heapq.heappop(self._deadlines)
            hold = self._find(reservation_id)
            # Entries left behind by Extend, or by reservations already ended, are stale.
            if hold is None or hold.state is not HoldState.OPEN or hold.expires_ms != deadline:
                continue
            self._expire(hold, now)
            count += 1
        return count

    def _snapshots(self, refs: Sequence[PoolRef], now: int, high_priority: bool) -> tuple[PoolSnapshot, ...]:
        out = []
        for ref in refs:
            if ref.level is Level.REQUEST:
                continue
            state = self._state(ref.pool_id).copy()
            state.roll(ref.spec, now)
            out.append(state.snapshot(ref.level, ref.spec, now, high_priority=high_priority))
        return tuple(out)

    def _snapshots_by_id(self, pool_ids: Sequence[str], now: int) -> tuple[PoolSnapshot, ...]:
        refs = []
        for pool_id in pool_ids:
            resolved = self._specs(pool_id)
            if resolved is not None:
                refs.append(PoolRef(pool_id, resolved[0], resolved[1]))
        return self._snapshots(refs, now, False)


def _keep_recent(cache: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    """Put ``value`` as the most recent entry, dropping the least recent beyond ``limit``."""
    cache[key] = value
    cache.move_to_end(key)
    if len(cache) > limit:
        cache.popitem(last=False)
