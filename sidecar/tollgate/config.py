"""Load and validate the YAML config into typed, frozen objects.

Every error names the file, the key (as a dotted path) and the problem, e.g.
``tollgate.yaml: budgets.templates.user.cap: "5$" is not a USD amount``.
Unknown keys are errors too: a typo must not silently disable a budget.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .auth import Caller
from .catalog import Capability, Catalog, Latency, Model
from .errors import ConfigError, InvalidRequest
from .ids import ID_PATTERN, parse_pool_id
from .money import MAX_CAP_NANOS, Price, format_usd, parse_margin, parse_usd
from .quality import QualityConfig
from .scope import Level, Scope

__all__ = [
    "BudgetConfig",
    "Config",
    "EstimationConfig",
    "ExpiryPolicy",
    "Limits",
    "Policy",
    "PoolSpec",
    "ReservationConfig",
    "RoutingConfig",
    "ServerConfig",
    "StoreConfig",
    "TelemetryConfig",
    "Window",
    "WindowKind",
    "default_config_text",
    "load_config",
    "parse_config",
]


class Policy(StrEnum):
    """What a pool does with a call that does not fit."""

    HARD = "hard"
    SOFT = "soft"
    WARN = "warn"


class WindowKind(StrEnum):
    """How a pool's spend resets."""

    NONE = "none"
    FIXED = "fixed"
    SLIDING = "sliding"
    TOKEN_BUCKET = "token_bucket"


class ExpiryPolicy(StrEnum):
    """What happens to a hold nobody ended within its TTL."""

    CHARGE = "charge"
    RELEASE = "release"


FIXED_PERIODS = ("hour", "day", "week", "month")


@dataclass(frozen=True, slots=True)
class Window:
    """A pool's window. ``period`` is for fixed windows; ``duration_ms`` for sliding and token bucket."""

    kind: WindowKind = WindowKind.NONE
    period: str = ""
    tz: str = "UTC"
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A budget pool's configuration."""

    cap: int
    """Cap per window in nano-dollars."""
    window: Window = Window()
    policy: Policy = Policy.HARD
    warn_at_bp: int = 8000
    """Warning threshold as basis points of the cap (default 80 %)."""
    priority_reserve_bp: int = 2000
    """Share of the cap only high-priority requests may use, in basis points (default 20 %)."""
    max_calls: int = 0
    """Cap on calls per window; 0 means none."""
    max_tokens: int = 0
    """Cap on tokens (input + output) per window; 0 means none."""
    max_open: int = 0
    """Cap on reservations open at once, so a runaway loop cannot lock the pool in holds; 0 means none."""
    margin_bp: int | None = None
    """Estimation margin for holds on this pool's scope; ``None`` takes the global one."""

    def usable_cap(self, *, high_priority: bool) -> int:
        """What a request of this priority may fill the pool up to."""
        if high_priority:
            return self.cap
        return self.cap - self.cap * self.priority_reserve_bp // 10_000


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """Pool templates per level, with explicit overrides per pool id."""

    templates: dict[Level, PoolSpec] = field(default_factory=dict)
    overrides: dict[str, PoolSpec] = field(default_factory=dict)

    def spec_for(self, level: Level, pool_id: str) -> PoolSpec | None:
        """The spec of one pool: its override, else its level's template, else none."""
        return self.overrides.get(pool_id) or self.templates.get(level)

    def pools_for(self, scope: Scope) -> list[tuple[str, Level, PoolSpec]]:
        """Every stateful pool of a scope, narrowest first (the request level is not one)."""
        out = []
        for level, pool_id in scope.ids():
            spec = self.spec_for(level, pool_id)
            if spec is not None:
                out.append((pool_id, level, spec))
        return out


@dataclass(frozen=True, slots=True)
class EstimationConfig:
    """How holds are sized."""

    margin_bp: int = 13_000
    """Hold = estimated cost × margin; 13000 basis points = 1.30."""
    default_output_tokens: int = 512
    """Output estimate for a (task type, model) with no history yet."""
    output_quantile: float = 0.9
    """Quantile of observed output tokens used as the estimate."""
    min_samples: int = 20
    """Observations needed before the learned estimate replaces the default."""
    message_overhead_tokens: int = 4
    """Tokens a chat format adds per message (role markers, separators)."""


@dataclass(frozen=True, slots=True)
class ReservationConfig:
    """Reservation lifetime."""

    ttl_ms: int = 300_000
    max_ttl_ms: int = 3_600_000
    expiry_policy: ExpiryPolicy = ExpiryPolicy.CHARGE
    sweep_interval_ms: int = 1_000
    retention_ms: int = 40 * 86_400_000
    """How long ended reservation records (and their idempotency) are kept on a shared store."""


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """Task-signal rules and difficulty thresholds."""

    task_types: dict[str, str] = field(default_factory=dict)
    agent_modes: dict[str, str] = field(default_factory=dict)
    difficulty: tuple[tuple[float, str], ...] = ()
    """(minimum score, tier) pairs, highest score first; below all of them the cheapest tier."""
    fallbacks: int = 3
    classifier: str = "default"
    """``default`` (the shipped model), ``none`` (the heuristic decides) or the path of a model file."""
    thresholds: dict[str, tuple[tuple[float, str], ...]] = field(default_factory=dict)
    """Classifier thresholds like ``difficulty``, per task type or ``default``; absent: ``difficulty``'s."""
    providers: dict[str, ProviderRule] = field(default_factory=dict)
    """Provider allow and deny lists per pool id (``org:acme``, ``team:acme/legal``) or ``*`` for all."""
    max_escalations: int = 2
    """How many times one call may be escalated (attempt 1 + this many)."""
    decision_log: DecisionLogConfig | None = None
    """Where routing decisions and feedback are written for training, if anywhere."""


@dataclass(frozen=True, slots=True)
class ProviderRule:
    """Which providers a scope may use: only ``allow`` (when given), never ``deny``."""

    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()

    def permits(self, provider: str) -> bool:
        return (self.allow is None or provider in self.allow) and provider not in self.deny


@dataclass(frozen=True, slots=True)
class DecisionLogConfig:
    """The decision log: one JSON line per routing decision and per feedback."""

    path: str
    include_text: bool = False
    """Also write the messages; off by default, so the log holds hashed features, never prompt text."""


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the ledger lives."""

    kind: str = "sqlite"
    """``sqlite`` (embedded, one process), ``redis`` (shared by many sidecars) or ``memory``."""
    path: str = "tollgate.db"
    """SQLite file, for ``sqlite``."""
    url: str = "redis://127.0.0.1:6379/0"
    """Redis URL for ``redis``: ``redis://`` or ``rediss://`` (TLS), with ``user:password@`` for ACLs."""
    cluster: bool = False
    """Connect to Redis Cluster instead of a single primary."""
    sentinels: tuple[str, ...] = ()
    """Redis Sentinel addresses (``host:port``); when set, the primary of ``sentinel_service`` is used."""
    sentinel_service: str = "mymaster"
    """The Sentinel service name of the primary."""
    timeout_ms: int = 250
    """Bound on every Redis call; past it the call fails closed with UNAVAILABLE."""
    key_prefix: str = "tg"
    """Prefix of every Redis key, so several deployments can share one Redis."""
    fail_open_allowance: int = 0
    """Nano-dollars this sidecar may admit on its own while Redis is unreachable; 0 = fail closed."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Listeners and shutdown."""

    host: str = "127.0.0.1"
    port: int = 50551
    unix_socket: str = ""
    grace_period_s: float = 10.0
    health_host: str = "0.0.0.0"
    """Address of the health-only listener (for kubelet gRPC probes, which connect to the pod IP)."""
    health_port: int = 0
    """Port of a second listener serving only grpc.health.v1; 0 turns it off."""
    tls: TlsConfig | None = None
    """Server certificate (and client CA for mTLS) of the API listener; required off loopback."""
    allow_insecure: bool = False
    """Allow a plaintext API listener on a non-loopback address (a mesh or a proxy terminates TLS)."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM files of the API listener's TLS."""

    cert: str
    key: str
    client_ca: str = ""
    """When set, clients must present a certificate signed by this CA (mTLS)."""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Callers allowed to use the sidecar; none configured means any process that can connect."""

    callers: tuple[Caller, ...] = ()
    audit_log: str = ""
    """JSON-lines file every admin operation is appended to (it is also logged)."""


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """Where metrics are served. Traces are configured by the standard ``OTEL_*`` variables."""

    metrics_host: str = "0.0.0.0"
    """Prometheus scrapes from outside the pod; ``/metrics`` carries figures, never ids."""
    metrics_port: int = 9464
    """0 turns the metrics endpoint off."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on request size, so no input can exhaust memory or CPU."""

    max_messages: int = 2_000
    max_text_chars: int = 4_000_000
    max_tokens: int = 10_000_000
    max_tags: int = 32
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest gRPC message in either direction; set when the server starts. gRPC's own
    default: every request in flight may cost this much while it is parsed, so a larger
    bound lets fewer concurrent hostile calls reach a pod's memory limit."""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    catalog: Catalog
    budgets: BudgetConfig
    routing: RoutingConfig
    estimation: EstimationConfig = EstimationConfig()
    reservations: ReservationConfig = ReservationConfig()
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    limits: Limits = Limits()
    telemetry: TelemetryConfig = TelemetryConfig()
    auth: AuthConfig = AuthConfig()
    quality: QualityConfig = field(default_factory=QualityConfig)
    source: str = "<memory>"


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
    root = _Node(data, "", source)
    root.require_mapping()
    root.only(
        "server", "store", "estimation", "reservations", "tiers", "models", "routing", "budgets", "limits",
        "telemetry", "quality", "auth",
    )
    catalog = _catalog(root)
    quality, quality_pool = _quality(root.get("quality", {}), catalog)
    budgets = _budgets(root.get("budgets", {}))
    # The quality pool is a template like the others, so every store handles it unchanged.
    budgets = BudgetConfig(templates={**budgets.templates, Level.QUALITY: quality_pool}, overrides=budgets.overrides)
    config = Config(
        catalog=catalog,
        budgets=budgets,
        routing=_routing(root.get("routing", {}), catalog),
        estimation=_estimation(root.get("estimation", {})),
        reservations=_reservations(root.get("reservations", {})),
        store=_store(root.get("store", {})),
        server=_server(root.get("server", {})),
        limits=_limits(root.get("limits", {})),
        telemetry=_telemetry(root.get("telemetry", {})),
        quality=quality,
        auth=_auth(root.get("auth", {})),
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


class _Node:
    """A value in the YAML tree that knows its dotted key path, for precise errors."""

    def __init__(self, value: Any, key: str, source: str) -> None:
        self.value = value
        self.key = key
        self.source = source

    def error(self, problem: str) -> ConfigError:
        return ConfigError(problem, key=self.key or "<top level>", file=self.source)

    def child(self, name: str, value: Any) -> _Node:
        return _Node(value, f"{self.key}.{name}" if self.key else str(name), self.source)

    def require_mapping(self) -> Mapping[str, Any]:
        if not isinstance(self.value, Mapping):
            raise self.error(f"expected a mapping, got {type(self.value).__name__}")
        return self.value

    def only(self, *allowed: str) -> None:
        unknown = sorted(str(k) for k in self.require_mapping() if k not in allowed)
        if unknown:
            raise self.child(unknown[0], None).error(f"unknown key; allowed here: {', '.join(allowed)}")

    def get(self, name: str, default: Any = None) -> _Node:
        mapping = self.require_mapping()
        return self.child(name, mapping.get(name, default))

    def has(self, name: str) -> bool:
        return name in self.require_mapping()

    def items(self) -> Iterator[tuple[str, _Node]]:
        for k, v in self.require_mapping().items():
            yield str(k), self.child(str(k), v)

    def int(self, *, minimum: int = 0, maximum: int | None = None) -> int:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(f"expected an integer, got {v!r}")
        if v < minimum or (maximum is not None and v > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise self.error(f"{v} is out of range: must be {bound}")
        return v

    def number(self, *, minimum: float, maximum: float) -> float:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(f"expected a number, got {v!r}")
        if not minimum <= v <= maximum:
            raise self.error(f"{v} is out of range: must be between {minimum} and {maximum}")
        return float(v)

    def bool(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {self.value!r}")
        return self.value

    def path(self, what: str) -> Path:
        """A path, relative to the config file's folder when the config came from a file."""
        raw = self.str()
        if not raw.strip():
            raise self.error(f"expected {what}")
        path = Path(raw).expanduser()
        if not path.is_absolute() and Path(self.source).is_file():
            path = Path(self.source).resolve().parent / path
        return path

    def str(self, *, choices: tuple[str, ...] | None = None) -> str:
        v = self.value
        if not isinstance(v, str):
            raise self.error(f"expected a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.error(f"{v!r} is not one of: {', '.join(choices)}")
        return v

    def usd(self) -> int:
        try:
            return parse_usd(self.value)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def share_bp(self) -> int:
        """A share in [0, 1] as basis points."""
        return round(self.number(minimum=0.0, maximum=1.0) * 10_000)

    def duration_ms(self) -> int:
        """``30s``, ``5m``, ``1h``, ``7d`` or a number of seconds."""
        v = self.value
        units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v * 1000
        if isinstance(v, str):
            for unit in sorted(units, key=len, reverse=True):
                number = v.strip().removesuffix(unit)
                if number != v.strip() and number.isdigit() and int(number) > 0:
                    return int(number) * units[unit]
        raise self.error(f"expected a duration like 30s, 5m, 1h or 7d, got {v!r}")


def _catalog(root: _Node) -> Catalog:
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
    for name, node in models_node.items():
        node.only(
            "provider", "tier", "price", "context_window", "max_output_tokens", "capabilities", "token_ratio", "latency"
        )
        tier = node.get("tier").str(choices=tiers)
        price_node = node.get("price")
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
        models[name] = Model(
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
        )
    empty = [t for t in tiers if not any(m.tier == t for m in models.values())]
    if empty:
        raise tiers_node.error(f"tier {empty[0]!r} has no model in the catalog")
    return Catalog(tiers=tiers, models=models)


def _window(node: _Node) -> Window:
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
        return Window(kind=kind, period=node.get("period").str(choices=FIXED_PERIODS), tz=tz)
    if node.has("period") or node.has("tz"):
        raise node.error(f"a {kind} window takes a duration, not a period or tz")
    return Window(kind=kind, duration_ms=node.get("duration").duration_ms())


_POOL_KEYS = (
    "cap", "window", "policy", "warn_at", "priority_reserve", "max_calls", "max_tokens", "max_open", "margin",
)


def _pool(node: _Node, base: PoolSpec | None = None) -> PoolSpec:
    node.only(*_POOL_KEYS)
    if base is None and not node.has("cap"):
        raise node.error("a pool needs a cap, e.g. cap: \"5.00\"")
    b = base or PoolSpec(cap=0)
    window = _window(node.get("window")) if node.has("window") else b.window
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


def _budgets(node: _Node) -> BudgetConfig:
    node.only("templates", "overrides")
    templates: dict[Level, PoolSpec] = {}
    for name, tnode in node.get("templates", {}).items():
        if name not in tuple(Level) or name == Level.QUALITY:
            levels = ", ".join(level for level in Level if level is not Level.QUALITY)
            raise tnode.error(f"unknown scope level; use one of: {levels} (the quality pool is quality.budget)")
        level = Level(name)
        templates[level] = _pool(tnode)
        if level is Level.REQUEST and templates[level].window.kind is not WindowKind.NONE:
            raise tnode.error("a request pool caps one call and has no window")
    overrides: dict[str, PoolSpec] = {}
    for pool_id, onode in node.get("overrides", {}).items():
        try:
            parsed = parse_pool_id(pool_id)
        except InvalidRequest as exc:
            raise onode.error(f"{exc}; override keys are pool ids: org:ORG, team:ORG/TEAM, user:ORG/USER or "
                              "session:ORG/SESSION") from None
        if parsed.level not in {"session", "user", "team", "org"}:
            raise onode.error(
                "override keys are pool ids: org:ORG, team:ORG/TEAM, user:ORG/USER or session:ORG/SESSION"
            )
        overrides[pool_id] = _pool(onode, templates.get(Level(parsed.level)))
    return BudgetConfig(templates=templates, overrides=overrides)


def _routing(node: _Node, catalog: Catalog) -> RoutingConfig:
    node.only(
        "task_types", "agent_modes", "difficulty", "fallbacks", "classifier", "thresholds", "providers",
        "max_escalations", "decision_log",
    )
    tiers = catalog.tiers

    def tier_map(name: str) -> dict[str, str]:
        return {k: v.str(choices=tiers) for k, v in node.get(name, {}).items()}

    def tier_thresholds(tnode: _Node) -> tuple[tuple[float, str], ...]:
        thresholds: list[tuple[float, str]] = []
        for tier, vnode in tnode.items():
            if tier not in tiers:
                raise vnode.error(f"unknown tier; tiers are: {', '.join(tiers)}")
            thresholds.append((vnode.number(minimum=0.0, maximum=1.0), tier))
        thresholds.sort(reverse=True)
        ranks = [tiers.index(t) for _, t in thresholds]
        if ranks != sorted(ranks, reverse=True):
            raise tnode.error("a higher tier needs a higher difficulty threshold")
        return tuple(thresholds)

    # Per task type (or "default" for every other request): the classifier's knob of cost against quality.
    by_task = {name: tier_thresholds(tnode) for name, tnode in node.get("thresholds", {}).items()}
    return RoutingConfig(
        task_types=tier_map("task_types"),
        agent_modes=tier_map("agent_modes"),
        difficulty=tier_thresholds(node.get("difficulty", {})),
        fallbacks=node.get("fallbacks", 3).int(maximum=20),
        classifier=_classifier_ref(node.get("classifier", "default")),
        thresholds=by_task,
        providers={key: _provider_rule(key, pnode, catalog) for key, pnode in node.get("providers", {}).items()},
        max_escalations=node.get("max_escalations", 2).int(maximum=10),
        decision_log=_decision_log(node.get("decision_log")) if node.has("decision_log") else None,
    )


def _provider_rule(key: str, node: _Node, catalog: Catalog) -> ProviderRule:
    if key != "*":
        level, sep, rest = key.partition(":")
        if not sep or level not in ("org", "team", "user", "session") or not rest:
            raise node.error("expected a pool id such as org:acme or team:acme/legal, or * for every scope")
    node.only("allow", "deny")
    known = sorted({m.provider for m in catalog.models.values()})

    def names(name: str) -> frozenset[str]:
        lnode = node.get(name)
        if not isinstance(lnode.value, list):
            raise lnode.error(f"expected a list of provider names from the catalog: {', '.join(known)}")
        return frozenset(lnode.child(str(i), v).str(choices=tuple(known)) for i, v in enumerate(lnode.value))

    return ProviderRule(
        allow=names("allow") if node.has("allow") else None,
        deny=names("deny") if node.has("deny") else frozenset(),
    )


def _decision_log(node: _Node) -> DecisionLogConfig:
    node.only("path", "include_text")
    path = node.get("path").path("the path of a JSON-lines file")
    return DecisionLogConfig(path=str(path), include_text=node.get("include_text", False).bool())


def _classifier_ref(node: _Node) -> str:
    """``default``, ``none``, or a model file's path (relative to the config file's folder)."""
    value = node.str()
    if value in ("default", "none"):
        return value
    path = node.path("default, none or the path of a model file from `tollgate train`")
    if not path.is_file():
        raise node.error(f"no such model file {str(path)!r}; use default, none or a file from `tollgate train`")
    return str(path)


def _estimation(node: _Node) -> EstimationConfig:
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


def _reservations(node: _Node) -> ReservationConfig:
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


def _store(node: _Node) -> StoreConfig:
    node.only("kind", "path", "url", "cluster", "timeout", "key_prefix", "fail_open_allowance", "sentinels",
              "sentinel_service")
    sentinels_node = node.get("sentinels", [])
    if not isinstance(sentinels_node.value, list):
        raise sentinels_node.error("expected a list of host:port addresses")
    sentinels = tuple(sentinels_node.child(str(i), v).str() for i, v in enumerate(sentinels_node.value))
    for i, address in enumerate(sentinels):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise sentinels_node.child(str(i), address).error("expected host:port")
    d = StoreConfig()
    kind = node.get("kind", "sqlite").str(choices=("sqlite", "redis", "memory"))
    url = node.get("url", d.url).str()
    if problem := store_url_problem(url):
        raise node.child("url", None).error(problem)
    cluster = node.get("cluster", False).value
    if not isinstance(cluster, bool):
        raise node.child("cluster", cluster).error("expected true or false")
    if cluster and sentinels:
        raise node.child("sentinels", None).error("choose Redis Cluster or Sentinel, not both")
    prefix = node.get("key_prefix", d.key_prefix).str()
    if not ID_PATTERN.fullmatch(prefix):
        raise node.child("key_prefix", prefix).error("use letters, digits, '.', '_', '@' or '-'")
    return StoreConfig(
        kind=kind,
        path=node.get("path", d.path).str(),
        url=url,
        cluster=cluster,
        timeout_ms=node.get("timeout").duration_ms() if node.has("timeout") else d.timeout_ms,
        key_prefix=prefix,
        fail_open_allowance=node.get("fail_open_allowance").usd() if node.has("fail_open_allowance") else 0,
        sentinels=sentinels,
        sentinel_service=node.get("sentinel_service", d.sentinel_service).str(),
    )


# TLS options of a rediss:// URL's query, handed to redis-py as they are; the files
# must be absolute paths, as redis-py opens them from the working directory.
_REDIS_TLS_FILES = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
_REDIS_TLS_OPTIONS = (*_REDIS_TLS_FILES, "ssl_cert_reqs", "ssl_check_hostname", "ssl_password", "ssl_min_version",
                      "ssl_ciphers")


def store_url_problem(url: str) -> str:
    """What is wrong with a store URL, or ``""``. Never quotes the URL: it may carry a password."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return "expected a redis://, rediss:// or unix:// URL"
    for name, values in parse_qs(urlsplit(url).query).items():
        if not name.startswith("ssl_"):
            continue
        if name not in _REDIS_TLS_OPTIONS:
            return f"unknown TLS option {name}; known: {', '.join(_REDIS_TLS_OPTIONS)}"
        if not url.startswith("rediss://"):
            return f"{name} needs a rediss:// URL (TLS)"
        if name in _REDIS_TLS_FILES:
            path = Path(values[0])
            if not path.is_absolute():
                return f"{name} must be an absolute path"
            if not path.exists():
                return f"{name}: no such file: {path}"
    return ""


def check_listener(server: ServerConfig, source: str) -> None:
    """Refuse a plaintext API listener off loopback: anything on the network could spend the budgets."""
    if server.tls is not None or server.allow_insecure or is_loopback(server.host):
        return
    raise ConfigError(
        f"{server.host} is not a loopback address, and a plaintext listener there lets anything on the network "
        "spend these budgets: configure server.tls (cert and key; client_ca for mTLS), or set "
        "server.allow_insecure: true when a mesh or proxy in front terminates TLS",
        key="server.host", file=source,
    )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _path(node: _Node) -> str:
    """A file path, relative to the config file's folder, that must exist."""
    path = node.path("the path of a file")
    if not path.is_file():
        raise node.error(f"no such file {str(path)!r}")
    return str(path)


def _tls(node: _Node) -> TlsConfig:
    node.only("cert", "key", "client_ca")
    for required in ("cert", "key"):
        if not node.has(required):
            raise node.error(f"needs {required}: the PEM file of the server's certificate and its private key")
    return TlsConfig(cert=_path(node.get("cert")), key=_path(node.get("key")),
                     client_ca=_path(node.get("client_ca")) if node.has("client_ca") else "")


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_GRANT = re.compile(rf"\*|{ID_PATTERN.pattern}(/{ID_PATTERN.pattern})?")


def _auth(node: _Node) -> AuthConfig:
    node.only("callers", "callers_file", "audit_log")
    nodes = []
    if node.has("callers"):
        nodes.append(node.get("callers"))
    if node.has("callers_file"):
        # A file of its own (a mounted Secret), so tokens need not sit in the main config.
        path = _path(node.get("callers_file"))
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise node.get("callers_file").error(f"cannot read {path}: {exc}") from None
        secret = _Node(data if data is not None else {}, "", path)
        secret.require_mapping()
        secret.only("callers")
        nodes.append(secret.get("callers"))
    callers: list[Caller] = []
    for list_node in nodes:
        if not isinstance(list_node.value, list):
            raise list_node.error("expected a list of callers: {name, token_sha256 or subject, grants, admin, rate}")
        for i, item in enumerate(list_node.value):
            callers.append(_caller(list_node.child(str(i), item)))
    names = [c.name for c in callers]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise node.error(f"caller name {duplicate!r} is used twice; names must be unique")
    audit_log = ""
    if node.has("audit_log"):
        path = node.get("audit_log").path("the path of a JSON-lines file")
        if not path.parent.is_dir():
            raise node.get("audit_log").error(f"no such folder {str(path.parent)!r} for the audit log")
        audit_log = str(path)
    return AuthConfig(callers=tuple(callers), audit_log=audit_log)


def _caller(node: _Node) -> Caller:
    node.only("name", "token_sha256", "subject", "grants", "admin", "rate")
    name = node.get("name").str()
    if not ID_PATTERN.fullmatch(name):
        raise node.child("name", name).error("expected a name of letters, digits and ._@- (at most 128)")
    token = node.get("token_sha256").str().lower() if node.has("token_sha256") else ""
    if token and not _SHA256_HEX.fullmatch(token):
        raise node.child("token_sha256", None).error(
            "expected the 64 hex digits of the token's SHA-256 (e.g. `printf %s TOKEN | sha256sum`), never the token"
        )
    subject = node.get("subject").str() if node.has("subject") else ""
    if not token and not subject:
        raise node.error("a caller needs token_sha256 (a bearer token) or subject (an mTLS certificate's SAN or CN)")
    grants_node = node.get("grants", [])
    if not isinstance(grants_node.value, list) or not grants_node.value:
        raise grants_node.error("expected a non-empty list of grants: ORG, ORG/TEAM, or * for every org")
    grants = []
    for i, value in enumerate(grants_node.value):
        gnode = grants_node.child(str(i), value)
        grant = gnode.str()
        if not _GRANT.fullmatch(grant):
            raise gnode.error("expected ORG, ORG/TEAM or *")
        grants.append(grant)
    return Caller(
        name=name,
        token_sha256=bytes.fromhex(token) if token else b"",
        subject=subject,
        grants=frozenset(grants),
        admin=node.get("admin", False).bool(),
        rate=node.get("rate", 0).number(minimum=0.0, maximum=1e6),
    )


def _server(node: _Node) -> ServerConfig:
    node.only("host", "port", "unix_socket", "grace_period", "health_host", "health_port", "tls", "allow_insecure")
    d = ServerConfig()
    grace = node.get("grace_period").duration_ms() / 1000 if node.has("grace_period") else d.grace_period_s
    port = node.get("port", d.port).int(maximum=65_535)
    health_port_node = node.get("health_port", d.health_port)
    health_port = health_port_node.int(maximum=65_535)
    if health_port and health_port == port:
        raise health_port_node.error(
            f"{health_port} is server.port too; the health listener is a separate server and needs its own port "
            "(or 0 to turn it off)"
        )
    health_host_node = node.get("health_host", d.health_host)
    health_host = health_host_node.str()
    if not health_host.strip():
        raise health_host_node.error("expected a listen address such as 0.0.0.0 (all interfaces) or 127.0.0.1")
    return ServerConfig(
        host=node.get("host", d.host).str(),
        port=port,
        unix_socket=node.get("unix_socket", "").str(),
        grace_period_s=grace,
        health_host=health_host,
        health_port=health_port,
        tls=_tls(node.get("tls")) if node.has("tls") else None,
        allow_insecure=node.get("allow_insecure", False).bool(),
    )


_DEFAULT_QUALITY_POOL = PoolSpec(cap=50_000_000_000, window=Window(WindowKind.FIXED, period="month"),
                                 policy=Policy.HARD, priority_reserve_bp=0)


def _quality(node: _Node, catalog: Catalog) -> tuple[QualityConfig, PoolSpec]:
    node.only("enabled", "guard", "reference_tier", "tolerance", "min_samples", "shadow_share", "warmup_share",
              "probe_share", "window_days", "seed", "budget")
    d = QualityConfig()

    def flag(name: str, default: bool) -> bool:
        return node.get(name, default).bool()

    reference = node.get("reference_tier", "").str(choices=("", *catalog.tiers))
    pool = _pool(node.get("budget"), _DEFAULT_QUALITY_POOL) if node.has("budget") else _DEFAULT_QUALITY_POOL
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


def _telemetry(node: _Node) -> TelemetryConfig:
    node.only("metrics_host", "metrics_port")
    d = TelemetryConfig()
    return TelemetryConfig(
        metrics_host=node.get("metrics_host", d.metrics_host).str(),
        metrics_port=node.get("metrics_port", d.metrics_port).int(maximum=65_535),
    )


def _limits(node: _Node) -> Limits:
    node.only("max_messages", "max_text_chars", "max_tokens", "max_tags", "max_message_bytes")
    d = Limits()
    return Limits(
        max_messages=node.get("max_messages", d.max_messages).int(minimum=1),
        max_text_chars=node.get("max_text_chars", d.max_text_chars).int(minimum=1),
        max_tokens=node.get("max_tokens", d.max_tokens).int(minimum=1),
        max_tags=node.get("max_tags", d.max_tags).int(maximum=1_000),
        max_message_bytes=node.get("max_message_bytes", d.max_message_bytes).int(minimum=4_096,
                                                                                 maximum=1 << 30),
    )
