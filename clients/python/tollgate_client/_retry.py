"""Retrying a call the sidecar did not answer, without ever holding money twice.

A call that fails with UNAVAILABLE (the sidecar could not be reached, or the
connection dropped) or DEADLINE_EXCEEDED (it did not answer in time) may or may
not have taken effect. Every call that moves money is idempotent on the sidecar
(Commit, Release and Extend by reservation id, Escalate by the failed
reservation's id, Reserve and Route with ``reserve=True`` by the idempotency key
the client fills in before the first attempt), so it is simply sent again.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

__all__ = ["DEFAULT_RETRY", "MONEY", "NEVER", "READ", "Attempts", "Retry", "new_idempotency_key"]

MONEY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""What a call that moves money is retried on: whether it took effect is unknown, and a repeat is harmless."""

READ = frozenset({grpc.StatusCode.UNAVAILABLE})
"""What a read (GetBudget, GetQuality, Route without a reservation) is retried on: a slow sidecar is not piled on."""

NEVER: frozenset[grpc.StatusCode] = frozenset()
"""Feedback: each call counts one more sample, so a repeat would count an answer twice."""


@dataclass(frozen=True, slots=True)
class Retry:
    """How a call that failed with UNAVAILABLE or DEADLINE_EXCEEDED is tried again.

    - ``attempts``: attempts in all, the first included (1 = never retry) [4]
    - ``budget_s``: no retry starts later than this many seconds after the call
      began, and a retry's deadline never runs past it; the first attempt always
      gets the client's full ``timeout`` [5.0]
    - ``backoff_s``: the wait before the first retry is drawn uniformly from
      [0, ``backoff_s``) ("full jitter"); it doubles with each retry [0.05]
    - ``max_backoff_s``: the cap of that doubling [1.0]

    Other statuses (a budget refusal, an invalid request, an ended reservation,
    ...) are never retried.
    """

    attempts: int = 4
    budget_s: float = 5.0
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"Retry.attempts must be an int of at least 1, got {self.attempts!r}")
        for name in ("budget_s", "backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ValueError(f"Retry.{name} must be a finite number of seconds, not negative, got {value!r}")
        if self.max_backoff_s < self.backoff_s:
            raise ValueError(f"Retry.max_backoff_s ({self.max_backoff_s}) is below backoff_s ({self.backoff_s})")

    def backoff(self, retry: int, draw: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``retry`` (1 for the first), full jitter."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0 ** (retry - 1))
        return ceiling * draw()


DEFAULT_RETRY = Retry()
"""The clients' default policy."""


def new_idempotency_key() -> str:
    """A fresh random idempotency key: 32 hex characters."""
    return secrets.token_hex(16)


class Attempts:
    """One call's retry bookkeeping, shared by the blocking and the asyncio client."""

    __slots__ = ("_clock", "_codes", "_deadline", "_policy", "_timeout", "count")

    def __init__(self, policy: Retry | None, codes: frozenset[grpc.StatusCode], timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._codes = codes if policy is not None else NEVER
        self._timeout = timeout
        self._clock = clock
        self._deadline = clock() + (policy.budget_s if policy is not None else 0.0)
        self.count = 0
        """Attempts started so far."""

    def timeout(self) -> float:
        """The deadline of the attempt about to start, in seconds from now; counts the attempt."""
        self.count += 1
        if self.count == 1:
            return self._timeout
        return max(0.0, min(self._timeout, self._deadline - self._clock()))

    def retry_after(self, code: grpc.StatusCode) -> float | None:
        """How long to wait before trying again after ``code``, or None to give up."""
        policy = self._policy
        if policy is None or code not in self._codes or self.count >= policy.attempts:
            return None
        wait = policy.backoff(self.count)
        # A retry that would start at or past the budget's end has no time left to answer in.
        if self._clock() + wait >= self._deadline:
            return None
        return wait
