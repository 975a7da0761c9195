"""Fail-open, bounded: admit calls on a per-pod allowance while the shared store is down.

The default is to fail closed (``UNAVAILABLE``). Some teams prefer a small, known
risk to an outage of their product: with ``store.fail_open_allowance`` set, a sidecar
that cannot reach Redis admits reservations locally until their holds (then their
charges) add up to the allowance, and refuses after that. Nothing is silent: every
local admission is logged, and when Redis answers again each locally ended
reservation is written into its pools, exactly once, so the audit and every other
sidecar see the money. Local reservations live in this process only: a sidecar that
dies during an outage loses at most its allowance of records, never more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..errors import (
    IdempotencyConflict,
    ReservationNotFound,
    StoreUnavailable,
)
from ..ids import fresh_reservation_id, reservation_org
from .local import SpecResolver, refuse_ended, wall_clock_ms
from .pools import stateful_pools
from .redis import RedisStore
from .spec import ExpiryPolicy
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

__all__ = ["FailOpenStore"]

log = logging.getLogger("tollgate.ledger.failopen")


class FailOpenStore:
    """A ``BudgetStore`` over a ``RedisStore`` that admits up to ``allowance`` nano-dollars while it is down."""

    def __init__(
        self,
        inner: RedisStore,
        *,
        allowance: int,
        expiry_policy: ExpiryPolicy = ExpiryPolicy.CHARGE,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.inner = inner
        self.suspends = inner.suspends
        self.allowance = allowance
        self.used = 0
        """Holds and charges of local reservations not yet written to the store."""
        self.admitted_locally = 0
        self._expiry_policy = expiry_policy
        self._clock = clock
        self._local: dict[str, Hold] = {}
        self._refs: dict[str, tuple[PoolRef, ...]] = {}
        self._writing: set[str] = set()
        """Local reservations being written back right now (two reconciliations may overlap)."""

    @property
    def pending(self) -> int:
        """Local reservations not yet written to the store."""
        return len(self._local)

    def set_specs(self, specs: SpecResolver) -> None:
        """Pool specs of a reloaded config, for the store behind this one."""
        self.inner.set_specs(specs)

    async def reserve(self, request: HoldRequest) -> ReserveOutcome:
        # A key admitted locally is answered from here while its record waits to be written
        # back, whether or not Redis answers again meanwhile: Redis does not know it yet.
        local = self._local.get(request.reservation_id)
        if local is not None and not request.fresh:
            return self._replay(local, request)
        try:
            return await self.inner.reserve(request)
        except StoreUnavailable as exc:
            known = None if request.fresh else self.inner.known(request.reservation_id)
            if known is not None:
                # Redis holds this key's reservation: the retry is a replay, as Redis would answer.
                return self._replay(known, request)
            return self._reserve_locally(request, exc)

    @staticmethod
    def _replay(hold: Hold, request: HoldRequest) -> ReserveOutcome:
        if hold.fingerprint != request.fingerprint:
            raise IdempotencyConflict(f"reservation {request.reservation_id} already exists for a different "
                                      "request under this idempotency key; use a new key for a new call")
        return ReserveOutcome(hold, (), replayed=True)

    def _reserve_locally(self, request: HoldRequest, cause: StoreUnavailable) -> ReserveOutcome:
        if request.fresh:
            # The store may yet hold the id it was sent (and then undo it, as no caller knows
            # it): the local reservation takes an id of its own, so the two never meet.
            request = replace(request, reservation_id=fresh_reservation_id(reservation_org(request.reservation_id)))
        if request.reservation_id in self._local:
            return self._replay(self._local[request.reservation_id], request)
        if self.used + request.amount > self.allowance:
            raise StoreUnavailable(
                f"{cause}; this sidecar's fail-open allowance is spent "
                f"({self.used} of {self.allowance} nano-USD in use until the store answers)"
            ) from cause
        refs = tuple(stateful_pools(request))
        now = self._clock()
        hold = Hold(
            reservation_id=request.reservation_id,
            pool_ids=tuple(r.pool_id for r in refs),
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
        self._local[hold.reservation_id] = hold
        self._refs[hold.reservation_id] = refs
        self.used += hold.amount
        self.admitted_locally += 1
        log.warning(
            "store unreachable: admitted reservation %s on the fail-open allowance (%d of %d nano-USD in use)",
            hold.reservation_id, self.used, self.allowance,
        )
        return ReserveOutcome(hold, ())

    async def commit(self, request: CommitRequest) -> CommitOutcome:
        hold = self._local.get(request.reservation_id)
        if hold is None:
            return await self.inner.commit(request)
        if hold.state is HoldState.COMMITTED:
            if hold.commit_fingerprint != request.fingerprint:
                raise IdempotencyConflict(f"reservation {hold.reservation_id} was already committed with other usage")
            return CommitOutcome(hold, (), replayed=True)
        refuse_ended(hold, "commit")
        ended = hold.ended(HoldState.COMMITTED, self._clock(), charged=request.cost, used_tokens=request.tokens,
                           commit_fingerprint=request.fingerprint)
        self.used += ended.charged - hold.amount
        self._local[hold.reservation_id] = ended
        await self._try_reconcile()
        return CommitOutcome(ended, ())

    async def release(self, reservation_id: str) -> ReleaseOutcome:
        hold = self._local.get(reservation_id)
        if hold is None:
            return await self.inner.release(reservation_id)
        if hold.state is HoldState.RELEASED:
            return ReleaseOutcome(hold, (), replayed=True)
        refuse_ended(hold, "release")
        ended = hold.ended(HoldState.RELEASED, self._clock())
        self.used -= hold.amount
        self._local[reservation_id] = ended
        await self._try_reconcile()
        return ReleaseOutcome(ended, ())

    async def extend(self, reservation_id: str, ttl_ms: int) -> Hold:
        hold = self._local.get(reservation_id)
        if hold is None:
            return await self.inner.extend(reservation_id, ttl_ms)
        refuse_ended(hold, "extend")
        extended = replace(hold, expires_ms=self._clock() + ttl_ms)
        self._local[reservation_id] = extended
        return extended

    async def get(self, reservation_id: str) -> Hold:
        return self._local.get(reservation_id) or await self.inner.get(reservation_id)

    async def describe(self, reservation_id: str) -> Hold:
        return self._local.get(reservation_id) or await self.inner.describe(reservation_id)

    async def snapshot(self, pools: Sequence[PoolRef], *, high_priority: bool = False) -> list[PoolSnapshot]:
        return await self.inner.snapshot(pools, high_priority=high_priority)

    async def expire_due(self) -> int:
        """Expire local holds, sweep the store, and write local reservations back once it answers."""
        now = self._clock()
        for rid, hold in list(self._local.items()):
            if hold.state is HoldState.OPEN and now >= hold.expires_ms:
                charged = hold.amount if self._expiry_policy is ExpiryPolicy.CHARGE else 0
                self._local[rid] = hold.ended(HoldState.EXPIRED, now, charged=charged,
                                              used_tokens=hold.tokens if charged else 0)
                self.used += charged - hold.amount
        try:
            expired = await self.inner.expire_due()
        except StoreUnavailable:
            if self.used < self.allowance:
                return 0  # still serving on the allowance
            raise
        await self._try_reconcile()
        return expired

    async def _try_reconcile(self) -> None:
        for rid in list(self._local):
            # Read again at each step: another reconciliation may have written it meanwhile.
            hold = self._local.get(rid)
            if hold is None or hold.state is HoldState.OPEN or rid in self._writing:
                continue
            self._writing.add(rid)
            try:
                await self._write_back(hold)
            except StoreUnavailable:
                return
            finally:
                self._writing.discard(rid)
            del self._local[rid], self._refs[rid]
            self.used -= hold.charged
            log.info("wrote fail-open reservation %s (%s, %d nano-USD) to the store", rid, hold.state, hold.charged)

    async def _write_back(self, hold: Hold) -> None:
        """Put one locally ended reservation into the store.

        A reserve that timed out here may still have reached Redis and be open there:
        then the local outcome ends it, through the ordinary commit or release.
        """
        try:
            shared = await self.inner.get(hold.reservation_id)
        except ReservationNotFound:
            await self.inner.import_ended(hold, self._refs[hold.reservation_id])
            return
        if shared.state is HoldState.EXPIRED and hold.state is not HoldState.EXPIRED:
            # It expired there only because this sidecar could not say how its caller ended it.
            await self.inner.amend(hold.reservation_id, hold.state, charged=hold.charged,
                                   used_tokens=hold.used_tokens, commit_fingerprint=hold.commit_fingerprint)
            return
        if shared.state is not HoldState.OPEN:
            if shared.state is not hold.state or shared.charged != hold.charged:
                # Both ended it, differently: the store's record stands, and says so.
                log.error("reservation %s ended here as %s (%d nano-USD) while the store ended it as %s (%d); "
                          "the store's record stands", hold.reservation_id, hold.state, hold.charged, shared.state,
                          shared.charged)
            return
        if hold.state is HoldState.COMMITTED:
            await self.inner.commit(CommitRequest(hold.reservation_id, hold.charged, hold.used_tokens,
                                                  hold.commit_fingerprint))
        elif hold.state is HoldState.RELEASED:
            await self.inner.release(hold.reservation_id)
        # An expired local hold is left to the store's own expiry, under the same policy.

    async def audit(self, orgs: Sequence[str] | None = None) -> AuditReport:
        return await self.inner.audit(orgs)

    async def close(self) -> None:
        await self.inner.close()

