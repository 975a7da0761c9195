"""``Usage`` from provider responses, without importing any provider SDK.

Each function takes the SDK's response object or the same response as a plain
dict (parsed JSON, or ``response.model_dump()``), and also a final streaming
chunk or event that carries ``usage``. Fields that are missing or ``None`` count
as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._types import Usage

__all__ = ["usage_from_anthropic", "usage_from_openai"]


def usage_from_openai(response: Any) -> Usage:
    """Read the token usage of an OpenAI Chat Completions or Responses API response.

    Chat Completions reports ``prompt_tokens`` (cached included) and
    ``completion_tokens`` (reasoning included), with
    ``prompt_tokens_details.cached_tokens`` and
    ``completion_tokens_details.reasoning_tokens``. The Responses API reports
    ``input_tokens`` and ``output_tokens`` with ``input_tokens_details`` and
    ``output_tokens_details`` of the same meaning. Reasoning tokens are moved
    out of the output count, since ``Usage.output_tokens`` excludes them.

    Raises ``ValueError`` if the response carries no usage.
    """
    usage = _usage_of(response, "OpenAI")
    if _get(usage, "prompt_tokens") is not None or _get(usage, "completion_tokens") is not None:
        input_key, output_key, input_details, output_details = (
            "prompt_tokens",
            "completion_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
        )
    else:
        input_key, output_key, input_details, output_details = (
            "input_tokens",
            "output_tokens",
            "input_tokens_details",
            "output_tokens_details",
        )
    input_tokens = _int(usage, input_key)
    output_with_reasoning = _int(usage, output_key)
    reasoning = _int(_get(usage, output_details), "reasoning_tokens")
    return Usage(
        input_tokens=input_tokens,
        # Bounded so a provider that reports inconsistent details cannot make Usage invalid.
        cached_input_tokens=min(_int(_get(usage, input_details), "cached_tokens"), input_tokens),
        output_tokens=max(output_with_reasoning - reasoning, 0),
        reasoning_tokens=reasoning,
    )


def usage_from_anthropic(response: Any) -> Usage:
    """Read the token usage of an Anthropic Messages API response.

    Anthropic's ``input_tokens`` excludes both cache reads and cache writes,
    which come as ``cache_read_input_tokens`` and ``cache_creation_input_tokens``;
    ``Usage.input_tokens`` includes every input token, so all three are added,
    and the cache reads become ``cached_input_tokens``. Anthropic does not
    report thinking tokens apart from ``output_tokens``, so they stay in
    ``output_tokens`` (both are billed as output) and ``reasoning_tokens`` is 0.

    Raises ``ValueError`` if the response carries no usage.
    """
    usage = _usage_of(response, "Anthropic")
    cache_read = _int(usage, "cache_read_input_tokens")
    return Usage(
        input_tokens=_int(usage, "input_tokens") + cache_read + _int(usage, "cache_creation_input_tokens"),
        cached_input_tokens=cache_read,
        output_tokens=_int(usage, "output_tokens"),
    )


def _usage_of(response: Any, provider: str) -> Any:
    usage = _get(response, "usage")
    if usage is None:
        raise ValueError(
            f"the {provider} response has no usage; for a stream, read usage from its final chunk or event "
            "(OpenAI Chat Completions sends it only with stream_options={'include_usage': True})"
        )
    return usage


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(obj: Any, name: str) -> int:
    value = _get(obj, name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"usage field {name} should be an integer token count, got {value!r}")
    return value
