"""Commits sent in the background: once the provider has answered, the app need not wait for its Commit.

A gated call's Commit is the one RPC whose answer the app does not need before it goes on, so the
sender takes it off the call's path. It sends whatever is queued as a single CommitBatch (up to
256 commits) as soon as the previous batch has answered: a lone call's commit leaves at once, and
the commits of a busy app share round trips instead of paying one each. ``AsyncCommitSender`` does
this in a task of the client's event loop, ``ThreadCommitSender`` in a thread of the blocking client.

Nothing is lost that the ledger would not settle anyway. Commit is idempotent by reservation id, so
a batch the sidecar did not answer (UNAVAILABLE, DEADLINE_EXCEEDED), and each commit of it that the
store could not take, is sent again with the client's backoff until its reservation expires. From
then on the sidecar's expiry policy settles the reservation, exactly as it does for the commits of a
process that crashed with its queue: a crash loses at most the commits of the reservations that were
open, each bounded by its TTL. ``flush()`` waits for the queue; the clients' ``close()`` flushes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc

from ._errors import TollgateClientError, from_rpc_error, from_status
from ._retry import MONEY, Retry
from ._types import CommitResult
from .v1 import tollgate_pb2 as pb

__all__ = ["MAX_BATCH", "AsyncCommitSender", "ThreadCommitSender"]

log = logging.getLogger("tollgate_client")

MAX_BATCH = 256
"""The most commits the sidecar takes in one CommitBatch."""

Convert = Callable[[pb.CommitResponse], CommitResult]


@dataclass(slots=True)
class _Pending:
    request: pb.CommitRequest
    future: asyncio.Future[CommitResult] | concurrent.futures.Future[CommitResult]
    give_up_at: float
    """``time.monotonic()`` past which no attempt starts: the reservation's expiry, when known."""
    tries: int = 0
    not_before: float = 0.0


class _Core:
    """What both senders decide, apart from how they wait and send: batches, answers, retries."""

    def __init__(self, convert: Convert, retry: Retry | None, timeout: float) -> None:
        self._convert = convert
        self._retry = retry
        self._timeout = timeout
        self._batched = True
        """False once the sidecar answered CommitBatch UNIMPLEMENTED: it is older, and gets Commits."""
        self._items: list[_Pending] = []
        self._in_flight = 0

    def _pending(self, request: pb.CommitRequest, expires_at: datetime | None,
                 future: asyncio.Future[CommitResult] | concurrent.futures.Future[CommitResult]) -> _Pending:
        now = time.monotonic()
        give_up_at = now + (self._retry.budget_s if self._retry is not None else 0.0)
        if expires_at is not None:
            give_up_at = max(give_up_at, now + (expires_at - datetime.now(UTC)).total_seconds())
        future.add_done_callback(functools.partial(_report, request.reservation_id))
        return _Pending(request, future, give_up_at)

    def _take(self) -> tuple[list[_Pending], float | None]:
        """The commits to send now (up to a batch), or none and how long until one is due."""
        now = time.monotonic()
        ready = [item for item in self._items if item.not_before <= now][:MAX_BATCH]
        if not ready:
            return [], min(item.not_before for item in self._items) - now
        taken = set(map(id, ready))
        self._items[:] = [item for item in self._items if id(item) not in taken]
        for item in ready:
            item.tries += 1
        self._in_flight = len(ready)
        return ready, None

    def _answered(self, batch: list[_Pending], response: pb.CommitBatchResponse) -> list[_Pending]:
        """Settle each commit by its own result; the ones to send again."""
        again = []
        for item, result in zip(batch, response.results, strict=True):
            if result.code == 0:
                _succeed(item, self._convert(result.response))
                continue
            failure = from_status(_CODES.get(result.code, grpc.StatusCode.UNKNOWN), result.message, result.reason)
            if self._retry_or_fail(item, failure):
                again.append(item)
        return again

    def _batch_failed(self, batch: list[_Pending], error: grpc.RpcError) -> list[_Pending]:
        """The batch got no answer, or a refusal of the whole; the ones to send again."""
        failure = from_rpc_error(error)
        if failure.code is grpc.StatusCode.UNIMPLEMENTED and self._batched:
            self._batched = False
            for item in batch:
                item.tries -= 1
            return batch
        return [item for item in batch if self._retry_or_fail(item, failure)]

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

    def _defect(self, batch: list[_Pending], exc: Exception) -> None:
        # A defect must not stop every later commit: fail this batch, go on.
        log.exception("the background commit sender failed")
        for item in batch:
            _fail(item, TollgateClientError(grpc.StatusCode.INTERNAL, f"the sender failed: {exc!r}"))

    def _give_up_all(self, seconds: float) -> None:
        failure = TollgateClientError(grpc.StatusCode.CANCELLED,
                                      f"the client closed with this commit unsent after {seconds:g} s of "
                                      "flushing; the sidecar's expiry policy settles its reservation")
        for item in self._items:
            _fail(item, failure)
        self._items.clear()


SendBatch = Callable[[pb.CommitBatchRequest, float], Awaitable[pb.CommitBatchResponse]]
"""Sends one batch with a deadline of that many seconds."""
SendOne = Callable[[pb.CommitRequest, float], Awaitable[pb.CommitResponse]]


class AsyncCommitSender(_Core):
    """The background commits of one ``AsyncClient``, in a task of the event loop that first uses it."""

    def __init__(self, send_batch: SendBatch, send_one: SendOne, convert: Convert, *, retry: Retry | None,
                 timeout: float) -> None:
        super().__init__(convert, retry, timeout)
        self._send_batch = send_batch
        self._send_one = send_one
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, request: pb.CommitRequest, expires_at: datetime | None) -> asyncio.Future[CommitResult]:
        """Queue one commit; the future ends with its answer, or the error it was given up with."""
        if self._wake is None or self._idle is None:
            self._wake, self._idle = asyncio.Event(), asyncio.Event()
        if self._task is None or self._task.done():
            # A context of its own: a task inherits its creator's, and the first caller's trace would
            # otherwise parent every batch after it. Each commit's span links to its reservation's instead.
            self._task = asyncio.get_running_loop().create_task(self._run(self._wake, self._idle),
                                                                name="tollgate-commits", context=contextvars.Context())
        future: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()
        self._items.append(self._pending(request, expires_at, future))
        self._idle.clear()
        self._wake.set()
        return future

    async def flush(self) -> None:
        """Wait until every commit queued so far has its answer (or was given up)."""
        if self._idle is not None and self._task is not None and not self._task.done():
            await self._idle.wait()

    async def close(self, seconds: float) -> None:
        """Flush for up to ``seconds``, then give up what is left (each is logged)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.flush()
        self._give_up_all(seconds)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self, wake: asyncio.Event, idle: asyncio.Event) -> None:
        while True:
            if not self._items:
                idle.set()
                wake.clear()
                await wake.wait()
                continue
            batch, wait = self._take()
            if not batch:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), wait)
                continue
            try:
                again = await self._send(batch)
            except Exception as exc:
                self._defect(batch, exc)
                again = []
            finally:
                self._in_flight = 0
            self._items.extend(again)

    async def _send(self, batch: list[_Pending]) -> list[_Pending]:
        if not self._batched:
            results = await asyncio.gather(*(self._one(item) for item in batch))
            return [item for item, again in zip(batch, results, strict=True) if again]
        try:
            response = await self._send_batch(pb.CommitBatchRequest(commits=[i.request for i in batch]),
                                              self._timeout)
        except grpc.RpcError as error:
            return self._batch_failed(batch, error)
        return self._answered(batch, response)

    async def _one(self, item: _Pending) -> bool:
        try:
            response = await self._send_one(item.request, self._timeout)
        except grpc.RpcError as error:
            return self._retry_or_fail(item, from_rpc_error(error))
        _succeed(item, self._convert(response))
        return False


class ThreadCommitSender(_Core):
    """The background commits of one blocking ``Client``, in a daemon thread started on first use."""

    def __init__(self, send_batch: Callable[[pb.CommitBatchRequest, float], pb.CommitBatchResponse],
                 send_one: Callable[[pb.CommitRequest, float], pb.CommitResponse], convert: Convert, *,
                 retry: Retry | None, timeout: float) -> None:
        super().__init__(convert, retry, timeout)
        self._send_batch = send_batch
        self._send_one = send_one
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, request: pb.CommitRequest, expires_at: datetime | None) -> concurrent.futures.Future[CommitResult]:
        """Queue one commit; the future ends with its answer, or the error it was given up with."""
        future: concurrent.futures.Future[CommitResult] = concurrent.futures.Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tollgate-commits", daemon=True)
                self._thread.start()
            self._items.append(self._pending(request, expires_at, future))
            self._lock.notify_all()
        return future

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every commit queued so far has its answer (or was given up); False on ``timeout``."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._items and not self._in_flight, timeout)

    def close(self, seconds: float) -> None:
        """Flush for up to ``seconds``, then give up what is left (each is logged) and end the thread."""
        self.flush(seconds)
        with self._lock:
            self._stopping = True
            self._give_up_all(seconds)
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(self._timeout + 1.0)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping:
                    if self._items:
                        batch, wait = self._take()
                        if batch:
                            break
                        self._lock.wait(wait)
                    else:
                        self._lock.notify_all()  # flush() waits for an empty queue
                        self._lock.wait()
                else:
                    return
            try:
                again = self._send(batch)
            except Exception as exc:
                self._defect(batch, exc)
                again = []
            with self._lock:
                self._in_flight = 0
                self._items.extend(again)
                self._lock.notify_all()

    def _send(self, batch: list[_Pending]) -> list[_Pending]:
        if not self._batched:
            return [item for item in batch if self._one(item)]
        try:
            response = self._send_batch(pb.CommitBatchRequest(commits=[i.request for i in batch]), self._timeout)
        except grpc.RpcError as error:
            return self._batch_failed(batch, error)
        return self._answered(batch, response)

    def _one(self, item: _Pending) -> bool:
        try:
            response = self._send_one(item.request, self._timeout)
        except grpc.RpcError as error:
            return self._retry_or_fail(item, from_rpc_error(error))
        _succeed(item, self._convert(response))
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


def _report(reservation_id: str, future: Any) -> None:
    """Log a commit that was given up: nobody may be awaiting its future (and the loop then stays quiet)."""
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        log.warning("the background commit of Tollgate reservation %s failed, so the sidecar's expiry policy "
                    "will end it: %s", reservation_id, error)
