"""Operators' actions on budgets: set a cap, top up, reset a window, end a stuck reservation.

Caps and room are limits, not money: an admin change is a ``PoolOverride`` over the
config (see ``ledger/overrides.py``), so the ledger's records and counters — what
was really spent — are never rewritten and the audit still balances. Ending a
reservation goes through the ledger like any release or commit. Every action is
appended to the audit log, with who did it, why, and the pool before and after.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..config import WindowKind
from ..errors import InvalidRequest
from ..ids import parse_reservation_id
from ..ledger import CommitOutcome, CommitRequest, PoolSnapshot, ReleaseOutcome
from ..ledger.overrides import OverrideStore, PoolOverride
from ..money import MAX_CAP_NANOS
from .facade import Tollgate

__all__ = ["Admin"]

_REASON_MAX = 500


@dataclass(frozen=True, slots=True)
class PoolChange:
    """A pool before and after an admin action."""

    before: PoolSnapshot
    after: PoolSnapshot


class Admin:
    """The admin operations over one ``Tollgate`` and its override store."""

    def __init__(self, gate: Tollgate, store: OverrideStore) -> None:
        self.gate = gate
        self.store = store

    async def refresh(self) -> None:
        """Every sidecar's overrides, from the store (the sweeper calls this each tick)."""
        self.gate.overrides = await self.store.load()

    async def set_cap(self, who: str, pool_id: str, cap: int, reason: str = "") -> PoolChange:
        if not 0 <= cap <= MAX_CAP_NANOS:
            raise InvalidRequest(f"cap_nanos must be between 0 and {MAX_CAP_NANOS} (2^52), got {cap}")
        return await self._change(who, "set_cap", pool_id, reason, {"cap_nanos": cap},
                                  lambda o, snap, now: replace(o, cap=cap))

    async def top_up(self, who: str, pool_id: str, amount: int, reason: str = "") -> PoolChange:
        if not 0 < amount <= MAX_CAP_NANOS:
            raise InvalidRequest(f"amount_nanos must be between 1 and {MAX_CAP_NANOS} (2^52), got {amount}")

        def add(o: PoolOverride, snap: PoolSnapshot, now: int) -> PoolOverride:
            until = self._window_end(snap, now)
            live = o.bonus_live(now) and o.bonus_until_ms == until
            base = o.bonus_nanos if live else 0
            return replace(o, bonus_nanos=base + amount, bonus_calls=o.bonus_calls if live else 0,
                           bonus_tokens=o.bonus_tokens if live else 0, bonus_until_ms=until)

        return await self._change(who, "top_up", pool_id, reason, {"amount_nanos": amount}, add)

    async def reset_window(self, who: str, pool_id: str, reason: str = "") -> PoolChange:
        def clear(o: PoolOverride, snap: PoolSnapshot, now: int) -> PoolOverride:
            # Room for everything the window has used: its spend, and its calls and tokens (open ones too).
            return replace(o, bonus_nanos=snap.spent, bonus_calls=snap.calls, bonus_tokens=snap.tokens,
                           bonus_until_ms=self._window_end(snap, now))

        return await self._change(who, "reset_window", pool_id, reason, {}, clear)

    async def end_reservation(
        self, who: str, reservation_id: str, *, charge: bool, reason: str = ""
    ) -> CommitOutcome | ReleaseOutcome:
        self._check_reason(reason)
        parse_reservation_id(reservation_id)
        hold = await self.gate.store.get(reservation_id)
        outcome: CommitOutcome | ReleaseOutcome
        if charge:
            outcome = await self.gate.store.commit(
                CommitRequest(reservation_id, hold.amount, hold.tokens, "admin:charge-hold"))
        else:
            outcome = await self.gate.store.release(reservation_id)
        self.gate.runtime.audit.write({
            "op": "end_reservation", "by": who, "reason": reason, "reservation_id": reservation_id,
            "before": {"state": str(hold.state), "amount_nanos": hold.amount, "charged_nanos": hold.charged},
            "after": {"state": str(outcome.hold.state), "charged_nanos": outcome.hold.charged},
            "replayed": outcome.replayed,
        })
        return outcome

    # -- internals -------------------------------------------------------------------------

    async def _change(self, who: str, op: str, pool_id: str, reason: str, args: dict[str, Any],
                      update: Any) -> PoolChange:
        self._check_reason(reason)
        ref = self.gate.pool_ref(pool_id)
        # The latest overrides, so two sidecars' admin changes compose instead of overwriting each other.
        await self.refresh()
        (before,) = await self.gate.store.snapshot([ref])
        now = self.gate.clock()
        current = self.gate.overrides.get(pool_id) or PoolOverride(pool_id)
        changed = update(current, before, now)
        # Checked before anything is written: an answer that fails after the write would tell
        # the caller "no" about a change that stays.
        configured = self.gate.configured_spec(pool_id, ref.level)
        cap = changed.apply(configured, now).cap if configured is not None else changed.cap or 0
        if cap > MAX_CAP_NANOS:
            raise InvalidRequest(
                f"this would make {pool_id}'s cap {cap} nano-USD, over the largest a pool may have "
                f"({MAX_CAP_NANOS}, 2^52); nothing was changed"
            )
        await self.store.put(changed)
        self.gate.overrides = {**self.gate.overrides, pool_id: changed}
        (after,) = await self.gate.store.snapshot([self.gate.pool_ref(pool_id)])
        self.gate.runtime.audit.write({"op": op, "by": who, "reason": reason, "pool_id": pool_id, **args,
                          "before": _figures(before), "after": _figures(after), "override": asdict(changed)})
        return PoolChange(before, after)

    @staticmethod
    def _window_end(snap: PoolSnapshot, now: int) -> int:
        """When room given now runs out: the end of the current window (0 for a window-less pool)."""
        window = snap.spec.window
        if window.kind is WindowKind.FIXED and snap.resets_at_ms is not None:
            return snap.resets_at_ms
        if window.kind in (WindowKind.SLIDING, WindowKind.TOKEN_BUCKET):
            return now + window.duration_ms
        return 0

    @staticmethod
    def _check_reason(reason: str) -> None:
        if len(reason) > _REASON_MAX or any(c in reason for c in "\r\n\x00"):
            raise InvalidRequest(f"reason must be one line of at most {_REASON_MAX} characters")


def _figures(snap: PoolSnapshot) -> dict[str, Any]:
    return {"cap_nanos": snap.spec.cap, "usable_cap_nanos": snap.usable_cap, "spent_nanos": snap.spent,
            "held_nanos": snap.held, "remaining_nanos": snap.remaining, "calls": snap.calls, "tokens": snap.tokens}
