"""The sidecar's ledger file as an outsider reads it: read-only, in WAL mode, with plain SQL.

``LedgerView.snapshot()`` takes every row of the tables that hold lasting state (pools,
reservations, admin overrides, quality counts and overrides). ``PRAGMA data_version``
says whether another connection committed anything since the last look, so a call
that wrote nothing costs one pragma, not a read of the whole file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LASTING_TABLES", "LedgerView", "RedisView", "Snapshot"]

LASTING_TABLES = ("pools", "reservations", "pool_overrides", "quality_counts", "quality_overrides")
"""What an answered call may change and an error must not. ``quality_costs`` is left out: the
sweeper writes escalation costs there in the background, a second after the call that caused them."""

Rows = dict[tuple[object, ...], tuple[object, ...]]


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, Rows]

    def diff(self, after: Snapshot, limit: int = 4) -> list[str]:
        """What changed from this snapshot to ``after``, one line per table, a few keys each."""
        out = []
        for name in sorted(set(self.tables) | set(after.tables)):
            a, b = self.tables.get(name, {}), after.tables.get(name, {})
            added = [k for k in b if k not in a]
            removed = [k for k in a if k not in b]
            changed = [k for k in b if k in a and a[k] != b[k]]
            if added or removed or changed:
                parts = []
                for label, keys in (("added", added), ("removed", removed), ("changed", changed)):
                    if keys:
                        shown = ", ".join(_short(k) for k in keys[:limit])
                        parts.append(f"{len(keys)} {label} ({shown}{', …' if len(keys) > limit else ''})")
                out.append(f"{name}: {'; '.join(parts)}")
                for k in changed[:2]:
                    out.append(f"  {_short(k)}: {_short(a[k], 160)} -> {_short(b[k], 160)}")
        return out


def _short(value: object, width: int = 80) -> str:
    text = repr(value[0] if isinstance(value, tuple) and len(value) == 1 else value)
    return text if len(text) <= width else text[: width - 1] + "…"


class LedgerView:
    """A read-only connection to a live ledger file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._version = -1
        self._last: Snapshot | None = None

    def close(self) -> None:
        self._db.close()

    def version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def snapshot(self) -> Snapshot:
        """Every lasting row, read in one transaction; reused while nobody has written since."""
        version = self.version()
        if self._last is not None and version == self._version:
            return self._last
        db = self._db
        db.execute("BEGIN")
        try:
            present = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            tables: dict[str, Rows] = {}
            for name in LASTING_TABLES:
                if name not in present:
                    continue
                keys = [r[1] for r in db.execute(f"PRAGMA table_info({name})") if r[5]]
                columns = [r[1] for r in db.execute(f"PRAGMA table_info({name})")]
                key_at = [columns.index(k) for k in keys] or list(range(len(columns)))
                tables[name] = {tuple(row[i] for i in key_at): tuple(row)
                                for row in db.execute(f"SELECT * FROM {name}")}
        finally:
            db.execute("COMMIT")
        self._version, self._last = version, Snapshot(tables)
        return self._last

    def reservations(self) -> dict[str, tuple[str, int, int, str, int]]:
        """Every reservation record: id -> (state, amount, charged, pool ids joined by newlines, created ms)."""
        rows = self._db.execute("SELECT reservation_id, state, amount, charged, pool_ids, created_ms FROM reservations")
        return {rid: (state, amount, charged, pools, created) for rid, state, amount, charged, pools, created in rows}


class RedisView:
    """A Redis store as an outsider reads it: every key under the sidecar's prefix, by its value's digest.

    Keyspace notifications name the keys written since the last look (a PING on the subscription
    is the barrier: its reply comes after every notification queued before it), so a snapshot
    digests only those keys again, with ``DEBUG DIGEST-VALUE``.
    """

    _ABSENT = b"0" * 40

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=30)
        self._client.config_set("notify-keyspace-events", "KA")
        self._events = self._client.pubsub()
        self._channel = f"__keyspace@0__:{prefix}:"
        self._events.psubscribe(self._channel + "*")
        keys = [k for k in self._client.scan_iter(match=f"{prefix}:*", count=1000)]
        self._rows: Rows = {}
        self._digest(keys)
        self._last = Snapshot({"redis": dict(self._rows)})

    def close(self) -> None:
        self._events.close()
        self._client.close()

    def _digest(self, keys: list[bytes]) -> None:
        # As on SQLite, escalation costs are left out: the sweeper flushes them in the background.
        keys = [k for k in keys if k != f"{self.prefix}:quality:costs".encode()]
        if not keys:
            return
        for key, value in zip(keys, self._client.execute_command("DEBUG", "DIGEST-VALUE", *keys), strict=True):
            row = (key.decode(errors="replace"),)
            if value == self._ABSENT:
                self._rows.pop(row, None)
            else:
                self._rows[row] = (value,)

    def _dirty(self) -> set[bytes]:
        """Keys written since the last call: every notification up to a PING's reply."""
        self._events.ping()
        dirty: set[bytes] = set()
        while True:
            message = self._events.get_message(timeout=30)
            if message is None:
                raise TimeoutError("no reply to a PING on the keyspace subscription")
            if message["type"] == "pong":
                return dirty
            if message["type"] == "pmessage":
                channel = bytes(message["channel"])
                dirty.add(channel[len("__keyspace@0__:"):])

    def snapshot(self) -> Snapshot:
        dirty = self._dirty()
        if dirty:
            self._digest(sorted(dirty))
            self._last = Snapshot({"redis": dict(self._rows)})
        return self._last

    def reservations(self) -> dict[str, tuple[str, int, int, str, int]]:
        """Every reservation record, from each org's record index (``…:{org}:rs``) and record hashes."""
        out: dict[str, tuple[str, int, int, str, int]] = {}
        for index in self._client.scan_iter(match=f"{self.prefix}:{{*}}:rs", count=1000):
            base = bytes(index).decode()[: -len("rs")]
            members: list[bytes] = list(self._client.zrange(index, 0, -1))  # type: ignore[arg-type]
            rids = [r.decode() for r in members]
            pipe = self._client.pipeline(transaction=False)
            for rid in rids:
                pipe.hmget(f"{base}r:{rid}", "state", "amount", "charged", "pools", "created")
            for rid, (state, amount, charged, pools, created) in zip(rids, pipe.execute(), strict=True):
                out[rid] = ((state or b"?").decode(), int(amount or 0), int(charged or 0), (pools or b"").decode(),
                            int(created or 0))
        return out
