"""The Redis store through Redis Sentinel: a real sentinel process finds the primary."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.ledger.test_invariants import RESOLVE, commit, hold, refs
from tests.support.eventually import eventually
from tests.support.redis_server import RedisServer
from tests.support.sidecar_process import free_port
from tollgate.ledger.redis import RedisStore, connect

pytestmark = pytest.mark.redis


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[int, RedisServer]]:
    """A primary and a sentinel monitoring it as ``budgets``; yields (sentinel port, primary)."""
    primary = RedisServer(tmp_path / "primary").start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nsentinel monitor budgets 127.0.0.1 {primary.port} 1\n"
    )
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: redis.Redis(port=port, socket_timeout=0.2).execute_command(
            "SENTINEL", "get-master-addr-by-name", "budgets"), "sentinel to come up")
        yield port, primary
    finally:
        proc.terminate()
        proc.wait(5)
        primary.stop()


async def test_store_finds_its_primary_through_sentinel(sentinel: tuple[int, RedisServer]) -> None:
    port, primary = sentinel
    client = connect("redis://", sentinels=[f"127.0.0.1:{port}"], service="budgets", timeout=1.0)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = RedisStore(client, specs=RESOLVE, prefix=prefix, timeout=2.0)
    pools = refs("session:acme/st", "org:acme")
    r = await store.reserve(hold(pools, 5_000))
    await store.commit(commit(r.hold.reservation_id, 4_000))
    assert all(p.spent == 4_000 for p in await store.snapshot(list(pools)))
    # The data is on the primary the sentinel named.
    assert redis.Redis(port=primary.port).exists(f"{prefix}:{{acme}}:r:{r.hold.reservation_id}")
    await store.close()
