"""One table from every error kind to its gRPC status code and reason.

Codes alone are ambiguous (a budget refusal, a caller over its rate and an oversized
message are all RESOURCE_EXHAUSTED), so every error answer also carries a
``google.rpc.ErrorInfo`` with a reason from this table, in the standard
``grpc-status-details-bin`` trailer. Clients map errors by reason; the code is
for everything else that speaks gRPC. A budget refusal adds its
``tollgate.v1.BudgetExceeded`` there and in ``tollgate-budget-exceeded-bin``, which a
client can decode with nothing but protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from tollgate_client.v1 import tollgate_pb2 as pb

from ..config import Policy
from ..errors import (
    BudgetExceeded,
    CallerGone,
    EscalationRefused,
    IdempotencyConflict,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    ReservationEnded,
    ReservationNotFound,
    StoreUnavailable,
    TollgateError,
    Unauthenticated,
)
from ..scope import Level
from .convert import LEVEL, POLICY, timestamp

__all__ = ["BUDGET_EXCEEDED_TRAILER", "ERROR_DOMAIN", "MAX_MESSAGE", "STATUS", "Failure", "failure", "internal_failure"]

BUDGET_EXCEEDED_TRAILER = "tollgate-budget-exceeded-bin"
ERROR_DOMAIN = "tollgate.dev"
"""The ``ErrorInfo.domain`` of every Tollgate error."""

STATUS: dict[type[TollgateError], tuple[grpc.StatusCode, str]] = {
    InvalidRequest: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
    BudgetExceeded: (grpc.StatusCode.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED"),
    RateLimited: (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
    ReservationNotFound: (grpc.StatusCode.NOT_FOUND, "RESERVATION_NOT_FOUND"),
    ReservationEnded: (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_ENDED"),
    IdempotencyConflict: (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_CONFLICT"),
    EscalationRefused: (grpc.StatusCode.OUT_OF_RANGE, "ESCALATION_REFUSED"),
    StoreUnavailable: (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"),
    CallerGone: (grpc.StatusCode.DEADLINE_EXCEEDED, "CALLER_GONE"),
    Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
    PermissionDenied: (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
}
_INTERNAL = (grpc.StatusCode.INTERNAL, "INTERNAL")


@dataclass(frozen=True, slots=True)
class Failure:
    """An error answer: its status, message and trailers."""

    code: grpc.StatusCode
    message: str
    trailers: tuple[tuple[str, bytes], ...] = ()
    reason: str = ""
    """The ``ErrorInfo`` reason the trailers carry, for answers that are not a status (a batch's items)."""


MAX_MESSAGE = 1_000
"""The longest error message answered: messages quote what the caller sent, and the message
travels twice in the trailers (as ``grpc-message`` and inside ``grpc-status-details-bin``),
which a default client refuses past 16 KiB."""


def failure(exc: TollgateError) -> Failure:
    """The answer to a domain error, with its reason (and a budget refusal's details)."""
    code, reason = next((v for cls, v in STATUS.items() if isinstance(exc, cls)), _INTERNAL)
    message = str(exc)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 1] + "…"
    details: list[any_pb2.Any] = []
    trailers: list[tuple[str, bytes]] = []
    if isinstance(exc, BudgetExceeded):
        r = exc.refusal
        detail = pb.BudgetExceeded(
            pool_id=r.pool_id,
            level=LEVEL.get(Level(r.level), pb.POOL_LEVEL_UNSPECIFIED),
            policy=POLICY[Policy(r.policy)],
            requested_nanos=r.requested,
            remaining_nanos=max(r.remaining, 0),
            limit=r.limit,
        )
        if r.resets_at_ms is not None:
            detail.resets_at.CopyFrom(timestamp(r.resets_at_ms))
        details.append(_pack(detail))
        trailers.append((BUDGET_EXCEEDED_TRAILER, detail.SerializeToString()))
    # After a budget refusal's own details, which clients of earlier versions read first.
    details.append(_pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)))
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return Failure(code, message, (("grpc-status-details-bin", status.SerializeToString()), *trailers), reason)


def internal_failure() -> Failure:
    """The answer to a defect: the log has the details, the caller gets a reason to report."""
    message = "internal error; the sidecar log has the details"
    info = _pack(error_details_pb2.ErrorInfo(reason=_INTERNAL[1], domain=ERROR_DOMAIN))
    status = status_pb2.Status(code=_INTERNAL[0].value[0], message=message, details=[info])
    return Failure(_INTERNAL[0], message, (("grpc-status-details-bin", status.SerializeToString()),), _INTERNAL[1])


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
