"""Who takes part in the campaign: tenants, their callers and tokens, the sidecar's config, the 13 methods.

Four tenants whose org ids look alike on purpose (``acme``, ``acme.eu``, ``eu``, ``bravo``),
two callers holding a team grant only, and one operator. Orgs nobody is granted
(``acme.eu.``, ``acme..eu``, ...) are the look-alikes a tenant may try to reach.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf.message import Message

from tests.support.sidecar_process import write_config
from tollgate_client.v1 import tollgate_pb2 as pb

__all__ = [
    "ADMIN",
    "CALLERS",
    "ID",
    "LOOKALIKE_ORGS",
    "METHODS",
    "MODEL",
    "TENANT_ORGS",
    "VAULT_CAPS",
    "Caller",
    "HonestScope",
    "Limits",
    "Method",
    "campaign_config",
    "memory_limit_bytes",
    "read_limits",
]

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
"""The id alphabet the README promises: 1-128 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit."""

INT64_MAX = 2**63 - 1
VAULT_CAPS: tuple[int | None, ...] = (9_223_372_036_000_000_000, 2**52 - 2_500_000_000_000_000, None)
"""Caps tried in turn for ``org:vault`` until the sidecar accepts one: 0.85 USD short of int64
(one top-up passes it), else 2.5 million USD short of 2^52, else the template's."""
MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class HonestScope:
    org: str
    team: str = ""
    user: str = ""
    session: str = ""

    def pb(self, **extra: Any) -> pb.Scope:
        return pb.Scope(org_id=self.org, team_id=self.team, user_id=self.user, session_id=self.session, **extra)


@dataclass(frozen=True)
class Caller:
    name: str
    token: str
    grants: tuple[str, ...]
    admin: bool = False
    scopes: tuple[HonestScope, ...] = field(default=())
    """The scopes this caller's honest traffic spends from."""

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def org(self) -> str:
        """The org of this caller's own traffic."""
        return self.scopes[0].org

    def permits(self, org: str, team: str = "") -> bool:
        """The grant rule the README states: an org grant, ``*``, or ``org/team`` for that team only."""
        return "*" in self.grants or org in self.grants or (bool(team) and f"{org}/{team}" in self.grants)


def _scopes(org: str, teams: tuple[str, ...], users: tuple[str, ...], sessions: tuple[str, ...]) -> tuple[
        HonestScope, ...]:
    out = [HonestScope(org)]
    for t in teams:
        for u in users:
            out.append(HonestScope(org, t, u))
            for s in sessions:
                out.append(HonestScope(org, t, u, s))
    return tuple(out)


def _caller(name: str, grants: tuple[str, ...], scopes: tuple[HonestScope, ...], admin: bool = False) -> Caller:
    token = "tok-" + hashlib.sha256(f"hostile:{name}".encode()).hexdigest()[:20]
    return Caller(name, token, grants, admin, scopes)


CALLERS: dict[str, Caller] = {
    c.name: c for c in (
        _caller("acme-app", ("acme",), _scopes("acme", ("search", "ads"), ("alice", "bob.smith"), ("s1", "run.2"))),
        _caller("acme-eu-app", ("acme.eu",), _scopes("acme.eu", ("search", "eu"), ("alice", "eu"), ("s1", "eu.x"))),
        _caller("eu-app", ("eu",), _scopes("eu", ("search", "acme"), ("alice", "acme.eu"), ("s1", "run.2"))),
        _caller("bravo-app", ("bravo",), _scopes("bravo", ("core",), ("bea", "b@x"), ("s1",))),
        # Team grants only: their own team of their org, nothing else.
        _caller("acme-search", ("acme/search",), _scopes("acme", ("search",), ("sam",), ("q1",))[1:]),
        _caller("eu-search", ("eu/search",), _scopes("eu", ("search",), ("sue",), ("q1",))[1:]),
        _caller("ops", ("*",), (HonestScope("vault"), HonestScope("vault", "ops", "root", "v1")), admin=True),
    )
}
ADMIN = CALLERS["ops"]
TENANT_ORGS = ("acme", "acme.eu", "eu", "bravo")
LOOKALIKE_ORGS = ("acme.eu.", "acme..eu", "ACME.EU", "eu.", "acme.e", "acme-eu", "acme_eu", "acme@eu",
                  "acme.eu.acme", "e", "eu.acme", "acme.", "bravo.")


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    request: type[Message]
    response: type[Message]

    @property
    def path(self) -> str:
        return f"/tollgate.v1.{self.service}/{self.name}"


METHODS: dict[str, Method] = {
    m.name: Method(service.name, m.name, getattr(pb, m.input_type.name), getattr(pb, m.output_type.name))
    for service in (pb.DESCRIPTOR.services_by_name["TollgateService"], pb.DESCRIPTOR.services_by_name["AdminService"])
    for m in service.methods
}
assert len(METHODS) == 14, sorted(METHODS)


def _usd(nanos: int) -> str:
    return f"{nanos // 10**9}.{nanos % 10**9:09d}"


def _edit(seed: int, vault_cap: int | None, store: dict[str, Any] | None) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["auth"] = {"callers": [
            {"name": c.name, "token_sha256": hashlib.sha256(c.token.encode()).hexdigest(), "grants": list(c.grants),
             **({"admin": True} if c.admin else {})}
            for c in CALLERS.values()
        ]}
        budgets = data["budgets"]
        # Room for a long campaign: honest traffic should be admitted; hostile commits of huge usage
        # spend real (fake) money on their own users and sessions.
        budgets["templates"]["org"]["cap"] = "1000000.00"
        budgets["templates"]["team"]["cap"] = "100000.00"
        budgets["templates"]["user"]["cap"] = "10000.00"
        budgets["templates"]["session"]["cap"] = "5000.00"
        budgets["templates"]["session"]["max_calls"] = 100_000
        overrides = budgets.setdefault("overrides", {})
        if vault_cap is not None:
            overrides["org:vault"] = {"cap": _usd(vault_cap)}
        data.setdefault("quality", {}).update(seed=seed, guard=False)
        # limits.max_message_bytes stays the shipped default: the campaign finds it by probing.
        data.setdefault("limits", {}).update(max_tags=MAX_TAGS, max_tokens=MAX_TOKENS)
        if store is not None:
            data["store"] = store
    return edit


def campaign_config(path: Path, seed: int, *, vault_cap: int | None = VAULT_CAPS[0],
                    store: dict[str, Any] | None = None) -> Path:
    """The sidecar's config: the shipped defaults, the callers above, roomy caps, a vault near its limit.

    The quality guard measures but never changes a tier (``guard: false``): its decisions are
    written in the background, and the sequential phase compares the ledger around each call.
    """
    return write_config(path, _edit(seed, vault_cap, store))


@dataclass
class Limits:
    """The bounds the sidecar sets on requests, as the campaign needs them."""

    max_message_bytes: int
    """Found by probing the server (``Runner.probe_message_limit``); the config's value until then."""
    max_tags: int
    max_tokens: int
    max_ttl_ms: int


MAX_TAGS = 32
MAX_TOKENS = 10_000_000
"""Written into the campaign's config, so its expectations do not depend on the sidecar's defaults."""


def read_limits(config: Path) -> Limits:
    data = yaml.safe_load(config.read_text()) or {}
    limits = data.get("limits") or {}
    ttl = str((data.get("reservations") or {}).get("max_ttl", "1h"))
    return Limits(int(limits.get("max_message_bytes", 0)), int(limits["max_tags"]), int(limits["max_tokens"]),
                  _duration_ms(ttl))


def _duration_ms(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text.strip())
    if m is None:
        raise ValueError(f"not a duration: {text!r}")
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[m.group(2)]


def memory_limit_bytes(deployment: Path) -> tuple[int, str]:
    """The memory limit of the ``tollgate`` container in the shipped Deployment, in bytes and as written."""
    docs = list(yaml.safe_load_all(deployment.read_text()))
    for doc in docs:
        spec = (((doc or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            if container.get("name") == "tollgate":
                text = str(container["resources"]["limits"]["memory"])
                return _quantity(text), text
    raise ValueError(f"{deployment}: no tollgate container with a memory limit")


def _quantity(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


NEVER = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})
