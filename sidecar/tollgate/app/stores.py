"""Opening the stores a config names: the ledger, and beside it the quality counts and the admin overrides.

One factory, used by the server and the CLI's audit alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config
from ..ledger import BudgetStore, Journal, LocalLedger, MemoryJournal, SqliteJournal, spec_resolver
from ..ledger.local import wall_clock_ms
from ..ledger.overrides import OverrideStore
from ..quality import QualityStore

if TYPE_CHECKING:
    from ..ledger.redis_client import RedisClient

__all__ = ["open_override_store", "open_quality_store", "open_store"]


def open_store(config: Config, *, clock: Callable[[], int] = wall_clock_ms) -> BudgetStore:
    """The store the config names."""
    specs = spec_resolver(config.budgets)
    if config.store.kind == "redis":
        from ..ledger.redis import RedisStore

        timeout = config.store.timeout_ms / 1000
        client = _redis_client(config)
        shared = RedisStore(client, specs=specs, expiry_policy=config.reservations.expiry_policy,
                            prefix=config.store.key_prefix, timeout=timeout,
                            retention_ms=config.reservations.retention_ms)
        if config.store.fail_open_allowance:
            from ..ledger.failopen import FailOpenStore

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
    from ..ledger.feedback import MemoryQualityStore, RedisQualityStore, SqliteQualityStore

    if config.store.kind == "redis":
        return RedisQualityStore(_redis_client(config), prefix=config.store.key_prefix, timeout=_timeout_s(config))
    if config.store.kind == "sqlite":
        return SqliteQualityStore(config.store.path)
    return MemoryQualityStore()


def open_override_store(config: Config) -> OverrideStore:
    """Where admin changes to pools live: beside the ledger, so Redis shares them across sidecars."""
    from ..ledger.overrides import MemoryOverrideStore, RedisOverrideStore, SqliteOverrideStore

    if config.store.kind == "redis":
        return RedisOverrideStore(_redis_client(config), prefix=config.store.key_prefix, timeout=_timeout_s(config))
    if config.store.kind == "sqlite":
        return SqliteOverrideStore(config.store.path)
    return MemoryOverrideStore()


def _timeout_s(config: Config) -> float:
    return config.store.timeout_ms / 1000


def _redis_client(config: Config) -> RedisClient:
    """A Redis client as the store config describes it (URL, Cluster or Sentinel, bounded calls)."""
    from ..ledger.redis import connect

    store = config.store
    return connect(store.url, cluster=store.cluster, sentinels=store.sentinels, service=store.sentinel_service,
                   timeout=store.timeout_ms / 1000)
