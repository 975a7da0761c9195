"""Translation of gRPC statuses into the client's exceptions."""

from __future__ import annotations

import socket

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import status_pb2

from tollgate_client import (
    BUDGET_EXCEEDED_TRAILER,
    AsyncClient,
    BudgetExceededError,
    InvalidRequestError,
    ReservationEndedError,
    ReservationNotFoundError,
    Scope,
    TollgateClientError,
    UnavailableError,
    Usage,
)
from tollgate_client.v1 import tollgate_pb2 as pb

from .fake_tollgate import RESETS_AT, Failure, FakeTollgate, ts

REFUSAL = pb.BudgetExceeded(
    pool_id="user:alice",
    level=pb.POOL_LEVEL_USER,
    policy=pb.POLICY_HARD,
    requested_nanos=1_300_000,
    remaining_nanos=250_000,
    resets_at=ts(RESETS_AT),
    limit="cost",
)
DETAILS = "budget pool user:alice (hard) refused: needs 1300000 nano-USD but 250000 remain"


def status_details(refusal: pb.BudgetExceeded) -> bytes:
    """The standard grpc-status-details-bin trailer the sidecar sends beside its own."""
    detail = any_pb2.Any()
    detail.Pack(refusal)
    return status_pb2.Status(
        code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message=DETAILS, details=[detail]
    ).SerializeToString()


async def test_budget_exceeded_decodes_the_trailer(client: AsyncClient, fake: FakeTollgate) -> None:
    fake.failures["Reserve"] = Failure(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        DETAILS,
        (
            ("grpc-status-details-bin", status_details(REFUSAL)),
            (BUDGET_EXCEEDED_TRAILER, REFUSAL.SerializeToString()),
        ),
    )
    with pytest.raises(BudgetExceededError) as caught:
        await client.reserve(Scope(org="acme", user="alice"), "gpt-4o", input_tokens=100)
    error = caught.value
    assert isinstance(error, TollgateClientError)
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details == DETAILS
    assert str(error) == f"RESOURCE_EXHAUSTED: {DETAILS}"
    assert (error.pool_id, error.level, error.policy, error.limit) == ("user:alice", "user", "hard", "cost")
    assert (error.requested_nanos, error.remaining_nanos) == (1_300_000, 250_000)
    assert error.resets_at == RESETS_AT
    assert isinstance(error.__cause__, grpc.RpcError)


async def test_budget_exceeded_without_reset_or_trailer(client: AsyncClient, fake: FakeTollgate) -> None:
    calls = pb.BudgetExceeded(pool_id="request", level=pb.POOL_LEVEL_REQUEST, policy=pb.POLICY_HARD, limit="calls")
    fake.failures["Route"] = Failure(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "over", ((BUDGET_EXCEEDED_TRAILER, calls.SerializeToString()),)
    )
    with pytest.raises(BudgetExceededError) as caught:
        await client.route(Scope(org="acme"), input_tokens=1, reserve=True)
    assert (caught.value.level, caught.value.limit, caught.value.resets_at) == ("request", "calls", None)

    fake.failures["Route"] = Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "over")
    with pytest.raises(BudgetExceededError) as caught:
        await client.route(Scope(org="acme"), input_tokens=1, reserve=True)
    assert (caught.value.pool_id, caught.value.requested_nanos, caught.value.resets_at) == ("", 0, None)

    fake.failures["Route"] = Failure(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "over", ((BUDGET_EXCEEDED_TRAILER, b"\xff\xff"),)
    )
    with pytest.raises(BudgetExceededError) as caught:
        await client.route(Scope(org="acme"), input_tokens=1, reserve=True)
    assert caught.value.details == "over"
    assert caught.value.pool_id == ""


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequestError),
        (grpc.StatusCode.NOT_FOUND, ReservationNotFoundError),
        (grpc.StatusCode.FAILED_PRECONDITION, ReservationEndedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, UnavailableError),
        (grpc.StatusCode.INTERNAL, TollgateClientError),
        (grpc.StatusCode.UNAUTHENTICATED, TollgateClientError),
    ],
)
async def test_status_codes_map_to_error_classes(
    client: AsyncClient, fake: FakeTollgate, code: grpc.StatusCode, error: type[TollgateClientError]
) -> None:
    fake.failures["GetBudget"] = Failure(code, "the sidecar says no")
    with pytest.raises(error) as caught:
        await client.get_budget(Scope(org="acme"))
    assert type(caught.value) is error
    assert caught.value.code is code
    assert caught.value.details == "the sidecar says no"


async def test_reservation_errors_from_the_server(client: AsyncClient) -> None:
    with pytest.raises(ReservationNotFoundError, match="no reservation res-nope"):
        await client.commit("res-nope", Usage(10))
    reserved = await client.reserve(Scope(org="acme"), "gpt-4o", input_tokens=10)
    await client.release(reserved.reservation.reservation_id)
    with pytest.raises(ReservationEndedError):
        await client.commit(reserved.reservation.reservation_id, Usage(10))


async def test_deadline_becomes_unavailable(target: str, fake: FakeTollgate) -> None:
    fake.delay = 1.0
    async with AsyncClient(target, timeout=0.1) as client:
        with pytest.raises(UnavailableError) as caught:
            await client.get_budget(Scope(org="acme"))
    assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AsyncClient(f"127.0.0.1:{port}", timeout=1.0) as client:
        with pytest.raises(UnavailableError) as caught:
            await client.route(Scope(org="acme"), input_tokens=1)
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
