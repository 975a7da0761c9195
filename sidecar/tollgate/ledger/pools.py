"""A pool's counters and the rules that move them: window roll, admission, charge.

Pure and synchronous: the local stores apply these to copies of the state, persist
the copies, and only then install them, so a failed write changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import BudgetExceeded, Limit, Refusal
from ..scope import Level
from .spec import Policy, PoolSpec, WindowKind
from .types import HoldRequest, PoolRef, PoolSnapshot
from .windows import SLIDING_BUCKETS, bucket_debt, bucket_ms, fixed_window

__all__ = ["PoolState", "check_admission", "pool_warning"]


@dataclass(slots=True)
class PoolState:
    """The mutable counters of one pool.

    ``spent``, ``calls`` and ``tokens`` cover the current window (for a sliding window,
    the sum of ``buckets``; for a token bucket ``spent`` is the anchor debt, see
    ``windows``). ``held*`` are the sums over open reservations.
    """

    pool_id: str
    mark_ms: int = 0
    """Fixed: start of the current window. Sliding: newest bucket index. Bucket: time of the anchor."""
    spent: int = 0
    calls: int = 0
    tokens: int = 0
    held: int = 0
    held_calls: int = 0
    held_tokens: int = 0
    buckets: dict[int, list[int]] = field(default_factory=dict)
    archived: tuple[int, int, int] = (0, 0, 0)
    """Spend, calls and tokens of records deleted after their retention (Redis store only)."""

    def copy(self) -> PoolState:
        return PoolState(
            pool_id=self.pool_id,
            mark_ms=self.mark_ms,
            spent=self.spent,
            calls=self.calls,
            tokens=self.tokens,
            held=self.held,
            held_calls=self.held_calls,
            held_tokens=self.held_tokens,
            buckets={k: list(v) for k, v in self.buckets.items()} if self.buckets else {},
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "mark_ms": self.mark_ms,
            "spent": self.spent,
            "calls": self.calls,
            "tokens": self.tokens,
            "held": self.held,
            "held_calls": self.held_calls,
            "held_tokens": self.held_tokens,
            "buckets": {str(k): v for k, v in self.buckets.items()},
        }

    def encode(self) -> str:
        """The counters as compact text for the SQLite journal: seven integers, then one group per bucket.

        JSON was the first format; encoding it cost more than the rest of a write.
        """
        head = (f"{self.mark_ms} {self.spent} {self.calls} {self.tokens} {self.held} {self.held_calls} "
                f"{self.held_tokens}")
        if not self.buckets:
            return head
        return head + "".join(f";{k} {v[0]} {v[1]} {v[2]}" for k, v in self.buckets.items())

    @classmethod
    def decode(cls, pool_id: str, text: str) -> PoolState:
        """A state from ``encode``'s text, or from the JSON of older files."""
        if text.startswith("{"):
            return cls.from_dict(pool_id, json.loads(text))
        head, *groups = text.split(";")
        mark, spent, calls, tokens, held, held_calls, held_tokens = map(int, head.split())
        buckets = {}
        for group in groups:
            k, *v = map(int, group.split())
            buckets[k] = v
        return cls(pool_id, mark, spent, calls, tokens, held, held_calls, held_tokens, buckets)

    @classmethod
    def from_dict(cls, pool_id: str, data: dict[str, object]) -> PoolState:
        buckets = data.get("buckets") or {}
        assert isinstance(buckets, dict)
        return cls(
            pool_id=pool_id,
            mark_ms=_int(data["mark_ms"]),
            spent=_int(data["spent"]),
            calls=_int(data["calls"]),
            tokens=_int(data["tokens"]),
            held=_int(data["held"]),
            held_calls=_int(data["held_calls"]),
            held_tokens=_int(data["held_tokens"]),
            buckets={int(k): [int(x) for x in v] for k, v in buckets.items()},
        )

    # -- time ---------------------------------------------------------------

    def roll(self, spec: PoolSpec, now_ms: int) -> None:
        """Bring the window up to ``now_ms``: reset, slide or drain as the spec says."""
        kind = spec.window.kind
        if kind is WindowKind.FIXED:
            start, _ = fixed_window(now_ms, spec.window.period, spec.window.tz)
            # A clock that stepped backwards leaves the newer window in place.
            if start > self.mark_ms:
                self.spent = self.calls = self.tokens = 0
                self.mark_ms = start
        elif kind is WindowKind.SLIDING:
            idx = now_ms // bucket_ms(spec.window.duration_ms)
            if idx > self.mark_ms:
                self.mark_ms = idx
                oldest = idx - SLIDING_BUCKETS
                for old in [k for k in self.buckets if k <= oldest]:
                    s, c, t = self.buckets.pop(old)
                    self.spent -= s
                    self.calls -= c
                    self.tokens -= t

    def charge(self, spec: PoolSpec, cost: int, tokens: int, now_ms: int) -> None:
        """Add one ended call to the current window (the state must be rolled to now)."""
        if spec.window.kind is WindowKind.TOKEN_BUCKET:
            self.spent = self.spent_nanos(spec, now_ms) + cost
            self.mark_ms = now_ms
            return
        self.spent += cost
        self.calls += 1
        self.tokens += tokens
        if spec.window.kind is WindowKind.SLIDING:
            bucket = self.buckets.setdefault(self.mark_ms, [0, 0, 0])
            bucket[0] += cost
            bucket[1] += 1
            bucket[2] += tokens

    # -- reading ------------------------------------------------------------

    def spent_nanos(self, spec: PoolSpec, now_ms: int) -> int:
        """Spend in the window at ``now_ms`` (a token bucket's current debt)."""
        if spec.window.kind is WindowKind.TOKEN_BUCKET:
            return bucket_debt(self.spent, self.mark_ms, now_ms, spec.cap, spec.window.duration_ms)
        return self.spent

    def resets_at_ms(self, spec: PoolSpec, now_ms: int) -> int | None:
        """When the window next frees spend, if it ever does."""
        kind = spec.window.kind
        if kind is WindowKind.FIXED:
            return fixed_window(now_ms, spec.window.period, spec.window.tz)[1]
        if kind is WindowKind.SLIDING:
            width = bucket_ms(spec.window.duration_ms)
            oldest = min(self.buckets, default=self.mark_ms)
            return (oldest + SLIDING_BUCKETS + 1) * width
        if kind is WindowKind.TOKEN_BUCKET:
            debt = self.spent_nanos(spec, now_ms)
            if not debt or not spec.cap:
                return None
            return now_ms + -(-debt * spec.window.duration_ms // spec.cap)
        return None

    def snapshot(self, level: Level, spec: PoolSpec, now_ms: int, *, high_priority: bool) -> PoolSnapshot:
        spent = self.spent_nanos(spec, now_ms)
        return PoolSnapshot(
            pool_id=self.pool_id,
            level=level,
            spec=spec,
            usable_cap=spec.usable_cap(high_priority=high_priority),
            spent=spent,
            held=self.held,
            calls=self.calls + self.held_calls,
            tokens=self.tokens + self.held_tokens,
            resets_at_ms=self.resets_at_ms(spec, now_ms),
            warning=pool_warning(spec, spent, self.held),
        )


def pool_warning(spec: PoolSpec, spent: int, held: int) -> bool:
    """Whether a pool with ``spent`` and ``held`` is past its warning threshold (or its cap)."""
    used = spent + held
    return used >= spec.cap * spec.warn_at_bp // 10_000 or used > spec.cap


def check_admission(
    pool_id: str,
    state: PoolState | None,
    level: Level,
    spec: PoolSpec,
    *,
    amount: int,
    tokens: int,
    high_priority: bool,
    now_ms: int,
) -> Refusal | None:
    """Why this pool cannot admit the hold, or ``None`` if it can.

    ``state`` is ``None`` for a request-level pool, which caps one call and keeps no
    counters. Warn pools never refuse. ``state`` must already be rolled to ``now_ms``.
    """
    if spec.policy is Policy.WARN:
        return None
    usable = spec.usable_cap(high_priority=high_priority)
    spent = held = 0
    if state is not None:
        spent, held = state.spent_nanos(spec, now_ms), state.held

    def refuse(limit: Limit, requested: int, remaining: int) -> Refusal:
        resets = None if state is None else state.resets_at_ms(spec, now_ms)
        return Refusal(pool_id, str(level), str(spec.policy), limit, requested, remaining, resets)

    if spent + held + amount > usable:
        return refuse(Limit.COST, amount, usable - spent - held)
    if state is not None:
        if spec.max_calls and state.calls + state.held_calls + 1 > spec.max_calls:
            return refuse(Limit.CALLS, 1, spec.max_calls - state.calls - state.held_calls)
        if spec.max_tokens and state.tokens + state.held_tokens + tokens > spec.max_tokens:
            return refuse(Limit.TOKENS, tokens, spec.max_tokens - state.tokens - state.held_tokens)
        if spec.max_open and state.held_calls + 1 > spec.max_open:
            return refuse(Limit.OPEN, 1, spec.max_open - state.held_calls)
    return None


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def stateful_pools(request: HoldRequest) -> list[PoolRef]:
    """The request's pools that keep state, once its request-level pools admit it.

    A request pool caps one call and keeps no counters, so every store checks it the
    same way, here, before anything is read or written; ``BudgetExceeded`` if it refuses.
    """
    stateful = []
    for ref in request.pools:
        if ref.level is not Level.REQUEST:
            stateful.append(ref)
            continue
        refusal = check_admission(ref.pool_id, None, ref.level, ref.spec, amount=request.amount,
                                  tokens=request.tokens, high_priority=request.high_priority, now_ms=0)
        if refusal is not None:
            raise BudgetExceeded(refusal)
    return stateful
