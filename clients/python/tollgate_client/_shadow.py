"""Shadow comparisons: the quality guard's eyes on the cheap tier.

When the sidecar samples a request (``decision.shadow`` is set), the application
also calls the shadow model in the background, compares the two answers and
reports the comparison as feedback. The shadow call is held against the quality
pool, so it can never eat the product's budget.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._client import AsyncClient
from ._types import Decision, Usage

__all__ = ["call_with_shadow", "default_judge"]

R = TypeVar("R")


def default_judge(primary: Any, shadow: Any) -> float:
    """1.0 when the answers agree: equal as JSON if both parse, else equal as trimmed text."""
    try:
        return 1.0 if json.loads(primary) == json.loads(shadow) else 0.0
    except (TypeError, ValueError):
        return 1.0 if " ".join(str(primary).split()) == " ".join(str(shadow).split()) else 0.0


async def call_with_shadow(
    client: AsyncClient,
    decision: Decision,
    call: Callable[[str], Awaitable[R]],
    *,
    usage: Callable[[R], Usage],
    answer: Callable[[R], Any] = lambda response: response,
    judge: Callable[[Any, Any], float] = default_judge,
) -> tuple[R, asyncio.Task[float | None] | None]:
    """Run ``call(decision.model)`` under its reservation; if sampled, compare with the shadow model.

    Returns the primary response at once, and the background task of the shadow
    comparison (``None`` if the request was not sampled). The task resolves to the
    score it reported, or ``None`` if the shadow call failed (its hold is released).
    """
    async with client.reservation(decision) as held:
        response = await call(decision.model)
        await held.commit(usage(response))
    if decision.shadow is None or decision.reservation is None:
        return response, None
    primary_id = decision.reservation.reservation_id

    async def compare() -> float | None:
        shadow = decision.shadow
        assert shadow is not None
        try:
            if shadow.reservation is not None:
                async with client.reservation(shadow.reservation) as shadow_held:
                    other = await call(shadow.model)
                    await shadow_held.commit(usage(other))
            else:
                other = await call(shadow.model)
        except Exception:
            return None
        score = float(judge(answer(response), answer(other)))
        await client.feedback(primary_id, score, "shadow_comparison")
        return score

    return response, asyncio.create_task(compare())
