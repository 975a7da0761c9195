"""The ledger's vocabulary of pools: policies, windows, pool specs and the budgets that hold them.

Read by the stores and the application alike; the config loader builds them from YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..scope import Level, Scope

__all__ = ["FIXED_PERIODS", "BudgetConfig", "ExpiryPolicy", "Policy", "PoolSpec", "Window", "WindowKind"]


class Policy(StrEnum):
    """What a pool does with a call that does not fit."""

    HARD = "hard"
    SOFT = "soft"
    WARN = "warn"


class WindowKind(StrEnum):
    """How a pool's spend resets."""

    NONE = "none"
    FIXED = "fixed"
    SLIDING = "sliding"
    TOKEN_BUCKET = "token_bucket"


class ExpiryPolicy(StrEnum):
    """What happens to a hold nobody ended within its TTL."""

    CHARGE = "charge"
    RELEASE = "release"


FIXED_PERIODS = ("hour", "day", "week", "month")


@dataclass(frozen=True, slots=True)
class Window:
    """A pool's window. ``period`` is for fixed windows; ``duration_ms`` for sliding and token bucket."""

    kind: WindowKind = WindowKind.NONE
    period: str = ""
    tz: str = "UTC"
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A budget pool's configuration."""

    cap: int
    """Cap per window in nano-dollars."""
    window: Window = Window()
    policy: Policy = Policy.HARD
    warn_at_bp: int = 8000
    """Warning threshold as basis points of the cap (default 80 %)."""
    priority_reserve_bp: int = 2000
    """Share of the cap only high-priority requests may use, in basis points (default 20 %)."""
    max_calls: int = 0
    """Cap on calls per window; 0 means none."""
    max_tokens: int = 0
    """Cap on tokens (input + output) per window; 0 means none."""
    max_open: int = 0
    """Cap on reservations open at once, so a runaway loop cannot lock the pool in holds; 0 means none."""
    margin_bp: int | None = None
    """Estimation margin for holds on this pool's scope; ``None`` takes the global one."""

    def usable_cap(self, *, high_priority: bool) -> int:
        """What a request of this priority may fill the pool up to."""
        if high_priority:
            return self.cap
        return self.cap - self.cap * self.priority_reserve_bp // 10_000


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """Pool templates per level, with explicit overrides per pool id."""

    templates: dict[Level, PoolSpec] = field(default_factory=dict)
    overrides: dict[str, PoolSpec] = field(default_factory=dict)

    def spec_for(self, level: Level, pool_id: str) -> PoolSpec | None:
        """The spec of one pool: its override, else its level's template, else none."""
        return self.overrides.get(pool_id) or self.templates.get(level)

    def pools_for(self, scope: Scope) -> list[tuple[str, Level, PoolSpec]]:
        """Every stateful pool of a scope, narrowest first (the request level is not one)."""
        out = []
        for level, pool_id in scope.ids():
            spec = self.spec_for(level, pool_id)
            if spec is not None:
                out.append((pool_id, level, spec))
        return out
