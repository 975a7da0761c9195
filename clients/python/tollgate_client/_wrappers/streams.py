"""The streams the wrappers hand back, and the keepers that extend a reservation while its call runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._errors import ReservationEndedError, ReservationNotFoundError
from .common import CallOutcome, Meter

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["AsyncGatedStream", "GatedStream", "Hold"]

T = TypeVar("T")
log = logging.getLogger("tollgate_client")

_MIN_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class Hold:
    """The reservation of one attempt, with where its call goes."""

    model: str
    provider: str
    tier: str
    reservation_id: str
    expires_at: datetime
    estimated_input_tokens: int


def _interval(hold: Hold, ttl_ms: int) -> float:
    """Extend at half the reservation's lifetime: the wrapper's TTL, or as long as the first expiry was away.

    Measured on the local clock from then on, so a sidecar whose clock is off cannot make the keeper late.
    """
    lifetime = ttl_ms / 1000 if ttl_ms else (hold.expires_at - datetime.now(UTC)).total_seconds()
    return max(lifetime / 2, _MIN_INTERVAL_S)


class AsyncKeeper:
    """Extends a reservation every half lifetime while its call runs, in a task of the running loop.

    Most calls end long before half their reservation's lifetime, so the keeper waits on a timer of
    the loop, which costs far less to arm and cancel than a task; the task starts when the timer fires.
    """

    def __init__(self, tollgate: AsyncClient, hold: Hold, ttl_ms: int) -> None:
        self.extensions = 0
        self._task: asyncio.Task[None] | None = None
        interval = _interval(hold, ttl_ms)
        self._timer = asyncio.get_running_loop().call_later(interval, self._start, tollgate, hold, ttl_ms, interval)

    def _start(self, tollgate: AsyncClient, hold: Hold, ttl_ms: int, interval: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(tollgate, hold, ttl_ms, interval))

    async def _run(self, tollgate: AsyncClient, hold: Hold, ttl_ms: int, interval: float) -> None:
        while True:
            try:
                await tollgate.extend(hold.reservation_id, ttl_ms)
            except (ReservationEndedError, ReservationNotFoundError) as error:
                log.warning("Tollgate reservation %s could not be extended: %s", hold.reservation_id, error)
                return
            except Exception as error:
                log.warning("extending Tollgate reservation %s failed (tried again later): %r",
                            hold.reservation_id, error)
            else:
                self.extensions += 1
            await asyncio.sleep(interval)

    def stop(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop runs the task no more
                self._task.cancel()


class ThreadKeeper:
    """Extends a reservation every half lifetime while its call runs, from a daemon thread."""

    def __init__(self, tollgate: Client, hold: Hold, ttl_ms: int) -> None:
        self.extensions = 0
        self._stopped = threading.Event()
        threading.Thread(target=self._run, args=(tollgate, hold, ttl_ms), name="tollgate-extend",
                         daemon=True).start()

    def _run(self, tollgate: Client, hold: Hold, ttl_ms: int) -> None:
        interval = _interval(hold, ttl_ms)
        while not self._stopped.wait(interval):
            try:
                tollgate.extend(hold.reservation_id, ttl_ms)
            except Exception as error:
                if self._stopped.is_set():  # the call ended meanwhile: its reservation is ended, as it should be
                    return
                if isinstance(error, ReservationEndedError | ReservationNotFoundError):
                    log.warning("Tollgate reservation %s could not be extended: %s", hold.reservation_id, error)
                    return
                log.warning("extending Tollgate reservation %s failed (tried again later): %r",
                            hold.reservation_id, error)
                continue
            self.extensions += 1

    def stop(self) -> None:
        self._stopped.set()


class GatedStream(Generic[T]):
    """The SDK's stream, passed through item by item; its reservation ends when the stream does.

    Iterating to the end, an error, ``close()`` or leaving ``with`` ends it: the usage the
    provider reported is committed (or, failing that, an estimate of the output seen; or the
    reservation is released when nothing was billed). ``outcome`` says how, once it has
    ended. Any other attribute is the SDK stream's (``response``, for one).

    A stream dropped without any of these stops being extended and the sidecar's expiry
    policy ends its hold: iterate it, close it, or use ``with``.
    """

    def __init__(self, inner: Any, meter: Meter, finish: Callable[[Meter, BaseException | None], CallOutcome]) -> None:
        self._inner = inner
        self._meter = meter
        self._finish = finish
        self._ended = False
        self._outcome: CallOutcome | None = None

    @property
    def outcome(self) -> CallOutcome | None:
        """How the call ended, once the stream has; ``None`` before."""
        return self._outcome

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._ended:
            raise StopIteration
        try:
            item = self._inner.__next__()
        except StopIteration:
            self._end(None)
            raise
        except BaseException as error:
            self._end(error)
            raise
        self._meter.observe(item)
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the SDK stream and end the reservation for what was seen so far."""
        try:
            self._inner.close()
        finally:
            self._end(None)

    def _end(self, error: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._outcome = self._finish(self._meter, error)

    def __enter__(self) -> GatedStream[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class AsyncGatedStream(Generic[T]):
    """The SDK's async stream, passed through item by item; its reservation ends when the stream does.

    As ``GatedStream``, with ``async for``, ``await close()`` and ``async with``.
    """

    def __init__(
        self, inner: Any, meter: Meter,
        finish: Callable[[Meter, BaseException | None], Coroutine[Any, Any, CallOutcome]],
    ) -> None:
        self._inner = inner
        self._meter = meter
        self._finish = finish
        self._ended = False
        self._outcome: CallOutcome | None = None

    @property
    def outcome(self) -> CallOutcome | None:
        """How the call ended, once the stream has; ``None`` before."""
        return self._outcome

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._ended:
            raise StopAsyncIteration
        try:
            item = await self._inner.__anext__()
        except StopAsyncIteration:
            await self._end(None)
            raise
        except BaseException as error:
            await self._end(error)
            raise
        self._meter.observe(item)
        return item  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Close the SDK stream and end the reservation for what was seen so far."""
        try:
            await self._inner.close()
        finally:
            await self._end(None)

    async def aclose(self) -> None:
        """Alias of ``close()``."""
        await self.close()

    async def _end(self, error: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._outcome = await self._finish(self._meter, error)

    async def __aenter__(self) -> AsyncGatedStream[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)
