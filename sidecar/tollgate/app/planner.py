"""Planning: from a prompt and its signals to the candidates a request may be held on.

Shared by Route and Escalate: the same pricing, the same eligibility (capabilities,
context window, latency, providers), the same pools and margin, the same refusal when
no model is capable. Nothing here holds money.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import InvalidRequest
from ..estimate import OutputEstimator
from ..ids import pool_id
from ..ledger import PoolRef
from ..ledger.overrides import PoolOverride
from ..quality import QualityGuard
from ..routing import difficulty
from ..routing.classifier import requirement_from_probability
from ..routing.rules import Signals, TierRequirement, from_difficulty, from_signals, near_task_type
from ..routing.select import Priced, eligible, fallbacks
from ..scope import Level, Scope
from .runtime import Runtime
from .types import Prompt

__all__ = ["Plan", "Planner"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What a request may be held on, best first."""

    requirement: TierRequirement
    unguarded: TierRequirement
    """The requirement before the quality guard raised it (the same object if it did not)."""
    score: float
    """Predicted difficulty, 0 when a rule decided."""
    priced: list[Priced]
    """Every eligible model, priced for this request, cheapest first."""
    capable: list[Priced]
    downgrades: list[Priced]
    """Cheaper tiers, best first, for a soft pool to downgrade to."""
    input_tokens: int


class Planner:
    """Plans requests over the learned output estimates and the quality guard."""

    def __init__(self, outputs: OutputEstimator, quality: QualityGuard,
                 overrides: Callable[[], dict[str, PoolOverride]], clock: Callable[[], int]) -> None:
        self._outputs = outputs
        self._quality = quality
        self._overrides = overrides
        self._clock = clock
        self._warned: set[str] = set()

    def route(self, rt: Runtime, scope: Scope, prompt: Prompt, input_tokens: int, signals: Signals,
              max_output_tokens: int) -> Plan:
        """Rules first, then the classifier or the difficulty heuristic, then the quality guard."""
        cfg = rt.config
        requirement = from_signals(signals, cfg.routing, cfg.catalog)
        score = 0.0
        if requirement is None and rt.classifier is not None:
            p_cheap_ok = rt.classifier.predict(prompt.messages or (), input_tokens, signals.task_type)
            # Reported as difficulty, like the heuristic's score: higher means harder.
            score = 1.0 - p_cheap_ok
            target = cfg.routing.quality_target
            point = (rt.classifier.operating_point(target, cfg.routing.frontier_share, bool(signals.task_type))
                     if target is not None else None)
            requirement = requirement_from_probability(p_cheap_ok, signals.task_type, cfg.routing, cfg.catalog, point)
            if signals.task_type:
                requirement = self._hint(requirement, signals.task_type, cfg.routing.task_types)
        elif requirement is None:
            scored = difficulty.score(prompt.messages or (), input_tokens)
            score = scored.score
            requirement = from_difficulty(scored.score, scored.reasons, cfg.routing, cfg.catalog)
            if signals.task_type:
                requirement = self._hint(requirement, signals.task_type, cfg.routing.task_types)
        unguarded = requirement
        guard = self._quality.min_tier(signals.task_type)
        if guard is not None and cfg.catalog.tier_rank(guard[0]) > requirement.rank:
            since = datetime.fromtimestamp(guard[1] / 1000, UTC).isoformat(timespec="seconds")
            requirement = TierRequirement(
                tier=guard[0],
                rank=cfg.catalog.tier_rank(guard[0]),
                reason=f"{requirement.reason}; quality guard: {signals.task_type or '<none>'} needs {guard[0]} "
                f"since {since}",
                source=requirement.source,
            )
        priced = self.priced(rt, scope, signals, input_tokens, max_output_tokens)
        capable = self.capable(rt, priced, requirement, scope, signals, input_tokens, max_output_tokens)
        downgrades = sorted((p for p in priced if p.model.tier_rank < requirement.rank),
                            key=lambda p: (-p.model.tier_rank, p.cost))
        return Plan(requirement=requirement, unguarded=unguarded, score=score, priced=priced, capable=capable,
                    downgrades=downgrades, input_tokens=input_tokens)

    def _hint(self, requirement: TierRequirement, task_type: str, rules: dict[str, str]) -> TierRequirement:
        """Name the rule a task type probably meant: a typo would otherwise lose the rule in silence."""
        near = near_task_type(task_type, tuple(rules))
        if near is None:
            return requirement
        if task_type not in self._warned and len(self._warned) < 256:
            self._warned.add(task_type)
            log.warning("a request's task type has no rule, but a close one does", extra={"fields": {
                "task_type": task_type, "did_you_mean": near, "rule_tier": rules[near]}})
        return dataclasses.replace(
            requirement, reason=f"{requirement.reason}; task_type {task_type!r} has no rule, did you mean {near!r}?")

    def priced(self, rt: Runtime, scope: Scope, signals: Signals, input_tokens: int,
               max_output_tokens: int) -> list[Priced]:
        """Every model the request may use, priced with the learned output estimate."""
        task_type = signals.task_type
        return eligible(
            rt.config.catalog,
            needs=signals.needs,
            base_input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
            output_estimate=lambda m: self._outputs.estimate(task_type, m.name, max_output_tokens),
            latency=signals.latency,
            provider_ok=self._provider_rule(rt, scope),
        )

    def capable(self, rt: Runtime, priced: list[Priced], requirement: TierRequirement, scope: Scope,
                signals: Signals, input_tokens: int, max_output_tokens: int) -> list[Priced]:
        """The priced models of the required tier or above, or ``InvalidRequest`` saying what is missing."""
        capable = [p for p in priced if p.model.tier_rank >= requirement.rank]
        if not capable:
            raise InvalidRequest(
                f"no model of tier {requirement.tier} or above has the capabilities, context window, latency and "
                f"provider this request needs ({input_tokens} input tokens, max_output_tokens={max_output_tokens}, "
                f"needs={sorted(str(c) for c in signals.needs) or 'none'}, "
                f"latency={signals.latency or 'any'}{self._provider_note(rt, scope)})"
            )
        return capable

    @staticmethod
    def fallbacks(rt: Runtime, priced: list[Priced], chosen: Priced,
                  requirement: TierRequirement) -> tuple[Priced, ...]:
        floor = min(chosen.model.tier_rank, requirement.rank)
        candidates = [p for p in priced if p.model.tier_rank >= floor]
        return fallbacks(candidates, chosen, rt.config.routing.fallbacks)

    def pools(self, rt: Runtime, scope: Scope) -> list[PoolRef]:
        """Every pool of the scope, with its effective spec (admin overrides applied)."""
        limits = rt.config.limits
        if len(scope.tags) > limits.max_tags:
            raise InvalidRequest(f"scope.tags has {len(scope.tags)} entries; limits.max_tags allows {limits.max_tags}")
        budgets = rt.config.budgets
        refs = []
        request = budgets.templates.get(Level.REQUEST)
        if request is not None:
            refs.append(PoolRef(pool_id(Level.REQUEST, scope.org), Level.REQUEST, request))
        refs.extend(PoolRef(pid, level, spec) for pid, level, spec in budgets.pools_for(scope))
        overrides = self._overrides()
        if overrides:
            now = self._clock()
            refs = [r if (o := overrides.get(r.pool_id)) is None else PoolRef(r.pool_id, r.level, o.apply(r.spec, now))
                    for r in refs]
        return refs

    @staticmethod
    def margin(rt: Runtime, pools: Sequence[PoolRef]) -> int:
        # One hold covers every pool, so it takes the most cautious margin among them.
        default = rt.config.estimation.margin_bp
        margins = [p.spec.margin_bp for p in pools if p.spec.margin_bp is not None]
        return max([default, *margins]) if margins else default

    @staticmethod
    def _provider_rule(rt: Runtime, scope: Scope) -> Callable[[str], bool]:
        """Every provider list that applies to the scope (``*`` and each of its pool ids) must permit."""
        providers = rt.config.routing.providers
        if not providers:
            return lambda provider: True
        rules = [r for r in (providers.get(key) for key in ("*", *(pid for _, pid in scope.ids()))) if r]
        return lambda provider: all(r.permits(provider) for r in rules)

    @staticmethod
    def _provider_note(rt: Runtime, scope: Scope) -> str:
        providers = rt.config.routing.providers
        keys = [k for k in ("*", *(pid for _, pid in scope.ids())) if k in providers]
        return f", provider lists of {', '.join(keys)}" if keys else ""
