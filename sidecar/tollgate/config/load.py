"""Load and validate the YAML config into typed, frozen objects.

Every error names the file, the key (as a dotted path) and the problem, e.g.
``tollgate.yaml: budgets.templates.user.cap: "5$" is not a USD amount``.
Unknown keys are errors too: a typo must not silently disable a budget.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..ledger.spec import BudgetConfig, PoolSpec, Window, WindowKind
from ..scope import Level
from . import money, process
from .node import Node
from .process import check_listener
from .routing import parse_routing
from .sections import Config

__all__ = ["default_config_text", "load_config", "parse_config"]


def default_config_text() -> str:
    """The YAML of the shipped default config."""
    return resources.files("tollgate").joinpath("default.yaml").read_text()


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a config file; ``None`` loads the shipped default."""
    if path is None:
        return parse_config(default_config_text(), source="<default config>")
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<memory>") -> Config:
    """Validate YAML text into a ``Config``; ``source`` names the file in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=source) from None
    if data is None:
        data = {}
    root = Node(data, "", source)
    root.require_mapping()
    root.only(
        "server", "store", "estimation", "reservations", "tiers", "models", "routing", "budgets", "limits",
        "telemetry", "quality", "auth",
    )
    catalog = money.parse_catalog(root)
    quality, quality_pool = money.parse_quality(root.get("quality", {}), catalog)
    budgets = money.parse_budgets(root.get("budgets", {}))
    # The quality pool is a template like the others, so every store handles it unchanged.
    budgets = BudgetConfig(templates={**budgets.templates, Level.QUALITY: quality_pool}, overrides=budgets.overrides)
    config = Config(
        catalog=catalog,
        budgets=budgets,
        routing=parse_routing(root.get("routing", {}), catalog),
        estimation=money.parse_estimation(root.get("estimation", {})),
        reservations=money.parse_reservations(root.get("reservations", {})),
        store=process.parse_store(root.get("store", {})),
        server=process.parse_server(root.get("server", {})),
        limits=process.parse_limits(root.get("limits", {})),
        telemetry=process.parse_telemetry(root.get("telemetry", {})),
        quality=quality,
        auth=process.parse_auth(root.get("auth", {})),
        source=source,
    )
    check_listener(config.server, source)
    if config.server.health_port and config.server.health_port == config.telemetry.metrics_port:
        raise ConfigError(
            f"{config.server.health_port} is telemetry.metrics_port too; choose another port for the health listener",
            key="server.health_port", file=source,
        )
    longest = max((_window_ms(spec.window) for spec in _all_specs(config.budgets)), default=0)
    if config.reservations.retention_ms < longest:
        raise ConfigError(
            f"retention must outlast the longest pool window ({longest // 86_400_000} days), "
            "or an audit could not recompute it",
            key="reservations.retention", file=source,
        )
    return config


def _all_specs(budgets: BudgetConfig) -> list[PoolSpec]:
    return [*budgets.templates.values(), *budgets.overrides.values()]


def _window_ms(window: Window) -> int:
    if window.kind is WindowKind.FIXED:
        return {"hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000, "month": 31 * 86_400_000}[window.period]
    return window.duration_ms
