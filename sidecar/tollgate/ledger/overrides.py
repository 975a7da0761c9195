"""Operators' changes to pools over the config: a cap, and extra room until a moment.

Kept beside the ledger (memory, the SQLite file, or one Redis hash), so a restart
keeps them and every sidecar of a shared store applies the same ones. Never a
counter of the ledger: an admin change moves a pool's limits, never what the
reservation records say was spent, so the audit still balances to the nano-dollar.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from .redis_client import RedisClient, store_errors
from .spec import PoolSpec

__all__ = ["MemoryOverrideStore", "OverrideStore", "PoolOverride", "RedisOverrideStore", "SqliteOverrideStore"]


@dataclass(frozen=True, slots=True)
class PoolOverride:
    """One pool's admin changes."""

    pool_id: str
    cap: int | None = None
    """Replaces the config's cap when set."""
    bonus_nanos: int = 0
    bonus_calls: int = 0
    bonus_tokens: int = 0
    bonus_until_ms: int = 0
    """The bonus room counts until this instant (the end of the window it was given in); 0 = for good."""

    def bonus_live(self, now_ms: int) -> bool:
        return self.bonus_until_ms == 0 or now_ms < self.bonus_until_ms

    def apply(self, spec: PoolSpec, now_ms: int) -> PoolSpec:
        """The spec with this override's cap and, while it lasts, its bonus room."""
        cap = spec.cap if self.cap is None else self.cap
        if not self.bonus_live(now_ms):
            return spec if cap == spec.cap else replace(spec, cap=cap)
        return replace(
            spec,
            cap=cap + self.bonus_nanos,
            max_calls=spec.max_calls + self.bonus_calls if spec.max_calls else 0,
            max_tokens=spec.max_tokens + self.bonus_tokens if spec.max_tokens else 0,
        )

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> PoolOverride:
        data = json.loads(text)
        return cls(**data)


class OverrideStore(Protocol):
    """Where pool overrides live."""

    async def load(self) -> dict[str, PoolOverride]: ...
    async def put(self, override: PoolOverride) -> None: ...
    async def close(self) -> None: ...


class MemoryOverrideStore:
    """For one process (and tests)."""

    def __init__(self) -> None:
        self._items: dict[str, PoolOverride] = {}

    async def load(self) -> dict[str, PoolOverride]:
        return dict(self._items)

    async def put(self, override: PoolOverride) -> None:
        self._items[override.pool_id] = override

    async def close(self) -> None:
        pass


class SqliteOverrideStore:
    """In the embedded ledger's file."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=2000")
        self._db.execute("CREATE TABLE IF NOT EXISTS pool_overrides (pool_id TEXT PRIMARY KEY, value TEXT NOT NULL)")

    async def load(self) -> dict[str, PoolOverride]:
        rows = self._db.execute("SELECT value FROM pool_overrides").fetchall()
        return {o.pool_id: o for o in (PoolOverride.decode(v) for (v,) in rows)}

    async def put(self, override: PoolOverride) -> None:
        self._db.execute("INSERT OR REPLACE INTO pool_overrides VALUES (?, ?)", (override.pool_id, override.encode()))

    async def close(self) -> None:
        self._db.close()


class RedisOverrideStore:
    """One hash for every sidecar of the store."""

    def __init__(self, client: RedisClient, *, prefix: str = "tg", timeout: float = 0.5) -> None:
        self._client = client
        self._key = f"{prefix}:admin:pools"
        self._timeout = timeout

    async def load(self) -> dict[str, PoolOverride]:
        async with store_errors(self._timeout):
            raw = await self._client.hgetall(self._key)
        return {o.pool_id: o for o in (PoolOverride.decode(v) for v in raw.values())}

    async def put(self, override: PoolOverride) -> None:
        async with store_errors(self._timeout):
            await self._client.hset(self._key, override.pool_id, override.encode())

    async def close(self) -> None:
        await self._client.aclose()
