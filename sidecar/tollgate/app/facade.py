"""The application: the request lifecycle of Route, Reserve, Commit, Release, Extend,
Escalate and Feedback, over a budget store.

Each method reads like the lifecycle: limits, then a plan, then admission, then the
answer. Knows nothing of gRPC: ``tollgate.grpc`` translates protobuf into the values of
``app.types`` and maps the exceptions of ``errors.py`` onto status codes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..config import Config, PoolSpec
from ..errors import BudgetExceeded, ConfigError, InvalidRequest, StoreUnavailable
from ..estimate import OutputEstimator, TokenCounter
from ..ids import check_idempotency_key, parse_pool_id, parse_reservation_id, pool_id, reservation_org
from ..ledger import (
    BudgetStore,
    CommitOutcome,
    CommitRequest,
    Hold,
    PoolRef,
    PoolSnapshot,
    ReleaseOutcome,
    ReserveOutcome,
)
from ..ledger.feedback import MemoryQualityStore
from ..ledger.local import wall_clock_ms
from ..ledger.overrides import PoolOverride
from ..money import apply_margin
from ..quality import QualityGuard, QualityStore, ShadowPlan
from ..routing.classifier import Classifier
from ..routing.decision_log import SHADOW_COMPARISON, DecisionLog
from ..routing.rules import Signals, Source, TierRequirement
from ..routing.select import Priced
from ..scope import Level, Scope
from . import limits
from .admission import Admission, HoldTerms, fingerprint, hold_request
from .decisions import log_decision
from .escalation import escalate
from .planner import Plan, Planner
from .runtime import Runtime, build_runtime, restart_needed
from .types import Outcome, Prompt, ReserveResult, RouteDecision, Usage

__all__ = ["Tollgate"]

_REPLAY = "replay of idempotency key"


class Tollgate:
    """Routes requests and moves money through a ``BudgetStore``."""

    def __init__(self, config: Config, store: BudgetStore, quality_store: QualityStore | None = None,
                 *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.store = store
        self.clock = clock
        self.overrides: dict[str, PoolOverride] = {}
        """Admin changes to pools (``app.admin``), applied over the config's specs; replaced whole."""
        self.outputs = OutputEstimator(config.estimation)
        self.quality = QualityGuard(config.quality, config.catalog, quality_store or MemoryQualityStore(), clock,
                                    rng=random.Random(config.quality.seed))
        self.runtime: Runtime = build_runtime(config, overrides=lambda: self.overrides, clock=clock)
        self.store.set_specs(self.runtime.specs)
        self.planner = Planner(self.outputs, self.quality, lambda: self.overrides, clock)
        self.admission = Admission(store, self.estimated_cost)
        self._margins: dict[tuple[int, tuple[str, ...]], int] = {}

    # -- the snapshot ---------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.runtime.config

    @property
    def classifier(self) -> Classifier | None:
        return self.runtime.classifier

    @property
    def decision_log(self) -> DecisionLog | None:
        return self.runtime.decision_log

    @property
    def counter(self) -> TokenCounter:
        return self.runtime.counter

    @property
    def interruptible(self) -> bool:
        """Whether a call may yield mid-way (its store awaits), so a caller's leaving can cut it after a write."""
        return self.store.suspends

    def reload(self, config: Config) -> list[str]:
        """Swap in a new, already validated config; returns the sections that changed.

        Listeners, the store, telemetry and the expiry policy are fixed for the life of
        the process: a change there is refused (``ConfigError``) and nothing is swapped.
        What was learned (output estimates, quality tallies) is kept.
        """
        old = self.runtime
        fixed = restart_needed(old.config, config)
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} changed, which needs a restart; the running config stays",
                              key=fixed[0], file=config.source)
        runtime = build_runtime(config, overrides=lambda: self.overrides, clock=self.clock, previous=old)
        # Nothing below can fail: the swap is all or nothing.
        self.runtime = runtime
        self._margins.clear()
        self.outputs.reconfigure(config.estimation)
        self.quality.reconfigure(config.quality, config.catalog)
        self.store.set_specs(runtime.specs)
        if old.decision_log is not None and old.decision_log is not runtime.decision_log:
            old.decision_log.close()
        return [name for name in ("catalog", "budgets", "routing", "estimation", "reservations", "limits", "quality",
                                  "auth") if getattr(old.config, name) != getattr(config, name)]

    # -- Route ---------------------------------------------------------------------------

    async def route(
        self,
        scope: Scope,
        prompt: Prompt,
        signals: Signals,
        *,
        max_output_tokens: int = 0,
        reserve: bool = False,
        idempotency_key: str = "",
        ttl_ms: int = 0,
        accept_shadow: bool = False,
    ) -> RouteDecision:
        """Pick the cheapest capable model; with ``reserve``, hold its cost in the same step.

        A Route(reserve) retried with the same idempotency key returns the key's first
        reservation, even if what the sidecar learned since would route it elsewhere.
        """
        rt = self.runtime
        key = check_idempotency_key(idempotency_key) if reserve and idempotency_key else ""
        sent = fingerprint("route", scope, prompt, signals.task_type, signals.agent_mode, signals.min_tier,
                           sorted(signals.needs), signals.latency or "", max_output_tokens, ttl_ms,
                           accept_shadow) if key else ""
        try:
            limits.check_signals(signals)
            limits.check_max_output(max_output_tokens, rt.config.limits)
            ttl = limits.ttl(ttl_ms, rt.config.reservations) if reserve else 0
            tokens = limits.count_prompt(prompt, rt.config.limits, rt.counter)
            plan = self.planner.route(rt, scope, prompt, tokens, signals, max_output_tokens)
        except InvalidRequest:
            replay = await self.admission.replay(scope, self.planner.pools(rt, scope), key, sent) if key else None
            if replay is None:
                raise
            first = self.admission.replayed_choice([], replay.hold, rt.config.catalog)
            requirement = TierRequirement(first.model.tier, first.model.tier_rank, _REPLAY, Source.RULE)
            return RouteDecision(chosen=first, fallbacks=(), requirement=requirement, reason=_REPLAY,
                                 difficulty=0.0, outcome=Outcome.ADMITTED, reservation=replay)
        pools = self.planner.pools(rt, scope)
        terms = HoldTerms(ttl_ms=ttl, idempotency_key=key, fingerprint=sent, task_type=signals.task_type)
        admitted = await self.admission.admit(scope, pools, self.planner.margin(rt, pools),
                                              [plan.capable[0], *plan.downgrades], reserve=reserve, terms=terms)
        reservation = admitted.reservation
        if reservation is not None and reservation.replayed:
            first = self.admission.replayed_choice(plan.priced, reservation.hold, rt.config.catalog)
            return RouteDecision(
                chosen=first, fallbacks=self.planner.fallbacks(rt, plan.priced, first, plan.requirement),
                requirement=plan.requirement, reason=f"{plan.requirement.reason}; {_REPLAY}", difficulty=plan.score,
                outcome=Outcome.ADMITTED if first.model.tier_rank >= plan.requirement.rank else Outcome.DOWNGRADED,
                reservation=reservation,
            )
        chosen = admitted.chosen
        reason = plan.requirement.reason
        if admitted.outcome is Outcome.DOWNGRADED:
            reason = (f"{reason}; downgraded to {chosen.model.name} ({chosen.model.tier}): soft budget "
                      f"{admitted.refused_pool} could not hold {plan.capable[0].model.name}")
        self._note_guard_cost(plan, chosen, signals)
        shadow = shadow_hold = None
        if accept_shadow:
            shadow, shadow_hold = await self._shadow(scope, signals.task_type, chosen, plan.priced, ttl, reserve)
        decided = RouteDecision(
            chosen=chosen,
            fallbacks=self.planner.fallbacks(rt, plan.priced, chosen, plan.requirement),
            requirement=plan.requirement,
            reason=reason,
            difficulty=plan.score,
            outcome=admitted.outcome,
            reservation=reservation,
            downgraded_by=admitted.downgraded_by,
            shadow=shadow,
            shadow_reservation=shadow_hold,
        )
        log_decision(rt, scope, signals, prompt, plan.input_tokens, decided)
        return decided

    def _note_guard_cost(self, plan: Plan, chosen: Priced, signals: Signals) -> None:
        """What the quality guard's raised tier costs this request, for its report."""
        if plan.requirement is plan.unguarded:
            return
        unguarded_choice = next((p for p in plan.priced if p.model.tier_rank >= plan.unguarded.rank), None)
        if unguarded_choice is not None:
            self.quality.note_escalation_cost(signals.task_type, chosen.cost - unguarded_choice.cost)

    async def _shadow(
        self, scope: Scope, task_type: str, chosen: Priced, priced: list[Priced], ttl: int, reserve: bool
    ) -> tuple[ShadowPlan | None, ReserveOutcome | None]:
        """Sample this decision for a quality comparison, holding the shadow call on the quality pool."""
        rt = self.runtime
        reference_rank = rt.config.catalog.tier_rank(self.quality.reference_tier)
        reference = next((p for p in priced if p.model.tier_rank >= reference_rank), None)
        cheap = next((p for p in priced if p.model.tier_rank == 0), None)
        plan = self.quality.plan_shadow(task_type, chosen.model.tier, cheap.model.name if cheap else None,
                                        reference.model.name if reference else None)
        if plan is None or not reserve:
            return plan, None
        shadow = reference if plan.purpose == "reference" else cheap
        assert shadow is not None
        spec = rt.config.budgets.templates[Level.QUALITY]
        pool = PoolRef(pool_id(Level.QUALITY, scope.org), Level.QUALITY, spec)
        try:
            admitted = await self.admission.admit(scope, [pool], self.planner.margin(rt, [pool]), [shadow],
                                                  reserve=True, terms=HoldTerms(ttl_ms=ttl, task_type=task_type))
        except (BudgetExceeded, StoreUnavailable):
            # The quality budget is spent, or the store did not answer in time: no comparison this
            # time. A shadow is optional; failing it would strand the product call's own hold.
            return None, None
        return plan, admitted.reservation

    # -- Reserve / Commit / Release / Extend ---------------------------------------------------

    async def reserve(
        self,
        scope: Scope,
        model_name: str,
        prompt: Prompt,
        *,
        task_type: str = "",
        max_output_tokens: int = 0,
        idempotency_key: str = "",
        ttl_ms: int = 0,
    ) -> ReserveResult:
        """Hold the estimated cost of a call to ``model_name`` on every pool of ``scope``.

        Soft pools refuse here like hard ones: only Route can choose another model. A
        Reserve retried with the same idempotency key returns the key's first reservation.
        """
        rt = self.runtime
        key = check_idempotency_key(idempotency_key) if idempotency_key else ""
        sent = fingerprint("reserve", scope, prompt, model_name, task_type, max_output_tokens, ttl_ms) if key else ""
        try:
            priced, ttl = self._price_named(rt, model_name, prompt, task_type, max_output_tokens, ttl_ms)
        except InvalidRequest:
            replay = await self.admission.replay(scope, self.planner.pools(rt, scope), key, sent) if key else None
            if replay is None:
                raise
            return ReserveResult(self.admission.replayed_choice([], replay.hold, rt.config.catalog), replay)
        pools = self.planner.pools(rt, scope)
        terms = HoldTerms(ttl_ms=ttl, idempotency_key=key, fingerprint=sent, task_type=task_type)
        amount = apply_margin(priced.cost, self.planner.margin(rt, pools))
        outcome = await self.store.reserve(hold_request(scope, pools, priced, amount, terms))
        return ReserveResult(priced, outcome)

    def _price_named(self, rt: Runtime, model_name: str, prompt: Prompt, task_type: str, max_output_tokens: int,
                     ttl_ms: int) -> tuple[Priced, int]:
        model = rt.config.catalog.model(model_name)
        limits.check_max_output(max_output_tokens, rt.config.limits)
        if max_output_tokens > model.max_output_tokens:
            raise InvalidRequest(
                f"max_output_tokens={max_output_tokens} exceeds {model.name}'s limit of {model.max_output_tokens}"
            )
        ttl = limits.ttl(ttl_ms, rt.config.reservations)
        input_tokens = model.input_tokens(limits.count_prompt(prompt, rt.config.limits, rt.counter))
        output_tokens = self.outputs.estimate(task_type, model.name, max_output_tokens)
        if input_tokens + (max_output_tokens or output_tokens) > model.context_window:
            raise InvalidRequest(
                f"{input_tokens} input tokens plus {max_output_tokens or output_tokens} output tokens exceed "
                f"{model.name}'s context window of {model.context_window}"
            )
        cost = model.price.cost(input_tokens=input_tokens, output_tokens=output_tokens)
        return Priced(model, input_tokens, output_tokens, cost), ttl

    async def commit(self, reservation_id: str, usage: Usage) -> CommitOutcome:
        """Charge what the provider reported; the rest of the hold is released."""
        rt = self.runtime
        parse_reservation_id(reservation_id)
        limits.check_usage(usage, rt.config.limits)
        hold = await self.store.describe(reservation_id)
        model = rt.config.catalog.models.get(hold.model)
        if model is None:
            raise InvalidRequest(f"model {hold.model!r} of this reservation is no longer in the catalog")
        cost = model.price.cost(
            input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
        )
        tokens = usage.input_tokens + usage.output_tokens + usage.reasoning_tokens
        figures = f"{usage.input_tokens}/{usage.cached_input_tokens}/{usage.output_tokens}/{usage.reasoning_tokens}"
        outcome = await self.store.commit(CommitRequest(reservation_id, cost, tokens, figures))
        if not outcome.replayed:
            self.outputs.observe(hold.task_type, hold.model, usage.output_tokens + usage.reasoning_tokens)
            self.outputs.record_error(hold.task_type, hold.model, self.estimated_cost(hold), cost)
        return outcome

    async def release(self, reservation_id: str) -> ReleaseOutcome:
        """End a reservation without charging."""
        parse_reservation_id(reservation_id)
        return await self.store.release(reservation_id)

    async def extend(self, reservation_id: str, ttl_ms: int) -> Hold:
        """Push a reservation's expiry to now + ttl."""
        parse_reservation_id(reservation_id)
        return await self.store.extend(reservation_id, limits.ttl(ttl_ms, self.runtime.config.reservations))

    async def describe(self, reservation_id: str) -> Hold:
        """A reservation's fixed facts: its model, task type and pools."""
        parse_reservation_id(reservation_id)
        return await self.store.describe(reservation_id)

    async def budget(self, scope: Scope) -> list[PoolSnapshot]:
        """Every pool of a scope as a request of its priority sees it."""
        return await self.store.snapshot(self.planner.pools(self.runtime, scope),
                                         high_priority=scope.priority == "high")

    # -- Feedback ------------------------------------------------------------------------------

    async def feedback(self, reservation_id: str, score: float, *, source: str = "user") -> tuple[str, str]:
        """Count a quality signal for a reserved call; returns its (task type, tier).

        ``source`` is ``user``, ``automated_eval``, ``human_review`` or ``shadow_comparison``;
        only the last is a paired comparison for the quality guard.
        """
        rt = self.runtime
        parse_reservation_id(reservation_id)
        if not 0.0 <= score <= 1.0:  # NaN fails this too
            raise InvalidRequest(f"score must be between 0 and 1, got {score}")
        hold = await self.store.describe(reservation_id)
        model = rt.config.catalog.models.get(hold.model)
        if model is None:
            raise InvalidRequest(f"model {hold.model!r} of this reservation is no longer in the catalog")
        await self.quality.record(hold.task_type, model.tier, source == SHADOW_COMPARISON, score)
        if rt.decision_log is not None:
            rt.decision_log.feedback(reservation_id, score, source)
        return hold.task_type, model.tier

    # -- Escalate ------------------------------------------------------------------------------

    # Route and reserve the next attempt of a failed call (``app.escalation``), as a method.
    escalate = escalate

    # -- pools, for operators ------------------------------------------------------------------

    def pool_ref(self, pool_id_: str) -> PoolRef:
        """A pool by id, with its effective spec, or ``InvalidRequest`` if no config covers it."""
        if parse_pool_id(pool_id_).level == Level.REQUEST:
            raise InvalidRequest(f"{pool_id_!r} is a request pool, which caps each call and has no state to change")
        resolved = self.runtime.specs(pool_id_)
        if resolved is None:
            raise InvalidRequest(f"no budget in the config covers pool {pool_id_!r}")
        return PoolRef(pool_id_, resolved[0], resolved[1])

    def configured_spec(self, pool_id_: str, level: Level) -> PoolSpec | None:
        """A pool's spec as the config alone gives it, before admin changes."""
        return self.runtime.config.budgets.spec_for(level, pool_id_)

    def estimated_cost(self, hold: Hold) -> int:
        """The cost estimated for a reservation, before the margin it was held with.

        The hold took the largest margin among its pools, so that is the margin taken
        off again; the request pool, which keeps no state, is not among the hold's pools
        and is added from the config.
        """
        rt = self.runtime
        key = (id(rt), hold.pool_ids)
        margin = self._margins.get(key)
        if margin is None:
            refs = [PoolRef(p, found[0], found[1]) for p in hold.pool_ids if (found := rt.specs(p)) is not None]
            request = rt.config.budgets.templates.get(Level.REQUEST)
            if request is not None:
                refs.append(PoolRef(pool_id(Level.REQUEST, reservation_org(hold.reservation_id)), Level.REQUEST,
                                    request))
            margin = self.planner.margin(rt, refs)
            # Margins are the config's (admin changes move caps, never margins): one entry per set of
            # pools and snapshot, so commits do not resolve every pool twice.
            if len(self._margins) >= 4_096:
                self._margins.clear()
            self._margins[key] = margin
        return hold.amount * 10_000 // margin
