"""Where the quality guard keeps its counts and overrides: memory, SQLite or Redis.

Counts are bounded: one counter pair per (day, task type, tier, kind), forgotten
after the window. Scores are summed as integer millionths, so Redis's exact
``HINCRBY`` can add them from every sidecar at once.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

from ..quality import DAY_MS, Sample, Tally
from .redis_client import RedisClient, store_errors, text

__all__ = ["MemoryQualityStore", "RedisQualityStore", "SqliteQualityStore"]

_MICRO = 1_000_000


def _micro(score: float) -> int:
    return round(min(max(score, 0.0), 1.0) * _MICRO)


class MemoryQualityStore:
    """For one process (and tests)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._overrides: dict[str, tuple[str, int]] = {}
        self._costs: dict[str, int] = defaultdict(int)

    async def add_feedback(self, sample: Sample, now_ms: int) -> None:
        c = self._counts[(now_ms // DAY_MS, sample.task_type, sample.tier, sample.kind)]
        c[0] += 1
        c[1] += _micro(sample.score)

    async def tallies(self, now_ms: int, window_days: int) -> dict[tuple[str, str, str], Tally]:
        first = now_ms // DAY_MS - window_days + 1
        out: dict[tuple[str, str, str], Tally] = {}
        for (day, task, tier, kind), (n, micro) in list(self._counts.items()):
            if day < first:
                del self._counts[(day, task, tier, kind)]
                continue
            t = out.setdefault((task, tier, kind), Tally())
            t.n += n
            t.total += micro / _MICRO
        return out

    async def reset(self, task_type: str, kind: str) -> None:
        for key in [k for k in self._counts if k[1] == task_type and k[3] == kind]:
            del self._counts[key]

    async def set_override(self, task_type: str, tier: str | None, now_ms: int) -> None:
        if tier is None:
            self._overrides.pop(task_type, None)
        else:
            self._overrides[task_type] = (tier, now_ms)

    async def overrides(self) -> dict[str, tuple[str, int]]:
        return dict(self._overrides)

    async def add_escalation_cost(self, task_type: str, nanos: int) -> None:
        self._costs[task_type] += nanos

    async def escalation_costs(self) -> dict[str, int]:
        return dict(self._costs)


class SqliteQualityStore:
    """In the embedded ledger's file, so a restart keeps the guard's state."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=2000")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS quality_counts (
                day INTEGER, task_type TEXT, tier TEXT, kind TEXT, n INTEGER, micro INTEGER,
                PRIMARY KEY (day, task_type, tier, kind)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS quality_overrides (task_type TEXT PRIMARY KEY, tier TEXT, since INTEGER);
            CREATE TABLE IF NOT EXISTS quality_costs (task_type TEXT PRIMARY KEY, nanos INTEGER);
        """)

    async def add_feedback(self, sample: Sample, now_ms: int) -> None:
        self._db.execute(
            "INSERT INTO quality_counts VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (day, task_type, tier, kind) "
            "DO UPDATE SET n = n + 1, micro = micro + excluded.micro",
            (now_ms // DAY_MS, sample.task_type, sample.tier, sample.kind, _micro(sample.score)),
        )

    async def tallies(self, now_ms: int, window_days: int) -> dict[tuple[str, str, str], Tally]:
        first = now_ms // DAY_MS - window_days + 1
        self._db.execute("DELETE FROM quality_counts WHERE day < ?", (first,))
        out = {}
        rows = self._db.execute(
            "SELECT task_type, tier, kind, SUM(n), SUM(micro) FROM quality_counts GROUP BY task_type, tier, kind"
        )
        for task, tier, kind, n, micro in rows:
            out[(task, tier, kind)] = Tally(n, micro / _MICRO)
        return out

    async def reset(self, task_type: str, kind: str) -> None:
        self._db.execute("DELETE FROM quality_counts WHERE task_type = ? AND kind = ?", (task_type, kind))

    async def set_override(self, task_type: str, tier: str | None, now_ms: int) -> None:
        if tier is None:
            self._db.execute("DELETE FROM quality_overrides WHERE task_type = ?", (task_type,))
        else:
            self._db.execute("INSERT OR REPLACE INTO quality_overrides VALUES (?, ?, ?)", (task_type, tier, now_ms))

    async def overrides(self) -> dict[str, tuple[str, int]]:
        return {t: (tier, since) for t, tier, since in self._db.execute("SELECT * FROM quality_overrides")}

    async def add_escalation_cost(self, task_type: str, nanos: int) -> None:
        self._db.execute(
            "INSERT INTO quality_costs VALUES (?, ?) ON CONFLICT (task_type) DO UPDATE SET nanos = nanos + ?",
            (task_type, nanos, nanos),
        )

    async def escalation_costs(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT task_type, nanos FROM quality_costs").fetchall())


class RedisQualityStore:
    """Shared by every sidecar: one hash per day of counts, one of overrides, one of costs."""

    def __init__(self, client: RedisClient, *, prefix: str = "tg", timeout: float = 0.5) -> None:
        self._client = client
        self._prefix = prefix
        self._timeout = timeout

    def _day_key(self, day: int) -> str:
        return f"{self._prefix}:quality:day:{day}"

    async def add_feedback(self, sample: Sample, now_ms: int) -> None:
        day = now_ms // DAY_MS
        field = f"{sample.task_type}|{sample.tier}|{sample.kind}"
        key = self._day_key(day)
        async with store_errors(self._timeout):
            pipe = self._client.pipeline(transaction=False)
            pipe.hincrby(key, f"{field}|n", 1)
            pipe.hincrby(key, f"{field}|m", _micro(sample.score))
            pipe.expire(key, 40 * 86_400)
            await pipe.execute()

    async def tallies(self, now_ms: int, window_days: int) -> dict[tuple[str, str, str], Tally]:
        today = now_ms // DAY_MS
        out: dict[tuple[str, str, str], Tally] = {}
        async with store_errors(self._timeout * 4):
            for day in range(today - window_days + 1, today + 1):
                for raw_field, raw_value in (await self._client.hgetall(self._day_key(day))).items():
                    task, tier, kind, part = text(raw_field).rsplit("|", 3)
                    t = out.setdefault((task, tier, kind), Tally())
                    if part == "n":
                        t.n += int(raw_value)
                    else:
                        t.total += int(raw_value) / _MICRO
        return out

    async def reset(self, task_type: str, kind: str) -> None:
        # Only the days of the window can hold counts (older keys expire).
        async with store_errors(self._timeout * 4):
            for key in [k async for k in self._client.scan_iter(match=f"{self._prefix}:quality:day:*")]:
                fields = [f for f in await self._client.hkeys(key)
                          if text(f).startswith(f"{task_type}|") and text(f).split("|")[-2] == kind]
                if fields:
                    await self._client.hdel(key, *fields)

    async def set_override(self, task_type: str, tier: str | None, now_ms: int) -> None:
        key = f"{self._prefix}:quality:overrides"
        async with store_errors(self._timeout):
            if tier is None:
                await self._client.hdel(key, task_type)
            else:
                await self._client.hset(key, task_type, f"{tier}|{now_ms}")

    async def overrides(self) -> dict[str, tuple[str, int]]:
        async with store_errors(self._timeout):
            raw = await self._client.hgetall(f"{self._prefix}:quality:overrides")
        out = {}
        for task, value in raw.items():
            tier, _, since = text(value).partition("|")
            out[text(task)] = (tier, int(since))
        return out

    async def add_escalation_cost(self, task_type: str, nanos: int) -> None:
        async with store_errors(self._timeout):
            await self._client.hincrby(f"{self._prefix}:quality:costs", task_type, nanos)

    async def escalation_costs(self) -> dict[str, int]:
        async with store_errors(self._timeout):
            raw = await self._client.hgetall(f"{self._prefix}:quality:costs")
        return {text(k): int(v) for k, v in raw.items()}

