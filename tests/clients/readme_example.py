"""What the install tests share: each client's README example, run as a new user would against a live sidecar.

The examples call a provider through its SDK; each test puts a stand-in for that SDK beside the example, which
answers every call with ``PROVIDER_USAGE``, so the example runs unchanged and the ledger can be checked after it:
everything charged, nothing left held.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.sidecar_process import SidecarProcess, write_config
from tollgate_client import Client, PoolState, Scope

README_TARGET = "127.0.0.1:50551"
"""The sidecar address the examples name; the tests put the live sidecar's in its place."""
PROVIDER_USAGE = {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}
"""What the stand-in provider reports for every call, as OpenAI's Chat Completions reports it."""
SCOPE = Scope(org="acme", user="alice")
"""The scope every README example spends from."""


def readme_block(readme: Path, language: str, marker: str) -> str:
    """The first fenced ``language`` block of ``readme`` that contains ``marker``."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", readme.read_text(), re.MULTILINE | re.DOTALL)
    found = [block for block in blocks if marker in block]
    assert found, f"{readme} has no ```{language} block with {marker!r}"
    return str(found[0])


def with_target(code: str, target: str) -> str:
    """The example, pointed at ``target`` instead of the default address."""
    assert README_TARGET in code, f"the example does not name {README_TARGET}"
    return code.replace(README_TARGET, target)


def _config(data: dict[str, Any]) -> None:
    data["routing"]["classifier"] = "none"


@pytest.fixture
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    """A sidecar of its own for each test, on the in-memory store: its ledger holds only what the example did."""
    tmp = tmp_path_factory.mktemp("readme-sidecar")
    with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", _config), store="memory") as proc:
        yield proc


def pools(sidecar: SidecarProcess) -> tuple[PoolState, ...]:
    with Client(sidecar.target, timeout=10.0) as client:
        return client.get_budget(SCOPE)


def assert_settled(sidecar: SidecarProcess, charged_nanos: int) -> None:
    """Every pool of the example's scope was charged ``charged_nanos`` once and holds nothing more."""
    states = pools(sidecar)
    assert states, "the sidecar has no pools for the example's scope"
    assert charged_nanos > 0
    for pool in states:
        assert (pool.pool_id, pool.held_nanos, pool.spent_nanos) == (pool.pool_id, 0, charged_nanos), states


def nanos(usd: str) -> int:
    """The nano-dollars of an amount as the clients print it (``$0.000123``), integer arithmetic only."""
    match = re.fullmatch(r"\$(\d[\d,]*)\.(\d{1,9})", usd)
    assert match is not None, f"not an amount in dollars: {usd!r}"
    return int(match.group(1).replace(",", "")) * 1_000_000_000 + int(match.group(2).ljust(9, "0"))
