"""The config: YAML in, typed frozen sections out.

``load`` reads and validates a file (every error names the file, the key and the
problem), ``node`` walks the YAML with its key paths, ``sections`` holds the typed
values with their defaults. The pool vocabulary (``PoolSpec``, ``Window``,
``Policy``...) belongs to the ledger (``ledger.spec``) and is re-exported here for
config readers.
"""

from ..ledger.spec import BudgetConfig, ExpiryPolicy, Policy, PoolSpec, Window, WindowKind
from .load import default_config_text, load_config, parse_config
from .process import check_listener, is_loopback, store_url_problem
from .sections import (
    AuthConfig,
    Config,
    DecisionLogConfig,
    EstimationConfig,
    Limits,
    ProviderRule,
    ReservationConfig,
    RoutingConfig,
    ServerConfig,
    StoreConfig,
    TelemetryConfig,
    TlsConfig,
)

__all__ = [
    "AuthConfig",
    "BudgetConfig",
    "Config",
    "DecisionLogConfig",
    "EstimationConfig",
    "ExpiryPolicy",
    "Limits",
    "Policy",
    "PoolSpec",
    "ProviderRule",
    "ReservationConfig",
    "RoutingConfig",
    "ServerConfig",
    "StoreConfig",
    "TelemetryConfig",
    "TlsConfig",
    "Window",
    "WindowKind",
    "check_listener",
    "default_config_text",
    "is_loopback",
    "load_config",
    "parse_config",
    "store_url_problem",
]
