"""The asyncio and the blocking client. Both only execute the calls that ``_wire`` builds."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import TypeVar, Unpack

import grpc
import grpc.aio

from . import _wire
from ._commits import AsyncCommitSender, ThreadCommitSender
from ._errors import TollgateClientError, from_rpc_error
from ._reservation import AsyncHeldReservation, HeldReservation, ReservationSource
from ._retry import DEFAULT_RETRY, Attempts, Retry, new_idempotency_key
from ._types import (
    CommitResult,
    Decision,
    EscalateOptions,
    Escalation,
    ExtendResult,
    PoolState,
    ReleaseResult,
    ReserveOptions,
    ReserveResult,
    RouteOptions,
    Scope,
    TaskQuality,
    Usage,
)
from .v1 import tollgate_pb2 as pb
from .v1.tollgate_pb2_grpc import TollgateServiceStub

__all__ = ["DEFAULT_TARGET", "AsyncClient", "Client"]

T = TypeVar("T")

DEFAULT_TARGET = "127.0.0.1:50551"
"""Where the sidecar listens unless configured otherwise."""

Metadata = Sequence[tuple[str, str | bytes]]

# The sidecar runs next to the application; a proxy taken from http_proxy in the
# environment would at best add a hop and at worst not reach loopback at all.
_CHANNEL_OPTIONS = (("grpc.enable_http_proxy", 0),)


_inject: Callable[[dict[str, str]], None] | None
try:  # OpenTelemetry is optional: the client itself needs only grpcio and protobuf.
    from opentelemetry.propagate import inject as _otel_inject
except ImportError:  # pragma: no cover - exercised where OpenTelemetry is not installed
    _inject = None
else:
    _inject = _otel_inject


class _Settings:
    """Connection settings common to both clients."""

    __slots__ = ("_credentials", "_metadata", "_retry", "_target", "_timeout")

    def __init__(self, target: str, timeout: float, metadata: Metadata,
                 credentials: grpc.ChannelCredentials | None = None, retry: Retry | None = DEFAULT_RETRY) -> None:
        if not target:
            raise ValueError('target must be "host:port" or "unix:///path/to.sock"')
        if timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a Retry or None, got {type(retry).__name__}")
        self._target = target
        self._timeout = timeout
        self._metadata = tuple(metadata)
        self._credentials = credentials
        self._retry = retry if retry is None or retry.attempts > 1 else None

    @property
    def target(self) -> str:
        """The sidecar's address: ``"host:port"`` or ``"unix:///path/to.sock"``."""
        return self._target

    @property
    def timeout(self) -> float:
        """The deadline of every attempt of a call, in seconds."""
        return self._timeout

    @property
    def retry(self) -> Retry | None:
        """How calls the sidecar did not answer are retried; None when they are not."""
        return self._retry

    @property
    def _flush_budget_s(self) -> float:
        """How long ``close()`` sends background commits before it gives the rest up."""
        return max(self._timeout, self._retry.budget_s if self._retry is not None else 0.0)

    def _attempts(self, call: _wire.Call[T]) -> Attempts:
        """The retry bookkeeping of ``call``, with its idempotency key filled in when it needs one."""
        if self._retry is not None and call.reservation is not None and not call.reservation.idempotency_key:
            call.reservation.idempotency_key = new_idempotency_key()
        return Attempts(self._retry, call.retry_on, self._timeout)

    @staticmethod
    def _failed(call: _wire.Call[T], attempts: Attempts, failure: TollgateClientError) -> TollgateClientError:
        """The exception of the call's last attempt, saying how many were made and under which key."""
        failure.attempts = attempts.count
        if call.reservation is not None:
            failure.idempotency_key = call.reservation.idempotency_key
        return failure

    def _call_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """The configured metadata plus the caller's trace context, when OpenTelemetry is in use."""
        carrier: dict[str, str] = {}
        if _inject is not None:
            _inject(carrier)
        return self._metadata + tuple(carrier.items()) if carrier else self._metadata

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target!r}, timeout={self._timeout}, retry={self._retry!r})"


class AsyncClient(_Settings):
    """Client of the Tollgate sidecar for asyncio applications.

    ``target`` is ``"host:port"`` or ``"unix:///path/to.sock"``; ``timeout`` is
    the deadline of each attempt of a call in seconds; ``metadata`` is sent with
    every call (for example an authorization header a proxy in front of the
    sidecar checks, or ``("authorization", "Bearer <token>")`` for a sidecar
    with callers configured); ``credentials`` (``grpc.ssl_channel_credentials(...)``)
    connects over TLS; ``retry`` is how a call the sidecar did not answer is
    tried again (``None``: never), with the same idempotency key. The channel
    is opened on first use, inside the running event loop, so the client may be
    created anywhere. Close it with ``close()`` or use it as
    ``async with AsyncClient() as client:``.

    Failed calls raise a ``TollgateClientError`` subclass.
    """

    __slots__ = ("_channel", "_closed", "_commits", "_stub")

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float = 2.0, metadata: Metadata = (),
                 credentials: grpc.ChannelCredentials | None = None, retry: Retry | None = DEFAULT_RETRY) -> None:
        super().__init__(target, timeout, metadata, credentials, retry)
        self._channel: grpc.aio.Channel | None = None
        self._stub: TollgateServiceStub | None = None
        self._closed = False
        self._commits: AsyncCommitSender | None = None

    async def route(self, scope: Scope, **options: Unpack[RouteOptions]) -> Decision:
        """Pick the cheapest capable model for a call and, with ``reserve=True``, hold its cost.

        Keyword arguments are described by ``RouteOptions``; exactly one of
        ``messages`` and ``input_tokens`` is required.
        """
        return await self._run(_wire.route(scope, **options))

    async def reserve(self, scope: Scope, model: str, **options: Unpack[ReserveOptions]) -> ReserveResult:
        """Hold the estimated cost of a call to ``model`` against every pool in ``scope``, all or none.

        Keyword arguments are described by ``ReserveOptions``; exactly one of
        ``messages`` and ``input_tokens`` is required.
        """
        return await self._run(_wire.reserve(scope, model, **options))

    async def commit(self, reservation_id: str, usage: Usage) -> CommitResult:
        """Report what the provider call used; the hold is reconciled and the rest released."""
        return await self._run(_wire.commit(reservation_id, usage))

    def commit_in_background(self, reservation_id: str, usage: Usage, *,
                             expires_at: datetime | None = None) -> asyncio.Future[CommitResult]:
        """Queue a commit and return at once, for when the app need not wait for its answer.

        A background task sends what is queued as one CommitBatch whenever the last batch has
        answered, so commits leave at once and share round trips under load. A commit the
        sidecar did not take (unreachable, store down) is retried with backoff until
        ``expires_at``, the reservation's expiry (else for the retry budget); after that the
        sidecar's expiry policy settles it. The future ends with the ``CommitResult`` or the
        error; a commit given up is also logged, so the future may be ignored. ``flush()``
        waits for the queue; ``close()`` flushes first.
        """
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        if self._commits is None:
            self._commits = AsyncCommitSender(self._send_batch, self._send_commit, _wire.commit_result,
                                              retry=self._retry, timeout=self._timeout)
        return self._commits.submit(_wire.commit_request(reservation_id, usage), expires_at)

    async def flush(self) -> None:
        """Wait until every commit queued by ``commit_in_background`` so far is answered or given up.

        Bound the wait with ``asyncio.timeout(...)``; the queue is kept if the wait is cancelled.
        """
        if self._commits is not None:
            await self._commits.flush()

    async def release(self, reservation_id: str) -> ReleaseResult:
        """End a reservation without charging, when no billable call happened."""
        return await self._run(_wire.release(reservation_id))

    async def extend(self, reservation_id: str, ttl_ms: int = 0) -> ExtendResult:
        """Push a reservation's expiry out to ``ttl_ms`` from now (0 = the sidecar's default)."""
        return await self._run(_wire.extend(reservation_id, ttl_ms))

    async def get_budget(self, scope: Scope) -> tuple[PoolState, ...]:
        """The current state of every budget pool in ``scope``, broadest level last."""
        return await self._run(_wire.get_budget(scope))

    async def feedback(self, reservation_id: str, score: float | bool, source: str = "user") -> tuple[str, str]:
        """Report how good a call's answer was; returns the (task type, tier) it was counted under."""
        return await self._run(_wire.feedback(reservation_id, score, source))

    async def escalate(self, reservation_id: str, scope: Scope, **options: Unpack[EscalateOptions]) -> Escalation:
        """Route and reserve the next attempt of a call whose output failed your check, one tier up.

        Keyword arguments are described by ``EscalateOptions``. A retry returns the
        same attempt; past the depth limit or the top tier, ``EscalationRefusedError``.
        """
        return await self._run(_wire.escalate(reservation_id, scope, **options))

    async def get_quality(self) -> tuple[TaskQuality, ...]:
        """The quality guard's report: per task type, quality by tier, shadow match, minimum tier."""
        return await self._run(_wire.get_quality())

    def reservation(self, source: ReservationSource) -> AsyncHeldReservation:
        """Hold a reservation for an ``async with`` block, releasing it unless committed.

        ``source`` is a ``route(..., reserve=True)`` decision, a ``reserve``
        result or a ``Reservation``.
        """
        return AsyncHeldReservation(self, source)

    async def close(self) -> None:
        """Send the background commits (for up to the retry budget), then close the channel.

        Calls in flight are cancelled.
        """
        if self._commits is not None:
            await self._commits.close(self._flush_budget_s)
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _ready_stub(self) -> TollgateServiceStub:
        if self._stub is None:
            if self._closed:
                raise RuntimeError("this AsyncClient is closed")
            self._channel = (
                grpc.aio.secure_channel(self._target, self._credentials, options=_CHANNEL_OPTIONS)
                if self._credentials is not None
                else grpc.aio.insecure_channel(self._target, options=_CHANNEL_OPTIONS)
            )
            self._stub = TollgateServiceStub(self._channel)
        return self._stub

    async def _send_batch(self, request: pb.CommitBatchRequest, seconds: float) -> pb.CommitBatchResponse:
        response: pb.CommitBatchResponse = await self._ready_stub().CommitBatch(
            request, timeout=seconds, metadata=self._call_metadata())
        return response

    async def _send_commit(self, request: pb.CommitRequest, seconds: float) -> pb.CommitResponse:
        response: pb.CommitResponse = await self._ready_stub().Commit(
            request, timeout=seconds, metadata=self._call_metadata())
        return response

    async def _run(self, call: _wire.Call[T]) -> T:
        method = getattr(self._ready_stub(), call.method)
        attempts = self._attempts(call)
        metadata = self._call_metadata()
        while True:
            try:
                response = await method(call.request, timeout=attempts.timeout(), metadata=metadata)
            except grpc.RpcError as error:
                failure = from_rpc_error(error)
                wait = attempts.retry_after(failure.code)
                if wait is None:
                    raise self._failed(call, attempts, failure) from error
                await asyncio.sleep(wait)
                continue
            return call.convert(response)


class Client(_Settings):
    """Blocking client of the Tollgate sidecar, with the same methods as ``AsyncClient``.

    ``target`` is ``"host:port"`` or ``"unix:///path/to.sock"``; ``timeout`` is
    the deadline of each attempt of a call in seconds; ``metadata`` is sent with
    every call; ``retry`` is how a call the sidecar did not answer is tried again
    (``None``: never). Close it with ``close()`` or use it as ``with Client() as client:``. The
    client is safe to share between threads.

    Failed calls raise a ``TollgateClientError`` subclass.
    """

    __slots__ = ("_channel", "_closed", "_commits", "_commits_lock", "_stub")

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float = 2.0, metadata: Metadata = (),
                 credentials: grpc.ChannelCredentials | None = None, retry: Retry | None = DEFAULT_RETRY) -> None:
        super().__init__(target, timeout, metadata, credentials, retry)
        self._closed = False
        self._commits: ThreadCommitSender | None = None
        self._commits_lock = threading.Lock()
        self._channel = (
            grpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)
            if credentials is not None
            else grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        )
        self._stub = TollgateServiceStub(self._channel)

    def route(self, scope: Scope, **options: Unpack[RouteOptions]) -> Decision:
        """Pick the cheapest capable model for a call and, with ``reserve=True``, hold its cost.

        Keyword arguments are described by ``RouteOptions``; exactly one of
        ``messages`` and ``input_tokens`` is required.
        """
        return self._run(_wire.route(scope, **options))

    def reserve(self, scope: Scope, model: str, **options: Unpack[ReserveOptions]) -> ReserveResult:
        """Hold the estimated cost of a call to ``model`` against every pool in ``scope``, all or none.

        Keyword arguments are described by ``ReserveOptions``; exactly one of
        ``messages`` and ``input_tokens`` is required.
        """
        return self._run(_wire.reserve(scope, model, **options))

    def commit(self, reservation_id: str, usage: Usage) -> CommitResult:
        """Report what the provider call used; the hold is reconciled and the rest released."""
        return self._run(_wire.commit(reservation_id, usage))

    def commit_in_background(self, reservation_id: str, usage: Usage, *,
                             expires_at: datetime | None = None) -> concurrent.futures.Future[CommitResult]:
        """Queue a commit and return at once; a thread of the client sends it (``AsyncClient``'s twin).

        The future ends with the ``CommitResult`` or the error (a commit given up is also logged).
        ``flush()`` waits for the queue; ``close()`` flushes first.
        """
        if self._closed:
            raise RuntimeError("this Client is closed")
        request = _wire.commit_request(reservation_id, usage)
        with self._commits_lock:
            if self._commits is None:
                self._commits = ThreadCommitSender(self._send_batch, self._send_commit, _wire.commit_result,
                                                   retry=self._retry, timeout=self._timeout)
        return self._commits.submit(request, expires_at)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every commit queued by ``commit_in_background`` so far is answered or given up.

        Returns False if ``timeout`` seconds passed first.
        """
        return self._commits.flush(timeout) if self._commits is not None else True

    def release(self, reservation_id: str) -> ReleaseResult:
        """End a reservation without charging, when no billable call happened."""
        return self._run(_wire.release(reservation_id))

    def extend(self, reservation_id: str, ttl_ms: int = 0) -> ExtendResult:
        """Push a reservation's expiry out to ``ttl_ms`` from now (0 = the sidecar's default)."""
        return self._run(_wire.extend(reservation_id, ttl_ms))

    def get_budget(self, scope: Scope) -> tuple[PoolState, ...]:
        """The current state of every budget pool in ``scope``, broadest level last."""
        return self._run(_wire.get_budget(scope))

    def feedback(self, reservation_id: str, score: float | bool, source: str = "user") -> tuple[str, str]:
        """Report how good a call's answer was; returns the (task type, tier) it was counted under."""
        return self._run(_wire.feedback(reservation_id, score, source))

    def escalate(self, reservation_id: str, scope: Scope, **options: Unpack[EscalateOptions]) -> Escalation:
        """Route and reserve the next attempt of a call whose output failed your check, one tier up."""
        return self._run(_wire.escalate(reservation_id, scope, **options))

    def get_quality(self) -> tuple[TaskQuality, ...]:
        """The quality guard's report: per task type, quality by tier, shadow match, minimum tier."""
        return self._run(_wire.get_quality())

    def reservation(self, source: ReservationSource) -> HeldReservation:
        """Hold a reservation for a ``with`` block, releasing it unless committed.

        ``source`` is a ``route(..., reserve=True)`` decision, a ``reserve``
        result or a ``Reservation``.
        """
        return HeldReservation(self, source)

    def close(self) -> None:
        """Send the background commits (for up to the retry budget), then close the channel.

        Calls in flight are cancelled.
        """
        self._closed = True
        if self._commits is not None:
            self._commits.close(self._flush_budget_s)
        self._channel.close()

    def _send_batch(self, request: pb.CommitBatchRequest, seconds: float) -> pb.CommitBatchResponse:
        response: pb.CommitBatchResponse = self._stub.CommitBatch(
            request, timeout=seconds, metadata=self._call_metadata())
        return response

    def _send_commit(self, request: pb.CommitRequest, seconds: float) -> pb.CommitResponse:
        response: pb.CommitResponse = self._stub.Commit(request, timeout=seconds, metadata=self._call_metadata())
        return response

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, call: _wire.Call[T]) -> T:
        method = getattr(self._stub, call.method)
        attempts = self._attempts(call)
        metadata = self._call_metadata()
        while True:
            try:
                response = method(call.request, timeout=attempts.timeout(), metadata=metadata)
            except grpc.RpcError as error:
                failure = from_rpc_error(error)
                wait = attempts.retry_after(failure.code)
                if wait is None:
                    raise self._failed(call, attempts, failure) from error
                time.sleep(wait)
                continue
            return call.convert(response)
