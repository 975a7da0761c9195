"""The hostile campaign, small: a few thousand calls against one real sidecar, every check of the full run.

``python -m tests.hostile --calls 20000 --seed N`` runs the full campaign; this runs a smaller
one (about a minute) on every ``make test``. A failure prints the campaign's summary: which
check, on which call, and a way to send that call again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.campaign import Options, run

pytestmark = pytest.mark.slow


async def test_a_small_hostile_campaign_finds_nothing(tmp_path: Path) -> None:
    report = await run(Options(calls=6_000, seed=20_260_101, concurrency=8, workdir=tmp_path))
    summary = report.render(examples=6)
    print(summary)
    assert report.total_calls >= 6_000, summary
    assert report.audit_ok, summary
    assert not report.violations, summary
