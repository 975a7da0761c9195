"""The embedded journal: SQLite in one local file, in WAL mode.

Every ledger mutation is one SQLite transaction holding the changed pool counters
and the reservation record, committed before the RPC answers, so a process killed
at any instant loses nothing it acknowledged. ``synchronous=NORMAL`` in WAL mode
is durable against a process crash; only a power loss can drop the last
transactions (set ``synchronous=FULL`` to rule that out at the cost of an fsync per
call). Calls run on the event loop thread: each is tens of microseconds, less than
a hop to a worker thread would cost.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .pools import PoolState
from .types import Hold, HoldState

__all__ = ["SqliteJournal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (
    pool_id TEXT PRIMARY KEY,
    state   TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id     TEXT PRIMARY KEY,
    pool_ids           TEXT NOT NULL,
    amount             INTEGER NOT NULL,
    tokens             INTEGER NOT NULL,
    created_ms         INTEGER NOT NULL,
    expires_ms         INTEGER NOT NULL,
    state              TEXT NOT NULL,
    charged            INTEGER NOT NULL,
    used_tokens        INTEGER NOT NULL,
    ended_ms           INTEGER NOT NULL,
    model              TEXT NOT NULL,
    task_type          TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    commit_fingerprint TEXT NOT NULL,
    parent_id          TEXT NOT NULL DEFAULT '',
    attempt            INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservations_open ON reservations (state) WHERE state = 'open';
"""

_COLUMNS = (
    "reservation_id, pool_ids, amount, tokens, created_ms, expires_ms, state, charged, "
    "used_tokens, ended_ms, model, task_type, fingerprint, commit_fingerprint, parent_id, attempt"
)
# Upserts rather than INSERT OR REPLACE: on these WITHOUT ROWID tables a REPLACE deletes the
# row and inserts it again, index entries included, and measured about 1.6x the cost of
# updating it in place.
_WRITE_POOL = (
    "INSERT INTO pools (pool_id, state) VALUES (?, ?) ON CONFLICT (pool_id) DO UPDATE SET state = excluded.state"
)
_WRITE_RESERVATION = (
    f"INSERT INTO reservations ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (reservation_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.split(", ")[1:])
)
# Columns added since the first schema, with their definitions, for files written before them.
_ADDED_COLUMNS = {"parent_id": "TEXT NOT NULL DEFAULT ''", "attempt": "INTEGER NOT NULL DEFAULT 1"}


class SqliteJournal:
    """Pool counters and reservation records in a SQLite file."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        # isolation_level=None: transactions are explicit, one per mutation.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # Every mutation rewrites a few small rows on a few pages, and WAL appends each dirty page
        # whole: 1 KiB pages write about a third of the bytes of 4 KiB ones per call. It only takes
        # effect on a new file (before WAL mode is set); an existing file keeps its page size.
        self._db.execute("PRAGMA page_size=1024")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=2000")
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(reservations)")}
        for column, definition in _ADDED_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE reservations ADD COLUMN {column} {definition}")

    def load(self) -> list[tuple[int, str]]:
        rows = self._db.execute("SELECT expires_ms, reservation_id FROM reservations WHERE state = 'open'")
        return [(expires, rid) for expires, rid in rows]

    def find_pool(self, pool_id: str) -> PoolState | None:
        row = self._db.execute("SELECT state FROM pools WHERE pool_id = ?", (pool_id,)).fetchone()
        return None if row is None else PoolState.decode(pool_id, row[0])

    def pools(self) -> dict[str, PoolState]:
        return {
            pool_id: PoolState.decode(pool_id, state)
            for pool_id, state in self._db.execute("SELECT pool_id, state FROM pools")
        }

    def find(self, reservation_id: str) -> Hold | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM reservations WHERE reservation_id = ?", (reservation_id,)
        ).fetchone()
        return None if row is None else _hold(row)

    def write(self, pools: Iterable[PoolState], hold: Hold) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_WRITE_POOL, [(p.pool_id, p.encode()) for p in pools])
            db.execute(
                _WRITE_RESERVATION,
                (
                    hold.reservation_id,
                    "\n".join(hold.pool_ids),
                    hold.amount,
                    hold.tokens,
                    hold.created_ms,
                    hold.expires_ms,
                    str(hold.state),
                    hold.charged,
                    hold.used_tokens,
                    hold.ended_ms,
                    hold.model,
                    hold.task_type,
                    hold.fingerprint,
                    hold.commit_fingerprint,
                    hold.parent_id,
                    hold.attempt,
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def records(self) -> Iterable[Hold]:
        return [_hold(row) for row in self._db.execute(f"SELECT {_COLUMNS} FROM reservations")]

    def close(self) -> None:
        self._db.close()


def _hold(row: tuple[Any, ...]) -> Hold:
    pool_ids = tuple(row[1].split("\n")) if row[1] else ()
    return Hold(
        reservation_id=row[0],
        pool_ids=pool_ids,
        amount=row[2],
        tokens=row[3],
        created_ms=row[4],
        expires_ms=row[5],
        state=HoldState(row[6]),
        charged=row[7],
        used_tokens=row[8],
        ended_ms=row[9],
        model=row[10],
        task_type=row[11],
        fingerprint=row[12],
        commit_fingerprint=row[13],
        parent_id=row[14],
        attempt=row[15],
    )
