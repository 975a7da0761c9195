"""Waiting for a condition with a deadline: the suite's one polling loop.

A test that waits must never wait forever: every wait names what it waits for, so a
timeout says what did not happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["eventually", "eventually_async"]


def eventually(check: Callable[[], T], what: str, *, timeout: float = 10.0, every: float = 0.05) -> T:
    """``check()``'s first truthy result within ``timeout`` seconds; an exception it raises counts as not yet."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from last
        time.sleep(every)


async def eventually_async(check: Callable[[], Awaitable[T]], what: str, *,
                           timeout: float = 10.0, every: float = 0.05) -> T:  # noqa: ASYNC109 - a bound, not a cancel scope
    """The same, for a check that is a coroutine; the event loop keeps running between tries."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = await check()
            if result:
                return result
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from last
        await asyncio.sleep(every)
