"""Amending an expired reservation with the outcome its caller was told, on Redis: the expiry's
charge comes off every window kind, and the audit still balances."""

from __future__ import annotations

import uuid

import pytest

from tests.ledger.test_invariants import RESOLVE, SCOPES, FakeClock, hold
from tollgate.ledger import HoldState
from tollgate.ledger.redis import RedisStore, connect

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("outcome", [HoldState.RELEASED, HoldState.COMMITTED])
async def test_an_expired_reservation_takes_the_outcome_its_caller_was_told(redis_url: str,
                                                                            outcome: HoldState) -> None:
    clock = FakeClock()
    store = RedisStore(connect(redis_url, timeout=2.0), specs=RESOLVE, clock=clock, prefix=f"t{uuid.uuid4().hex[:8]}",
                       timeout=5.0)
    try:
        pools = SCOPES[0]  # a session (no window), a token-bucket user, a sliding team and a fixed-window org
        kept = await store.reserve(hold(pools, 20_000, ttl=1_000))
        lost = await store.reserve(hold(pools, 30_000, ttl=1_000))
        await store.commit(_commit(kept.hold.reservation_id, 15_000))
        clock.now += 2_000
        assert await store.expire_due() == 1  # the lost one: charged its hold by the policy
        charged = {s.pool_id: s.spent for s in await store.snapshot(list(pools))}
        assert charged["org:acme"] == 45_000, charged

        told = 12_000 if outcome is HoldState.COMMITTED else 0
        assert await store.amend(lost.hold.reservation_id, outcome, charged=told, used_tokens=50 if told else 0,
                                 commit_fingerprint="12000/50" if told else "")
        after = {s.pool_id: s.spent for s in await store.snapshot(list(pools))}
        for pool_id, spent in after.items():
            assert spent == charged[pool_id] - 30_000 + told, (pool_id, spent, charged[pool_id])
        record = await store.get(lost.hold.reservation_id)
        assert (record.state, record.charged) == (outcome, told)
        # Only an expired record is amended: a second amend, or one of a committed record, changes nothing.
        assert not await store.amend(lost.hold.reservation_id, HoldState.RELEASED)
        assert not await store.amend(kept.hold.reservation_id, HoldState.RELEASED)
        report = await store.audit()
        assert report.ok, report.mismatches
    finally:
        await store.close()


def _commit(rid: str, cost: int):  # type: ignore[no-untyped-def]
    from tests.ledger.test_invariants import commit

    return commit(rid, cost)
