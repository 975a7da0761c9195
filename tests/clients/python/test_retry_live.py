"""The Python client's retries against a real sidecar process, through a proxy that loses answers.

The proxy lets a call reach the sidecar and take effect, then drops the connection before the answer gets back
(tests/clients/lossy_proxy.py): the first call of each fresh client is lost that way, its retry passes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sidecar_process import SidecarProcess
from tollgate_client import AsyncClient, Client, PoolState, Retry, Scope, UnavailableError, Usage

from ..lossy_proxy import LossyProxy

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with SidecarProcess(Path(tmp_path_factory.mktemp("retry-sidecar"))) as process:
        yield process


@pytest.fixture
def proxy(sidecar: SidecarProcess) -> Iterator[LossyProxy]:
    with LossyProxy(sidecar.target) as proxy:
        yield proxy


def _scope(name: str) -> Scope:
    return Scope(org=f"retry-{name}-{time.time_ns()}", user="alice")


async def _org_pool(sidecar: SidecarProcess, scope: Scope) -> PoolState:
    async with AsyncClient(sidecar.target, retry=None) as direct:
        pools = await direct.get_budget(scope)
    return next(pool for pool in pools if pool.level == "org")


async def test_a_reserve_whose_answer_is_lost_holds_once(sidecar: SidecarProcess, proxy: LossyProxy) -> None:
    scope = _scope("reserve")
    async with AsyncClient(proxy.target, timeout=5.0) as client:
        reserved = await client.reserve(scope, MODEL, input_tokens=1000)
    assert (proxy.lost, proxy.passed) == (1, 1)
    reservation = reserved.reservation
    assert re.fullmatch(r"[0-9a-f]{32}", reservation.idempotency_key)
    assert reservation.replayed  # the retry found the lost attempt's reservation

    org = await _org_pool(sidecar, scope)
    assert (org.calls, org.held_nanos) == (1, reservation.held_nanos)  # held once, not twice

    async with AsyncClient(sidecar.target, retry=None) as direct:
        again = await direct.reserve(scope, MODEL, input_tokens=1000, idempotency_key=reservation.idempotency_key)
        assert again.reservation.reservation_id == reservation.reservation_id and again.reservation.replayed
        committed = await direct.commit(reservation.reservation_id, Usage(1000, output_tokens=100))
    org = await _org_pool(sidecar, scope)
    assert (org.calls, org.held_nanos, org.spent_nanos) == (1, 0, committed.charged_nanos)


async def test_a_route_and_a_commit_whose_answers_are_lost(sidecar: SidecarProcess, proxy: LossyProxy) -> None:
    scope = _scope("route")
    async with AsyncClient(proxy.target, timeout=5.0) as client:
        decision = await client.route(scope, input_tokens=1000, task_type="extract", reserve=True)
    assert decision.reservation is not None and decision.reservation.replayed
    # Through a proxy of its own: gRPC may put a fresh client's channel on a connection of the last one's that is
    # still open, whose answers the proxy no longer loses.
    with LossyProxy(sidecar.target) as second:
        async with AsyncClient(second.target, timeout=5.0) as client:
            committed = await client.commit(decision.reservation.reservation_id, Usage(1000, output_tokens=100))
    assert committed.replayed  # the lost attempt committed; the retry was answered from its record
    assert (proxy.lost, proxy.passed, second.lost, second.passed) == (1, 1, 1, 1)
    org = await _org_pool(sidecar, scope)
    assert (org.calls, org.held_nanos, org.spent_nanos) == (1, 0, committed.charged_nanos)


def test_the_blocking_client_holds_once(sidecar: SidecarProcess, proxy: LossyProxy) -> None:
    scope = _scope("blocking")
    with Client(proxy.target, timeout=5.0) as client:
        reserved = client.reserve(scope, MODEL, input_tokens=1000)
    assert reserved.reservation.replayed and proxy.lost == 1
    org = asyncio.run(_org_pool(sidecar, scope))
    assert (org.calls, org.held_nanos) == (1, reserved.reservation.held_nanos)


async def test_without_retries_the_lost_answer_leaves_a_hold_behind(sidecar: SidecarProcess,
                                                                    proxy: LossyProxy) -> None:
    """What the retries are for: the call failed for the application, yet the sidecar holds its money."""
    scope = _scope("off")
    async with AsyncClient(proxy.target, timeout=5.0, retry=None) as client:
        with pytest.raises(UnavailableError) as caught:
            await client.reserve(scope, MODEL, input_tokens=1000)
    assert caught.value.attempts == 1 and proxy.lost == 1
    org = await _org_pool(sidecar, scope)
    assert org.calls == 1 and org.held_nanos > 0


async def test_retries_give_up_on_a_sidecar_that_is_gone(tmp_path: Path) -> None:
    with SidecarProcess(tmp_path, store="memory") as sidecar:
        target = sidecar.target
    async with AsyncClient(target, timeout=1.0, retry=Retry(attempts=3, budget_s=2.0)) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            await client.reserve(_scope("gone"), MODEL, input_tokens=1000)
    assert caught.value.attempts == 3 and time.monotonic() - started < 3.0
