"""The wire layer in process: one status table with a reason per error kind, garbage bodies, credentials."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest
import yaml
from google.rpc import error_details_pb2, status_pb2

from tests.support.catalog import suite_config_text
from tollgate.app import Tollgate
from tollgate.config import parse_config
from tollgate.errors import (
    BudgetExceeded,
    CallerGone,
    EscalationRefused,
    IdempotencyConflict,
    InvalidRequest,
    Limit,
    PermissionDenied,
    RateLimited,
    Refusal,
    ReservationEnded,
    ReservationNotFound,
    StoreUnavailable,
    Unauthenticated,
)
from tollgate.grpc.handlers import TollgateServicer
from tollgate.grpc.parse import add_to_server
from tollgate.grpc.status import ERROR_DOMAIN, STATUS, failure
from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

C = grpc.StatusCode
REFUSAL = Refusal("org:acme", "org", "hard", Limit.COST, 10, 0, None)


def _reason(trailers: tuple[tuple[str, bytes], ...]) -> str:
    raw = dict(trailers)["grpc-status-details-bin"]
    infos = [d for d in status_pb2.Status.FromString(raw).details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.domain == ERROR_DOMAIN
    return info.reason


@pytest.mark.parametrize(("error", "code", "reason"), [
    (InvalidRequest("x"), C.INVALID_ARGUMENT, "INVALID_REQUEST"),
    (BudgetExceeded(REFUSAL), C.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED"),
    (RateLimited("x"), C.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
    (ReservationNotFound("x"), C.NOT_FOUND, "RESERVATION_NOT_FOUND"),
    (ReservationEnded("x"), C.FAILED_PRECONDITION, "RESERVATION_ENDED"),
    (IdempotencyConflict("x"), C.FAILED_PRECONDITION, "IDEMPOTENCY_CONFLICT"),
    (EscalationRefused("x"), C.OUT_OF_RANGE, "ESCALATION_REFUSED"),
    (StoreUnavailable("x"), C.UNAVAILABLE, "STORE_UNAVAILABLE"),
    (CallerGone("x"), C.DEADLINE_EXCEEDED, "CALLER_GONE"),
    (Unauthenticated("x"), C.UNAUTHENTICATED, "UNAUTHENTICATED"),
    (PermissionDenied("x"), C.PERMISSION_DENIED, "PERMISSION_DENIED"),
])
def test_every_error_kind_has_its_code_and_a_reason_of_its_own(error: Exception, code: grpc.StatusCode,
                                                                reason: str) -> None:
    answer = failure(error)  # type: ignore[arg-type]
    assert answer.code == code and _reason(answer.trailers) == reason


def test_the_table_covers_every_error_kind_with_distinct_reasons() -> None:
    import tollgate.errors as errors

    kinds = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.TollgateError)}
    # A config error never reaches a caller: it stops the sidecar (or a reload) instead.
    assert kinds - set(STATUS) == {errors.TollgateError, errors.ConfigError, errors.ConfigErrors}
    reasons = [reason for _, reason in STATUS.values()]
    assert len(reasons) == len(set(reasons))


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    data = yaml.safe_load(suite_config_text())
    token = hashlib.sha256(b"tok-acme").hexdigest()
    data["auth"] = {"callers": [{"name": "acme-app", "token_sha256": token, "grants": ["acme"], "rate": 1}]}
    config = parse_config(yaml.safe_dump(data))
    gate = Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets)))
    server = grpc.aio.server()
    add_to_server(TollgateServicer(gate), server, pb.DESCRIPTOR.services_by_name["TollgateService"])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
            yield chan
    finally:
        await server.stop(None)


async def _refused(call: grpc.aio.UnaryUnaryCall) -> tuple[grpc.StatusCode, str]:  # type: ignore[type-arg]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    trailers = tuple((k, v) for k, v in err.value.trailing_metadata() or () if isinstance(v, bytes))
    return err.value.code(), _reason(trailers)


async def test_a_rate_limited_caller_is_told_apart_from_a_budget_refusal(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.TollgateServiceStub(channel)
    auth = (("authorization", "Bearer tok-acme"),)
    scope = pb.Scope(org_id="acme", user_id="u")
    assert await _refused(stub.GetBudget(pb.GetBudgetRequest(scope=scope))) == (C.UNAUTHENTICATED,
                                                                                 "UNAUTHENTICATED")
    await stub.GetBudget(pb.GetBudgetRequest(scope=scope), metadata=auth)
    codes = set()
    for _ in range(5):
        try:
            await stub.GetBudget(pb.GetBudgetRequest(scope=scope), metadata=auth)
        except grpc.aio.AioRpcError as exc:
            trailers = tuple((k, v) for k, v in exc.trailing_metadata() or () if isinstance(v, bytes))
            codes.add((exc.code(), _reason(trailers)))
    assert codes == {(C.RESOURCE_EXHAUSTED, "RATE_LIMITED")}


async def test_a_garbage_body_is_a_malformed_request_in_process(channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary("/tollgate.v1.TollgateService/Route", request_serializer=None,
                               response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"\x0f", metadata=(("authorization", "Bearer tok-acme"),))
    assert err.value.code() == C.INVALID_ARGUMENT and "malformed request" in (err.value.details() or "")


def test_a_message_quoting_a_huge_input_is_cut_to_fit_a_default_clients_trailers() -> None:
    answer = failure(InvalidRequest(f"unknown model {'x' * 20_000!r}"))
    assert len(answer.message) == 1_000 and answer.message.endswith("…")
    assert sum(len(v) for _, v in answer.trailers) + len(answer.message.encode()) < 16_384
