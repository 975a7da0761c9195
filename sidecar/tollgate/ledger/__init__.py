"""The budget ledger: the store interface, its invariants, and the stores.

Stores know nothing of routing, gRPC or the config file: ``app.stores`` opens the
one the config names, for the server and the CLI alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..ids import pool_level
from ..scope import Level
from .local import Journal, LocalLedger, SpecResolver
from .memory import MemoryJournal
from .spec import BudgetConfig, PoolSpec
from .sqlite import SqliteJournal
from .types import (
    AuditReport,
    CommitOutcome,
    CommitRequest,
    Hold,
    HoldRequest,
    HoldState,
    Mismatch,
    PoolRef,
    PoolSnapshot,
    ReleaseOutcome,
    ReserveOutcome,
)

__all__ = [
    "AuditReport",
    "BudgetStore",
    "CommitOutcome",
    "CommitRequest",
    "Hold",
    "HoldRequest",
    "HoldState",
    "Journal",
    "LocalLedger",
    "MemoryJournal",
    "Mismatch",
    "PoolRef",
    "PoolSnapshot",
    "ReleaseOutcome",
    "ReserveOutcome",
    "SqliteJournal",
    "spec_resolver",
]


class BudgetStore(Protocol):
    """What every budget store does. Each mutation is atomic across all its pools."""

    suspends: bool
    """Whether its calls yield to the event loop, so that a caller leaving mid-call can interrupt
    the work that called it after a hold was written. A store that never yields cannot be."""

    def set_specs(self, specs: SpecResolver) -> None: ...
    async def reserve(self, request: HoldRequest) -> ReserveOutcome: ...
    async def commit(self, request: CommitRequest) -> CommitOutcome: ...
    async def release(self, reservation_id: str) -> ReleaseOutcome: ...
    async def extend(self, reservation_id: str, ttl_ms: int) -> Hold: ...
    async def snapshot(self, pools: list[PoolRef], *, high_priority: bool = False) -> list[PoolSnapshot]: ...
    async def expire_due(self) -> int: ...
    async def get(self, reservation_id: str) -> Hold: ...
    async def describe(self, reservation_id: str) -> Hold: ...
    async def audit(self, orgs: Sequence[str] | None = None) -> AuditReport: ...
    async def close(self) -> None: ...


_LEVELS = {str(level): level for level in Level}


def spec_resolver(budgets: BudgetConfig) -> Callable[[str], tuple[Level, PoolSpec] | None]:
    """Look up a pool's level and spec from its id (``user:acme/alice``)."""

    def resolve(pool_id: str) -> tuple[Level, PoolSpec] | None:
        level = _LEVELS.get(pool_level(pool_id))
        if level is None:
            return None
        spec = budgets.spec_for(level, pool_id)
        return None if spec is None else (level, spec)

    return resolve
