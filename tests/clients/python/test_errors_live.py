"""The Python client's errors against a real sidecar: each is told apart by the sidecar's reason, not its code alone.

A caller over its rate, a budget refusal and a message over gRPC's size limit are all RESOURCE_EXHAUSTED; only
the budget refusal is a BudgetExceededError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from tests.support.sidecar_process import SidecarProcess
from tollgate_client import (
    AsyncClient,
    BudgetExceededError,
    Client,
    RateLimitedError,
    Scope,
    TollgateClientError,
)

from ..auth_sidecar import LIMITED_TOKEN, SPENDER_TOKEN, auth_sidecar


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with auth_sidecar(tmp_path_factory.mktemp("errors-sidecar")) as proc:
        yield proc


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _spender(sidecar: SidecarProcess) -> Client:
    return Client(sidecar.target, metadata=_bearer(SPENDER_TOKEN), timeout=10.0)


async def test_a_caller_over_its_rate_gets_rate_limited_not_budget_exceeded(sidecar: SidecarProcess) -> None:
    async with AsyncClient(sidecar.target, metadata=_bearer(LIMITED_TOKEN), timeout=10.0) as client:
        # A burst of one call; the rest of five sent at once are over the rate of one a second.
        results = await asyncio.gather(*(client.get_budget(Scope(org="acme")) for _ in range(5)),
                                       return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    assert 3 <= len(refused) <= 4, results
    for error in refused:
        assert type(error) is RateLimitedError, repr(error)
        assert not isinstance(error, BudgetExceededError)
        assert (error.code, error.reason, error.attempts) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", 1)
        assert "over its rate of 1 calls/s" in error.details


def test_a_budget_refusal_is_still_budget_exceeded_with_its_fields(sidecar: SidecarProcess) -> None:
    with _spender(sidecar) as client, pytest.raises(BudgetExceededError) as caught:
        client.reserve(Scope(org="tiny"), "claude-opus-4-1", input_tokens=5000)
    error = caught.value
    assert (error.code, error.reason, error.attempts) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED", 1)
    assert (error.pool_id, error.level, error.policy, error.limit) == ("org:tiny", "org", "hard", "cost")
    assert error.requested_nanos > error.remaining_nanos and error.remaining_nanos <= 1_000_000
    assert error.resets_at is not None  # an org pool resets monthly
    assert error.idempotency_key  # generated, as retries are on


def test_a_message_over_the_size_limit_is_not_a_budget_refusal(sidecar: SidecarProcess) -> None:
    huge = [{"role": "user", "content": "z" * (5 * 1024 * 1024)}]
    with _spender(sidecar) as client, pytest.raises(TollgateClientError) as caught:
        client.route(Scope(org="acme"), messages=huge)
    assert type(caught.value) is TollgateClientError, repr(caught.value)
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "")


def test_credentials_and_grants_carry_their_reasons(sidecar: SidecarProcess) -> None:
    with Client(sidecar.target, timeout=10.0) as anonymous, pytest.raises(TollgateClientError) as caught:
        anonymous.get_budget(Scope(org="acme"))
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    with _spender(sidecar) as client, pytest.raises(TollgateClientError) as caught:
        client.get_budget(Scope(org="bravo"))
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
