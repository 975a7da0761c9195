"""The blocking Client against the same grpc.aio server.

The server runs on the test's event loop, so each blocking flow runs in a worker
thread via ``asyncio.to_thread`` and the loop stays free to answer it.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tollgate_client import (
    BUDGET_EXCEEDED_TRAILER,
    BudgetExceededError,
    Client,
    CommitResult,
    HeldReservation,
    ReservationNotFoundError,
    Scope,
    Usage,
)
from tollgate_client.v1 import tollgate_pb2 as pb

from .fake_tollgate import RESETS_AT, Failure, FakeTollgate

SCOPE = Scope(org="acme", user="alice")


class ProviderError(Exception):
    """Stands in for the LLM provider's SDK failing mid-call."""


async def test_sync_route_reserve_commit(target: str, fake: FakeTollgate) -> None:
    def flow() -> tuple[CommitResult, HeldReservation]:
        with Client(target, metadata=[("x-app", "billing")]) as client:
            decision = client.route(SCOPE, messages=[{"role": "user", "content": "hi"}], reserve=True, ttl_ms=5000)
            assert decision.model == "gpt-4o-mini"
            with client.reservation(decision) as held:
                result = held.commit(Usage(10, output_tokens=3))
            return result, held

    result, held = await asyncio.to_thread(flow)
    assert result.reservation_id == held.reservation_id
    assert fake.methods() == ["Route", "Commit"]
    assert fake.calls("Route")[0].reservation.ttl_ms == 5000
    assert fake.metadata[0]["x-app"] == "billing"


async def test_sync_reservation_releases_on_exception(target: str, fake: FakeTollgate) -> None:
    def flow() -> None:
        with Client(target) as client:
            reserved = client.reserve(SCOPE, "gpt-4o", input_tokens=50)
            with client.reservation(reserved):
                raise ProviderError("overloaded")

    with pytest.raises(ProviderError, match="overloaded"):
        await asyncio.to_thread(flow)
    assert fake.methods() == ["Reserve", "Release"]


async def test_sync_release_failure_is_a_note(target: str, fake: FakeTollgate) -> None:
    fake.failures["Release"] = Failure(grpc.StatusCode.UNAVAILABLE, "store down")

    def flow() -> None:
        with Client(target) as client:
            decision = client.route(SCOPE, input_tokens=50, reserve=True)
            with client.reservation(decision):
                raise ProviderError("overloaded")

    with pytest.raises(ProviderError) as caught:
        await asyncio.to_thread(flow)
    assert "store down" in caught.value.__notes__[0]


async def test_sync_errors_and_budget(target: str, fake: FakeTollgate) -> None:
    refusal = pb.BudgetExceeded(pool_id="team:search", level=pb.POOL_LEVEL_TEAM, policy=pb.POLICY_SOFT, limit="tokens")
    refusal.resets_at.FromDatetime(RESETS_AT)
    fake.failures["Reserve"] = Failure(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "team over", ((BUDGET_EXCEEDED_TRAILER, refusal.SerializeToString()),)
    )

    def flow() -> None:
        with Client(target) as client:
            pools = client.get_budget(SCOPE)
            assert [p.pool_id for p in pools] == ["user:alice", "org:acme"]
            client.extend("res-never-issued")

    with pytest.raises(ReservationNotFoundError, match="NOT_FOUND: no reservation res-never-issued"):
        await asyncio.to_thread(flow)

    def refused() -> None:
        with Client(target) as client:
            client.reserve(SCOPE, "gpt-4o", input_tokens=50)

    with pytest.raises(BudgetExceededError) as caught:
        await asyncio.to_thread(refused)
    error = caught.value
    assert (error.pool_id, error.level, error.policy, error.limit) == ("team:search", "team", "soft", "tokens")
    assert error.resets_at == RESETS_AT
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
