"""Bounded state on the shared store: ended records age out, and the audit still adds up."""

from __future__ import annotations

import uuid

import pytest

from tests.ledger.test_invariants import RESOLVE, FakeClock, commit, hold, refs
from tollgate.errors import ReservationNotFound
from tollgate.ledger.redis import RedisStore, connect

pytestmark = pytest.mark.redis

DAY = 86_400_000


async def test_records_older_than_retention_are_pruned_and_folded(redis_url: str) -> None:
    clock = FakeClock()
    store = RedisStore(connect(redis_url, timeout=2.0), specs=RESOLVE, clock=clock,
                       prefix=f"t{uuid.uuid4().hex[:10]}", retention_ms=2 * DAY, timeout=5.0)
    session = refs("session:acme/s9", "org:acme")  # the session pool has no window: spent forever
    old = await store.reserve(hold(session, 10_000, tokens=50))
    await store.commit(commit(old.hold.reservation_id, 7_000, tokens=40))
    released = await store.reserve(hold(session, 10_000))
    await store.release(released.hold.reservation_id)
    clock.now += 3 * DAY
    fresh = await store.reserve(hold(session, 10_000, tokens=50))
    await store.commit(commit(fresh.hold.reservation_id, 5_000, tokens=30))
    await store.expire_due()  # each sweep also prunes
    for gone in (old, released):
        with pytest.raises(ReservationNotFound):
            await store.get(gone.hold.reservation_id)
    assert (await store.get(fresh.hold.reservation_id)).charged == 5_000
    (session_pool, _) = await store.snapshot(list(session))
    assert session_pool.spent == 12_000 and session_pool.calls == 2  # the pruned charge still counts
    report = await store.audit(["acme"])
    assert report.ok, report.mismatches
    assert report.reservations_checked == 1
    await store.close()
