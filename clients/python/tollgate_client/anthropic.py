"""The official ``anthropic`` client, gated by Tollgate: the Messages API.

::

    from tollgate_client.anthropic import GatedAnthropic

    client = GatedAnthropic(anthropic.AsyncAnthropic(), tollgate=AsyncClient(), scope=Scope(org="acme"))
    message = await client.messages.create(messages=[...], max_tokens=512, task_type="extract")

Leave ``model=`` out and the sidecar routes the call (among the providers given a client);
pass it and that model is reserved. ``messages.create`` is gated, streaming included; any
other resource of the client is the default provider's SDK client, ungated. This module
imports nothing from ``anthropic``: it calls the clients it is given.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from ._client import AsyncClient, Client
from ._types import Scope, Usage
from ._usage import usage_from_anthropic
from ._wrappers.common import (
    Endpoint,
    Request,
    as_json,
    content_text,
    get,
    given,
    int_of,
    not_gated,
    plain,
    role_of,
    sdk_attribute,
)
from ._wrappers.engine import AsyncGate, Check, Gate, OutcomeHook
from ._wrappers.streams import AsyncGatedStream, GatedStream

if TYPE_CHECKING:
    from anthropic import Anthropic, AsyncAnthropic
    from anthropic.lib.streaming import AsyncMessageStreamManager, MessageStreamManager
    from anthropic.types import Message, RawMessageStreamEvent

__all__ = ["AsyncGatedAnthropic", "GatedAnthropic"]


def _describe_messages(params: Mapping[str, Any]) -> Request:
    messages: list[tuple[str, str]] = []
    system, _ = content_text(given(params, "system"))
    if system:
        messages.append(("system", system))
    tools = given(params, "tools")
    if tools:
        messages.append(("system", as_json(tools)))
    vision = False
    for message in given(params, "messages") or ():
        message = plain(message)
        text, images = content_text(get(message, "content"))
        vision = vision or images
        messages.append((role_of(get(message, "role")), text))
    # Structured output is not asked of the route: the catalog's Claude models do not list the json capability.
    return Request(tuple(messages), int_of(given(params, "max_tokens")), needs_tools=bool(tools),
                   needs_vision=vision)


def _message_text(message: Any) -> str:
    return content_text(get(message, "content"))[0]


class _MessagesMeter:
    """Messages API events: ``message_start`` reports the input (and a first output count), ``message_delta``
    the whole call's output, cumulatively (and, from newer API versions, the input again)."""

    def __init__(self) -> None:
        self.final = False
        self.deltas = 0
        self.chars = 0
        self._fields: dict[str, Any] = {}

    def observe(self, event: Any) -> None:
        kind = get(event, "type")
        if kind == "message_start":
            self._merge(get(get(event, "message"), "usage"))
        elif kind == "message_delta":
            self._merge(get(event, "usage"))
            self.final = True
        elif kind == "content_block_delta":
            delta = get(event, "delta")
            for key in ("text", "partial_json", "thinking"):
                value = get(delta, key)
                if isinstance(value, str) and value:
                    self.deltas += 1
                    self.chars += len(value)

    def _merge(self, usage: Any) -> None:
        fields = plain(usage)
        if isinstance(fields, Mapping):
            self._fields.update({k: v for k, v in fields.items() if v is not None})

    def reported(self) -> Usage | None:
        return usage_from_anthropic({"usage": self._fields}) if self._fields else None


MESSAGES_CREATE = Endpoint("messages.create", ("messages", "create"), _describe_messages, usage_from_anthropic,
                           _message_text, _MessagesMeter)



def _stream_params(params: dict[str, Any]) -> dict[str, Any]:
    if "output_format" in params:
        raise TypeError("messages.stream(output_format=...) is not gated: use messages.create(stream=True)")
    return {**params, "stream": True}


def _manager(kind: str, api_request: Any) -> Any:
    """The SDK's own stream manager (``MessageStreamManager`` or its async twin) over a gated request."""
    from anthropic import NOT_GIVEN
    from anthropic.lib import streaming

    manager = getattr(streaming, kind)
    if "output_format" in inspect.signature(manager).parameters:
        return manager(api_request, output_format=NOT_GIVEN)
    return manager(api_request)


class _Messages:
    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    @overload
    def create(self, *, stream: Literal[True], **params: Any) -> GatedStream[RawMessageStreamEvent]: ...
    @overload
    def create(self, *, stream: Literal[False] = ..., **params: Any) -> Message: ...
    def create(self, **params: Any) -> Message | GatedStream[RawMessageStreamEvent]:
        """``messages.create``: routed (or the pinned ``model=``), reserved, committed."""
        return self._gate.call(MESSAGES_CREATE, params)  # type: ignore[no-any-return]

    def stream(self, **params: Any) -> MessageStreamManager[Any]:
        """``messages.stream``: ``with client.messages.stream(...) as stream:``, the SDK's ``MessageStream``
        (``text_stream``, ``get_final_message()``...) over a gated ``messages.create(stream=True)``."""
        return _manager("MessageStreamManager",  # type: ignore[no-any-return]
                        lambda: self._gate.call(MESSAGES_CREATE, _stream_params(params)))

    def __getattr__(self, name: str) -> Any:
        raise not_gated("messages", name)


class GatedAnthropic:
    """An ``anthropic.Anthropic`` client (or one per provider) whose calls Tollgate routes, reserves and commits.

    ``anthropic`` is one SDK client (the provider ``"anthropic"``) or a mapping of the catalog's
    provider names to SDK clients; the rest is as for ``GatedOpenAI``: ``scope``, ``check``,
    ``ttl_ms``, ``on_outcome``, ``default_provider``, and the calls' own ``task_type``,
    ``agent_mode``, ``min_tier``, ``latency``, ``needs_*``, ``scope``, ``check``, ``provider``.
    A routed call goes to the chosen model, or to the first fallback whose provider has a
    client (so, with the default catalog, a cheap call lands on ``claude-haiku-4-5``).

    Given an ``AsyncClient``, ``GatedAnthropic(...)`` makes an ``AsyncGatedAnthropic``.
    """

    @overload
    def __new__(cls, anthropic: Any, *, tollgate: AsyncClient, **options: Any) -> AsyncGatedAnthropic: ...  # type: ignore[misc]
    @overload
    def __new__(cls, anthropic: Any, *, tollgate: Client, **options: Any) -> GatedAnthropic: ...
    def __new__(cls, anthropic: Any, *, tollgate: Any, **options: Any) -> Any:
        if cls is GatedAnthropic and isinstance(tollgate, AsyncClient):
            return AsyncGatedAnthropic(anthropic, tollgate=tollgate, **options)
        return super().__new__(cls)

    def __init__(self, anthropic: Anthropic | Mapping[str, Anthropic], *, tollgate: Client, scope: Scope,
                 check: Check | None = None, ttl_ms: int = 0, on_outcome: OutcomeHook | None = None,
                 default_provider: str | None = None, wait_for_commit: bool = False) -> None:
        if not isinstance(tollgate, Client):
            raise TypeError(f"tollgate must be a tollgate_client.Client or AsyncClient, got {type(tollgate).__name__}")
        self._gate = Gate(anthropic, tollgate=tollgate, family="anthropic", scope=scope, check=check, ttl_ms=ttl_ms,
                          on_outcome=on_outcome, default_provider=default_provider,
                          wait_for_commit=wait_for_commit)
        self.messages = _Messages(self._gate)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the commits of this wrapper's finished calls are settled and ``on_outcome`` has heard.

        A call returns its answer as soon as the provider has given it; its commit follows on the
        client's sender thread (``wait_for_commit=True`` waits for it instead). False on ``timeout``.
        """
        return self._gate.tollgate.flush(timeout)

    def sdk(self, provider: str | None = None) -> Anthropic:
        """The SDK client given for ``provider`` (the default provider's when ``None``), ungated."""
        return self._gate.sdk(provider)  # type: ignore[no-any-return]

    def with_options(self, **options: Any) -> GatedAnthropic:
        """This wrapper around each SDK client's ``with_options(**options)`` (timeouts, retries, headers)."""
        return GatedAnthropic(self._gate.with_options(options), tollgate=self._gate.tollgate,
                              **self._gate.settings())

    def __getattr__(self, name: str) -> Any:
        return sdk_attribute(self._gate.sdk(), name)


class _AsyncMessages:
    def __init__(self, gate: AsyncGate) -> None:
        self._gate = gate

    @overload
    async def create(self, *, stream: Literal[True], **params: Any) -> AsyncGatedStream[RawMessageStreamEvent]: ...
    @overload
    async def create(self, *, stream: Literal[False] = ..., **params: Any) -> Message: ...
    async def create(self, **params: Any) -> Message | AsyncGatedStream[RawMessageStreamEvent]:
        """``messages.create``: routed (or the pinned ``model=``), reserved, committed."""
        return await self._gate.call(MESSAGES_CREATE, params)  # type: ignore[no-any-return]

    def stream(self, **params: Any) -> AsyncMessageStreamManager[Any]:
        """``messages.stream``: ``async with client.messages.stream(...) as stream:``, the SDK's
        ``AsyncMessageStream`` over a gated ``messages.create(stream=True)``."""
        return _manager("AsyncMessageStreamManager",  # type: ignore[no-any-return]
                        self._gate.call(MESSAGES_CREATE, _stream_params(params)))

    def __getattr__(self, name: str) -> Any:
        raise not_gated("messages", name)


class AsyncGatedAnthropic:
    """``GatedAnthropic`` for asyncio: ``anthropic.AsyncAnthropic`` clients and a Tollgate ``AsyncClient``."""

    def __init__(self, anthropic: AsyncAnthropic | Mapping[str, AsyncAnthropic], *, tollgate: AsyncClient,
                 scope: Scope, check: Check | None = None, ttl_ms: int = 0, on_outcome: OutcomeHook | None = None,
                 default_provider: str | None = None, wait_for_commit: bool = False) -> None:
        if not isinstance(tollgate, AsyncClient):
            raise TypeError(f"tollgate must be a tollgate_client.AsyncClient, got {type(tollgate).__name__}")
        self._gate = AsyncGate(anthropic, tollgate=tollgate, family="anthropic", scope=scope, check=check,
                               ttl_ms=ttl_ms, on_outcome=on_outcome, default_provider=default_provider,
                               wait_for_commit=wait_for_commit)
        self.messages = _AsyncMessages(self._gate)

    async def flush(self) -> None:
        """Wait until the commits of this wrapper's finished calls are settled and ``on_outcome`` has heard.

        A call returns its answer as soon as the provider has given it; its commit follows in the
        background (``wait_for_commit=True`` waits for it instead). ``tollgate.close()`` flushes too.
        """
        await self._gate.tollgate.flush()

    def sdk(self, provider: str | None = None) -> AsyncAnthropic:
        """The SDK client given for ``provider`` (the default provider's when ``None``), ungated."""
        return self._gate.sdk(provider)  # type: ignore[no-any-return]

    def with_options(self, **options: Any) -> AsyncGatedAnthropic:
        """This wrapper around each SDK client's ``with_options(**options)`` (timeouts, retries, headers)."""
        return AsyncGatedAnthropic(self._gate.with_options(options), tollgate=self._gate.tollgate,
                                   **self._gate.settings())

    def __getattr__(self, name: str) -> Any:
        return sdk_attribute(self._gate.sdk(), name)
