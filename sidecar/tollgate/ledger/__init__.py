"""The budget ledger: the store interface, its invariants, and the local stores.

Stores know nothing of routing or gRPC. ``open_store`` picks the backend from the
config in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidRequest
from ..ids import parse_pool_id
from ..quality import QualityStore
from ..scope import Level
from .local import Journal, LocalLedger, SpecResolver, wall_clock_ms
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

if TYPE_CHECKING:
    from ..config import Config
    from .overrides import OverrideStore

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
    "open_override_store",
    "open_quality_store",
    "open_store",
    "spec_resolver",
]


class BudgetStore(Protocol):
    """What every budget store does. Each mutation is atomic across all its pools."""

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


def spec_resolver(budgets: BudgetConfig) -> Callable[[str], tuple[Level, PoolSpec] | None]:
    """Look up a pool's level and spec from its id (``user:acme/alice``)."""

    def resolve(pool_id: str) -> tuple[Level, PoolSpec] | None:
        try:
            level = Level(parse_pool_id(pool_id).level)
        except InvalidRequest:
            return None
        spec = budgets.spec_for(level, pool_id)
        return None if spec is None else (level, spec)

    return resolve


def open_store(config: Config, *, clock: Callable[[], int] = wall_clock_ms) -> BudgetStore:
    """The store the config names."""
    specs = spec_resolver(config.budgets)
    if config.store.kind == "redis":
        from .redis import RedisStore

        timeout = config.store.timeout_ms / 1000
        client = _redis_client(config)
        shared = RedisStore(client, specs=specs, expiry_policy=config.reservations.expiry_policy,
                            prefix=config.store.key_prefix, timeout=timeout,
                            retention_ms=config.reservations.retention_ms)
        if config.store.fail_open_allowance:
            from .failopen import FailOpenStore

            return FailOpenStore(shared, allowance=config.store.fail_open_allowance,
                                 expiry_policy=config.reservations.expiry_policy, clock=clock)
        return shared
    journal: Journal
    if config.store.kind == "memory":
        journal = MemoryJournal()
    else:
        path = Path(config.store.path)
        if path.parent != Path():
            path.parent.mkdir(parents=True, exist_ok=True)
        journal = SqliteJournal(path)
    return LocalLedger(journal, specs=specs, expiry_policy=config.reservations.expiry_policy, clock=clock)


def open_quality_store(config: Config) -> QualityStore:
    """Where the quality guard keeps its counts: beside the ledger, so Redis shares them across sidecars."""
    from .feedback import MemoryQualityStore, RedisQualityStore, SqliteQualityStore

    return _beside_ledger(config, MemoryQualityStore, SqliteQualityStore, RedisQualityStore)


def open_override_store(config: Config) -> OverrideStore:
    """Where admin changes to pools live: beside the ledger, so Redis shares them across sidecars."""
    from .overrides import MemoryOverrideStore, RedisOverrideStore, SqliteOverrideStore

    return _beside_ledger(config, MemoryOverrideStore, SqliteOverrideStore, RedisOverrideStore)


def _beside_ledger(config: Config, memory: Callable[[], Any], sqlite: Callable[[str], Any],
                   redis: Callable[..., Any]) -> Any:
    """One of a side store's three kinds, on the same backend as the ledger."""
    if config.store.kind == "redis":
        return redis(_redis_client(config), prefix=config.store.key_prefix, timeout=config.store.timeout_ms / 1000)
    if config.store.kind == "sqlite":
        return sqlite(config.store.path)
    return memory()


def _redis_client(config: Config) -> Any:
    """A Redis client as the store config describes it (URL, Cluster or Sentinel, bounded calls)."""
    from .redis import connect

    store = config.store
    return connect(store.url, cluster=store.cluster, sentinels=store.sentinels, service=store.sentinel_service,
                   timeout=store.timeout_ms / 1000)
