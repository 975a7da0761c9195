"""The official ``openai`` client, gated by Tollgate: Chat Completions and the Responses API.

::

    from tollgate_client.openai import GatedOpenAI

    client = GatedOpenAI(openai.AsyncOpenAI(), tollgate=AsyncClient(), scope=Scope(org="acme", user="alice"))
    response = await client.chat.completions.create(messages=[...], max_tokens=512, task_type="extract")

Leave ``model=`` out and the sidecar routes the call; pass it and that model is reserved.
``chat.completions.create``/``parse`` and ``responses.create``/``parse`` are gated; any other
resource of the client (``models``, ``embeddings``, ``files``...) is the default provider's
SDK client, ungated. This module imports nothing from ``openai``: it calls the clients it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from ._client import AsyncClient, Client
from ._types import Scope, Usage
from ._usage import usage_from_openai
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
    from openai import AsyncOpenAI, OpenAI
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openai.types.responses import Response, ResponseStreamEvent

__all__ = ["AsyncGatedOpenAI", "GatedOpenAI"]


# ---- Chat Completions ---------------------------------------------------------------------------------------

def _json_format(fmt: Any) -> tuple[bool, str]:
    """Whether a ``response_format`` (or the Responses API's ``text.format``) asks for JSON, and its schema's text."""
    if fmt is None:
        return False, ""
    if isinstance(fmt, type):  # parse(): a Pydantic model
        schema = getattr(fmt, "model_json_schema", None)
        return True, as_json(schema()) if callable(schema) else ""
    kind = get(fmt, "type")
    if kind == "json_schema":
        return True, as_json(get(fmt, "json_schema") or get(fmt, "schema"))
    return kind == "json_object", ""


def _describe_chat(params: Mapping[str, Any]) -> Request:
    messages: list[tuple[str, str]] = []
    tools = given(params, "tools", "functions")
    if tools:
        messages.append(("system", as_json(tools)))
    needs_json, schema = _json_format(given(params, "response_format"))
    if schema:
        messages.append(("system", schema))
    vision = False
    for message in given(params, "messages") or ():
        message = plain(message)
        text, images = content_text(get(message, "content"))
        vision = vision or images
        calls = [as_json(get(call, "function")) for call in get(message, "tool_calls") or ()]
        if get(message, "function_call"):
            calls.append(as_json(get(message, "function_call")))
        messages.append((role_of(get(message, "role")), "\n".join(t for t in (text, *calls) if t)))
    return Request(tuple(messages), int_of(given(params, "max_completion_tokens", "max_tokens")),
                   needs_tools=bool(tools), needs_vision=vision, needs_json=needs_json)


def _chat_text(response: Any) -> str:
    texts = []
    for choice in get(response, "choices") or ():
        message = get(choice, "message")
        texts.append(get(message, "content") or "")
        texts.extend(as_json(get(call, "function")) for call in get(message, "tool_calls") or ())
    return "".join(texts)


def _include_usage(params: dict[str, Any]) -> dict[str, Any]:
    """A streaming call that ends with a chunk carrying the whole call's usage."""
    options = dict(plain(given(params, "stream_options")) or {})
    options["include_usage"] = True
    return {**params, "stream_options": options}


class _ChatMeter:
    """Chat Completions chunks: usage comes in the last chunk (``choices`` empty), with ``include_usage``."""

    def __init__(self) -> None:
        self.final = False
        self.deltas = 0
        self.chars = 0
        self._usage: Usage | None = None

    def observe(self, chunk: Any) -> None:
        choices = get(chunk, "choices") or ()
        if get(chunk, "usage") is not None:
            self._usage = usage_from_openai(chunk)
            # Providers that report usage on every chunk report it cumulatively; the last one is final.
            self.final = not choices or any(get(c, "finish_reason") for c in choices)
        for choice in choices:
            delta = get(choice, "delta")
            chars = len(get(delta, "content") or "") + len(get(delta, "refusal") or "")
            chars += sum(len(get(get(call, "function"), "arguments") or "") for call in get(delta, "tool_calls") or ())
            if chars:
                self.deltas += 1
                self.chars += chars

    def reported(self) -> Usage | None:
        return self._usage


# ---- Responses API ------------------------------------------------------------------------------------------

def _describe_responses(params: Mapping[str, Any]) -> Request:
    messages: list[tuple[str, str]] = []
    instructions = given(params, "instructions")
    if isinstance(instructions, str) and instructions:
        messages.append(("system", instructions))
    tools = given(params, "tools")
    if tools:
        messages.append(("system", as_json(tools)))
    text_format = given(params, "text_format")  # parse(): a Pydantic model
    needs_json, schema = _json_format(text_format if text_format is not None else get(given(params, "text"),
                                                                                       "format"))
    if schema:
        messages.append(("system", schema))
    vision = False
    items = given(params, "input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items or ():
        item = plain(item)
        kind = get(item, "type") or "message"
        if kind == "message" or get(item, "role"):
            text, images = content_text(get(item, "content"))
            vision = vision or images
            messages.append((role_of(get(item, "role")), text))
        elif kind.endswith("_call_output"):
            text, images = content_text(get(item, "output"))
            vision = vision or images
            messages.append(("tool", text))
        elif kind.endswith("_call"):
            messages.append(("assistant", f"{get(item, 'name') or ''} {get(item, 'arguments') or get(item, 'input')}"))
    return Request(tuple(messages), int_of(given(params, "max_output_tokens")), needs_tools=bool(tools),
                   needs_vision=vision, needs_json=needs_json)


def _responses_text(response: Any) -> str:
    texts = []
    for item in get(response, "output") or ():
        text, _ = content_text(get(item, "content"))
        texts.append(text)
        if get(item, "arguments"):
            texts.append(str(get(item, "arguments")))
    return "".join(texts)


_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class _ResponsesMeter:
    """Responses API events: usage comes with the response of the last event (completed, incomplete, failed)."""

    def __init__(self) -> None:
        self.final = False
        self.deltas = 0
        self.chars = 0
        self._usage: Usage | None = None

    def observe(self, event: Any) -> None:
        kind = str(get(event, "type") or "")
        if kind in _FINAL_EVENTS:
            response = get(event, "response")
            if get(response, "usage") is not None:
                self._usage = usage_from_openai(response)
                self.final = True
        elif kind.endswith(".delta"):
            delta = get(event, "delta")
            if isinstance(delta, str) and delta:
                self.deltas += 1
                self.chars += len(delta)

    def reported(self) -> Usage | None:
        return self._usage


CHAT_CREATE = Endpoint("chat.completions.create", ("chat", "completions", "create"), _describe_chat,
                       usage_from_openai, _chat_text, _ChatMeter, _include_usage)
CHAT_PARSE = Endpoint("chat.completions.parse", ("chat", "completions", "parse"), _describe_chat,
                      usage_from_openai, _chat_text)
RESPONSES_CREATE = Endpoint("responses.create", ("responses", "create"), _describe_responses, usage_from_openai,
                            _responses_text, _ResponsesMeter)
RESPONSES_PARSE = Endpoint("responses.parse", ("responses", "parse"), _describe_responses, usage_from_openai,
                           _responses_text)



def _no_stream(params: Mapping[str, Any], where: str) -> None:
    if params.get("stream"):
        raise TypeError(f"{where} does not stream; use create(stream=True)")


# ---- blocking -----------------------------------------------------------------------------------------------

class _Completions:
    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    @overload
    def create(self, *, stream: Literal[True], **params: Any) -> GatedStream[ChatCompletionChunk]: ...
    @overload
    def create(self, *, stream: Literal[False] = ..., **params: Any) -> ChatCompletion: ...
    def create(self, **params: Any) -> ChatCompletion | GatedStream[ChatCompletionChunk]:
        """``chat.completions.create``: routed (or the pinned ``model=``), reserved, committed."""
        return self._gate.call(CHAT_CREATE, params)  # type: ignore[no-any-return]

    def parse(self, **params: Any) -> Any:
        """``chat.completions.parse``: as ``create``, for structured output."""
        _no_stream(params, "chat.completions.parse")
        return self._gate.call(CHAT_PARSE, params)

    def __getattr__(self, name: str) -> Any:
        raise not_gated("chat.completions", name)


class _Chat:
    def __init__(self, gate: Gate) -> None:
        self.completions = _Completions(gate)


class _Responses:
    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    @overload
    def create(self, *, stream: Literal[True], **params: Any) -> GatedStream[ResponseStreamEvent]: ...
    @overload
    def create(self, *, stream: Literal[False] = ..., **params: Any) -> Response: ...
    def create(self, **params: Any) -> Response | GatedStream[ResponseStreamEvent]:
        """``responses.create``: routed (or the pinned ``model=``), reserved, committed."""
        return self._gate.call(RESPONSES_CREATE, params)  # type: ignore[no-any-return]

    def parse(self, **params: Any) -> Any:
        """``responses.parse``: as ``create``, for structured output."""
        _no_stream(params, "responses.parse")
        return self._gate.call(RESPONSES_PARSE, params)

    def __getattr__(self, name: str) -> Any:
        raise not_gated("responses", name)


class GatedOpenAI:
    """An ``openai.OpenAI`` client (or one per provider) whose calls Tollgate routes, reserves and commits.

    ``openai`` is one SDK client (the provider ``"openai"``) or a mapping of the catalog's
    provider names to SDK clients, e.g. ``{"openai": OpenAI(), "google": OpenAI(base_url=<Gemini's
    OpenAI-compatible endpoint>)}``: each call goes to the client of the provider the sidecar
    chose, or of the first fallback with a client. ``scope`` is who pays, unless a call passes
    its own ``scope=``. ``check(response)`` returns ``None`` for an acceptable answer or a short
    reason, which escalates the call one tier up (per call: ``check=``). ``ttl_ms`` is each
    reservation's time to live (0: the sidecar's default); a call or stream still running at
    half of it extends it. ``on_outcome`` sees every call's ``CallOutcome``. A pinned
    ``model=`` goes to ``provider=`` of the call, else to ``default_provider`` (the first client).

    Calls take the SDK's arguments, and also ``task_type``, ``agent_mode``, ``min_tier``,
    ``latency`` and ``needs_tools``/``needs_vision``/``needs_json`` (inferred from ``tools``,
    images and ``response_format`` when not given) for the route, ``scope``, ``check`` and
    ``provider``.

    Given an ``AsyncClient``, ``GatedOpenAI(...)`` makes an ``AsyncGatedOpenAI``.
    """

    @overload
    def __new__(cls, openai: Any, *, tollgate: AsyncClient, **options: Any) -> AsyncGatedOpenAI: ...  # type: ignore[misc]
    @overload
    def __new__(cls, openai: Any, *, tollgate: Client, **options: Any) -> GatedOpenAI: ...
    def __new__(cls, openai: Any, *, tollgate: Any, **options: Any) -> Any:
        if cls is GatedOpenAI and isinstance(tollgate, AsyncClient):
            return AsyncGatedOpenAI(openai, tollgate=tollgate, **options)
        return super().__new__(cls)

    def __init__(self, openai: OpenAI | Mapping[str, OpenAI], *, tollgate: Client, scope: Scope,
                 check: Check | None = None, ttl_ms: int = 0, on_outcome: OutcomeHook | None = None,
                 default_provider: str | None = None, wait_for_commit: bool = False) -> None:
        if not isinstance(tollgate, Client):
            raise TypeError(f"tollgate must be a tollgate_client.Client or AsyncClient, got {type(tollgate).__name__}")
        self._gate = Gate(openai, tollgate=tollgate, family="openai", scope=scope, check=check, ttl_ms=ttl_ms,
                          on_outcome=on_outcome, default_provider=default_provider,
                          wait_for_commit=wait_for_commit)
        self.chat = _Chat(self._gate)
        self.responses = _Responses(self._gate)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the commits of this wrapper's finished calls are settled and ``on_outcome`` has heard.

        A call returns its answer as soon as the provider has given it; its commit follows on the
        client's sender thread (``wait_for_commit=True`` waits for it instead). False on ``timeout``.
        """
        return self._gate.tollgate.flush(timeout)

    def sdk(self, provider: str | None = None) -> OpenAI:
        """The SDK client given for ``provider`` (the default provider's when ``None``), ungated."""
        return self._gate.sdk(provider)  # type: ignore[no-any-return]

    def with_options(self, **options: Any) -> GatedOpenAI:
        """This wrapper around each SDK client's ``with_options(**options)`` (timeouts, retries, headers)."""
        return GatedOpenAI(self._gate.with_options(options), tollgate=self._gate.tollgate,
                           **self._gate.settings())

    def __getattr__(self, name: str) -> Any:
        return sdk_attribute(self._gate.sdk(), name)


# ---- asyncio ------------------------------------------------------------------------------------------------

class _AsyncCompletions:
    def __init__(self, gate: AsyncGate) -> None:
        self._gate = gate

    @overload
    async def create(self, *, stream: Literal[True], **params: Any) -> AsyncGatedStream[ChatCompletionChunk]: ...
    @overload
    async def create(self, *, stream: Literal[False] = ..., **params: Any) -> ChatCompletion: ...
    async def create(self, **params: Any) -> ChatCompletion | AsyncGatedStream[ChatCompletionChunk]:
        """``chat.completions.create``: routed (or the pinned ``model=``), reserved, committed."""
        return await self._gate.call(CHAT_CREATE, params)  # type: ignore[no-any-return]

    async def parse(self, **params: Any) -> Any:
        """``chat.completions.parse``: as ``create``, for structured output."""
        _no_stream(params, "chat.completions.parse")
        return await self._gate.call(CHAT_PARSE, params)

    def __getattr__(self, name: str) -> Any:
        raise not_gated("chat.completions", name)


class _AsyncChat:
    def __init__(self, gate: AsyncGate) -> None:
        self.completions = _AsyncCompletions(gate)


class _AsyncResponses:
    def __init__(self, gate: AsyncGate) -> None:
        self._gate = gate

    @overload
    async def create(self, *, stream: Literal[True], **params: Any) -> AsyncGatedStream[ResponseStreamEvent]: ...
    @overload
    async def create(self, *, stream: Literal[False] = ..., **params: Any) -> Response: ...
    async def create(self, **params: Any) -> Response | AsyncGatedStream[ResponseStreamEvent]:
        """``responses.create``: routed (or the pinned ``model=``), reserved, committed."""
        return await self._gate.call(RESPONSES_CREATE, params)  # type: ignore[no-any-return]

    async def parse(self, **params: Any) -> Any:
        """``responses.parse``: as ``create``, for structured output."""
        _no_stream(params, "responses.parse")
        return await self._gate.call(RESPONSES_PARSE, params)

    def __getattr__(self, name: str) -> Any:
        raise not_gated("responses", name)


class AsyncGatedOpenAI:
    """``GatedOpenAI`` for asyncio: ``openai.AsyncOpenAI`` clients and a Tollgate ``AsyncClient``; ``await`` calls."""

    def __init__(self, openai: AsyncOpenAI | Mapping[str, AsyncOpenAI], *, tollgate: AsyncClient, scope: Scope,
                 check: Check | None = None, ttl_ms: int = 0, on_outcome: OutcomeHook | None = None,
                 default_provider: str | None = None, wait_for_commit: bool = False) -> None:
        if not isinstance(tollgate, AsyncClient):
            raise TypeError(f"tollgate must be a tollgate_client.AsyncClient, got {type(tollgate).__name__}")
        self._gate = AsyncGate(openai, tollgate=tollgate, family="openai", scope=scope, check=check, ttl_ms=ttl_ms,
                               on_outcome=on_outcome, default_provider=default_provider,
                               wait_for_commit=wait_for_commit)
        self.chat = _AsyncChat(self._gate)
        self.responses = _AsyncResponses(self._gate)

    async def flush(self) -> None:
        """Wait until the commits of this wrapper's finished calls are settled and ``on_outcome`` has heard.

        A call returns its answer as soon as the provider has given it; its commit follows in the
        background (``wait_for_commit=True`` waits for it instead). ``tollgate.close()`` flushes too.
        """
        await self._gate.tollgate.flush()

    def sdk(self, provider: str | None = None) -> AsyncOpenAI:
        """The SDK client given for ``provider`` (the default provider's when ``None``), ungated."""
        return self._gate.sdk(provider)  # type: ignore[no-any-return]

    def with_options(self, **options: Any) -> AsyncGatedOpenAI:
        """This wrapper around each SDK client's ``with_options(**options)`` (timeouts, retries, headers)."""
        return AsyncGatedOpenAI(self._gate.with_options(options), tollgate=self._gate.tollgate,
                                **self._gate.settings())

    def __getattr__(self, name: str) -> Any:
        return sdk_attribute(self._gate.sdk(), name)
