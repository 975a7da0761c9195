"""The in-memory journal: nothing survives the process. For tests and throwaway runs."""

from __future__ import annotations

from collections.abc import Iterable

from .pools import PoolState
from .types import Hold

__all__ = ["MemoryJournal"]


class MemoryJournal:
    """Keeps every reservation record and pool state in dicts: the store of one process, and of tests."""

    def __init__(self) -> None:
        self._records: dict[str, Hold] = {}
        self._pools: dict[str, PoolState] = {}
        self.fail_writes = False
        """Set to make every write fail, to test that a failed write changes nothing."""

    def load(self) -> list[tuple[int, str]]:
        return []

    def find_pool(self, pool_id: str) -> PoolState | None:
        return self._pools.get(pool_id)

    def pools(self) -> dict[str, PoolState]:
        return dict(self._pools)

    def find(self, reservation_id: str) -> Hold | None:
        return self._records.get(reservation_id)

    def write(self, pools: Iterable[PoolState], hold: Hold) -> None:
        if self.fail_writes:
            raise OSError("write refused (fail_writes is set)")
        for state in pools:
            self._pools[state.pool_id] = state
        self._records[hold.reservation_id] = hold

    def records(self) -> Iterable[Hold]:
        return list(self._records.values())

    def close(self) -> None:
        pass
