"""The exceptions the client raises for a failed RPC.

Every error answer of the sidecar carries a ``google.rpc.ErrorInfo`` (domain
``tollgate.dev``) in the standard ``grpc-status-details-bin`` trailer, and its
reason picks the class::

    TollgateClientError              INTERNAL, UNAUTHENTICATED, PERMISSION_DENIED, and
    │                                what gRPC itself refused (a message too large, ...)
    ├── BudgetExceededError          BUDGET_EXCEEDED: a budget pool refused the hold
    ├── RateLimitedError             RATE_LIMITED: the caller is over its request rate
    ├── InvalidRequestError          INVALID_REQUEST: fix the request
    ├── ReservationNotFoundError     RESERVATION_NOT_FOUND: no reservation with that id
    ├── ReservationEndedError        RESERVATION_ENDED: already committed, released or expired
    │   └── IdempotencyConflictError IDEMPOTENCY_CONFLICT: a repeat carried other figures
    ├── EscalationRefusedError       ESCALATION_REFUSED: no escalation left (depth limit or top tier)
    └── UnavailableError             STORE_UNAVAILABLE, CALLER_GONE, or no answer at all
                                     (UNAVAILABLE, DEADLINE_EXCEEDED)

A status without that ErrorInfo (from an older sidecar, or made by gRPC itself)
is mapped by its code: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
OUT_OF_RANGE, UNAVAILABLE and DEADLINE_EXCEEDED as above; RESOURCE_EXHAUSTED is
a ``BudgetExceededError`` only when it carries the sidecar's ``BudgetExceeded``
detail, else a plain ``TollgateClientError`` (a message over gRPC's size limit
is RESOURCE_EXHAUSTED too).

Arguments the client can check itself (a missing prompt, a negative count)
raise ``ValueError`` or ``TypeError`` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from . import _wire
from .v1 import tollgate_pb2 as pb

__all__ = [
    "BUDGET_EXCEEDED_TRAILER",
    "ERROR_DOMAIN",
    "STATUS_DETAILS_TRAILER",
    "BudgetExceededError",
    "EscalationRefusedError",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "RateLimitedError",
    "ReservationEndedError",
    "ReservationNotFoundError",
    "TollgateClientError",
    "UnavailableError",
    "from_rpc_error",
    "from_status",
]

BUDGET_EXCEEDED_TRAILER = "tollgate-budget-exceeded-bin"
"""Trailing-metadata key under which the sidecar sends a serialized ``tollgate.v1.BudgetExceeded``."""

STATUS_DETAILS_TRAILER = "grpc-status-details-bin"
"""The standard trailer with a serialized ``google.rpc.Status``, whose details carry the ``ErrorInfo``."""

ERROR_DOMAIN = "tollgate.dev"
"""The ``ErrorInfo.domain`` of the sidecar's errors; an ErrorInfo of another domain is not read."""


class TollgateClientError(Exception):
    """Root of the errors raised for an RPC the sidecar refused or could not answer.

    ``code`` is the ``grpc.StatusCode`` and ``details`` the sidecar's message, both
    of the last attempt; ``reason`` is the sidecar's ``ErrorInfo`` reason (such as
    ``"RATE_LIMITED"``), ``""`` when the status carried none (an older sidecar, or
    an error made by gRPC itself). ``attempts`` is how many attempts were made
    (see ``Retry``). ``idempotency_key`` is the key a Reserve or a reserving Route
    was sent with, the caller's or the generated one (else ``""``): a later retry
    of the same call with that key cannot hold twice.
    """

    def __init__(self, code: grpc.StatusCode, details: str = "", *, reason: str = "") -> None:
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self.code = code
        self.details = details
        self.reason = reason
        self.attempts = 1
        self.idempotency_key = ""


class BudgetExceededError(TollgateClientError):
    """A budget pool in the scope cannot admit the call (BUDGET_EXCEEDED, RESOURCE_EXHAUSTED).

    The fields say which pool refused and by how much: ``pool_id`` (e.g.
    ``"user:acme/alice"``), ``level``, ``policy``, ``limit`` (``"cost"``, ``"calls"``,
    ``"tokens"`` or ``"open"``), ``requested_nanos`` and ``remaining_nanos`` (in the
    unit of the limit: nano-dollars for cost, else calls or tokens) and
    ``resets_at`` (when the pool's window resets; ``None`` if it never does). They
    are empty when the status came without the sidecar's ``BudgetExceeded`` detail.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str = "",
        *,
        reason: str = "",
        pool_id: str = "",
        level: str = "",
        policy: str = "",
        limit: str = "",
        requested_nanos: int = 0,
        remaining_nanos: int = 0,
        resets_at: datetime | None = None,
    ) -> None:
        super().__init__(code, details, reason=reason)
        self.pool_id = pool_id
        self.level = level
        self.policy = policy
        self.limit = limit
        self.requested_nanos = requested_nanos
        self.remaining_nanos = remaining_nanos
        self.resets_at = resets_at


class RateLimitedError(TollgateClientError):
    """The caller is over the request rate configured for it (RATE_LIMITED, RESOURCE_EXHAUSTED).

    Nothing was held or counted against a budget; the sidecar's message says when
    to try again. Not a ``BudgetExceededError``: no pool refused, and the client
    does not retry it by itself.
    """


class InvalidRequestError(TollgateClientError):
    """The sidecar rejected the request as malformed or out of range (INVALID_REQUEST, INVALID_ARGUMENT)."""


class ReservationNotFoundError(TollgateClientError):
    """No reservation has this id (RESERVATION_NOT_FOUND, NOT_FOUND)."""


class ReservationEndedError(TollgateClientError):
    """The reservation was already committed, released or expired (RESERVATION_ENDED, FAILED_PRECONDITION).

    From a sidecar that sends no reason, also a repeated call that carried
    different figures than the first (now an ``IdempotencyConflictError``).
    """


class IdempotencyConflictError(ReservationEndedError):
    """A repeat carried different figures than the first (IDEMPOTENCY_CONFLICT, FAILED_PRECONDITION).

    A commit of an already committed reservation with other usage, or a reserve
    reusing an idempotency key for another request. A ``ReservationEndedError``,
    as a sidecar without reasons reported it.
    """


class EscalationRefusedError(TollgateClientError):
    """The call cannot be escalated further: its depth limit or the top tier is reached (ESCALATION_REFUSED)."""


class UnavailableError(TollgateClientError):
    """The sidecar could not be reached, did not answer in time, or could not reach its budget store.

    Raised for UNAVAILABLE and DEADLINE_EXCEEDED, with the reason STORE_UNAVAILABLE
    (the sidecar's store did not answer), CALLER_GONE (the sidecar saw the call's
    deadline pass and undid what it held) or none (no answer at all). The client
    has already retried the call as its ``Retry`` policy allows; every call that
    moves money is idempotent by reservation id or idempotency key, so it may be
    sent again later.
    """


_BY_REASON: dict[str, type[TollgateClientError]] = {
    "INVALID_REQUEST": InvalidRequestError,
    "BUDGET_EXCEEDED": BudgetExceededError,
    "RATE_LIMITED": RateLimitedError,
    "RESERVATION_NOT_FOUND": ReservationNotFoundError,
    "RESERVATION_ENDED": ReservationEndedError,
    "IDEMPOTENCY_CONFLICT": IdempotencyConflictError,
    "ESCALATION_REFUSED": EscalationRefusedError,
    "STORE_UNAVAILABLE": UnavailableError,
    "CALLER_GONE": UnavailableError,
    "UNAUTHENTICATED": TollgateClientError,
    "PERMISSION_DENIED": TollgateClientError,
    "INTERNAL": TollgateClientError,
}

# Without a reason: RESOURCE_EXHAUSTED is not here, as it is a budget refusal only with the refusal's detail.
_BY_CODE: dict[grpc.StatusCode, type[TollgateClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: ReservationNotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: ReservationEndedError,
    grpc.StatusCode.OUT_OF_RANGE: EscalationRefusedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
}


def from_rpc_error(error: grpc.RpcError) -> TollgateClientError:
    """The client exception for a failed RPC, from a sync or an asyncio grpc error.

    The class comes from the ``ErrorInfo`` reason of domain ``tollgate.dev`` when
    the status carries one the client knows, else from the status code.
    """
    # Only errors that are also a grpc.Call carry a status; an RpcError raised
    # by an interceptor may not.
    code = _ask(error, "code")
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = _ask(error, "details") or ""
    trailers = tuple(_ask(error, "trailing_metadata") or ())
    anys = _status_details(trailers)
    reason = _reason(anys)
    return _error(code, details, reason, trailers, anys)


def from_status(code: grpc.StatusCode, details: str, reason: str) -> TollgateClientError:
    """The client exception for a status that came inside an answer (one commit of a CommitBatch)."""
    return _error(code, details, reason, (), ())


def _error(code: grpc.StatusCode, details: str, reason: str, trailers: tuple[tuple[str, str | bytes], ...],
           anys: tuple[tuple[str, bytes], ...]) -> TollgateClientError:
    cls = _BY_REASON.get(reason)
    if cls is None:
        cls = _BY_CODE.get(code, TollgateClientError)
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED and _carries_refusal(trailers, anys):
            cls = BudgetExceededError
    if cls is BudgetExceededError:
        return BudgetExceededError(code, details, reason=reason, **_refusal(trailers, anys))
    return cls(code, details, reason=reason)


def _ask(error: grpc.RpcError, method: str) -> Any:
    accessor = getattr(error, method, None)
    return accessor() if callable(accessor) else None


def _status_messages() -> tuple[type[Message], type[Message]]:
    """``google.rpc.Status`` and ``google.rpc.ErrorInfo``, as far as the client reads them.

    Declared here, in a pool of the client's own, so that decoding the standard
    trailer needs nothing but protobuf. On the wire they are the real messages:
    ``details`` is a repeated ``google.protobuf.Any`` (type_url 1, value 2), and
    what is left out (ErrorInfo's metadata) is skipped.
    """
    string, int32, bytes_ = (descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                             descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                             descriptor_pb2.FieldDescriptorProto.TYPE_BYTES)
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    package = "tollgate_client.status_details"

    def message(
        name: str,
        *fields: tuple[str, int, descriptor_pb2.FieldDescriptorProto.Type.ValueType,
                       descriptor_pb2.FieldDescriptorProto.Label.ValueType, str],
    ) -> descriptor_pb2.DescriptorProto:
        return descriptor_pb2.DescriptorProto(name=name, field=[
            descriptor_pb2.FieldDescriptorProto(name=n, number=number, type=kind, label=label,
                                                type_name=type_name or None)
            for n, number, kind, label, type_name in fields
        ])

    file = descriptor_pb2.FileDescriptorProto(
        name="tollgate_client/status_details.proto", package=package, syntax="proto3",
        message_type=[
            message("Any", ("type_url", 1, string, optional, ""), ("value", 2, bytes_, optional, "")),
            message("Status", ("code", 1, int32, optional, ""), ("message", 2, string, optional, ""),
                    ("details", 3, descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, repeated, f".{package}.Any")),
            message("ErrorInfo", ("reason", 1, string, optional, ""), ("domain", 2, string, optional, "")),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Status")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.ErrorInfo")))


_Status, _ErrorInfo = _status_messages()
_ERROR_INFO_TYPE = "google.rpc.ErrorInfo"
_BUDGET_EXCEEDED_TYPE = pb.BudgetExceeded.DESCRIPTOR.full_name


def _status_details(trailers: Iterable[tuple[str, str | bytes]]) -> tuple[tuple[str, bytes], ...]:
    """The (type name, value) of each detail in the status trailer; none if it is missing or damaged."""
    for key, value in trailers:
        if key == STATUS_DETAILS_TRAILER and isinstance(value, bytes):
            try:
                status: Any = _Status.FromString(value)
            except DecodeError:
                return ()
            return tuple((detail.type_url.rpartition("/")[2], detail.value) for detail in status.details)
    return ()


def _reason(anys: Iterable[tuple[str, bytes]]) -> str:
    """The reason of the first ErrorInfo of the sidecar's domain, or ``""``."""
    for type_name, value in anys:
        if type_name == _ERROR_INFO_TYPE:
            try:
                info: Any = _ErrorInfo.FromString(value)
            except DecodeError:
                continue
            if info.domain == ERROR_DOMAIN and info.reason:
                return str(info.reason)
    return ""


def _carries_refusal(trailers: Iterable[tuple[str, str | bytes]], anys: Iterable[tuple[str, bytes]]) -> bool:
    """Whether the status came with the sidecar's BudgetExceeded detail, readable or not."""
    return (any(key == BUDGET_EXCEEDED_TRAILER for key, _ in trailers)
            or any(type_name == _BUDGET_EXCEEDED_TYPE for type_name, _ in anys))


def _refusal(trailers: Iterable[tuple[str, str | bytes]], anys: Iterable[tuple[str, bytes]]) -> dict[str, Any]:
    """The fields of a BudgetExceededError: from the sidecar's trailer, else from the status details."""
    candidates = [value for key, value in trailers if key == BUDGET_EXCEEDED_TRAILER and isinstance(value, bytes)]
    candidates += [value for type_name, value in anys if type_name == _BUDGET_EXCEEDED_TYPE]
    for value in candidates:
        try:
            refusal = pb.BudgetExceeded.FromString(value)
        except DecodeError:
            # The status itself is what matters; a damaged detail only loses the figures.
            continue
        return {
            "pool_id": refusal.pool_id,
            "level": _wire.level_name(refusal.level),
            "policy": _wire.policy_name(refusal.policy),
            "limit": refusal.limit,
            "requested_nanos": refusal.requested_nanos,
            "remaining_nanos": refusal.remaining_nanos,
            "resets_at": _wire.timestamp(refusal.resets_at) if refusal.HasField("resets_at") else None,
        }
    return {}
