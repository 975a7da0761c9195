"""Translation of gRPC statuses into the client's exceptions: by the sidecar's ErrorInfo reason, else by code."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import status_pb2

from tollgate import errors as sidecar_errors
from tollgate.grpc import status as sidecar_status
from tollgate_client import (
    BUDGET_EXCEEDED_TRAILER,
    ERROR_DOMAIN,
    STATUS_DETAILS_TRAILER,
    AsyncClient,
    BudgetExceededError,
    Client,
    EscalationRefusedError,
    IdempotencyConflictError,
    InvalidRequestError,
    RateLimitedError,
    ReservationEndedError,
    ReservationNotFoundError,
    Scope,
    TollgateClientError,
    UnavailableError,
    Usage,
)
from tollgate_client.v1 import tollgate_pb2 as pb

from .fake_tollgate import RESETS_AT, Failure, FakeTollgate, error_info, refused, ts
from .fake_tollgate import status_details as status_trailer

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
        (grpc.StatusCode.OUT_OF_RANGE, EscalationRefusedError),
        # Without a reason and without the refusal's detail, not a budget refusal: gRPC says this of a
        # message over its size limit, for one.
        (grpc.StatusCode.RESOURCE_EXHAUSTED, TollgateClientError),
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
    assert caught.value.reason == ""


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


# -- by reason ------------------------------------------------------------------------------------------------------

# Every reason the sidecar sends, with its status code and the class it becomes.
BY_REASON: dict[str, tuple[grpc.StatusCode, type[TollgateClientError]]] = {
    "INVALID_REQUEST": (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequestError),
    "BUDGET_EXCEEDED": (grpc.StatusCode.RESOURCE_EXHAUSTED, BudgetExceededError),
    "RATE_LIMITED": (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimitedError),
    "RESERVATION_NOT_FOUND": (grpc.StatusCode.NOT_FOUND, ReservationNotFoundError),
    "RESERVATION_ENDED": (grpc.StatusCode.FAILED_PRECONDITION, ReservationEndedError),
    "IDEMPOTENCY_CONFLICT": (grpc.StatusCode.FAILED_PRECONDITION, IdempotencyConflictError),
    "ESCALATION_REFUSED": (grpc.StatusCode.OUT_OF_RANGE, EscalationRefusedError),
    "STORE_UNAVAILABLE": (grpc.StatusCode.UNAVAILABLE, UnavailableError),
    "CALLER_GONE": (grpc.StatusCode.DEADLINE_EXCEEDED, UnavailableError),
    "UNAUTHENTICATED": (grpc.StatusCode.UNAUTHENTICATED, TollgateClientError),
    "PERMISSION_DENIED": (grpc.StatusCode.PERMISSION_DENIED, TollgateClientError),
    "INTERNAL": (grpc.StatusCode.INTERNAL, TollgateClientError),
}
SCOPE = Scope(org="acme", user="alice")


def test_the_table_covers_every_reason_the_sidecar_sends() -> None:
    sent = {(reason, code) for code, reason in sidecar_status.STATUS.values()}
    sent.add((sidecar_status._INTERNAL[1], sidecar_status._INTERNAL[0]))
    assert sent == {(reason, code) for reason, (code, _) in BY_REASON.items()}
    assert sidecar_status.ERROR_DOMAIN == ERROR_DOMAIN
    assert sidecar_status.BUDGET_EXCEEDED_TRAILER == BUDGET_EXCEEDED_TRAILER


@pytest.mark.parametrize("reason", sorted(BY_REASON))
async def test_reasons_map_to_error_classes(target: str, fake: FakeTollgate, reason: str) -> None:
    code, error = BY_REASON[reason]
    fake.failures["GetBudget"] = refused(code, f"refused: {reason}", reason)
    async with AsyncClient(target, retry=None) as client:
        with pytest.raises(error) as caught:
            await client.get_budget(SCOPE)
    assert type(caught.value) is error
    assert (caught.value.code, caught.value.reason, caught.value.details) == (code, reason, f"refused: {reason}")


def _sidecar_error(cls: type[sidecar_errors.TollgateError]) -> sidecar_errors.TollgateError:
    if cls is sidecar_errors.BudgetExceeded:
        return sidecar_errors.BudgetExceeded(sidecar_errors.Refusal(
            pool_id="user:acme/alice", level="user", policy="hard", limit="cost",
            requested=1_300_000, remaining=250_000, resets_at_ms=int(RESETS_AT.timestamp() * 1000)))
    return cls(f"a {cls.__name__}")


@pytest.mark.parametrize("cls", list(sidecar_status.STATUS), ids=lambda cls: cls.__name__)
async def test_every_answer_of_the_sidecars_status_table(
    target: str, fake: FakeTollgate, cls: type[sidecar_errors.TollgateError]
) -> None:
    """The trailers exactly as the sidecar writes them, through a real channel."""
    answer = sidecar_status.failure(_sidecar_error(cls))
    code, reason = sidecar_status.STATUS[cls]
    fake.failures["Reserve"] = Failure(answer.code, answer.message, answer.trailers)
    async with AsyncClient(target, retry=None) as client:
        with pytest.raises(TollgateClientError) as caught:
            await client.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert type(caught.value) is BY_REASON[reason][1]
    assert (caught.value.code, caught.value.reason, caught.value.details) == (code, reason, answer.message)
    if isinstance(caught.value, BudgetExceededError):
        refusal = caught.value
        assert (refusal.pool_id, refusal.level, refusal.policy, refusal.limit) == ("user:acme/alice", "user", "hard",
                                                                                   "cost")
        assert (refusal.requested_nanos, refusal.remaining_nanos, refusal.resets_at) == (1_300_000, 250_000,
                                                                                         RESETS_AT)


async def test_the_sidecars_internal_failure(client: AsyncClient, fake: FakeTollgate) -> None:
    answer = sidecar_status.internal_failure()
    fake.failures["GetBudget"] = Failure(answer.code, answer.message, answer.trailers)
    with pytest.raises(TollgateClientError) as caught:
        await client.get_budget(SCOPE)
    assert type(caught.value) is TollgateClientError
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.INTERNAL, "INTERNAL")


async def test_a_rate_limited_caller_is_not_over_budget(client: AsyncClient, fake: FakeTollgate) -> None:
    fake.failures["Reserve"] = refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       "caller app is over its rate of 1 calls/s; retry in 830 ms", "RATE_LIMITED")
    with pytest.raises(RateLimitedError) as caught:
        await client.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert not isinstance(caught.value, BudgetExceededError)
    assert caught.value.attempts == 1 and len(fake.calls("Reserve")) == 1  # not retried
    assert str(caught.value) == "RESOURCE_EXHAUSTED: caller app is over its rate of 1 calls/s; retry in 830 ms"


async def test_a_budget_refusal_with_its_detail_only_in_the_status(client: AsyncClient, fake: FakeTollgate) -> None:
    fake.failures["Reserve"] = refused(grpc.StatusCode.RESOURCE_EXHAUSTED, DETAILS, "BUDGET_EXCEEDED", REFUSAL)
    with pytest.raises(BudgetExceededError) as caught:
        await client.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert (caught.value.reason, caught.value.pool_id, caught.value.remaining_nanos) == ("BUDGET_EXCEEDED",
                                                                                       "user:alice", 250_000)
    assert caught.value.resets_at == RESETS_AT


async def test_a_budget_reason_without_the_detail_has_empty_fields(client: AsyncClient, fake: FakeTollgate) -> None:
    fake.failures["Reserve"] = refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "over", "BUDGET_EXCEEDED")
    with pytest.raises(BudgetExceededError) as caught:
        await client.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert (caught.value.reason, caught.value.pool_id, caught.value.requested_nanos, caught.value.resets_at) == (
        "BUDGET_EXCEEDED", "", 0, None)


async def test_an_idempotency_conflict_is_still_a_reservation_ended(client: AsyncClient, fake: FakeTollgate) -> None:
    fake.failures["Commit"] = refused(grpc.StatusCode.FAILED_PRECONDITION, "committed with other usage",
                                      "IDEMPOTENCY_CONFLICT")
    with pytest.raises(ReservationEndedError) as caught:
        await client.commit("res-1", Usage(10))
    assert isinstance(caught.value, IdempotencyConflictError)
    assert caught.value.reason == "IDEMPOTENCY_CONFLICT"


@pytest.mark.parametrize(
    ("what", "trailers", "error"),
    [
        # An older sidecar's budget refusal: its detail in the status, no reason.
        ("the refusal's detail alone", (status_trailer(grpc.StatusCode.RESOURCE_EXHAUSTED, DETAILS, REFUSAL),),
         BudgetExceededError),
        ("an ErrorInfo of another domain",
         (status_trailer(grpc.StatusCode.RESOURCE_EXHAUSTED, DETAILS, error_info("RATE_LIMITED", "example.com")),),
         TollgateClientError),
        ("a reason this client does not know",
         (status_trailer(grpc.StatusCode.RESOURCE_EXHAUSTED, DETAILS, error_info("SOMETHING_NEW")),),
         TollgateClientError),
        ("a damaged status trailer", ((STATUS_DETAILS_TRAILER, b"\x1a\x09"),), TollgateClientError),
        ("a damaged ErrorInfo", ((STATUS_DETAILS_TRAILER, status_pb2.Status(code=8, details=[any_pb2.Any(
            type_url="type.googleapis.com/google.rpc.ErrorInfo", value=b"\x0a\x0cRATE")]).SerializeToString()),),
         TollgateClientError),
    ],
)
async def test_without_a_reason_the_code_decides(client: AsyncClient, fake: FakeTollgate, what: str,
                                                 trailers: tuple[tuple[str, bytes], ...],
                                                 error: type[TollgateClientError]) -> None:
    fake.failures["Reserve"] = Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, DETAILS, trailers)
    with pytest.raises(TollgateClientError) as caught:
        await client.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert type(caught.value) is error, what
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_an_unknown_reason_falls_back_to_the_code(client: AsyncClient, fake: FakeTollgate) -> None:
    fake.failures["Commit"] = refused(grpc.StatusCode.NOT_FOUND, "gone", "SOMETHING_NEW")
    with pytest.raises(ReservationNotFoundError) as caught:
        await client.commit("res-1", Usage(10))
    assert caught.value.reason == "SOMETHING_NEW"


async def test_the_blocking_client_maps_by_reason_too(target: str, fake: FakeTollgate) -> None:
    fake.failures["GetBudget"] = refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", "RATE_LIMITED")
    with Client(target) as client, pytest.raises(RateLimitedError) as caught:
        await asyncio.to_thread(client.get_budget, SCOPE)
    assert caught.value.reason == "RATE_LIMITED"

