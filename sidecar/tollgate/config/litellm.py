"""Catalog entries from LiteLLM's maintained price map, for ``tollgate catalog import``.

LiteLLM keeps a JSON map of ~5,000 models (``model_prices_and_context_window.json``; the
``litellm`` package ships a copy): USD per token for input, cached input and output, context
and output limits, capabilities and deprecation dates. This reads the file a user points at,
or the copy inside an installed ``litellm`` (never a dependency of the sidecar), and writes
catalog entries in Tollgate's terms: prices per million tokens as exact decimal strings.

A tier is the user's decision (it is routing), so every import names the tier of what it adds.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from decimal import Decimal
from importlib import util
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["PROVIDERS", "Imported", "find_price_map", "import_models", "read_price_map"]

PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "google", "mistral": "mistral",
             "deepseek": "deepseek", "xai": "xai", "groq": "groq"}
"""LiteLLM's provider names of first-party APIs, as Tollgate's catalog names the provider (the SDK client)."""

_MAP_FILES = ("model_prices_and_context_window_backup.json", "model_prices_and_context_window.json")


@dataclass(frozen=True, slots=True)
class Imported:
    """One catalog entry, as ``models:`` takes it."""

    name: str
    entry: dict[str, Any]
    source_key: str
    """The model's key in the price map (``gemini/gemini-2.5-flash-lite``)."""


def find_price_map() -> Path:
    """The price map inside an installed ``litellm``, or ``ConfigError`` saying how to give one."""
    spec = util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            for name in _MAP_FILES:
                if (Path(folder) / name).is_file():
                    return Path(folder) / name
    raise ConfigError("no price map: pass --from FILE (LiteLLM's model_prices_and_context_window.json), or "
                      "install litellm beside tollgate to read the copy it ships", file="--from")


def read_price_map(path: Path) -> dict[str, Any]:
    try:
        # Prices as decimals from the text itself: a float would round 7.5e-08 on the way.
        data = json.loads(path.read_text(), parse_float=Decimal)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None
    except ValueError as exc:
        raise ConfigError(f"not valid JSON: {exc}", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected LiteLLM's price map: a JSON object of models", file=str(path))
    return data


def _per_million(value: Any) -> str:
    """USD per token as USD per million tokens, exactly, in plain decimal notation."""
    text = format(Decimal(str(value)) * 1_000_000, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _entry(key: str, info: dict[str, Any], tier: str) -> Imported:
    name = key.split("/", 1)[1] if "/" in key else key
    provider = PROVIDERS[info["litellm_provider"]]
    price = {"input": _per_million(info["input_cost_per_token"]),
             "output": _per_million(info["output_cost_per_token"])}
    if info.get("cache_read_input_token_cost") is not None:
        price["cached_input"] = _per_million(info["cache_read_input_token_cost"])
    capabilities = [cap for cap, flag in (("tools", "supports_function_calling"), ("vision", "supports_vision"),
                                          ("json", "supports_response_schema")) if info.get(flag)]
    entry: dict[str, Any] = {
        "provider": provider,
        "tier": tier,
        "price": price,
        "context_window": int(info.get("max_input_tokens") or info.get("max_tokens") or 0),
        "max_output_tokens": int(info.get("max_output_tokens") or info.get("max_tokens") or 0),
        "capabilities": capabilities,
    }
    if info.get("deprecation_date"):
        entry["deprecation_date"] = str(info["deprecation_date"])
    return Imported(name, entry, key)


def import_models(price_map: dict[str, Any], patterns: list[str], tier: str) -> list[Imported]:
    """The first-party chat models whose name (or key) matches a pattern, as catalog entries of ``tier``.

    Entries of other providers (resellers, clouds) and without both prices are left out: the
    catalog prices the first-party list price. A pattern that matches nothing is an error.
    """
    out: dict[str, Imported] = {}
    for pattern in patterns:
        matched = False
        for key, info in price_map.items():
            if not isinstance(info, dict) or info.get("mode") != "chat":
                continue
            if info.get("litellm_provider") not in PROVIDERS:
                continue
            if info.get("input_cost_per_token") is None or info.get("output_cost_per_token") is None:
                continue
            if not (info.get("max_input_tokens") or info.get("max_tokens")):
                continue
            short = key.split("/", 1)[1] if "/" in key else key
            if fnmatch.fnmatchcase(short, pattern) or fnmatch.fnmatchcase(key, pattern):
                matched = True
                item = _entry(key, info, tier)
                out.setdefault(item.name, item)
        if not matched:
            raise ConfigError(f"no first-party chat model in the price map matches {pattern!r}", key=pattern)
    return sorted(out.values(), key=lambda m: m.name)
