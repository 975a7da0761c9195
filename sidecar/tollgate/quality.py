"""The quality guard: cost routing that cannot silently break the product.

Quality measured in aggregate hides the failure that matters: the cheap tier is
as good on most task types and clearly worse on a few. So quality is kept per task
type and tier, and the cheap tier is compared with the reference tier (what a
request would have had without cost routing) on paired *shadow comparisons*:

- A share of cheap-tier decisions is sampled: a high share while a task type's
  verdict is open (too few comparisons, or an interval straddling the floor), a low
  steady share once it is settled, so rare types are measured too. The Route response names the reference
  model; the application calls it in the background, judges the two answers and
  reports the result through Feedback (``1`` = the cheap answer was as good).
- Per task type the guard keeps the match rate and its Wilson interval. When the
  interval's upper end falls below ``1 − tolerance`` (the cheap tier is worse by more
  than the tolerance, with confidence), the task type's minimum tier is raised to
  the reference tier, for every sidecar (the override lives in the store).
- While escalated, a share of its requests carries a *probe*: the cheap model runs
  as the shadow. When the probes' interval lies wholly above ``1 − tolerance``, the
  override is lifted.

Budget policy still wins: the guard only raises the tier a request asks for; a
soft pool may still downgrade it and a hard cap still refuses.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .catalog import Catalog

__all__ = [
    "QualityConfig",
    "QualityGuard",
    "QualityStore",
    "Sample",
    "ShadowPlan",
    "Tally",
    "TaskReport",
    "wilson",
]

log = logging.getLogger("tollgate.quality")

DAY_MS = 86_400_000
SHADOW = "shadow"  # the cheap answer judged against the reference's
PROBE = "probe"  # while escalated: the cheap model as the shadow of a reference answer
DIRECT = "direct"  # user, automated and review feedback on one answer


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """The guard's knobs."""

    enabled: bool = True
    guard: bool = True
    """False measures and reports but never changes a tier (the aggregate-only view)."""
    reference_tier: str = ""
    """The tier a request would have without cost routing; default: the highest."""
    tolerance: float = 0.10
    """How much worse than the reference the cheap tier may be on a task type."""
    z: float = 1.96
    """Confidence of the intervals (1.96: 95 %)."""
    min_samples: int = 20
    """Comparisons needed before the guard acts on a task type."""
    shadow_share: float = 0.03
    """Share of cheap-tier decisions shadowed once a task type has ``min_samples``."""
    warmup_share: float = 0.30
    """Share shadowed while a task type has fewer: rare types get measured too."""
    probe_share: float = 0.10
    """Share of an escalated task type's requests that probe the cheap model."""
    window_days: int = 7
    """Comparisons older than this are forgotten."""
    seed: int | None = None
    """Seeds shadow sampling, so a replayed workload samples the same requests; unset, it is random."""


@dataclass(slots=True)
class Tally:
    """Samples and the sum of their scores."""

    n: int = 0
    total: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def interval(self, z: float) -> tuple[float, float]:
        return wilson(self.total, self.n, z)


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion; scores in [0, 1] count fractionally."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(centre - half, 0.0), min(centre + half, 1.0)


@dataclass(frozen=True, slots=True)
class Sample:
    """One feedback sample, as the store counts it."""

    task_type: str
    tier: str
    kind: str
    score: float


class QualityStore(Protocol):
    """Where feedback counts and the guard's overrides live (shared across sidecars on Redis)."""

    async def add_feedback(self, sample: Sample, now_ms: int) -> None: ...
    async def tallies(self, now_ms: int, window_days: int) -> dict[tuple[str, str, str], Tally]: ...
    async def reset(self, task_type: str, kind: str) -> None: ...
    async def set_override(self, task_type: str, tier: str | None, now_ms: int) -> None: ...
    async def overrides(self) -> dict[str, tuple[str, int]]: ...
    async def add_escalation_cost(self, task_type: str, nanos: int) -> None: ...
    async def escalation_costs(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class ShadowPlan:
    """A sampled request: call ``model`` too, and report the comparison."""

    model: str
    tier: str
    purpose: str  # "reference" or "probe"


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What ``tollgate quality`` shows for one task type."""

    task_type: str
    tiers: dict[str, Tally]
    shadow: Tally
    probe: Tally
    guard_tier: str
    guard_since_ms: int
    escalation_cost: int


@dataclass
class QualityGuard:
    """Per-task-type quality, shadow sampling, and the tier overrides it decides."""

    config: QualityConfig
    catalog: Catalog
    store: QualityStore
    clock: Callable[[], int]
    rng: random.Random = field(default_factory=random.Random)
    _overrides: dict[str, tuple[str, int]] = field(default_factory=dict)
    _tallies: dict[tuple[str, str, str], Tally] = field(default_factory=dict)
    _pending_cost: dict[str, int] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    """Human-readable log of every escalation and recovery this sidecar made."""

    @property
    def reference_tier(self) -> str:
        return self.config.reference_tier or self.catalog.tiers[-1]

    def reconfigure(self, config: QualityConfig, catalog: Catalog) -> None:
        """A reloaded config's settings and catalog; what was counted is kept."""
        self.config, self.catalog = config, catalog

    # -- the hot path: no I/O -----------------------------------------------------------------

    def min_tier(self, task_type: str) -> tuple[str, int] | None:
        """The tier the guard imposes on a task type, and since when."""
        if not self.config.enabled or not self.config.guard:
            return None
        return self._overrides.get(task_type)

    def plan_shadow(self, task_type: str, chosen_tier: str, cheap_model: str | None,
                    reference_model: str | None) -> ShadowPlan | None:
        """Whether to sample this decision, and with which model."""
        if not self.config.enabled:
            return None
        ref_rank = self.catalog.tier_rank(self.reference_tier)
        chosen_rank = self.catalog.tier_rank(chosen_tier)
        escalated = self.min_tier(task_type) is not None
        if chosen_rank < ref_rank and reference_model is not None:
            share = self.config.warmup_share if self._undecided(task_type) else self.config.shadow_share
            if self.rng.random() < share:
                return ShadowPlan(reference_model, self.reference_tier, "reference")
        elif escalated and cheap_model is not None and self.rng.random() < self.config.probe_share:
            return ShadowPlan(cheap_model, self.catalog.models[cheap_model].tier, "probe")
        return None

    def _undecided(self, task_type: str) -> bool:
        """Too few comparisons, or an interval that straddles the floor: sample more here.

        Sampling harder where the answer is unknown is what lets a rare task type be
        judged quickly, while settled ones cost only the low steady share.
        """
        shadow = self._sum(task_type, SHADOW)
        if shadow.n < self.config.min_samples:
            return True
        low, high = shadow.interval(self.config.z)
        return low < 1.0 - self.config.tolerance <= high

    def note_escalation_cost(self, task_type: str, nanos: int) -> None:
        """Estimated extra cost of one escalated request; flushed to the store on refresh."""
        if nanos > 0:
            self._pending_cost[task_type] = self._pending_cost.get(task_type, 0) + nanos

    # -- feedback and the decision --------------------------------------------------------------

    async def record(self, task_type: str, tier: str, source_is_shadow: bool, score: float) -> None:
        """Count one feedback sample and re-decide the task type."""
        if source_is_shadow:
            primary_is_cheap = self.catalog.tier_rank(tier) < self.catalog.tier_rank(self.reference_tier)
            kind = SHADOW if primary_is_cheap else PROBE
            # Probes compare the cheap model (the shadow) with the reference (the primary).
            counted_tier = tier if primary_is_cheap else self.catalog.tiers[0]
        else:
            kind, counted_tier = DIRECT, tier
        sample = Sample(task_type, counted_tier, kind, score)
        await self.store.add_feedback(sample, self.clock())
        tally = self._tallies.setdefault((task_type, counted_tier, kind), Tally())
        tally.n += 1
        tally.total += score
        if kind != DIRECT:
            await self._decide(task_type)

    async def refresh(self) -> None:
        """Reload counts and overrides from the store (every sidecar's feedback) and flush costs."""
        for task_type, nanos in self._pending_cost.items():
            await self.store.add_escalation_cost(task_type, nanos)
        self._pending_cost.clear()
        self._tallies = await self.store.tallies(self.clock(), self.config.window_days)
        self._overrides = await self.store.overrides()
        for task_type in {t for t, _, kind in self._tallies if kind != DIRECT}:
            await self._decide(task_type)

    async def _decide(self, task_type: str) -> None:
        if not self.config.enabled or not self.config.guard:
            return
        floor = 1.0 - self.config.tolerance
        shadow = self._sum(task_type, SHADOW)
        probe = self._sum(task_type, PROBE)
        current = self._overrides.get(task_type)
        if current is None and shadow.n >= self.config.min_samples:
            low, high = shadow.interval(self.config.z)
            if high < floor:
                now = self.clock()
                await self.store.set_override(task_type, self.reference_tier, now)
                await self.store.reset(task_type, PROBE)
                self._overrides[task_type] = (self.reference_tier, now)
                self._drop(task_type, PROBE)
                self._changed(
                    f"escalated {task_type or '<none>'} to {self.reference_tier}: cheap tier matched the reference "
                    f"{shadow.mean:.0%} of {shadow.n} times (95% interval {low:.0%}-{high:.0%}, floor {floor:.0%})"
                )
        elif current is not None and probe.n >= self.config.min_samples:
            low, high = probe.interval(self.config.z)
            if low >= floor:
                await self.store.set_override(task_type, None, self.clock())
                await self.store.reset(task_type, SHADOW)
                self._overrides.pop(task_type, None)
                self._drop(task_type, SHADOW)
                self._changed(
                    f"lowered {task_type or '<none>'} again: probes matched {probe.mean:.0%} of {probe.n} times "
                    f"(95% interval {low:.0%}-{high:.0%})"
                )

    def _changed(self, what: str) -> None:
        self.changes.append(what)
        log.warning("quality guard: %s", what)

    def _sum(self, task_type: str, kind: str) -> Tally:
        out = Tally()
        for (t, _, k), tally in self._tallies.items():
            if t == task_type and k == kind:
                out.n += tally.n
                out.total += tally.total
        return out

    def _drop(self, task_type: str, kind: str) -> None:
        for key in [k for k in self._tallies if k[0] == task_type and k[2] == kind]:
            del self._tallies[key]

    # -- the report -------------------------------------------------------------------------------

    async def report(self) -> list[TaskReport]:
        """Per task type: direct quality per tier, shadow and probe match, guard state, cost added."""
        await self.refresh()
        costs = await self.store.escalation_costs()
        task_types = sorted({t for t, _, _ in self._tallies} | set(self._overrides) | set(costs))
        out = []
        for task_type in task_types:
            tiers = {tier: tally for (t, tier, kind), tally in self._tallies.items()
                     if t == task_type and kind == DIRECT}
            guard_tier, since = self._overrides.get(task_type, ("", 0))
            out.append(TaskReport(task_type, tiers, self._sum(task_type, SHADOW), self._sum(task_type, PROBE),
                                  guard_tier, since, costs.get(task_type, 0)))
        return out

    def shadow_tallies(self) -> dict[str, Tally]:
        """Shadow comparisons per task type, as this sidecar last saw them."""
        return {task: self._sum(task, SHADOW) for task in sorted({t for t, _, k in self._tallies if k == SHADOW})}

    def overrides(self) -> dict[str, tuple[str, int]]:
        """The minimum tiers the guard imposes now, and since when."""
        return dict(self._overrides)

    def aggregate(self) -> Tally:
        """All shadow comparisons together: the view that hides a per-type failure."""
        out = Tally()
        for (_, _, kind), tally in self._tallies.items():
            if kind == SHADOW:
                out.n += tally.n
                out.total += tally.total
        return out


def summarize(reports: Sequence[TaskReport]) -> list[str]:
    """Lines for people, as ``tollgate quality`` prints them."""
    lines = []
    for r in reports:
        low, high = r.shadow.interval(1.96)
        guard = f"min tier {r.guard_tier}" if r.guard_tier else "no override"
        lines.append(f"{r.task_type or '<none>'}: shadow match {r.shadow.mean:.0%} of {r.shadow.n} "
                     f"({low:.0%}-{high:.0%}), {guard}")
    return lines
