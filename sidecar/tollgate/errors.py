"""The exceptions Tollgate raises, and nothing else escapes to clients.

::

    TollgateError
    ├── ConfigError              the config file is invalid (names file, line, key, problem)
    │   └── ConfigErrors         every problem found in one file, each a ConfigError
    ├── InvalidRequest           bad input; fix the request         -> INVALID_ARGUMENT
    ├── BudgetExceeded           a pool refused the hold            -> RESOURCE_EXHAUSTED
    ├── ReservationNotFound      no reservation with that id        -> NOT_FOUND
    ├── ReservationEnded         committed, released or expired     -> FAILED_PRECONDITION
    ├── IdempotencyConflict      same key or id, a different request -> FAILED_PRECONDITION
    ├── EscalationRefused        no tier above, or too many attempts -> OUT_OF_RANGE
    ├── Unauthenticated          no or unknown credentials          -> UNAUTHENTICATED
    ├── PermissionDenied         outside the caller's grants        -> PERMISSION_DENIED
    ├── RateLimited              over the caller's request rate     -> RESOURCE_EXHAUSTED
    ├── CallerGone               the deadline passed before the answer -> DEADLINE_EXCEEDED
    └── StoreUnavailable         the budget store cannot be reached -> UNAVAILABLE

The domain raises these; ``service.py`` maps each to its gRPC status in one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "BudgetExceeded",
    "CallerGone",
    "ConfigError",
    "ConfigErrors",
    "EscalationRefused",
    "IdempotencyConflict",
    "InvalidRequest",
    "Limit",
    "PermissionDenied",
    "RateLimited",
    "Refusal",
    "ReservationEnded",
    "ReservationNotFound",
    "StoreUnavailable",
    "TollgateError",
    "Unauthenticated",
]


class TollgateError(Exception):
    """Root of every error Tollgate raises on purpose."""


class ConfigError(TollgateError):
    """The configuration is invalid. The message names the file, the key and the problem."""

    def __init__(self, problem: str, *, key: str = "", file: str = "", line: int = 0) -> None:
        self.problem = problem
        self.key = key
        self.file = file
        self.line = line
        place = f"{file}:{line}" if file and line else file
        where = ": ".join(part for part in (place, key) if part)
        super().__init__(f"{where}: {problem}" if where else problem)


class ConfigErrors(ConfigError):
    """Every problem found in a configuration, each naming its file, line and key."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.problem, key=first.key, file=first.file, line=first.line)
        self.args = ("\n".join(str(e) for e in errors) if len(errors) > 1 else str(first),)

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidRequest(TollgateError):
    """The request is malformed or out of range; the message says what to fix."""


class Limit(StrEnum):
    """Which of a pool's limits refused a hold."""

    COST = "cost"
    CALLS = "calls"
    TOKENS = "tokens"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one pool refused a hold."""

    pool_id: str
    level: str
    policy: str
    limit: Limit
    requested: int
    remaining: int
    resets_at_ms: int | None


class BudgetExceeded(TollgateError):
    """A pool in the scope cannot admit the hold. ``refusal`` says which and by how much."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal
        r = refusal
        if r.limit == "cost":
            what = f"needs {r.requested} nano-USD but {max(r.remaining, 0)} remain"
        elif r.limit == "open":
            what = "as many reservations are open as it allows at once; commit or release some first"
        else:
            what = f"needs {r.requested} {r.limit} but {max(r.remaining, 0)} remain"
        resets = "" if r.resets_at_ms is None else f"; the window resets at {r.resets_at_ms} ms since epoch"
        super().__init__(f"budget pool {r.pool_id} ({r.policy}) refused: {what}{resets}")


class ReservationNotFound(TollgateError):
    """No reservation has this id."""


class ReservationEnded(TollgateError):
    """The reservation was already committed, released or expired."""


class IdempotencyConflict(TollgateError):
    """A repeat of an ended operation carried different figures than the first."""


class EscalationRefused(TollgateError):
    """An escalation that cannot happen: the depth limit is reached or no tier is left above."""


class Unauthenticated(TollgateError):
    """Credentials are missing or unknown while callers are configured."""


class PermissionDenied(TollgateError):
    """The caller is known but the request is outside its grants."""


class RateLimited(TollgateError):
    """The caller is over its configured rate."""


class CallerGone(TollgateError):
    """The caller stopped waiting before the answer; what the call did was undone."""


class StoreUnavailable(TollgateError):
    """The budget store did not answer in time or refused the connection."""
