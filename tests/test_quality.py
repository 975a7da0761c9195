"""The quality guard's statistics and decisions, on an in-memory store."""

from __future__ import annotations

import random

import pytest

from tests.support.catalog import suite_config
from tollgate.ledger.feedback import MemoryQualityStore
from tollgate.quality import QualityConfig, QualityGuard, Tally, wilson


def test_wilson_interval() -> None:
    low, high = wilson(7, 10)
    assert 0.39 < low < 0.40 and 0.89 < high < 0.90  # the textbook 95 % interval for 7/10
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(100, 100)
    assert high == pytest.approx(1.0) and low > 0.96
    # More samples, narrower interval.
    assert wilson(70, 100)[1] - wilson(70, 100)[0] < wilson(7, 10)[1] - wilson(7, 10)[0]


def guard(**overrides: object) -> QualityGuard:
    config = QualityConfig(**overrides)  # type: ignore[arg-type]
    clock = [1_800_000_000_000]
    return QualityGuard(config, suite_config().catalog, MemoryQualityStore(), lambda: clock[0],
                        rng=random.Random(1))


async def feed(g: QualityGuard, task: str, match_rate: float, n: int, rng: random.Random) -> int | None:
    """Shadow comparisons until the guard escalates; the sample count when it did."""
    for i in range(1, n + 1):
        await g.record(task, "cheap", True, 1.0 if rng.random() < match_rate else 0.0)
        if g.min_tier(task) is not None:
            return i
    return None


async def test_degraded_task_type_is_escalated_and_healthy_ones_are_not() -> None:
    g = guard()
    rng = random.Random(7)
    delay = await feed(g, "refund_dispute", 0.70, 500, rng)
    assert delay is not None and delay <= 80
    assert g.min_tier("refund_dispute") is not None
    assert g.min_tier("refund_dispute")[0] == "frontier"  # type: ignore[index]
    assert await feed(g, "extract", 0.98, 300, rng) is None
    assert "escalated refund_dispute" in g.changes[0]


async def test_no_decision_before_min_samples() -> None:
    g = guard(min_samples=20)
    for _ in range(19):
        await g.record("t", "cheap", True, 0.0)
    assert g.min_tier("t") is None
    await g.record("t", "cheap", True, 0.0)
    assert g.min_tier("t") is not None


async def test_recovers_only_on_evidence_from_probes() -> None:
    g = guard()
    rng = random.Random(3)
    assert await feed(g, "billing", 0.6, 300, rng) is not None
    # Probes: the primary is the reference tier now; the cheap model is the shadow.
    for _ in range(10):
        await g.record("billing", "frontier", True, 1.0)
    assert g.min_tier("billing") is not None  # not yet: too few probes
    for _ in range(40):
        await g.record("billing", "frontier", True, 1.0)
    assert g.min_tier("billing") is None
    assert "lowered billing again" in g.changes[-1]
    # The old bad comparisons were forgotten with the recovery: no instant re-escalation.
    await g.record("billing", "cheap", True, 1.0)
    assert g.min_tier("billing") is None


async def test_guard_off_measures_but_never_acts() -> None:
    g = guard(guard=False)
    await feed(g, "refund_dispute", 0.5, 200, random.Random(1))
    assert g.min_tier("refund_dispute") is None
    reports = {r.task_type: r for r in await g.report()}
    assert reports["refund_dispute"].shadow.n == 200


async def test_overrides_are_shared_through_the_store() -> None:
    store = MemoryQualityStore()
    catalog = suite_config().catalog
    a = QualityGuard(QualityConfig(), catalog, store, lambda: 1_800_000_000_000)
    b = QualityGuard(QualityConfig(), catalog, store, lambda: 1_800_000_000_000)
    await feed(a, "refund_dispute", 0.5, 200, random.Random(2))
    assert b.min_tier("refund_dispute") is None
    await b.refresh()
    assert b.min_tier("refund_dispute") is not None


@pytest.mark.parametrize("seed", range(10))
async def test_false_escalations_are_rare_over_seeds(seed: int) -> None:
    """Ten healthy task types (true match 0.97) and 200 comparisons each: none escalates."""
    g = guard()
    rng = random.Random(seed)
    for t in range(10):
        assert await feed(g, f"healthy{t}", 0.97, 200, rng) is None


def test_tally_mean() -> None:
    assert Tally(4, 3.0).mean == 0.75 and Tally().mean == 0.0
