"""Commits sent in the background: once the provider has answered, the app need not wait for its Commit.

A gated call's Commit is the one RPC whose answer the app does not need before it goes on, so the
sender takes it off the call's path. One task sends whatever is queued as a single CommitBatch
(up to 256 commits) as soon as the previous batch has answered: a lone call's commit leaves at once,
and the commits of a busy app share round trips instead of paying one each.

Nothing is lost that the ledger would not settle anyway. Commit is idempotent by reservation id, so
a batch the sidecar did not answer (UNAVAILABLE, DEADLINE_EXCEEDED), and each commit of it that the
store could not take, is sent again with the client's backoff until its reservation expires. From
then on the sidecar's expiry policy settles the reservation, exactly as it does for the commits of a
process that crashed with its queue: a crash loses at most the commits of the reservations that were
open, each bounded by its TTL. ``flush()`` waits for the queue; ``AsyncClient.close()`` flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from ._errors import TollgateClientError, from_rpc_error, from_status
from ._retry import MONEY, Retry
from ._types import CommitResult
from .v1 import tollgate_pb2 as pb

__all__ = ["MAX_BATCH", "AsyncCommitSender"]

log = logging.getLogger("tollgate_client")

MAX_BATCH = 256
"""The most commits the sidecar takes in one CommitBatch."""

SendBatch = Callable[[pb.CommitBatchRequest, float], Awaitable[pb.CommitBatchResponse]]
"""Sends one batch with a deadline of that many seconds."""
SendOne = Callable[[pb.CommitRequest, float], Awaitable[pb.CommitResponse]]


@dataclass(slots=True)
class _Pending:
    request: pb.CommitRequest
    future: asyncio.Future[CommitResult]
    give_up_at: float
    """``time.monotonic()`` past which no attempt starts: the reservation's expiry, when known."""
    tries: int = 0
    not_before: float = 0.0


@dataclass(slots=True)
class _Queue:
    items: list[_Pending] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class AsyncCommitSender:
    """The background commits of one ``AsyncClient``, on the event loop that first uses it."""

    def __init__(self, send_batch: SendBatch, send_one: SendOne, convert: Callable[[pb.CommitResponse], CommitResult],
                 *, retry: Retry | None, timeout: float) -> None:
        self._send_batch: SendBatch | None = send_batch
        self._send_one = send_one
        self._convert = convert
        self._retry = retry
        self._timeout = timeout
        self._queue: _Queue | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0

    def submit(self, request: pb.CommitRequest, expires_at: datetime | None) -> asyncio.Future[CommitResult]:
        """Queue one commit; the future ends with its answer, or the error it was given up with."""
        queue = self._started()
        now = time.monotonic()
        budget = self._retry.budget_s if self._retry is not None else 0.0
        give_up_at = now + budget
        if expires_at is not None:
            give_up_at = max(give_up_at, now + (expires_at - datetime.now(UTC)).total_seconds())
        future: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()
        future.add_done_callback(functools.partial(_report, request.reservation_id))
        queue.items.append(_Pending(request, future, give_up_at))
        queue.idle.clear()
        queue.wake.set()
        return future

    @property
    def pending(self) -> int:
        """Commits queued or in flight."""
        return len(self._queue.items) + self._in_flight if self._queue is not None else 0

    async def flush(self) -> None:
        """Wait until every commit queued so far has its answer (or was given up)."""
        if self._queue is not None and self._task is not None and not self._task.done():
            await self._queue.idle.wait()

    async def close(self, seconds: float) -> None:
        """Flush for up to ``seconds``, then give up what is left (each is logged)."""
        try:
            async with asyncio.timeout(seconds):
                await self.flush()
        except TimeoutError:
            pass
        if self._queue is not None and self._queue.items:
            failure = TollgateClientError(grpc.StatusCode.CANCELLED,
                                          f"the client closed with this commit unsent after {seconds:g} s of "
                                          "flushing; the sidecar's expiry policy settles its reservation")
            for item in self._queue.items:
                _fail(item, failure)
            self._queue.items.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # ---- the sending task ----

    def _started(self) -> _Queue:
        if self._queue is None:
            self._queue = _Queue()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue), name="tollgate-commits")
        return self._queue

    async def _run(self, queue: _Queue) -> None:
        while True:
            if not queue.items:
                queue.idle.set()
                queue.wake.clear()
                await queue.wake.wait()
                continue
            now = time.monotonic()
            ready = [item for item in queue.items if item.not_before <= now][:MAX_BATCH]
            if not ready:
                queue.wake.clear()
                wait = min(item.not_before for item in queue.items) - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.wake.wait(), wait)
                continue
            taken = set(map(id, ready))
            queue.items[:] = [item for item in queue.items if id(item) not in taken]
            self._in_flight = len(ready)
            try:
                again = await self._send(ready)
            except Exception as exc:  # a defect must not stop every later commit: fail this batch, go on
                log.exception("the background commit sender failed")
                again = []
                for item in ready:
                    _fail(item, TollgateClientError(grpc.StatusCode.INTERNAL, f"the sender failed: {exc!r}"))
            finally:
                self._in_flight = 0
            queue.items.extend(again)

    async def _send(self, batch: list[_Pending]) -> list[_Pending]:
        """Send one batch; the commits to try again later."""
        for item in batch:
            item.tries += 1
        if self._send_batch is None:
            results = await asyncio.gather(*(self._one(item) for item in batch))
            return [item for item, again in zip(batch, results, strict=True) if again]
        request = pb.CommitBatchRequest(commits=[item.request for item in batch])
        try:
            response = await self._send_batch(request, self._timeout)
        except grpc.RpcError as error:
            failure = from_rpc_error(error)
            if failure.code is grpc.StatusCode.UNIMPLEMENTED:
                # A sidecar older than CommitBatch: every later commit goes alone, as Commit.
                self._send_batch = None
                for item in batch:
                    item.tries -= 1
                return batch
            return [item for item in batch if self._retry_or_fail(item, failure)]
        again = []
        for item, result in zip(batch, response.results, strict=True):
            if result.code == 0:
                _succeed(item, self._convert(result.response))
                continue
            failure = from_status(_CODES.get(result.code, grpc.StatusCode.UNKNOWN), result.message, result.reason)
            if self._retry_or_fail(item, failure):
                again.append(item)
        return again

    async def _one(self, item: _Pending) -> bool:
        try:
            response = await self._send_one(item.request, self._timeout)
        except grpc.RpcError as error:
            return self._retry_or_fail(item, from_rpc_error(error))
        _succeed(item, self._convert(response))
        return False

    def _retry_or_fail(self, item: _Pending, failure: TollgateClientError) -> bool:
        """True to send ``item`` again later; otherwise its future ends with ``failure``."""
        retry = self._retry
        if retry is not None and failure.code in MONEY and item.tries < _MAX_TRIES:
            wait = retry.backoff(min(item.tries, 30))
            if time.monotonic() + wait < item.give_up_at:
                item.not_before = time.monotonic() + wait
                return True
        failure.attempts = item.tries
        _fail(item, failure)
        return False


_MAX_TRIES = 1_000
"""A bound on attempts besides the reservation's expiry, for a reservation of a very long TTL."""

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _succeed(item: _Pending, result: CommitResult) -> None:
    if not item.future.done():
        item.future.set_result(result)


def _fail(item: _Pending, failure: TollgateClientError) -> None:
    if not item.future.done():
        item.future.set_exception(failure)


def _report(reservation_id: str, future: asyncio.Future[CommitResult]) -> None:
    """Log a commit that was given up: nobody may be awaiting its future (and the loop then stays quiet)."""
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        log.warning("the background commit of Tollgate reservation %s failed, so the sidecar's expiry policy "
                    "will end it: %s", reservation_id, error)
