"""The ledger's vocabulary: what is asked of a store and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..scope import Level
from .spec import PoolSpec

__all__ = [
    "AuditReport",
    "CommitOutcome",
    "CommitRequest",
    "Hold",
    "HoldRequest",
    "HoldState",
    "Mismatch",
    "PoolRef",
    "PoolSnapshot",
    "ReleaseOutcome",
    "ReserveOutcome",
]


class HoldState(StrEnum):
    """Where a reservation is in its life. Every reservation ends exactly once."""

    OPEN = "open"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class PoolRef:
    """A pool a hold applies to, with its configuration at the time of the request."""

    pool_id: str
    level: Level
    spec: PoolSpec


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """Hold ``amount`` nano-dollars against every pool in ``pools``, all or none."""

    reservation_id: str
    pools: tuple[PoolRef, ...]
    amount: int
    tokens: int
    """Estimated tokens of the call (input + output), for pools that cap tokens."""
    ttl_ms: int
    high_priority: bool = False
    model: str = ""
    task_type: str = ""
    parent_id: str = ""
    """The reservation of the failed attempt this one escalates, if any."""
    attempt: int = 1
    """1 for a first call, 2 for its first escalation, and so on."""
    fresh: bool = False
    """The id was drawn at random for this very request, so no record can hold it yet:
    a store may skip looking for an earlier reserve of the same id, and a call the store
    gave up on can be undone, since no caller can know the id."""
    fingerprint: str = ""
    """What the caller sent, digested: a repeated reserve of the same id is a replay only
    if this matches. Never a figure the sidecar derives (the amount moves with what it
    learns), or a retry could not replay."""


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """Charge ``cost`` for a reservation; ``fingerprint`` identifies the reported figures."""

    reservation_id: str
    cost: int
    tokens: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation record, open or ended. The audit recomputes every pool from these."""

    reservation_id: str
    pool_ids: tuple[str, ...]
    amount: int
    tokens: int
    created_ms: int
    expires_ms: int
    state: HoldState = HoldState.OPEN
    charged: int = 0
    used_tokens: int = 0
    ended_ms: int = 0
    model: str = ""
    task_type: str = ""
    fingerprint: str = ""
    commit_fingerprint: str = ""
    parent_id: str = ""
    """The reservation of the failed attempt this one escalates, if any."""
    attempt: int = 1

    @property
    def overshoot(self) -> int:
        """The part of the charge the hold did not cover."""
        return max(self.charged - self.amount, 0)

    def ended(self, state: HoldState, ended_ms: int, *, charged: int = 0, used_tokens: int = 0,
              commit_fingerprint: str = "") -> Hold:
        """This record, ended: committed, released or expired at ``ended_ms``."""
        # Built directly: ``dataclasses.replace`` walks the fields on every call, and this runs
        # on every Commit.
        return Hold(self.reservation_id, self.pool_ids, self.amount, self.tokens, self.created_ms, self.expires_ms,
                    state, charged, used_tokens, ended_ms, self.model, self.task_type, self.fingerprint,
                    commit_fingerprint, self.parent_id, self.attempt)


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """One pool as a request of a given priority sees it."""

    pool_id: str
    level: Level
    spec: PoolSpec
    usable_cap: int
    spent: int
    held: int
    calls: int
    tokens: int
    resets_at_ms: int | None
    warning: bool

    @property
    def remaining(self) -> int:
        """Usable cap minus spent and held; negative after an overshoot."""
        return self.usable_cap - self.spent - self.held


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    """An admitted hold and every pool after it."""

    hold: Hold
    pools: tuple[PoolSnapshot, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """A committed reservation and every pool after it."""

    hold: Hold
    pools: tuple[PoolSnapshot, ...]
    replayed: bool = False

    @property
    def released(self) -> int:
        """The part of the hold given back."""
        return max(self.hold.amount - self.hold.charged, 0)


@dataclass(frozen=True, slots=True)
class ReleaseOutcome:
    """A released reservation and every pool after it."""

    hold: Hold
    pools: tuple[PoolSnapshot, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A stored counter that differs from what the reservation records say."""

    pool_id: str
    counter: str
    stored: int
    recomputed: int


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The result of recomputing every pool from the reservation records."""

    pools_checked: int
    reservations_checked: int
    mismatches: tuple[Mismatch, ...] = field(default_factory=tuple)
    overshoot_total: int = 0
    overshoot_count: int = 0

    @property
    def ok(self) -> bool:
        """True when every counter matches."""
        return not self.mismatches
