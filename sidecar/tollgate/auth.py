"""Who may call, and which budgets each caller may touch.

With ``auth.callers`` configured, every call must name a caller: a bearer token in
the ``authorization`` metadata (``Bearer <token>``), whose SHA-256 the config holds,
or an identity of a client certificate on an mTLS listener (its subject alternative
name, DNS or URI such as a SPIFFE id, else its common name). Each caller has
grants:

- ``acme``: every scope of org ``acme``;
- ``acme/search``: only requests that name team ``search`` of ``acme``;
- ``*``: every org (an operator's grant).

``admin: true`` also allows the admin operations and ``GetQuality`` (which spans
every tenant). Token checks hash the presented token and compare digests in
constant time, against every configured caller, so timing says nothing about
which digest came close. Each caller may have a rate (calls per second, a token
bucket with a one-second burst) enforced per sidecar.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import PermissionDenied, RateLimited, Unauthenticated

__all__ = ["Authenticator", "Caller", "token_digest"]


@dataclass(frozen=True, slots=True)
class Caller:
    """One configured caller and what it may do."""

    name: str
    token_sha256: bytes = b""
    subject: str = ""
    grants: frozenset[str] = frozenset()
    admin: bool = False
    rate: float = 0.0
    """Calls per second this caller may make on one sidecar; 0 = no limit."""

    def permits(self, org: str, team: str = "") -> bool:
        """Whether a request of ``org`` (and ``team``, if it names one) is inside this caller's grants."""
        grants = self.grants
        return "*" in grants or org in grants or (bool(team) and f"{org}/{team}" in grants)

    def team_grants(self, org: str) -> frozenset[str]:
        """The teams of ``org`` this caller may use, when it holds no org-wide grant."""
        prefix = f"{org}/"
        return frozenset(g[len(prefix):] for g in self.grants if g.startswith(prefix))


def token_digest(token: str) -> bytes:
    """What the config stores for a token: its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    """Turns call credentials into a ``Caller``, or refuses."""

    def __init__(self, callers: Iterable[Caller], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.callers = tuple(callers)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        """Whether callers are configured at all (otherwise every call is let through)."""
        return bool(self.callers)

    def authenticate(self, authorization: str | None, identities: tuple[str, ...] = ()) -> Caller:
        """The caller behind a call's ``authorization`` metadata or client-certificate identities."""
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
            digest = token_digest(token.strip())
            found: Caller | None = None
            # Every digest is compared, match or not: the time taken does not depend on which one matches.
            for caller in self.callers:
                if caller.token_sha256 and hmac.compare_digest(caller.token_sha256, digest) and found is None:
                    found = caller
            if found is None:
                raise Unauthenticated("unknown token: send a token configured in auth.callers")
            return found
        if identities:
            for caller in self.callers:
                if caller.subject and any(hmac.compare_digest(caller.subject.encode(), i.encode()) for i in identities):
                    return caller
            raise Unauthenticated(f"client certificate {identities[0][:64]!r} is not a configured caller")
        raise Unauthenticated("credentials are required: send 'authorization: Bearer <token>' metadata")

    def admit(self, caller: Caller) -> None:
        """Count one call against the caller's rate, or raise ``RateLimited``."""
        if caller.rate <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.get(caller.name, (caller.rate, now))
        tokens = min(caller.rate, tokens + (now - last) * caller.rate)
        if tokens < 1.0:
            self._buckets[caller.name] = (tokens, now)
            wait_ms = (1.0 - tokens) / caller.rate * 1000
            raise RateLimited(f"caller {caller.name} is over its rate of {caller.rate:g} calls/s; "
                              f"retry in {wait_ms:.0f} ms")
        self._buckets[caller.name] = (tokens - 1.0, now)

    @staticmethod
    def authorize(caller: Caller | None, org: str, team: str = "") -> None:
        """Refuse a request outside the caller's grants (``None``: auth is off, all is allowed)."""
        if caller is not None and not caller.permits(org, team):
            where = f"org {org!r}" + (f", team {team!r}" if team else "")
            raise PermissionDenied(f"caller {caller.name} may not use {where}")

    @staticmethod
    def authorize_admin(caller: Caller | None, what: str) -> None:
        if caller is not None and not caller.admin:
            raise PermissionDenied(f"{what} needs an admin caller; {caller.name} is not one")
