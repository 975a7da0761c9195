"""Cascades: try the cheap model, check its output, escalate only when the check fails.

Many answers a cheap model gets right; some it gets wrong in a way the application
can see (JSON that does not parse, code whose tests fail, a low self-reported
confidence). ``call_with_escalation`` runs the call on the routed model, runs the
application's check on the output, and on a failure asks the sidecar for the next
attempt one tier up (``Escalate``), reserving for it and committing the failed one
in the same round trip. The attempts stay linked in the ledger, the decision log
and the trace; the sidecar stops the cascade at its configured depth.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar, Unpack

from ._client import AsyncClient
from ._errors import EscalationRefusedError
from ._types import Decision, MessageLike, RouteOptions, Scope, Usage

__all__ = ["Attempt", "Cascade", "call_with_escalation"]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call of the cascade: where it ran and what the check said (``""`` = passed)."""

    model: str
    tier: str
    reservation_id: str
    problem: str
    charged_nanos: int


@dataclass(frozen=True, slots=True)
class Cascade(Generic[R]):
    """The outcome: the last response, whether it passed the check, and every attempt in order."""

    response: R
    passed: bool
    attempts: tuple[Attempt, ...]

    @property
    def charged_nanos(self) -> int:
        """What the whole cascade cost."""
        return sum(a.charged_nanos for a in self.attempts)


# messages is a key of RouteOptions taken by name, so that every attempt can be given the same input.
async def call_with_escalation(  # type: ignore[misc]
    client: AsyncClient,
    scope: Scope,
    call: Callable[[Decision], Awaitable[R]],
    *,
    check: Callable[[R], str | None],
    usage: Callable[[R], Usage],
    messages: Iterable[MessageLike] | None = None,
    next_messages: Callable[[R, str], Iterable[MessageLike]] | None = None,
    **route: Unpack[RouteOptions],
) -> Cascade[R]:
    """Route and reserve, ``call(decision)``, ``check`` the output; escalate while it fails.

    ``check`` returns ``None`` (or ``""``) for an acceptable output, else a short
    reason such as ``"invalid_json"``. ``next_messages(response, problem)`` may give
    the next attempt a different input (say, the failed answer and the complaint);
    by default it gets the same messages. When the sidecar refuses a further
    escalation (depth limit, top tier), the last response is returned with
    ``passed=False``. A call that raises releases its reservation and propagates.
    """
    messages = list(messages) if messages is not None else None
    route_options = {k: v for k, v in route.items() if k not in ("reserve",)}
    decision = await client.route(scope, messages=messages, reserve=True, **route_options)
    attempts: list[Attempt] = []
    while True:
        reservation = decision.reservation
        assert reservation is not None
        try:
            response = await call(decision)
        except BaseException:
            await client.release(reservation.reservation_id)
            raise
        problem = check(response) or ""
        spent = usage(response)
        if not problem:
            done = await client.commit(reservation.reservation_id, spent)
            attempts.append(Attempt(decision.model, decision.tier, reservation.reservation_id, "", done.charged_nanos))
            return Cascade(response, True, tuple(attempts))
        if next_messages is not None:
            messages = list(next_messages(response, problem))
        try:
            escalation = await client.escalate(
                reservation.reservation_id, scope, messages=messages, input_tokens=route.get("input_tokens"),
                reason=problem, usage=spent, needs_tools=route.get("needs_tools", False),
                needs_vision=route.get("needs_vision", False), needs_json=route.get("needs_json", False),
                latency=route.get("latency", ""), max_output_tokens=route.get("max_output_tokens", 0),
            )
        except EscalationRefusedError:
            done = await client.commit(reservation.reservation_id, spent)
            attempts.append(Attempt(decision.model, decision.tier, reservation.reservation_id, problem,
                                    done.charged_nanos))
            return Cascade(response, False, tuple(attempts))
        assert escalation.previous_commit is not None
        attempts.append(Attempt(decision.model, decision.tier, reservation.reservation_id, problem,
                                escalation.previous_commit.charged_nanos))
        decision = escalation.decision
