"""The wrappers' test bed: a real sidecar on the default catalog, the fake provider, and the ledger's view."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
import yaml

from tests.clients.python.wrappers.fake_provider import Fake, Reported
from tests.support.sidecar_process import SidecarProcess, write_config
from tollgate.config import default_config_text
from tollgate_client import AsyncClient, Client, PoolState, Scope

BROKE = "broke"
"""An organisation whose budget holds nothing: every call of it is refused."""

_MODELS: dict[str, Any] = yaml.safe_load(default_config_text())["models"]


def price(model: str, usage: Reported) -> int:
    """What the default catalog charges for ``usage`` on ``model``, in nano-dollars (prices are USD per 1M tokens)."""
    p = _MODELS[model]["price"]
    usd_per_mtok = ((usage.input - usage.cached) * Decimal(p["input"]) + usage.cached * Decimal(p["cached_input"])
                    + usage.output * Decimal(p["output"]))
    return math.ceil(usd_per_mtok * 1000)


def provider_of(model: str) -> str:
    return str(_MODELS[model]["provider"])


def check_ledger(pools: tuple[PoolState, ...], charged: int) -> None:
    """Every pool of the scope has spent exactly ``charged`` and holds nothing."""
    stateful = [p for p in pools if p.level != "request"]
    assert stateful, "the scope has no pools"
    for pool in stateful:
        assert (pool.pool_id, pool.spent_nanos, pool.held_nanos) == (pool.pool_id, charged, 0)


@pytest.fixture(scope="package")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    tmp = tmp_path_factory.mktemp("wrappers")

    def edit(data: dict[str, Any]) -> None:
        data["budgets"]["overrides"][f"org:{BROKE}"] = {"cap": "0.000001"}

    with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", edit)) as process:
        yield process


@pytest.fixture(scope="package")
def fake() -> Iterator[Fake]:
    with Fake() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh_fake(fake: Fake) -> None:
    fake.calls.clear()
    fake.bad_models.clear()


@pytest.fixture
def scope() -> Scope:
    """A scope of its own per test, so that its ledger is this test's alone."""
    return Scope(org=f"w{uuid.uuid4().hex[:12]}", team="search", user="alice")


@pytest.fixture
async def tollgate(sidecar: SidecarProcess) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(sidecar.target, timeout=5.0) as client:
        yield client


@pytest.fixture
def sync_tollgate(sidecar: SidecarProcess) -> Iterator[Client]:
    with Client(sidecar.target, timeout=5.0) as client:
        yield client
