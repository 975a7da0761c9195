"""The money sections of the config: the model catalog, budgets, estimation, reservations, quality."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..catalog import Capability, Catalog, Latency, Model
from ..errors import ConfigError, ConfigErrors, InvalidRequest
from ..ids import parse_pool_id
from ..ledger.spec import FIXED_PERIODS, BudgetConfig, ExpiryPolicy, Policy, PoolSpec, Window, WindowKind
from ..money import MAX_CAP_NANOS, Price, format_usd, parse_margin
from ..quality import QualityConfig
from ..scope import Level
from .node import Node
from .sections import EstimationConfig, ReservationConfig

__all__ = ["parse_budgets", "parse_catalog", "parse_estimation", "parse_quality", "parse_reservations"]


def parse_catalog(root: Node) -> Catalog:
    tiers_node = root.get("tiers")
    if not isinstance(tiers_node.value, list) or not tiers_node.value:
        raise tiers_node.error("expected a list of tier names, cheapest first, e.g. [cheap, medium, frontier]")
    tiers = tuple(tiers_node.child(str(i), t).str() for i, t in enumerate(tiers_node.value))
    if len(set(tiers)) != len(tiers):
        raise tiers_node.error("tier names must be unique")
    models_node = root.get("models")
    models_node.require_mapping()
    if not models_node.value:
        raise models_node.error("the catalog needs at least one model")
    models: dict[str, Model] = {}
    errors: list[ConfigError] = []
    for name, node in models_node.items():
        try:
            models[name] = _parse_model(name, node, tiers)
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise ConfigErrors(errors)
    empty = [t for t in tiers if not any(m.tier == t for m in models.values())]
    if empty:
        raise tiers_node.error(f"tier {empty[0]!r} has no model in the catalog")
    return Catalog(tiers=tiers, models=models)


def _parse_model(name: str, node: Node, tiers: tuple[str, ...]) -> Model:
    node.only(
        "provider", "tier", "price", "context_window", "max_output_tokens", "capabilities", "token_ratio", "latency",
        "deprecation_date",
    )
    tier = node.get("tier").str(choices=tiers)
    price_node = node.get("price")
    if price_node.value is None:
        raise price_node.error('is required: USD per million tokens, e.g. price: {input: "0.15", output: "0.60"}; '
                               "an unpriced model is refused")
    price_node.only("input", "cached_input", "output")
    if not price_node.has("input") or not price_node.has("output"):
        raise price_node.error(
            "needs input and output prices in USD per million tokens; an unpriced model is refused"
        )
    try:
        price = Price.per_million(
            input=price_node.get("input").value,
            output=price_node.get("output").value,
            cached_input=price_node.get("cached_input").value,
        )
    except ValueError as exc:
        raise price_node.error(str(exc)) from None
    caps_node = node.get("capabilities", [])
    if not isinstance(caps_node.value, list):
        raise caps_node.error("expected a list such as [tools, vision, json]")
    caps = frozenset(
        Capability(caps_node.child(str(i), c).str(choices=tuple(Capability))) for i, c in enumerate(caps_node.value)
    )
    ratio = node.get("token_ratio", 1.0).number(minimum=0.5, maximum=3.0)
    context = node.get("context_window").int(minimum=1)
    return Model(
        name=name,
        provider=node.get("provider").str(),
        tier=tier,
        tier_rank=tiers.index(tier),
        price=price,
        context_window=context,
        max_output_tokens=node.get("max_output_tokens", 16_384).int(minimum=1),
        capabilities=caps,
        token_ratio_pct=round(ratio * 100),
        latency=Latency[node.get("latency", "standard").str(choices=tuple(str(c) for c in Latency)).upper()],
        deprecation_date=_date(node.get("deprecation_date")) if node.has("deprecation_date") else None,
    )


def _date(node: Node) -> date:
    """A calendar date: YAML reads ``2027-01-14`` as one; a quoted one is accepted too."""
    value = node.value
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise node.error(f"expected a date like 2027-01-14, got {value!r}") from None


def parse_window(node: Node) -> Window:
    if node.value is None or node.value == "none":
        return Window()
    node.only("kind", "period", "tz", "duration")
    kind = WindowKind(node.get("kind").str(choices=tuple(WindowKind)))
    if kind is WindowKind.NONE:
        return Window()
    if kind is WindowKind.FIXED:
        tz = node.get("tz", "UTC").str()
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise node.child("tz", tz).error(f"unknown time zone {tz!r}; use an IANA name like Europe/Paris") from None
        if not node.has("period"):
            raise node.error(f"a fixed window needs a period: one of {', '.join(FIXED_PERIODS)}, "
                             "e.g. window: {kind: fixed, period: day}")
        return Window(kind=kind, period=node.get("period").str(choices=FIXED_PERIODS), tz=tz)
    if node.has("period") or node.has("tz"):
        raise node.error(f"a {kind} window takes a duration, not a period or tz")
    return Window(kind=kind, duration_ms=node.get("duration").duration_ms())


_POOL_KEYS = (
    "cap", "window", "policy", "warn_at", "priority_reserve", "max_calls", "max_tokens", "max_open", "margin",
)


def parse_pool(node: Node, base: PoolSpec | None = None) -> PoolSpec:
    node.only(*_POOL_KEYS)
    if base is None and not node.has("cap"):
        raise node.error("a pool needs a cap, e.g. cap: \"5.00\"")
    b = base or PoolSpec(cap=0)
    window = parse_window(node.get("window")) if node.has("window") else b.window
    max_calls = node.get("max_calls").int() if node.has("max_calls") else b.max_calls
    max_tokens = node.get("max_tokens").int() if node.has("max_tokens") else b.max_tokens
    if window.kind is WindowKind.TOKEN_BUCKET and (max_calls or max_tokens):
        raise node.error("max_calls and max_tokens need a none, fixed or sliding window, not a token bucket")
    margin = b.margin_bp
    if node.has("margin"):
        try:
            margin = parse_margin(node.get("margin").value)
        except ValueError as exc:
            raise node.child("margin", None).error(str(exc)) from None
    cap = b.cap
    if node.has("cap"):
        cap = node.get("cap").usd()
        if cap > MAX_CAP_NANOS:
            raise node.child("cap", None).error(
                f"a pool's cap may be at most {format_usd(MAX_CAP_NANOS, 2)} (2^52 nano-USD); split larger budgets "
                "across teams")
    return PoolSpec(
        cap=cap,
        window=window,
        policy=Policy(node.get("policy").str(choices=tuple(Policy))) if node.has("policy") else b.policy,
        warn_at_bp=node.get("warn_at").share_bp() if node.has("warn_at") else b.warn_at_bp,
        priority_reserve_bp=(
            node.get("priority_reserve").share_bp() if node.has("priority_reserve") else b.priority_reserve_bp
        ),
        max_calls=max_calls,
        max_tokens=max_tokens,
        max_open=node.get("max_open").int() if node.has("max_open") else b.max_open,
        margin_bp=margin,
    )


def parse_budgets(node: Node) -> BudgetConfig:
    node.only("templates", "overrides")
    templates: dict[Level, PoolSpec] = {}
    errors: list[ConfigError] = []
    for name, tnode in node.get("templates", {}).items():
        try:
            templates[Level(name)] = _parse_template(name, tnode)
        except ConfigError as exc:
            errors.append(exc)
    overrides: dict[str, PoolSpec] = {}
    for pool_id, onode in node.get("overrides", {}).items():
        try:
            overrides[pool_id] = _parse_override(pool_id, onode, templates)
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise ConfigErrors(errors)
    return BudgetConfig(templates=templates, overrides=overrides)


def _parse_template(name: str, node: Node) -> PoolSpec:
    if name not in tuple(Level) or name == Level.QUALITY:
        levels = ", ".join(level for level in Level if level is not Level.QUALITY)
        raise node.error(f"unknown scope level; use one of: {levels} (the quality pool is quality.budget)")
    spec = parse_pool(node)
    if Level(name) is Level.REQUEST and spec.window.kind is not WindowKind.NONE:
        raise node.error("a request pool caps one call and has no window")
    return spec


def _parse_override(pool_id: str, node: Node, templates: dict[Level, PoolSpec]) -> PoolSpec:
    try:
        parsed = parse_pool_id(pool_id)
    except InvalidRequest as exc:
        raise node.error(f"{exc}; override keys are pool ids: org:ORG, team:ORG/TEAM, user:ORG/USER or "
                         "session:ORG/SESSION") from None
    if parsed.level not in {"session", "user", "team", "org"}:
        raise node.error("override keys are pool ids: org:ORG, team:ORG/TEAM, user:ORG/USER or session:ORG/SESSION")
    return parse_pool(node, templates.get(Level(parsed.level)))




def parse_estimation(node: Node) -> EstimationConfig:
    node.only("margin", "default_output_tokens", "output_quantile", "min_samples", "message_overhead_tokens")
    d = EstimationConfig()
    try:
        margin = parse_margin(node.get("margin", 1.30).value)
    except ValueError as exc:
        raise node.child("margin", None).error(str(exc)) from None
    return EstimationConfig(
        margin_bp=margin,
        default_output_tokens=node.get("default_output_tokens", d.default_output_tokens).int(minimum=1),
        output_quantile=node.get("output_quantile", d.output_quantile).number(minimum=0.5, maximum=1.0),
        min_samples=node.get("min_samples", d.min_samples).int(minimum=1, maximum=10_000),
        message_overhead_tokens=node.get("message_overhead_tokens", d.message_overhead_tokens).int(maximum=100),
    )


def parse_reservations(node: Node) -> ReservationConfig:
    node.only("ttl", "max_ttl", "expiry_policy", "sweep_interval", "retention")
    d = ReservationConfig()
    ttl = node.get("ttl").duration_ms() if node.has("ttl") else d.ttl_ms
    max_ttl = node.get("max_ttl").duration_ms() if node.has("max_ttl") else d.max_ttl_ms
    if ttl > max_ttl:
        raise node.child("ttl", None).error("the default ttl must not exceed max_ttl")
    return ReservationConfig(
        ttl_ms=ttl,
        max_ttl_ms=max_ttl,
        expiry_policy=ExpiryPolicy(node.get("expiry_policy", "charge").str(choices=tuple(ExpiryPolicy))),
        sweep_interval_ms=(
            node.get("sweep_interval").duration_ms() if node.has("sweep_interval") else d.sweep_interval_ms
        ),
        retention_ms=node.get("retention").duration_ms() if node.has("retention") else d.retention_ms,
    )




_DEFAULT_QUALITY_POOL = PoolSpec(cap=50_000_000_000, window=Window(WindowKind.FIXED, period="month"),
                                 policy=Policy.HARD, priority_reserve_bp=0)


def parse_quality(node: Node, catalog: Catalog) -> tuple[QualityConfig, PoolSpec]:
    node.only("enabled", "guard", "reference_tier", "tolerance", "min_samples", "shadow_share", "warmup_share",
              "probe_share", "window_days", "seed", "budget")
    d = QualityConfig()

    def flag(name: str, default: bool) -> bool:
        return node.get(name, default).bool()

    reference = node.get("reference_tier", "").str(choices=("", *catalog.tiers))
    pool = parse_pool(node.get("budget"), _DEFAULT_QUALITY_POOL) if node.has("budget") else _DEFAULT_QUALITY_POOL
    return QualityConfig(
        enabled=flag("enabled", d.enabled),
        guard=flag("guard", d.guard),
        reference_tier=reference,
        tolerance=node.get("tolerance", d.tolerance).number(minimum=0.0, maximum=1.0),
        min_samples=node.get("min_samples", d.min_samples).int(minimum=5, maximum=100_000),
        shadow_share=node.get("shadow_share", d.shadow_share).number(minimum=0.0, maximum=1.0),
        warmup_share=node.get("warmup_share", d.warmup_share).number(minimum=0.0, maximum=1.0),
        probe_share=node.get("probe_share", d.probe_share).number(minimum=0.0, maximum=1.0),
        window_days=node.get("window_days", d.window_days).int(minimum=1, maximum=90),
        seed=node.get("seed").int() if node.has("seed") else None,
    ), pool
