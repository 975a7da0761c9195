"""A fake LLM provider over HTTP on loopback, for the real ``openai`` and ``anthropic`` SDKs.

It speaks OpenAI's ``/v1/chat/completions`` and ``/v1/responses`` and Anthropic's
``/v1/messages``, as JSON and as server-sent events, with the usage fields where and how
the providers send them: a Chat Completions stream reports usage in one last chunk with no
choices, and only when asked (``stream_options.include_usage``); a Responses stream in the
response of ``response.completed``; an Anthropic stream its input (and a first output count)
in ``message_start`` and its whole output in ``message_delta``.

Every provider of a catalog is mounted under its own prefix (``/google/v1/...``), so a test
sees which SDK client a call went through. A call picks its behaviour with the header
``x-fake-scenario`` (the SDKs' ``extra_headers``); ``Fake.calls`` records each call and
exactly what usage it reported.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.support.catalog import suite_config_text
from tests.support.sidecar_process import SidecarProcess, write_config
from tollgate_client import AsyncClient, Client, PoolState, Scope

SCENARIOS = ("ok", "http_error", "midstream_error", "cut", "cut_early", "slow", "no_usage")

ANSWER_GOOD = '{"total": 42.5, "currency": "EUR"}'
ANSWER_BAD = "Sure! Here it is: {total: 42.5"
PIECES = 5
"""How many output deltas a stream sends before it completes (or fails, or is cut)."""
PIECES_BEFORE_FAILURE = 2


@dataclass(frozen=True, slots=True)
class Reported:
    """Usage as a provider bills it: ``input`` includes ``cached``; ``output`` includes reasoning."""

    input: int
    cached: int
    output: int


@dataclass(slots=True)
class Call:
    provider: str
    api: str
    model: str
    body: dict[str, Any]
    scenario: str
    reported: Reported | None = None
    """The usage the provider sent, ``None`` if none (or, for Anthropic, the last it sent before a failure)."""
    final: bool = False
    """Whether the usage sent was the whole call's (a completed answer or stream)."""
    deltas: list[str] = field(default_factory=list)
    """The output pieces a stream sent."""


def _chunks(text: str, count: int) -> list[str]:
    size = max(1, -(-len(text) // count))
    return [text[i:i + size] for i in range(0, len(text), size)]


class Fake:
    """The fake provider: ``with Fake() as fake: fake.openai_url("google")``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.bad_models: set[str] = set()
        """Models whose answers are not valid JSON (for a check to fail)."""
        self.slow_delay_s = 0.8
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-provider", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def openai_url(self, provider: str) -> str:
        """The ``base_url`` of an ``openai`` SDK client for ``provider``."""
        return f"http://127.0.0.1:{self.port}/{provider}/v1"

    def anthropic_url(self, provider: str = "anthropic") -> str:
        """The ``base_url`` of an ``anthropic`` SDK client (which adds ``/v1``)."""
        return f"http://127.0.0.1:{self.port}/{provider}"

    def answer(self, model: str) -> str:
        return ANSWER_BAD if model in self.bad_models else ANSWER_GOOD

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def __enter__(self) -> Fake:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _input_tokens(body: dict[str, Any]) -> int:
    """A stand-in for the provider's count of the prompt: stable for the same request."""
    return 12 + len(json.dumps(body.get("messages") or body.get("input") or "")) // 4


class _Handler(BaseHTTPRequestHandler):
    fake: Fake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        provider, _, api = self.path.strip("/").partition("/v1/")
        scenario = self.headers.get("x-fake-scenario") or "ok"
        call = Call(provider, api, str(body.get("model")), body, scenario)
        self.fake.record(call)
        if scenario == "http_error":
            self._error(call)
        elif api == "chat/completions":
            self._chat(call)
        elif api == "responses":
            self._responses(call)
        elif api == "messages":
            self._messages(call)
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    # ---- plumbing ----

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def _event(self, data: dict[str, Any] | str, event: str | None = None) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        text = (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"
        raw = text.encode()
        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        """Drop the connection mid-body: no terminating chunk, as when a proxy or the network fails."""
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _error(self, call: Call) -> None:
        if call.api == "messages":
            self._json(500, {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})
        else:
            self._json(500, {"error": {"message": "The server had an error while processing your request.",
                                       "type": "server_error", "param": None, "code": None}})

    def _pieces(self, call: Call) -> list[str]:
        pieces = _chunks(self.fake.answer(call.model), PIECES)
        if call.scenario in ("midstream_error", "cut"):
            return pieces[:PIECES_BEFORE_FAILURE]
        if call.scenario == "cut_early":
            return []
        return pieces

    def _pause(self, call: Call) -> None:
        if call.scenario == "slow":
            time.sleep(self.fake.slow_delay_s)

    # ---- OpenAI Chat Completions ----

    def _chat(self, call: Call) -> None:
        body = call.body
        answer = self.fake.answer(call.model)
        prompt = _input_tokens(body)
        cached = 8 if prompt >= 8 else 0
        reasoning = 2
        completion = len(_chunks(answer, PIECES)) + 3 + reasoning
        usage = {
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }
        base = {"id": "chatcmpl-fake1", "created": int(time.time()), "model": call.model,
                "system_fingerprint": "fp_fake", "service_tier": "default"}
        if not body.get("stream"):
            payload = {**base, "object": "chat.completion", "choices": [{
                "index": 0, "message": {"role": "assistant", "content": answer, "refusal": None, "annotations": []},
                "logprobs": None, "finish_reason": "stop"}]}
            if call.scenario != "no_usage":
                payload["usage"] = usage
                call.reported, call.final = Reported(prompt, cached, completion), True
            self._json(200, payload)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}
        self._start_stream()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "object": "chat.completion.chunk", **extra,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        self._event(chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in self._pieces(call):
            self._pause(call)
            call.deltas.append(piece)
            self._event(chunk({"content": piece}))
        if call.scenario in ("cut", "cut_early"):
            self._cut()
            return
        if call.scenario == "midstream_error":
            self._event({"error": {"message": "The model produced invalid content.", "type": "server_error",
                                   "param": None, "code": None}})
            self._end_stream()
            return
        self._event(chunk({}, "stop"))
        if include_usage:
            call.reported, call.final = Reported(prompt, cached, completion), True
            self._event({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self._event("[DONE]")
        self._end_stream()

    # ---- OpenAI Responses ----

    def _responses(self, call: Call) -> None:
        body = call.body
        answer = self.fake.answer(call.model)
        prompt = _input_tokens(body)
        cached = 4 if prompt >= 4 else 0
        reasoning = 3
        output = len(_chunks(answer, PIECES)) + 2 + reasoning
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
                 "total_tokens": prompt + output}
        message = {"type": "message", "id": "msg_fake1", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": answer, "annotations": [], "logprobs": []}]}

        def response(status: str, output_items: list[Any], usage_: Any) -> dict[str, Any]:
            return {"id": "resp_fake1", "object": "response", "created_at": int(time.time()), "status": status,
                    "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
                    "max_output_tokens": body.get("max_output_tokens"), "model": call.model, "output": output_items,
                    "parallel_tool_calls": True, "previous_response_id": None,
                    "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
                    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
                    "truncation": "disabled", "usage": usage_, "user": None, "metadata": {}}

        if not body.get("stream"):
            call.reported, call.final = Reported(prompt, cached, output), True
            self._json(200, response("completed", [message], usage))
            return
        self._start_stream()
        seq = iter(range(10_000))

        def event(kind: str, **fields: Any) -> None:
            self._event({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

        event("response.created", response=response("in_progress", [], None))
        event("response.in_progress", response=response("in_progress", [], None))
        item = {**message, "status": "in_progress", "content": []}
        event("response.output_item.added", output_index=0, item=item)
        event("response.content_part.added", item_id="msg_fake1", output_index=0, content_index=0,
              part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
        for piece in self._pieces(call):
            self._pause(call)
            call.deltas.append(piece)
            event("response.output_text.delta", item_id="msg_fake1", output_index=0, content_index=0, delta=piece,
                  logprobs=[])
        if call.scenario in ("cut", "cut_early"):
            self._cut()
            return
        if call.scenario == "midstream_error":
            event("error", code="server_error", message="The server had an error while processing your request.",
                  param=None)
            self._end_stream()
            return
        event("response.output_text.done", item_id="msg_fake1", output_index=0, content_index=0, text=answer,
              logprobs=[])
        event("response.content_part.done", item_id="msg_fake1", output_index=0, content_index=0,
              part=message["content"][0])
        event("response.output_item.done", output_index=0, item=message)
        call.reported, call.final = Reported(prompt, cached, output), True
        event("response.completed", response=response("completed", [message], usage))
        self._end_stream()

    # ---- Anthropic Messages ----

    def _messages(self, call: Call) -> None:
        body = call.body
        answer = self.fake.answer(call.model)
        uncached = _input_tokens(body)
        cache_read, cache_write = 8, 4
        output = len(_chunks(answer, PIECES)) + 4
        total_input = uncached + cache_read + cache_write
        base = {"id": "msg_fake1", "type": "message", "role": "assistant", "model": call.model}
        if not body.get("stream"):
            call.reported, call.final = Reported(total_input, cache_read, output), True
            self._json(200, {**base, "content": [{"type": "text", "text": answer}], "stop_reason": "end_turn",
                             "stop_sequence": None, "usage": {
                                 "input_tokens": uncached, "cache_creation_input_tokens": cache_write,
                                 "cache_read_input_tokens": cache_read,
                                 "cache_creation": {"ephemeral_5m_input_tokens": cache_write,
                                                    "ephemeral_1h_input_tokens": 0},
                                 "output_tokens": output, "service_tier": "standard"}})
            return
        self._start_stream()
        if call.scenario == "cut_early":  # before message_start: nothing was reported, nothing billed
            self._cut()
            return
        call.reported = Reported(total_input, cache_read, 1)
        self._event({"type": "message_start", "message": {
            **base, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": uncached, "cache_creation_input_tokens": cache_write,
                      "cache_read_input_tokens": cache_read,
                      "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
                      "output_tokens": 1, "service_tier": "standard"}}}, event="message_start")
        self._event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    event="content_block_start")
        self._event({"type": "ping"}, event="ping")
        for piece in self._pieces(call):
            self._pause(call)
            call.deltas.append(piece)
            self._event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                        event="content_block_delta")
        if call.scenario in ("cut", "cut_early"):
            self._cut()
            return
        if call.scenario == "midstream_error":
            self._event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                        event="error")
            self._end_stream()
            return
        self._event({"type": "content_block_stop", "index": 0}, event="content_block_stop")
        call.reported, call.final = Reported(total_input, cache_read, output), True
        self._event({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                     "usage": {"output_tokens": output}}, event="message_delta")
        self._event({"type": "message_stop"}, event="message_stop")
        self._end_stream()


# -- what the ledger must show afterwards ---------------------------------------------------------------

BROKE = "broke"
"""An organisation whose budget holds nothing: every call of it is refused."""

_MODELS: dict[str, Any] = yaml.safe_load(suite_config_text())["models"]


def price(model: str, usage: Reported) -> int:
    """What the default catalog charges for ``usage`` on ``model``, in nano-dollars (prices are USD per 1M tokens)."""
    p = _MODELS[model]["price"]
    usd_per_mtok = ((usage.input - usage.cached) * Decimal(p["input"]) + usage.cached * Decimal(p["cached_input"])
                    + usage.output * Decimal(p["output"]))
    return math.ceil(usd_per_mtok * 1000)


def provider_of(model: str) -> str:
    return str(_MODELS[model]["provider"])


async def settled_budget(tollgate: AsyncClient, scope: Scope) -> tuple[PoolState, ...]:
    """The scope's pools once every commit the wrappers left in ``tollgate``'s background has been answered."""
    await tollgate.flush()
    return await tollgate.get_budget(scope)


def settled_budget_sync(tollgate: Client, scope: Scope) -> tuple[PoolState, ...]:
    """``settled_budget`` for the blocking client, whose commits leave on its sender thread."""
    assert tollgate.flush(30.0), "the background commits did not finish within 30 s"
    return tollgate.get_budget(scope)


def check_ledger(pools: tuple[PoolState, ...], charged: int) -> None:
    """Every pool of the scope has spent exactly ``charged`` and holds nothing."""
    stateful = [p for p in pools if p.level != "request"]
    assert stateful, "the scope has no pools"
    for pool in stateful:
        assert (pool.pool_id, pool.spent_nanos, pool.held_nanos) == (pool.pool_id, charged, 0)


@contextlib.contextmanager
def wrapper_sidecar(tmp: Path) -> Iterator[SidecarProcess]:
    """A sidecar for the wrappers' tests: the suite's catalog, and an organisation (``BROKE``) that affords nothing."""

    def edit(data: dict[str, Any]) -> None:
        data["budgets"]["overrides"][f"org:{BROKE}"] = {"cap": "0.000001"}

    with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", edit)) as process:
        yield process
