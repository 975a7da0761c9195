"""What the wrappers tell the sidecar about a call, read from the SDK call's own arguments; and their construction."""

from __future__ import annotations

import anthropic
import openai
import pytest
from pydantic import BaseModel

from tollgate_client import (
    AsyncClient,
    AsyncGatedAnthropic,
    AsyncGatedOpenAI,
    Client,
    GatedAnthropic,
    GatedOpenAI,
    Scope,
)
from tollgate_client._wrappers.common import reason_of
from tollgate_client.anthropic import MESSAGES_CREATE
from tollgate_client.openai import CHAT_CREATE, CHAT_PARSE, RESPONSES_CREATE

SCOPE = Scope(org="acme")


class Invoice(BaseModel):
    total: float


def test_chat_messages_tools_images_and_json() -> None:
    request = CHAT_CREATE.describe({
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is on this?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "ocr", "arguments": "{\"p\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "TOTAL 42.50"},
            {"role": "function", "name": "legacy", "content": "ok"},
        ],
        "tools": [{"type": "function", "function": {"name": "ocr", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"},
        "max_completion_tokens": 300,
        "max_tokens": 999,
    })
    roles = [role for role, _ in request.messages]
    assert roles == ["system", "developer", "user", "assistant", "tool", "tool"]
    assert "ocr" in request.messages[0][1] and "base64" not in request.messages[2][1]
    assert request.messages[2][1] == "What is on this?" and '{\\"p\\":1}' in request.messages[3][1]
    assert (request.needs_tools, request.needs_vision, request.needs_json) == (True, True, True)
    assert request.max_output_tokens == 300


def test_chat_parse_with_a_pydantic_model_needs_json_and_counts_its_schema() -> None:
    request = CHAT_PARSE.describe({"messages": [{"role": "user", "content": "Invoice: 42.50"}],
                                   "response_format": Invoice})
    assert request.needs_json and "total" in request.messages[0][1]


def test_responses_input_items() -> None:
    request = RESPONSES_CREATE.describe({
        "instructions": "Extract.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Invoice"},
                                         {"type": "input_image", "image_url": "https://example.invalid/i.png"}]},
            {"type": "function_call", "call_id": "c1", "name": "ocr", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "TOTAL 42.50"},
        ],
        "text": {"format": {"type": "json_schema", "name": "invoice", "schema": {"type": "object"}}},
        "max_output_tokens": 128,
    })
    assert [r for r, _ in request.messages] == ["system", "system", "user", "assistant", "tool"]
    assert request.needs_vision and request.needs_json and request.max_output_tokens == 128
    assert RESPONSES_CREATE.describe({"input": "hi"}).messages == (("user", "hi"),)


def test_anthropic_system_blocks_tool_use_and_results() -> None:
    request = MESSAGES_CREATE.describe({
        "system": [{"type": "text", "text": "You extract."}],
        "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                                         {"type": "text", "text": "Total?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ocr", "input": {"p": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "text", "text": "TOTAL 42.50"}]}]},
        ],
        "tools": [{"name": "ocr", "input_schema": {"type": "object"}}],
        "max_tokens": 512,
    })
    assert request.messages[0] == ("system", "You extract.")
    assert request.messages[2] == ("user", "Total?")
    assert "ocr" in request.messages[3][1] and request.messages[4] == ("user", "TOTAL 42.50")
    assert (request.needs_tools, request.needs_vision, request.needs_json) == (True, True, False)
    assert request.max_output_tokens == 512


def test_sdk_objects_are_read_like_dicts() -> None:
    from openai.types.chat import ChatCompletionMessage

    message = ChatCompletionMessage(role="assistant", content="earlier answer")
    request = CHAT_CREATE.describe({"messages": [message, {"role": "user", "content": "and now?"}]})
    assert request.messages == (("assistant", "earlier answer"), ("user", "and now?"))


@pytest.mark.parametrize(("problem", "reason"), [
    ("invalid json", "invalid json"), ("JSON: missing 'total'!", "JSON: missing _total"), ("", "check_failed"),
    ("?" * 3, "check_failed"), ("x" * 100, "x" * 64)])
def test_a_checks_complaint_becomes_a_reason_the_sidecar_accepts(problem: str, reason: str) -> None:
    assert reason_of(problem) == reason


async def test_the_tollgate_client_picks_blocking_or_asyncio() -> None:
    async_sdk = openai.AsyncOpenAI(api_key="x")
    sync_sdk = openai.OpenAI(api_key="x")
    assert isinstance(GatedOpenAI(async_sdk, tollgate=AsyncClient(), scope=SCOPE), AsyncGatedOpenAI)
    assert type(GatedOpenAI(sync_sdk, tollgate=Client(), scope=SCOPE)) is GatedOpenAI
    assert isinstance(GatedAnthropic(anthropic.AsyncAnthropic(api_key="x"), tollgate=AsyncClient(), scope=SCOPE),
                      AsyncGatedAnthropic)
    with pytest.raises(TypeError, match="asyncio"):
        GatedOpenAI(sync_sdk, tollgate=AsyncClient(), scope=SCOPE)
    with pytest.raises(TypeError, match="blocking"):
        GatedOpenAI({"openai": sync_sdk, "google": async_sdk}, tollgate=Client(), scope=SCOPE)


def test_the_rest_of_the_sdk_client_passes_through_and_ungated_methods_say_so() -> None:
    google = openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9/v1")
    client = GatedOpenAI({"google": google, "openai": openai.OpenAI(api_key="x")}, tollgate=Client(), scope=SCOPE)
    assert client.sdk() is google and client.models is google.models
    with pytest.raises(AttributeError, match="not gated by Tollgate"):
        client.chat.completions.stream  # noqa: B018 - the attribute access is the test
    with pytest.raises(ValueError, match="default_provider"):
        GatedOpenAI(google, tollgate=Client(), scope=SCOPE, default_provider="azure")


def test_with_options_keeps_the_gate_and_ungated_copies_are_refused() -> None:
    client = GatedOpenAI(openai.OpenAI(api_key="x"), tollgate=Client(), scope=SCOPE, ttl_ms=5000)
    faster = client.with_options(timeout=3.0, max_retries=0)
    assert type(faster) is GatedOpenAI and faster.sdk().timeout == 3.0 and faster.sdk().max_retries == 0
    assert client.sdk().timeout != 3.0
    with pytest.raises(AttributeError, match="ungated"):
        client.with_raw_response  # noqa: B018 - the attribute access is the test
    claude = GatedAnthropic(anthropic.Anthropic(api_key="x"), tollgate=Client(), scope=SCOPE)
    assert type(claude.with_options(timeout=3.0)) is GatedAnthropic
