"""Python client of the Tollgate sidecar.

Before each LLM call, ask the sidecar which model to use and hold the call's
estimated cost against the caller's budgets; after it, commit what the provider
reported::

    from tollgate_client import AsyncClient, Scope, usage_from_openai

    async with AsyncClient() as tollgate:
        decision = await tollgate.route(Scope(org="acme", user="alice"), messages=messages, reserve=True)
        async with tollgate.reservation(decision) as held:
            response = await openai.chat.completions.create(model=decision.model, messages=messages)
            await held.commit(usage_from_openai(response))

Money is an ``int`` of nano-dollars throughout; ``format_usd`` renders it. A
failed call raises a ``TollgateClientError`` subclass chosen by the sidecar's
error reason (``.reason``, such as ``"BUDGET_EXCEEDED"`` or ``"RATE_LIMITED"``).
"""

from ._client import DEFAULT_TARGET, AsyncClient, Client
from ._errors import (
    BUDGET_EXCEEDED_TRAILER,
    ERROR_DOMAIN,
    STATUS_DETAILS_TRAILER,
    BudgetExceededError,
    EscalationRefusedError,
    IdempotencyConflictError,
    InvalidRequestError,
    RateLimitedError,
    ReservationEndedError,
    ReservationNotFoundError,
    TollgateClientError,
    UnavailableError,
)
from ._escalate import Attempt, Cascade, call_with_escalation
from ._money import NANOS_PER_USD, format_usd
from ._reservation import AsyncHeldReservation, HeldReservation, ReservationSource
from ._retry import DEFAULT_RETRY, Retry, new_idempotency_key
from ._shadow import call_with_shadow, default_judge
from ._types import (
    Candidate,
    CommitResult,
    Decision,
    EscalateOptions,
    Escalation,
    ExtendResult,
    MessageLike,
    PoolState,
    Priority,
    ReleaseResult,
    Reservation,
    ReserveOptions,
    ReserveResult,
    RouteOptions,
    Scope,
    Shadow,
    TaskQuality,
    TierQuality,
    Usage,
)
from ._usage import usage_from_anthropic, usage_from_openai
from ._wrappers import (
    AsyncGatedStream,
    AttemptOutcome,
    CallOutcome,
    Check,
    CheckFailedError,
    GatedStream,
    MissingProviderClientError,
    OutcomeHook,
    Settlement,
)
from .anthropic import AsyncGatedAnthropic, GatedAnthropic
from .openai import AsyncGatedOpenAI, GatedOpenAI

__all__ = [
    "BUDGET_EXCEEDED_TRAILER",
    "DEFAULT_RETRY",
    "DEFAULT_TARGET",
    "ERROR_DOMAIN",
    "NANOS_PER_USD",
    "STATUS_DETAILS_TRAILER",
    "AsyncClient",
    "AsyncGatedAnthropic",
    "AsyncGatedOpenAI",
    "AsyncGatedStream",
    "AsyncHeldReservation",
    "Attempt",
    "AttemptOutcome",
    "BudgetExceededError",
    "CallOutcome",
    "Candidate",
    "Cascade",
    "Check",
    "CheckFailedError",
    "Client",
    "CommitResult",
    "Decision",
    "EscalateOptions",
    "Escalation",
    "EscalationRefusedError",
    "ExtendResult",
    "GatedAnthropic",
    "GatedOpenAI",
    "GatedStream",
    "HeldReservation",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "MessageLike",
    "MissingProviderClientError",
    "OutcomeHook",
    "PoolState",
    "Priority",
    "RateLimitedError",
    "ReleaseResult",
    "Reservation",
    "ReservationEndedError",
    "ReservationNotFoundError",
    "ReservationSource",
    "ReserveOptions",
    "ReserveResult",
    "Retry",
    "RouteOptions",
    "Scope",
    "Settlement",
    "Shadow",
    "TaskQuality",
    "TierQuality",
    "TollgateClientError",
    "UnavailableError",
    "Usage",
    "call_with_escalation",
    "call_with_shadow",
    "default_judge",
    "format_usd",
    "new_idempotency_key",
    "usage_from_anthropic",
    "usage_from_openai",
]
