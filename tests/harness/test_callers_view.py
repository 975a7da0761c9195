"""The caller's view of money under injected faults, against real sidecars and stores (ledger invariants 6-8).

A few seeds per store kind; ``make soak`` runs many more (``python -m tests.harness``).
A failure prints the seed, every violation with the calls involved, and where the
run's full history and the sidecars' logs are.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.run import run_seed
from tests.support.redis_server import redis_available

pytestmark = [pytest.mark.slow, pytest.mark.redis]

# (store, seed, ops): two seeds on shared Redis, one on the embedded store, one with the
# fail-open allowance, one on Redis Cluster.
CASES = [
    ("redis", 1, 300),
    ("redis", 2, 300),
    ("sqlite", 1, 200),
    ("failopen", 3, 250),
    ("cluster", 4, 200),
]


@pytest.mark.parametrize(("store", "seed", "ops"), CASES, ids=[f"{s}-seed{n}" for s, n, _ in CASES])
async def test_money_moves_only_as_callers_were_told(store: str, seed: int, ops: int, tmp_path: Path) -> None:
    if not redis_available():
        pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (it ships redis-cli too)")
    result = await run_seed(seed, store, ops, tmp_path, fault_seconds=60.0)
    assert result.calls > ops and sum(result.faults.values()) > 0, result.summary()
    if result.violations:
        pytest.fail(
            f"{result.summary()}\nreproduce: python -m tests.harness --seeds {seed} --store {store} --ops {ops}\n"
            f"{result.render(limit=20)}\nevery violation and call: {tmp_path / f'{store}-{seed}'}",
            pytrace=False,
        )
