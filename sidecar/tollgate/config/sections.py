"""The config's typed sections: frozen values, with every default in one place (here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..auth import Caller
from ..catalog import Catalog
from ..ledger.spec import BudgetConfig, ExpiryPolicy
from ..quality import QualityConfig

__all__ = [
    "AuthConfig",
    "Config",
    "DecisionLogConfig",
    "EstimationConfig",
    "Limits",
    "ProviderRule",
    "ReservationConfig",
    "RoutingConfig",
    "ServerConfig",
    "StoreConfig",
    "TelemetryConfig",
    "TlsConfig",
]


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
    quality_target: float | None = None
    """Quality to keep relative to always using the strong tier; the classifier's thresholds derive from it."""
    frontier_share: float = 0.2
    """With ``quality_target``: the hardest share of the validation requests the frontier tier takes."""
    thresholds: dict[str, tuple[tuple[float, str], ...]] = field(default_factory=dict)
    """Explicit classifier thresholds like ``difficulty``, per task type or ``default``: they win over
    ``quality_target``'s; with neither, ``difficulty``'s apply."""
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
    watch_pools: tuple[str, ...] = ()
    """Pool ids whose utilisation, spend and cap are exported as gauges labelled by pool id (at most
    100): the only ids that ever become labels, so an operator chooses them."""


MAX_WATCHED_POOLS = 100
"""A bound on the pools exported by id: each is a label value, so a series of its own."""


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
