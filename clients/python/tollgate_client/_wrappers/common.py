"""What the provider SDK wrappers report, what they raise, and how an endpoint is described to them."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .._types import Usage

__all__ = [
    "AttemptOutcome",
    "CallOutcome",
    "CheckFailedError",
    "Endpoint",
    "Meter",
    "MissingProviderClientError",
    "Request",
    "Settlement",
]

Settlement = Literal["committed", "partial", "estimated", "released", "unsettled"]
"""How one attempt's reservation ended.

- ``committed``: the usage the provider reported for the whole call was committed.
- ``partial``: a stream ended early (error, cut, closed) after the provider had reported some usage (Anthropic's
  ``message_start``); that usage was committed, its output raised to at least the output seen.
- ``estimated``: output came but the provider reported no usage (an OpenAI stream cut before its last chunk, a
  response without ``usage``); the sidecar's count of the prompt and about one token per 4 characters of output
  (at least one per delta) were committed, so that a cut stream is never free.
- ``released``: no billable call happened (the provider answered with an error, or a stream ended before any
  output and any reported usage); nothing was charged.
- ``unsettled``: the commit or release failed; the sidecar's expiry policy ends the hold.
"""


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """One provider call of a gated call: where it ran and how its reservation ended.

    ``problem`` is what the check said about its answer (``""``: passed, or not checked);
    ``extensions`` is how many times the reservation was extended while the call ran.
    """

    model: str
    provider: str
    tier: str
    reservation_id: str
    settlement: Settlement
    usage: Usage | None
    charged_nanos: int
    problem: str = ""
    extensions: int = 0


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """A gated call, once every reservation it made has ended: its attempts in order (escalations after the first)."""

    attempts: tuple[AttemptOutcome, ...]
    stream: bool

    @property
    def model(self) -> str:
        """The model of the last attempt: the one whose answer the caller got."""
        return self.attempts[-1].model

    @property
    def provider(self) -> str:
        """The provider of the last attempt."""
        return self.attempts[-1].provider

    @property
    def charged_nanos(self) -> int:
        """What every attempt together was charged."""
        return sum(a.charged_nanos for a in self.attempts)


class CheckFailedError(Exception):
    """The check still failed on the last answer the sidecar would escalate to.

    ``response`` is that answer (already paid for and committed), ``problem`` the
    check's complaint, ``outcome`` every attempt with its charge.
    """

    def __init__(self, response: Any, problem: str, outcome: CallOutcome) -> None:
        super().__init__(
            f"the answer of {outcome.model} failed the check ({problem}) and no further escalation was allowed "
            f"after {len(outcome.attempts)} attempt(s)"
        )
        self.response = response
        self.problem = problem
        self.outcome = outcome


class MissingProviderClientError(LookupError):
    """No SDK client was given for any provider the sidecar would route this call to.

    ``providers`` are the providers of the chosen model and its fallbacks (or the
    pinned model's), ``configured`` the ones the wrapper has a client for. Add a
    client for one of them, or restrict the scope's providers in the sidecar's
    config (``routing.providers``).
    """

    def __init__(self, providers: tuple[str, ...], configured: tuple[str, ...]) -> None:
        super().__init__(
            f"no SDK client for provider(s) {', '.join(providers) or '(none)'}; this wrapper has clients for "
            f"{', '.join(configured)}"
        )
        self.providers = providers
        self.configured = configured


@dataclass(frozen=True, slots=True)
class Request:
    """What the sidecar is told about one provider call, read from the SDK call's arguments."""

    messages: tuple[tuple[str, str], ...]
    max_output_tokens: int = 0
    needs_tools: bool = False
    needs_vision: bool = False
    needs_json: bool = False


class Meter(Protocol):
    """Reads a stream's items as they pass: the usage they report and the output they carry."""

    final: bool
    """The provider's last usage report of the call has been seen."""
    deltas: int
    """Items that carried output."""
    chars: int
    """Characters of output seen."""

    def observe(self, item: Any) -> None: ...

    def reported(self) -> Usage | None:
        """The usage reported so far, ``None`` if none."""
        ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One SDK method the wrappers gate, e.g. ``chat.completions.create``.

    ``describe`` reads the call's arguments; ``usage`` reads a whole response (``ValueError``
    when it has none); ``text`` is a whole response's output text, for an estimate; ``meter``
    makes a stream's meter (``None``: the method does not stream); ``prepare_stream``
    changes the arguments of a streaming call (OpenAI's ``stream_options.include_usage``).
    """

    name: str
    path: tuple[str, ...]
    describe: Callable[[Mapping[str, Any]], Request]
    usage: Callable[[Any], Usage]
    text: Callable[[Any], str]
    meter: Callable[[], Meter] | None = None
    prepare_stream: Callable[[dict[str, Any]], dict[str, Any]] | None = None


# ---- helpers shared by the adapters --------------------------------------------------------------------------

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_REASON = re.compile(r"[^A-Za-z0-9 ._:/-]")


def plain(obj: Any) -> Any:
    """An SDK object as plain data (``model_dump``), anything else as it is."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and not isinstance(obj, type):
        return dump()
    return obj


def get(obj: Any, name: str) -> Any:
    """A field of a mapping or an attribute of an object; ``None`` when missing."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def role_of(value: Any) -> str:
    """A message role the sidecar accepts: OpenAI's legacy ``function`` is a tool answer, anything unknown a user's."""
    role = str(value or "user")
    if role == "function":
        return "tool"
    return role if role in _ROLES else "user"


def as_json(value: Any) -> str:
    """Arguments that cost input tokens (tool definitions, schemas) as text the sidecar can count."""
    try:
        return json.dumps(plain(value), default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def given(params: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` set to something other than ``None`` or the SDKs' ``NOT_GIVEN``/``omit`` markers."""
    for name in names:
        value = params.get(name)
        if value is not None and type(value).__name__ not in ("NotGiven", "Omit"):
            return value
    return None


def int_of(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def estimated_output(deltas: int, chars: int) -> int:
    """Output tokens of text nobody counted: one token per 4 characters, and at least one per delta."""
    return max(deltas, math.ceil(chars / 4))


def reason_of(problem: str) -> str:
    """The check's complaint as an escalation reason the sidecar accepts (1-64 of A-Za-z0-9 space ._:/-)."""
    reason = _REASON.sub("_", problem.strip())[:64].strip(" ._:/-")
    return reason or "check_failed"


_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_TEXT_KEYS = ("text", "refusal", "thinking", "output", "content")


def content_text(content: Any) -> tuple[str, bool]:
    """The text of a message's content (a string, or a list of parts of either SDK), and whether it has images.

    Tool calls and tool answers count as text; an image counts only as needing vision, since
    its tokens depend on the provider.
    """
    content = plain(content)
    if content is None:
        return "", False
    if isinstance(content, str):
        return content, False
    texts: list[str] = []
    vision = False
    for part in content if isinstance(content, list | tuple) else (content,):
        part = plain(part)
        if isinstance(part, str):
            texts.append(part)
            continue
        kind = get(part, "type")
        if kind in _IMAGE_PARTS:
            vision = True
            continue
        for key in _TEXT_KEYS:
            value = get(part, key)
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                text, images = content_text(value)
                texts.append(text)
                vision = vision or images
        if kind in ("tool_use", "server_tool_use"):
            texts.append(f"{get(part, 'name') or ''} {as_json(get(part, 'input'))}")
    return "\n".join(t for t in texts if t), vision


_UNGATED_COPIES = frozenset({"with_raw_response", "with_streaming_response", "copy"})


def not_gated(where: str, name: str) -> AttributeError:
    """The error for a resource method the wrapper does not gate, saying where the ungated one is."""
    return AttributeError(f"{where}.{name} is not gated by Tollgate: call it on the SDK client, "
                          f"client.sdk().{where}.{name}, and hold its cost yourself")


def sdk_attribute(sdk: Any, name: str) -> Any:
    """A wrapper's pass-through to the default SDK client's other resources, refusing ungated copies of it."""
    if name.startswith("_"):
        raise AttributeError(name)
    if name in _UNGATED_COPIES:
        raise AttributeError(f"{name} would make an ungated SDK client: use client.sdk().{name}, and hold its "
                             "cost yourself")
    return getattr(sdk, name)

