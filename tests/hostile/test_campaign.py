"""The hostile campaign, small: a few thousand calls against one real sidecar, every check of the full run.

``python -m tests.hostile --calls 20000 --seed N`` runs the full campaign (``--store redis`` adds
store stalls); this runs a smaller one (about twenty seconds) on every ``make test``. A failure
prints the campaign's summary: which check, on which call, and a way to send that call again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.hostile.actions import ACTIONS, plan
from tests.hostile.campaign import Options, run


def test_the_plan_is_seeded_and_mixes_every_kind() -> None:
    options = Options(calls=6_000, seed=11)
    first = plan(options)
    assert first == plan(options)
    assert first != plan(Options(calls=6_000, seed=12))
    kinds = Counter(kind for part in first for kind, _, _ in part)
    # Every kind but the Redis-only store stall, oversized input among them, in both phases.
    assert set(kinds) == set(ACTIONS) - {"fault.stall"}
    assert kinds["huge"] >= options.min_huge
    assert {kind for kind, _, _ in first[1]} >= {"huge", "garbage", "xt.rid_real", "adm.topup", "honest.keyed_retry"}


@pytest.mark.slow
async def test_a_small_hostile_campaign_finds_nothing(tmp_path: Path) -> None:
    report = await run(Options(calls=6_000, seed=20_260_101, concurrency=8, workdir=tmp_path))
    summary = report.render(examples=6)
    print(summary)
    assert report.total_calls >= 6_000, summary
    assert report.audit_ok, summary
    assert not report.violations, summary
