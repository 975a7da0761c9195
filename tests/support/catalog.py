"""The suite's own catalog over the shipped defaults: configs whose model names and prices tests can count on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tollgate.config import Config, default_config_text, parse_config

CATALOG_FILE = Path(__file__).resolve().parent / "catalog.yaml"


def suite_config_data() -> dict[str, Any]:
    """The shipped default config with the suite's tiers and models in place of the default catalog."""
    data: dict[str, Any] = yaml.safe_load(default_config_text())
    data.update(yaml.safe_load(CATALOG_FILE.read_text()))
    return data


def suite_config_text() -> str:
    """``suite_config_data()`` as YAML."""
    return yaml.safe_dump(suite_config_data(), sort_keys=False)


def suite_config() -> Config:
    """``suite_config_text()`` validated."""
    return parse_config(suite_config_text(), source="<test config>")
