"""The process sections of the config: store, server and TLS, callers, telemetry, limits."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from ..auth import Caller
from ..errors import ConfigError, InvalidRequest
from ..ids import ID_PATTERN, parse_pool_id
from .node import Node
from .sections import (
    MAX_WATCHED_POOLS,
    AuthConfig,
    Limits,
    ServerConfig,
    StoreConfig,
    TelemetryConfig,
    TlsConfig,
)

__all__ = [
    "check_listener",
    "is_loopback",
    "parse_auth",
    "parse_limits",
    "parse_server",
    "parse_store",
    "parse_telemetry",
    "store_url_problem",
]


def parse_store(node: Node) -> StoreConfig:
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


def file_path(node: Node) -> str:
    """A file path, relative to the config file's folder, that must exist."""
    path = node.path("the path of a file")
    if not path.is_file():
        raise node.error(f"no such file {str(path)!r}")
    return str(path)


def parse_tls(node: Node) -> TlsConfig:
    node.only("cert", "key", "client_ca")
    for required in ("cert", "key"):
        if not node.has(required):
            raise node.error(f"needs {required}: the PEM file of the server's certificate and its private key")
    return TlsConfig(cert=file_path(node.get("cert")), key=file_path(node.get("key")),
                     client_ca=file_path(node.get("client_ca")) if node.has("client_ca") else "")


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_GRANT = re.compile(rf"\*|{ID_PATTERN.pattern}(/{ID_PATTERN.pattern})?")


def parse_auth(node: Node) -> AuthConfig:
    node.only("callers", "callers_file", "audit_log")
    nodes = []
    if node.has("callers"):
        nodes.append(node.get("callers"))
    if node.has("callers_file"):
        # A file of its own (a mounted Secret), so tokens need not sit in the main config.
        path = file_path(node.get("callers_file"))
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise node.get("callers_file").error(f"cannot read {path}: {exc}") from None
        secret = Node(data if data is not None else {}, "", path)
        secret.require_mapping()
        secret.only("callers")
        nodes.append(secret.get("callers"))
    callers: list[Caller] = []
    for list_node in nodes:
        if not isinstance(list_node.value, list):
            raise list_node.error("expected a list of callers: {name, token_sha256 or subject, grants, admin, rate}")
        for i, item in enumerate(list_node.value):
            callers.append(parse_caller(list_node.child(str(i), item)))
    names = [c.name for c in callers]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise node.error(f"caller name {duplicate!r} is used twice; names must be unique")
    audit_log = ""
    if node.has("audit_log"):
        log_path = node.get("audit_log").path("the path of a JSON-lines file")
        if not log_path.parent.is_dir():
            raise node.get("audit_log").error(f"no such folder {str(log_path.parent)!r} for the audit log")
        audit_log = str(log_path)
    return AuthConfig(callers=tuple(callers), audit_log=audit_log)


def parse_caller(node: Node) -> Caller:
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


def parse_server(node: Node) -> ServerConfig:
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
        tls=parse_tls(node.get("tls")) if node.has("tls") else None,
        allow_insecure=node.get("allow_insecure", False).bool(),
    )




def parse_telemetry(node: Node) -> TelemetryConfig:
    node.only("metrics_host", "metrics_port", "watch_pools")
    d = TelemetryConfig()
    watched = node.get("watch_pools", [])
    if not isinstance(watched.value, list):
        raise watched.error(f"expected a list of pool ids, got {type(watched.value).__name__}")
    if len(watched.value) > MAX_WATCHED_POOLS:
        raise watched.error(f"{len(watched.value)} pools listed; at most {MAX_WATCHED_POOLS} may be watched, "
                            "each is a series of its own")
    pools = []
    for i, item in enumerate(watched.value):
        try:
            pools.append(str(parse_pool_id(str(item))))
        except InvalidRequest as exc:
            raise watched.child(str(i), item).error(f"{exc}; a pool id is org:ORG, team:ORG/TEAM, user:ORG/USER "
                                                   "or session:ORG/SESSION") from None
    return TelemetryConfig(
        metrics_host=node.get("metrics_host", d.metrics_host).str(),
        metrics_port=node.get("metrics_port", d.metrics_port).int(maximum=65_535),
        watch_pools=tuple(pools),
    )


def parse_limits(node: Node) -> Limits:
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
