"""The id grammars: tenant ids, reservation ids and pool ids, minted and parsed here only.

Ids end up inside store keys and decide whose money a call touches, so every layer
reads them the same way by asking this module; nothing else splits an id.

- A tenant id (org, team, user, session) is 1-128 characters of ``A-Z a-z 0-9 . _ @ -``,
  starting with a letter or digit. ``:`` and ``/`` separate key parts and ``{`` ``}``
  pick the Redis Cluster hash slot, so this alphabet keeps one tenant out of another's
  keys. Dots are allowed, which is why nothing may look for "the last dot".
- A reservation id is ``<24 hex digits>.<org>``: the token has no dot, so the org is
  everything after the *first* dot, dots and all.
- A pool id is ``LEVEL:ORG`` (org, quality, request) or ``LEVEL:ORG/ID`` (team, user,
  session); neither part may hold ``:`` or ``/``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from .errors import InvalidRequest

__all__ = [
    "ID_PATTERN",
    "MAX_ID",
    "MAX_POOL_ID",
    "MAX_RESERVATION_ID",
    "PoolId",
    "ReservationId",
    "check_idempotency_key",
    "escalation_id",
    "fresh_reservation_id",
    "keyed_reservation_id",
    "parse_pool_id",
    "parse_reservation_id",
    "pool_id",
    "pool_level",
    "pool_org",
    "reservation_org",
]

MAX_ID = 128
ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._@-]{{0,{MAX_ID - 1}}}")
_TOKEN_HEX = 24
MAX_RESERVATION_ID = _TOKEN_HEX + 1 + MAX_ID
_RESERVATION_ID = re.compile(rf"([0-9a-f]{{{_TOKEN_HEX}}})\.({ID_PATTERN.pattern})")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")

# Levels whose pools belong to the org as a whole, and levels that name a member of it.
_ORG_LEVELS = frozenset({"org", "quality", "request"})
_MEMBER_LEVELS = frozenset({"team", "user", "session"})
MAX_POOL_ID = len("session:") + 2 * MAX_ID + 1


@dataclass(frozen=True, slots=True)
class ReservationId:
    """A parsed reservation id."""

    token: str
    org: str

    def __str__(self) -> str:
        return f"{self.token}.{self.org}"


@dataclass(frozen=True, slots=True)
class PoolId:
    """A parsed pool id: ``member`` is empty for org-wide levels."""

    level: str
    org: str
    member: str = ""

    def __str__(self) -> str:
        return pool_id(self.level, self.org, self.member)


def _shown(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


# -- reservation ids ------------------------------------------------------------------------------


def parse_reservation_id(value: str) -> ReservationId:
    """``value`` as a reservation id, or ``InvalidRequest`` saying what to pass instead."""
    # The length check comes first, so a hostile multi-megabyte id costs one comparison.
    match = _RESERVATION_ID.fullmatch(value) if len(value) <= MAX_RESERVATION_ID else None
    if match is None:
        raise InvalidRequest(
            f"{_shown(value)} is not a reservation id: pass the reservation_id that Reserve or Route returned"
        )
    return ReservationId(match.group(1), match.group(2))


def reservation_org(value: str) -> str:
    """The org a reservation id belongs to (``InvalidRequest`` if it is not one)."""
    return parse_reservation_id(value).org


def check_idempotency_key(key: str) -> str:
    """``key`` if it is a usable idempotency key, else ``InvalidRequest``."""
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest("idempotency_key must be 1-128 printable ASCII characters without spaces")
    return key


def keyed_reservation_id(org: str, idempotency_key: str) -> str:
    """The id of the reservation an idempotency key names: the same key of the same org, the same id.

    The org travels inside the id: Commit and Release find the tenant (and, on a shared
    store, its key slot) from the id alone, and a key reused by another org can never
    collide with this one.
    """
    check_idempotency_key(idempotency_key)
    token = hashlib.blake2b(f"{org}\0{idempotency_key}".encode(), digest_size=_TOKEN_HEX // 2).hexdigest()
    return f"{token}.{org}"


def fresh_reservation_id(org: str) -> str:
    """A new random reservation id of ``org``.

    Time first, so a new reservation lands beside the last ones in an ordered store
    (SQLite's B-tree appends to one leaf instead of dirtying a random one): 40 bits of
    milliseconds (wrapping every 35 years, which only costs locality) and 56 random bits.
    """
    return f"{now_ms() & 0xFF_FFFF_FFFF:010x}{secrets.token_hex(7)}.{org}"


def now_ms() -> int:
    """Milliseconds since the epoch, the time part of fresh ids."""
    return time.time_ns() // 1_000_000


def escalation_id(parent_id: str) -> str:
    """The id of the attempt that escalates ``parent_id``: derived, so a retried Escalate finds it."""
    org = reservation_org(parent_id)
    token = hashlib.blake2b(f"{org}\0escalate\0{parent_id}".encode(), digest_size=_TOKEN_HEX // 2).hexdigest()
    return f"{token}.{org}"


# -- pool ids ---------------------------------------------------------------------------------------


def pool_id(level: str, org: str, member: str = "") -> str:
    """The id of ``level``'s pool of ``org`` (and of ``member``, for team, user and session pools)."""
    return f"{level}:{org}/{member}" if member else f"{level}:{org}"


def parse_pool_id(value: str) -> PoolId:
    """``value`` as a pool id, or ``InvalidRequest`` naming the part that is wrong."""
    if len(value) > MAX_POOL_ID:
        raise InvalidRequest(f"{_shown(value)} is not a pool id: longer than {MAX_POOL_ID} characters")
    level, sep, rest = value.partition(":")
    example = "use LEVEL:ORG or LEVEL:ORG/ID, e.g. org:acme or user:acme/alice"
    if not sep or level not in _ORG_LEVELS | _MEMBER_LEVELS:
        raise InvalidRequest(f"{_shown(value)} is not a pool id: {example}")
    org, slash, member = rest.partition("/")
    if (level in _MEMBER_LEVELS) != bool(slash):
        shape = "LEVEL:ORG/ID" if level in _MEMBER_LEVELS else "LEVEL:ORG"
        raise InvalidRequest(f"{_shown(value)} is not a pool id: a {level} pool id is {shape}; {example}")
    parts = ((org, "org"), (member, level)) if slash else ((org, "org"),)
    for part, what in parts:
        if not ID_PATTERN.fullmatch(part):
            bad = next((c for c in part if not re.fullmatch(r"[A-Za-z0-9._@-]", c)), None)
            why = f"character {bad!r} is not allowed" if bad else "use 1-128 characters from A-Z a-z 0-9 . _ @ -"
            raise InvalidRequest(f"{_shown(value)} is not a pool id: its {what} part {_shown(part, 40)}: {why}")
    return PoolId(level, org, member)


def pool_level(value: str) -> str:
    """The level of a pool id the sidecar minted (``user:acme/alice`` -> ``user``), without validating it.

    For ids already known good (read back from the store, or built by ``pool_id``): one
    split, where ``parse_pool_id`` checks every character of an id a caller sent.
    """
    return value.partition(":")[0]


def pool_org(value: str) -> str:
    """The org a pool id belongs to: ``user:acme.eu/alice`` -> ``acme.eu``."""
    return value.partition(":")[2].partition("/")[0]
