"""``tollgate catalog import``: catalog entries from LiteLLM's price map, with its prices exactly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from tests.support.sidecar_process import ROOT
from tollgate.catalog import deprecation_notes
from tollgate.config import load_config
from tollgate.config.litellm import import_models, read_price_map
from tollgate.errors import ConfigError

PRICES = ROOT / "tests" / "fixtures" / "litellm_prices_cut.json"
CURRENT = ["gpt-5.4-mini", "gpt-5.4-nano", "claude-opus-4-7", "claude-haiku-4-5", "gemini-2.5-flash-lite"]


def _import(*patterns: str, tier: str = "cheap") -> str:
    result = subprocess.run([sys.executable, "-m", "tollgate.cli", "catalog", "import", *patterns, "--tier", tier,
                             "--from", str(PRICES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_five_current_models_import_with_the_maps_prices_exactly(tmp_path: Path) -> None:
    raw = json.loads(PRICES.read_text(), parse_float=Decimal)
    cheap = yaml.safe_load(_import("gpt-5.4-nano", "gemini-2.5-flash-lite", "claude-haiku-4-5"))["models"]
    medium = yaml.safe_load(_import("gpt-5.4-mini", tier="medium"))["models"]
    frontier = yaml.safe_load(_import("claude-opus-4-*", tier="frontier"))["models"]
    models = {**cheap, **medium, **frontier}
    assert sorted(models) == sorted(CURRENT)
    assert models["gemini-2.5-flash-lite"]["provider"] == "google"
    assert models["claude-opus-4-7"]["capabilities"] == ["tools", "vision", "json"]

    config = tmp_path / "tollgate.yaml"
    config.write_text(yaml.safe_dump({"tiers": ["cheap", "medium", "frontier"], "models": models}))
    check = subprocess.run([sys.executable, "-m", "tollgate.cli", "check", str(config)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    catalog = load_config(config).catalog
    for name in CURRENT:
        info = raw.get(name) or raw[f"gemini/{name}"]
        model = catalog.models[name]
        # Milli-nano-USD per token: USD per token x 10^12, with nothing rounded on the way.
        assert model.price.input == info["input_cost_per_token"] * 10**12
        assert model.price.output == info["output_cost_per_token"] * 10**12
        assert model.price.cached_input == info["cache_read_input_token_cost"] * 10**12
        assert (model.context_window, model.max_output_tokens) == (info["max_input_tokens"],
                                                                    info["max_output_tokens"])


def test_resellers_are_left_out_and_a_pattern_that_matches_nothing_is_an_error() -> None:
    prices = read_price_map(PRICES)
    # azure/gpt-4.1-mini matches the pattern but is a cloud's resale, not a first-party list price.
    nothing = re.escape("no first-party chat model in the price map matches '*gpt-4.1-mini'")
    with pytest.raises(ConfigError, match=nothing):
        import_models(prices, ["*gpt-4.1-mini"], "cheap")


def test_deprecation_dates_are_imported_and_warned_about(tmp_path: Path) -> None:
    imported = {m.name: m.entry for m in import_models(read_price_map(PRICES), ["claude-sonnet-4-5"], "medium")}
    assert imported["claude-sonnet-4-5"]["deprecation_date"] == "2026-11-30"
    notes = deprecation_notes({"claude-sonnet-4-5": date(2026, 11, 30), "gpt-5.4-nano": date(2027, 4, 1),
                               "claude-opus-4-7": None}, date(2027, 1, 15))
    assert notes == ["model claude-sonnet-4-5 is past its deprecation date (2026-11-30): its provider may refuse it; "
                     "replace it in the catalog",
                     "model gpt-5.4-nano is deprecated on 2027-04-01, in 76 days: plan its replacement"]
    config = tmp_path / "tollgate.yaml"
    config.write_text(yaml.safe_dump({"models": imported}))
    check = subprocess.run([sys.executable, "-m", "tollgate.cli", "check", str(config)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and "warning: model claude-sonnet-4-5 is past its deprecation date" in check.stdout
