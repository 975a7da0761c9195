"""Load and validate the YAML config into typed, frozen objects.

Every error names the file, the key (as a dotted path) and the problem, e.g.
``tollgate.yaml: budgets.templates.user.cap: "5$" is not a USD amount``.
Unknown keys are errors too: a typo must not silently disable a budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, ConfigErrors
from ..ledger.spec import BudgetConfig, PoolSpec, Window, WindowKind
from ..scope import Level
from . import money, process
from .layers import Positions, layer, read_yaml
from .node import Node
from .process import check_listener
from .routing import parse_routing
from .sections import Config

__all__ = ["DEFAULT_SOURCE", "default_config_text", "load_config", "parse_config", "resolved_data"]

T = TypeVar("T")
TIERED = frozenset({"models", "routing"})
"""Default sections that name the default tiers: a file with tiers of its own does without them."""


DEFAULT_SOURCE = "<default config>"
SECTIONS = ("server", "store", "estimation", "reservations", "tiers", "models", "routing", "budgets", "limits",
            "telemetry", "quality", "auth")


def default_config_text() -> str:
    """The YAML of the shipped default config."""
    return resources.files("tollgate").joinpath("default.yaml").read_text()


def load_config(path: str | Path | None = None) -> Config:
    """Read a config file laid over the shipped defaults (see ``layers``); ``None`` loads the defaults alone."""
    if path is None:
        return parse_config(default_config_text(), source=DEFAULT_SOURCE)
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None
    return parse_config(text, source=str(path), over_defaults=True)


def resolved_data(text: str, *, source: str, over_defaults: bool) -> tuple[Any, Positions]:
    """The document a config is built from: ``text`` as it is, or laid over the shipped defaults."""
    data, positions = read_yaml(text, source)
    if data is None:
        data = {}
    if not over_defaults:
        return data, positions
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}",
                          file=source)
    base, base_positions = read_yaml(default_config_text(), DEFAULT_SOURCE)
    if "tiers" in data:
        # Tiers of its own make the catalog the user's whole: the default models, and the default routing
        # that names the default tiers, would not fit them.
        base = {k: v for k, v in base.items() if k not in TIERED}
        base_positions = {k: v for k, v in base_positions.items() if k[0] not in TIERED}
    return layer(base, base_positions, data, positions)


def parse_config(text: str, *, source: str = "<memory>", over_defaults: bool = False) -> Config:
    """Validate YAML text into a ``Config``; ``source`` names the file in errors.

    ``over_defaults`` lays the text over the shipped defaults, as ``load_config`` does for files. Every
    problem found is reported at once (``ConfigErrors``), each with its file, line and key.
    """
    data, positions = resolved_data(text, source=source, over_defaults=over_defaults)
    root = Node(data, "", source, positions=positions)
    root.require_mapping()
    errors: list[ConfigError] = []
    try:
        root.only(*SECTIONS)
    except ConfigError as exc:
        errors.append(exc)

    def section(parse: Callable[[], T], fallback: T) -> T:
        try:
            return parse()
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc)
        return fallback

    catalog = section(lambda: money.parse_catalog(root), None)
    budgets = section(lambda: money.parse_budgets(root.get("budgets", {})), None)
    estimation = section(lambda: money.parse_estimation(root.get("estimation", {})), None)
    reservations = section(lambda: money.parse_reservations(root.get("reservations", {})), None)
    store = section(lambda: process.parse_store(root.get("store", {})), None)
    server = section(lambda: process.parse_server(root.get("server", {})), None)
    limits = section(lambda: process.parse_limits(root.get("limits", {})), None)
    telemetry = section(lambda: process.parse_telemetry(root.get("telemetry", {})), None)
    auth = section(lambda: process.parse_auth(root.get("auth", {})), None)
    routing = quality = None
    if catalog is not None:  # both name the catalog's tiers: without it they cannot be checked
        routing = section(lambda: parse_routing(root.get("routing", {}), catalog), None)
        quality = section(lambda: money.parse_quality(root.get("quality", {}), catalog), None)
    if errors:
        raise ConfigErrors(errors)
    assert catalog is not None and budgets is not None and estimation is not None and reservations is not None
    assert store is not None and server is not None and limits is not None and telemetry is not None
    assert auth is not None and routing is not None and quality is not None
    quality_config, quality_pool = quality
    # The quality pool is a template like the others, so every store handles it unchanged.
    budgets = BudgetConfig(templates={**budgets.templates, Level.QUALITY: quality_pool}, overrides=budgets.overrides)
    config = Config(
        catalog=catalog,
        budgets=budgets,
        routing=routing,
        estimation=estimation,
        reservations=reservations,
        store=store,
        server=server,
        limits=limits,
        telemetry=telemetry,
        quality=quality_config,
        auth=auth,
        source=source,
    )
    try:
        check_listener(config.server, source)
    except ConfigError as exc:
        raise root.child("server", None).child("host", None).error(exc.problem) from None
    if config.server.health_port and config.server.health_port == config.telemetry.metrics_port:
        raise root.child("server", None).child("health_port", None).error(
            f"{config.server.health_port} is telemetry.metrics_port too; choose another port for the health listener")
    longest = max((_window_ms(spec.window) for spec in _all_specs(config.budgets)), default=0)
    if config.reservations.retention_ms < longest:
        raise root.child("reservations", None).child("retention", None).error(
            f"retention must outlast the longest pool window ({longest // 86_400_000} days), "
            "or an audit could not recompute it")
    return config


def _all_specs(budgets: BudgetConfig) -> list[PoolSpec]:
    return [*budgets.templates.values(), *budgets.overrides.values()]


def _window_ms(window: Window) -> int:
    if window.kind is WindowKind.FIXED:
        return {"hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000, "month": 31 * 86_400_000}[window.period]
    return window.duration_ms
