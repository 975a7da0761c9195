"""Read the ledger straight from the store, as an auditor would: no sidecar code in between.

Redis keys (see the top of ``sidecar/tollgate/ledger/redis.py``): ``<prefix>:{<org>}:r:<rid>``
record hashes, ``<prefix>:{<org>}:p:<pool>`` pool counters, ``<prefix>:{<org>}:rs`` every
record of the org, ``<prefix>:orgs``. Every record key is found by SCAN, not through the
index, so a record the index forgot is still seen (and reported). SQLite: the
``reservations`` and ``pools`` tables of ``sidecar/tollgate/ledger/sqlite.py``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import redis

__all__ = ["PoolRow", "Record", "StoreView", "read_redis", "read_sqlite"]


@dataclass(frozen=True, slots=True)
class Record:
    """One reservation record as the store holds it."""

    rid: str
    org_tag: str
    """The org the store files the record under (the Redis hash tag); ``""`` for SQLite."""
    pools: tuple[str, ...]
    amount: int
    tokens: int
    created_ms: int
    expires_ms: int
    state: str
    charged: int
    used: int
    ended_ms: int
    model: str
    cfp: str
    """The commit's usage fingerprint ``in/cached/out/reasoning`` ('' unless committed)."""
    indexed: bool = True
    """Listed in its org's record index (Redis ``rs``), which the audit and retention walk."""


@dataclass(frozen=True, slots=True)
class PoolRow:
    """One pool's stored counters."""

    pool_id: str
    org_tag: str
    spent: int
    calls: int
    held: int
    held_calls: int
    arch_spent: int = 0
    arch_calls: int = 0


@dataclass(slots=True)
class StoreView:
    records: dict[str, Record] = field(default_factory=dict)
    pools: dict[str, PoolRow] = field(default_factory=dict)
    orgs: frozenset[str] = frozenset()
    """Redis: the orgs every sidecar sweeps (``<prefix>:orgs``)."""

    def open_records(self) -> list[Record]:
        return [r for r in self.records.values() if r.state == "open"]


def _s(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _i(value: bytes | str | None) -> int:
    text = _s(value)
    return int(text) if text else 0


def read_redis(nodes: Iterable[tuple[str, int]], prefix: str) -> StoreView:
    """Every record and pool under ``prefix`` on every node (one node, or each master of a cluster)."""
    view = StoreView()
    indexed: set[tuple[str, str]] = set()
    raw_records: list[tuple[str, str, dict[bytes, bytes]]] = []
    orgs: set[str] = set()
    for host, port in nodes:
        client = redis.Redis(host=host, port=port, socket_timeout=10)
        with contextlib.closing(client):
            keys = [_s(k) for k in client.scan_iter(match=f"{prefix}:*", count=2000)]
            record_keys, pool_keys, index_keys = [], [], []
            for key in keys:
                rest = key[len(prefix) + 1:]
                if rest == "orgs":
                    orgs |= {_s(o) for o in client.smembers(key)}  # type: ignore[union-attr]
                    continue
                if not rest.startswith("{") or "}:" not in rest:
                    continue
                org, _, suffix = rest[1:].partition("}:")
                if suffix.startswith("r:"):
                    record_keys.append((key, org, suffix[2:]))
                elif suffix.startswith("p:"):
                    pool_keys.append((key, org, suffix[2:]))
                elif suffix == "rs":
                    index_keys.append((key, org))
            pipe = client.pipeline(transaction=False)
            for key, _, _ in record_keys:
                pipe.hgetall(key)
            for key, _, _ in pool_keys:
                pipe.hgetall(key)
            for key, _ in index_keys:
                pipe.zrange(key, 0, -1)
            replies = pipe.execute()
            n_rec, n_pool = len(record_keys), len(pool_keys)
            for (_key, org, rid), fields in zip(record_keys, replies[:n_rec], strict=True):
                raw_records.append((org, rid, fields))
            for (_key, org, pool_id), f in zip(pool_keys, replies[n_rec:n_rec + n_pool], strict=True):
                view.pools[pool_id] = PoolRow(
                    pool_id, org, spent=_i(f.get(b"spent")), calls=_i(f.get(b"calls")), held=_i(f.get(b"held")),
                    held_calls=_i(f.get(b"hcalls")), arch_spent=_i(f.get(b"arch_spent")),
                    arch_calls=_i(f.get(b"arch_calls")),
                )
            for (_key, org), members in zip(index_keys, replies[n_rec + n_pool:], strict=True):
                indexed |= {(org, _s(m)) for m in members}
    for org, rid, f in raw_records:
        pools = _s(f.get(b"pools"))
        view.records[rid] = Record(
            rid=rid, org_tag=org, pools=tuple(pools.split("\n")) if pools else (), amount=_i(f.get(b"amount")),
            tokens=_i(f.get(b"tokens")), created_ms=_i(f.get(b"created")), expires_ms=_i(f.get(b"expires")),
            state=_s(f.get(b"state")), charged=_i(f.get(b"charged")), used=_i(f.get(b"used")),
            ended_ms=_i(f.get(b"ended")), model=_s(f.get(b"model")), cfp=_s(f.get(b"cfp")),
            indexed=(org, rid) in indexed,
        )
    view.orgs = frozenset(orgs)
    return view


def read_sqlite(path: Path) -> StoreView:
    """Every record and pool of an embedded ledger file (read-only; the sidecar may be running)."""
    view = StoreView()
    if not path.exists():
        return view
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    with contextlib.closing(db):
        rows = db.execute(
            "SELECT reservation_id, pool_ids, amount, tokens, created_ms, expires_ms, state, charged, used_tokens, "
            "ended_ms, model, commit_fingerprint FROM reservations"
        ).fetchall()
        for rid, pools, amount, tokens, created, expires, state, charged, used, ended, model, cfp in rows:
            view.records[rid] = Record(
                rid=rid, org_tag="", pools=tuple(pools.split("\n")) if pools else (), amount=amount, tokens=tokens,
                created_ms=created, expires_ms=expires, state=state, charged=charged, used=used, ended_ms=ended,
                model=model, cfp=cfp,
            )
        for pool_id, text in db.execute("SELECT pool_id, state FROM pools"):
            # ``mark spent calls tokens held held_calls held_tokens`` then optional ``;bucket`` groups.
            head = text.split(";")[0].split()
            _, spent, calls, _, held, held_calls, _ = (int(x) for x in head[:7])
            view.pools[pool_id] = PoolRow(pool_id, "", spent=spent, calls=calls, held=held, held_calls=held_calls)
    return view
