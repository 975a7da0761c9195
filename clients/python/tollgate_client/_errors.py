"""The exceptions the client raises for a failed RPC.

::

    TollgateClientError            any other status (INTERNAL, UNAUTHENTICATED, ...)
    ├── BudgetExceededError        RESOURCE_EXHAUSTED: a budget pool refused the hold
    ├── InvalidRequestError        INVALID_ARGUMENT: fix the request
    ├── ReservationNotFoundError   NOT_FOUND: no reservation with that id
    ├── ReservationEndedError      FAILED_PRECONDITION: already committed, released or expired,
    │                              or a repeated commit carried different figures
    ├── EscalationRefusedError     OUT_OF_RANGE: no escalation left (depth limit or top tier)
    └── UnavailableError           UNAVAILABLE or DEADLINE_EXCEEDED: the sidecar did not answer

Arguments the client can check itself (a missing prompt, a negative count)
raise ``ValueError`` or ``TypeError`` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from . import _wire
from .v1 import tollgate_pb2 as pb

__all__ = [
    "BUDGET_EXCEEDED_TRAILER",
    "BudgetExceededError",
    "InvalidRequestError",
    "ReservationEndedError",
    "ReservationNotFoundError",
    "TollgateClientError",
    "UnavailableError",
    "from_rpc_error",
]

BUDGET_EXCEEDED_TRAILER = "tollgate-budget-exceeded-bin"
"""Trailing-metadata key under which the sidecar sends a serialized ``tollgate.v1.BudgetExceeded``."""


class TollgateClientError(Exception):
    """Root of the errors raised for an RPC the sidecar refused or could not answer.

    ``code`` is the ``grpc.StatusCode`` and ``details`` the sidecar's message, both
    of the last attempt; ``attempts`` is how many attempts were made (see
    ``Retry``). ``idempotency_key`` is the key a Reserve or a reserving Route was
    sent with, the caller's or the generated one (else ``""``): a later retry of
    the same call with that key cannot hold twice.
    """

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self.code = code
        self.details = details
        self.attempts = 1
        self.idempotency_key = ""


class BudgetExceededError(TollgateClientError):
    """A budget pool in the scope cannot admit the call (RESOURCE_EXHAUSTED).

    The fields say which pool refused and by how much: ``pool_id`` (e.g.
    ``"user:acme/alice"``), ``level``, ``policy``, ``limit`` (``"cost"``, ``"calls"`` or
    ``"tokens"``), ``requested_nanos`` and ``remaining_nanos`` (in the unit of the
    limit: nano-dollars for cost, else calls or tokens) and ``resets_at`` (when
    the pool's window resets; ``None`` if it never does). They are empty when
    the status came without the sidecar's ``BudgetExceeded`` trailer.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str = "",
        *,
        pool_id: str = "",
        level: str = "",
        policy: str = "",
        limit: str = "",
        requested_nanos: int = 0,
        remaining_nanos: int = 0,
        resets_at: datetime | None = None,
    ) -> None:
        super().__init__(code, details)
        self.pool_id = pool_id
        self.level = level
        self.policy = policy
        self.limit = limit
        self.requested_nanos = requested_nanos
        self.remaining_nanos = remaining_nanos
        self.resets_at = resets_at


class InvalidRequestError(TollgateClientError):
    """The sidecar rejected the request as malformed or out of range (INVALID_ARGUMENT)."""


class ReservationNotFoundError(TollgateClientError):
    """No reservation has this id (NOT_FOUND)."""


class ReservationEndedError(TollgateClientError):
    """The reservation was already committed, released or expired (FAILED_PRECONDITION).

    Also raised when a repeated commit carries different figures than the first.
    """


class EscalationRefusedError(TollgateClientError):
    """The call cannot be escalated further: its depth limit or the top tier is reached (OUT_OF_RANGE)."""


class UnavailableError(TollgateClientError):
    """The sidecar could not be reached or did not answer in time (UNAVAILABLE, DEADLINE_EXCEEDED).

    The client has already retried the call as its ``Retry`` policy allows;
    every call that moves money is idempotent by reservation id or idempotency
    key, so it may be sent again later.
    """


_BY_CODE: dict[grpc.StatusCode, type[TollgateClientError]] = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: BudgetExceededError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: ReservationNotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: ReservationEndedError,
    grpc.StatusCode.OUT_OF_RANGE: EscalationRefusedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
}


def from_rpc_error(error: grpc.RpcError) -> TollgateClientError:
    """The client exception for a failed RPC, from a sync or an asyncio grpc error."""
    # Only errors that are also a grpc.Call carry a status; an RpcError raised
    # by an interceptor may not.
    code = _ask(error, "code")
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = _ask(error, "details") or ""
    cls = _BY_CODE.get(code, TollgateClientError)
    if cls is BudgetExceededError:
        return BudgetExceededError(code, details, **_refusal(_ask(error, "trailing_metadata") or ()))
    return cls(code, details)


def _ask(error: grpc.RpcError, method: str) -> Any:
    accessor = getattr(error, method, None)
    return accessor() if callable(accessor) else None


def _refusal(trailing_metadata: Iterable[tuple[str, str | bytes]]) -> dict[str, Any]:
    for key, value in trailing_metadata:
        if key == BUDGET_EXCEEDED_TRAILER and isinstance(value, bytes):
            try:
                refusal = pb.BudgetExceeded.FromString(value)
            except DecodeError:
                # The status itself is what matters; a damaged trailer only loses the detail.
                return {}
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
