"""Usage from provider responses, money formatting and the value types' own checks."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tollgate_client import Scope, Usage, format_usd, usage_from_anthropic, usage_from_openai


def as_object(value: Any) -> Any:
    """The same response as SDK-style attribute objects instead of dicts."""
    if isinstance(value, dict):
        return SimpleNamespace(**{key: as_object(item) for key, item in value.items()})
    return value


CHAT_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0},
    },
}
RESPONSES_API = {
    "id": "resp_1",
    "object": "response",
    "usage": {
        "input_tokens": 900,
        "input_tokens_details": {"cached_tokens": 512},
        "output_tokens": 450,
        "output_tokens_details": {"reasoning_tokens": 400},
        "total_tokens": 1350,
    },
}
ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "usage": {
        "input_tokens": 50,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 8000,
        "output_tokens": 700,
    },
}


@pytest.mark.parametrize("shape", [dict, as_object], ids=["dict", "object"])
def test_openai_chat_completions(shape: Any) -> None:
    assert usage_from_openai(shape(CHAT_COMPLETION)) == Usage(
        input_tokens=1200, cached_input_tokens=1024, output_tokens=172, reasoning_tokens=128
    )


@pytest.mark.parametrize("shape", [dict, as_object], ids=["dict", "object"])
def test_openai_responses_api(shape: Any) -> None:
    assert usage_from_openai(shape(RESPONSES_API)) == Usage(
        input_tokens=900, cached_input_tokens=512, output_tokens=50, reasoning_tokens=400
    )


@pytest.mark.parametrize("shape", [dict, as_object], ids=["dict", "object"])
def test_anthropic_messages(shape: Any) -> None:
    assert usage_from_anthropic(shape(ANTHROPIC_MESSAGE)) == Usage(
        input_tokens=10_050, cached_input_tokens=8000, output_tokens=700, reasoning_tokens=0
    )


@pytest.mark.parametrize("shape", [dict, as_object], ids=["dict", "object"])
def test_missing_and_none_fields_count_as_zero(shape: Any) -> None:
    chat = {"usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": None}}
    assert usage_from_openai(shape(chat)) == Usage(10, output_tokens=5)
    responses = {
        "usage": {"input_tokens": 7, "output_tokens": None, "output_tokens_details": {"reasoning_tokens": None}}
    }
    assert usage_from_openai(shape(responses)) == Usage(7)
    anthropic = {"usage": {"input_tokens": 20, "output_tokens": 4, "cache_read_input_tokens": None}}
    assert usage_from_anthropic(shape(anthropic)) == Usage(20, output_tokens=4)


def test_inconsistent_openai_details_still_make_valid_usage() -> None:
    odd = {
        "usage": {
            "prompt_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 50},
            "completion_tokens": 3,
            "completion_tokens_details": {"reasoning_tokens": 8},
        }
    }
    assert usage_from_openai(odd) == Usage(10, cached_input_tokens=10, output_tokens=0, reasoning_tokens=8)


@pytest.mark.parametrize("read", [usage_from_openai, usage_from_anthropic])
@pytest.mark.parametrize("response", [{}, {"usage": None}, SimpleNamespace(id="x"), SimpleNamespace(usage=None)])
def test_a_response_without_usage_is_refused(read: Any, response: Any) -> None:
    with pytest.raises(ValueError, match="no usage"):
        read(response)


def test_non_integer_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="prompt_tokens"):
        usage_from_openai({"usage": {"prompt_tokens": "12"}})


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "$0.00"),
        (1, "$0.000000001"),
        (1_300_000, "$0.0013"),
        (500_000_000, "$0.50"),
        (1_234_567_000, "$1.234567"),
        (12_345 * 1_000_000_000, "$12,345.00"),
        (-2_500_000_000, "-$2.50"),
    ],
)
def test_format_usd(nanos: int, text: str) -> None:
    assert format_usd(nanos) == text


def test_format_usd_refuses_floats() -> None:
    with pytest.raises(TypeError):
        format_usd(0.5)  # type: ignore[arg-type]


def test_usage_checks_its_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        Usage(-1)
    with pytest.raises(ValueError, match="cannot exceed"):
        Usage(10, cached_input_tokens=11)
    with pytest.raises(TypeError):
        Usage(1.5)  # type: ignore[arg-type]


def test_scope_checks_org_and_priority() -> None:
    assert Scope(org="acme").priority == "normal"
    with pytest.raises(ValueError, match="org"):
        Scope(org="")
    with pytest.raises(ValueError, match="priority"):
        Scope(org="acme", priority="urgent")  # type: ignore[arg-type]
