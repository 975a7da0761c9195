"""Fail-open on a Redis outage: bounded by the allowance, and every local cent lands in Redis afterwards."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from tests.ledger.test_invariants import RESOLVE, commit, hold, refs
from tests.support.redis_server import RedisServer
from tollgate.errors import StoreUnavailable
from tollgate.ledger.failopen import FailOpenStore
from tollgate.ledger.redis import RedisStore, connect

pytestmark = pytest.mark.redis


async def test_fail_open_is_bounded_and_reconciled(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        shared = RedisStore(connect(server.url, timeout=0.2), specs=RESOLVE, prefix=f"t{uuid.uuid4().hex[:8]}",
                            timeout=0.3)
        store = FailOpenStore(shared, allowance=30_000)
        pools = refs("session:acme/fo", "org:acme")
        normal = await store.reserve(hold(pools, 10_000))
        await store.commit(commit(normal.hold.reservation_id, 9_000))

        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)  # unreachable, data intact
        local = [await store.reserve(hold(pools, 10_000)) for _ in range(3)]
        assert all(r.pools == () for r in local) and store.admitted_locally == 3
        with pytest.raises(StoreUnavailable, match="fail-open allowance is spent"):
            await store.reserve(hold(pools, 1))
        await store.commit(commit(local[0].hold.reservation_id, 8_000))
        await store.release(local[1].hold.reservation_id)
        assert store.used == 8_000 + 10_000  # one charge and one open hold
        await store.reserve(hold(pools, 11_000))  # room freed by the commit and the release
        assert await store.expire_due() == 0  # still down: serving on the allowance

        server.proc.send_signal(signal.SIGCONT)
        await store.commit(commit(local[2].hold.reservation_id, 4_000))  # reconciles what has ended
        assert store.pending == 1  # the last local hold is still open
        for pool in await store.snapshot(list(pools)):
            assert pool.spent == 9_000 + 8_000 + 4_000 and pool.held == 0
        report = await shared.audit(["acme"])
        assert report.ok, report.mismatches
        assert report.reservations_checked == 4  # the normal one, the two commits and the release
        await store.close()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
        server.stop()
