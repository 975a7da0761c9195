"""Who calls, with which token, in which orgs; and the sidecar configuration every run shares.

Org ids hold dots on purpose: ``acme.eu`` beside ``eu`` and ``acme``, so a reservation
id parsed at the wrong dot names another tenant. ``bravo-search`` holds only a team
grant, so a team boundary is checked too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALLOWANCE_USD",
    "MAX_TTL_MS",
    "TENANTS",
    "TTL_MS",
    "Tenant",
    "cap_of",
    "harness_config",
    "pools_of",
    "tenant",
    "usd_nanos",
]

TTL_MS = 2_500
"""The default reservation TTL: abandoned holds expire within the run."""
MAX_TTL_MS = 6_000
ALLOWANCE_USD = "0.40"
"""``store.fail_open_allowance`` of the fail-open runs, per sidecar."""
TIGHT_CAP_USD = "0.60"
"""Cap of each org's ``tight`` user (hard): reserves there run out and are refused."""
ORG_CAP_USD = "1000.00"
USER_CAP_USD = "20.00"
TEAM_CAP_USD = "200.00"
SESSION_CAP_USD = "5.00"


@dataclass(frozen=True, slots=True)
class Tenant:
    """A configured caller (``auth.callers``): its token, grants, and the scopes it spends in."""

    caller: str
    token: str
    grants: tuple[str, ...]
    org: str
    teams: tuple[str, ...]
    users: tuple[str, ...] = ("u0", "u1", "u2", "tight")

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def permits(self, org: str, team: str = "") -> bool:
        """What the config grants this caller (the harness's own reading, not the sidecar's)."""
        return "*" in self.grants or org in self.grants or (bool(team) and f"{org}/{team}" in self.grants)


TENANTS: tuple[Tenant, ...] = (
    Tenant("acme-app", "tok-h-acme-5c1e", ("acme",), "acme", ("search", "ads")),
    Tenant("acme-eu-app", "tok-h-acmeeu-77d0", ("acme.eu",), "acme.eu", ("search", "ops")),
    Tenant("eu-app", "tok-h-eu-0a9b", ("eu",), "eu", ("search",)),
    Tenant("bravo-app", "tok-h-bravo-31f4", ("bravo",), "bravo", ("ads",)),
    Tenant("bravo-search", "tok-h-bsearch-e2a7", ("bravo/search",), "bravo", ("search",)),
)


def tenant(caller: str) -> Tenant:
    return next(t for t in TENANTS if t.caller == caller)


def pools_of(org: str, team: str, user: str, session: str) -> frozenset[str]:
    """The stateful pools a scope holds on under ``harness_config`` (the request level keeps no state)."""
    out = {f"org:{org}"}
    if team:
        out.add(f"team:{org}/{team}")
    if user:
        out.add(f"user:{org}/{user}")
    if session:
        out.add(f"session:{org}/{session}")
    return frozenset(out)


def cap_of(pool_id: str) -> tuple[int, str]:
    """(cap in nano-USD, policy) of a pool under ``harness_config``."""
    level, _, rest = pool_id.partition(":")
    if level == "user" and rest.endswith("/tight"):
        return usd_nanos(TIGHT_CAP_USD), "hard"
    return {
        "org": (usd_nanos(ORG_CAP_USD), "hard"),
        "team": (usd_nanos(TEAM_CAP_USD), "soft"),
        "user": (usd_nanos(USER_CAP_USD), "soft"),
        "session": (usd_nanos(SESSION_CAP_USD), "hard"),
    }.get(level, (0, "warn"))


def usd_nanos(usd: str) -> int:
    whole, _, frac = usd.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def harness_config(store: dict[str, Any]) -> Any:
    """An edit for ``write_config``: the harness's store, short TTLs, windowless pools, callers."""

    def edit(data: dict[str, Any]) -> None:
        data["store"] = store
        data.setdefault("server", {})["grace_period"] = "1s"
        data["reservations"] = {
            "ttl": f"{TTL_MS}ms", "max_ttl": f"{MAX_TTL_MS}ms", "expiry_policy": "charge", "sweep_interval": "200ms",
        }
        # Learned output estimates move after a few commits, so a retried request may be
        # estimated differently from its first attempt.
        data["estimation"]["min_samples"] = 3
        # Windowless pools: every charge of the run stays in ``spent``, so sums are exact.
        data["budgets"] = {
            "templates": {
                "request": {"cap": "2.00", "policy": "hard"},
                "session": {"cap": SESSION_CAP_USD, "policy": "hard", "max_open": 64},
                "user": {"cap": USER_CAP_USD, "policy": "soft", "max_open": 256},
                "team": {"cap": TEAM_CAP_USD, "policy": "soft"},
                "org": {"cap": ORG_CAP_USD, "policy": "hard", "priority_reserve": 0.2},
            },
            "overrides": {f"user:{t.org}/tight": {"cap": TIGHT_CAP_USD, "policy": "hard"} for t in TENANTS},
        }
        data["auth"] = {"callers": [
            *({"name": t.caller, "token_sha256": hashlib.sha256(t.token.encode()).hexdigest(), "grants": list(t.grants)}
              for t in TENANTS),
            {"name": "ops", "token_sha256": hashlib.sha256(b"tok-h-ops-9d11").hexdigest(), "grants": ["*"],
             "admin": True},
        ]}

    return edit
