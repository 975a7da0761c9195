"""Request limits: every bound a request must meet before anything is planned or held.

Each check raises ``InvalidRequest`` naming the field, the bound and what to send instead.
"""

from __future__ import annotations

import re

from ..config import Limits, ReservationConfig
from ..errors import InvalidRequest
from ..estimate import TokenCounter
from ..ids import ID_PATTERN
from ..routing.rules import Signals
from .types import Prompt, Usage

__all__ = ["check_escalation_reason", "check_max_output", "check_signals", "check_usage", "count_prompt", "ttl"]

ROLES = ("system", "developer", "user", "assistant", "tool")
_ESCALATION_REASON = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,63}")


def count_prompt(prompt: Prompt, limits: Limits, counter: TokenCounter) -> int:
    """The prompt's input tokens, once it is within the limits."""
    if prompt.messages is None:
        tokens = prompt.input_tokens
        if tokens is None:
            raise InvalidRequest("prompt is required: send messages or input_tokens")
        if not 0 <= tokens <= limits.max_tokens:
            raise InvalidRequest(f"prompt.input_tokens must be between 0 and {limits.max_tokens}, got {tokens}")
        return tokens
    messages = prompt.messages
    if not messages:
        raise InvalidRequest("prompt.messages is empty: send at least one message, or input_tokens")
    if len(messages) > limits.max_messages:
        raise InvalidRequest(f"{len(messages)} messages exceed the limit of {limits.max_messages}")
    chars = sum(len(content) for _, content in messages)
    if chars > limits.max_text_chars:
        raise InvalidRequest(f"{chars} characters of message text exceed the limit of {limits.max_text_chars}")
    for role, _ in messages:
        if role not in ROLES:
            raise InvalidRequest(f"message role {role[:20]!r} is not one of: {', '.join(ROLES)}")
    return counter.count_messages(messages)


def check_signals(signals: Signals) -> None:
    # Task types and modes become keys of learned estimates and quality counts.
    for name in ("task_type", "agent_mode"):
        value = getattr(signals, name)
        if value and not ID_PATTERN.fullmatch(value):
            raise InvalidRequest(f"signals.{name} {value[:40]!r} must be 1-128 characters from A-Z a-z 0-9 . _ @ -")


def check_max_output(max_output_tokens: int, limits: Limits) -> None:
    if not 0 <= max_output_tokens <= limits.max_tokens:
        raise InvalidRequest(f"max_output_tokens must be between 0 and {limits.max_tokens}, got {max_output_tokens}")


def check_usage(usage: Usage, limits: Limits) -> None:
    for name in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens"):
        value = getattr(usage, name)
        if not 0 <= value <= limits.max_tokens:
            raise InvalidRequest(f"usage.{name} must be between 0 and {limits.max_tokens}, got {value}")
    if usage.cached_input_tokens > usage.input_tokens:
        raise InvalidRequest("usage.cached_input_tokens cannot exceed usage.input_tokens (which includes them)")


def check_escalation_reason(reason: str) -> None:
    if reason and not _ESCALATION_REASON.fullmatch(reason):
        raise InvalidRequest("reason must be 1-64 characters: letters, digits, space and ._:/- (e.g. invalid_json)")


def ttl(ttl_ms: int, reservations: ReservationConfig) -> int:
    """The reservation's time to live: the caller's, or the default for 0."""
    if ttl_ms == 0:
        return reservations.ttl_ms
    if not 0 < ttl_ms <= reservations.max_ttl_ms:
        raise InvalidRequest(
            f"ttl_ms must be between 1 and {reservations.max_ttl_ms} (0 for the default), got {ttl_ms}"
        )
    return ttl_ms
