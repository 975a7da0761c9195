"""The domain facade: estimate → route → reserve, and commit / release / extend.

Knows nothing of gRPC: ``service.py`` translates protobuf into the dataclasses
here and maps the exceptions of ``errors.py`` onto status codes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .config import Config, Policy, PoolSpec
from .errors import (
    BudgetExceeded,
    ConfigError,
    EscalationRefused,
    IdempotencyConflict,
    InvalidRequest,
    Refusal,
    ReservationNotFound,
)
from .estimate import OutputEstimator, TokenCounter
from .ids import (
    check_idempotency_key,
    escalation_id,
    fresh_reservation_id,
    keyed_reservation_id,
    parse_pool_id,
    parse_reservation_id,
    pool_id,
    reservation_org,
)
from .ledger import (
    BudgetStore,
    CommitOutcome,
    CommitRequest,
    Hold,
    HoldRequest,
    PoolRef,
    PoolSnapshot,
    ReleaseOutcome,
    ReserveOutcome,
    SpecResolver,
    spec_resolver,
)
from .ledger.feedback import MemoryQualityStore
from .ledger.local import wall_clock_ms
from .ledger.overrides import PoolOverride
from .money import apply_margin
from .quality import QualityGuard, QualityStore, ShadowPlan
from .routing import difficulty
from .routing.classifier import ClassifierError, open_classifier, requirement_from_probability
from .routing.decision_log import SHADOW_COMPARISON, DecisionLog
from .routing.rules import Signals, TierRequirement, from_difficulty, from_signals
from .routing.select import Priced, eligible, fallbacks
from .scope import ID_PATTERN, Level, Scope

__all__ = [
    "Escalation",
    "Outcome",
    "Prompt",
    "RouteDecision",
    "Tollgate",
    "Usage",
]

_ROLES = ("system", "developer", "user", "assistant", "tool")
_ESCALATION_REASON = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,63}")


class Outcome:
    """What budget policy did to a routed request."""

    ADMITTED = "admitted"
    DOWNGRADED = "downgraded"
    WARNED = "warned"


@dataclass(frozen=True, slots=True)
class Prompt:
    """The input of a call: messages to count, or a token count the caller made."""

    messages: tuple[tuple[str, str], ...] | None = None
    input_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the provider reported it."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """A routing decision, with the reservation when one was asked for."""

    chosen: Priced
    fallbacks: tuple[Priced, ...]
    requirement: TierRequirement
    reason: str
    difficulty: float
    outcome: str
    reservation: ReserveOutcome | None
    downgraded_by: str = ""
    """The level of the soft pool that forced a downgrade, if one did."""
    shadow: ShadowPlan | None = None
    """Set when the request was sampled for a quality comparison."""
    shadow_reservation: ReserveOutcome | None = None
    """The shadow call's hold on the quality pool."""


@dataclass(frozen=True, slots=True)
class Escalation:
    """The next attempt of a call whose output failed the application's check."""

    decision: RouteDecision
    parent_id: str
    attempt: int
    failed_tier: str
    previous_commit: CommitOutcome | None = None


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """A reservation on a named model, with its estimate."""

    estimate: Priced
    reservation: ReserveOutcome


class Tollgate:
    """Routes requests and moves money through a ``BudgetStore``."""

    def __init__(self, config: Config, store: BudgetStore, quality_store: QualityStore | None = None,
                 *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.counter = TokenCounter(config.estimation.message_overhead_tokens)
        self.outputs = OutputEstimator(config.estimation)
        self.quality = QualityGuard(config.quality, config.catalog, quality_store or MemoryQualityStore(), clock,
                                    rng=random.Random(config.quality.seed))
        try:
            self.classifier = open_classifier(config.routing)
        except ClassifierError as exc:
            raise ConfigError(str(exc), key="routing.classifier", file=config.source) from None
        self.overrides: dict[str, PoolOverride] = {}
        """Admin changes to pools (``admin.py``), applied over the config's specs."""
        self._specs = self._resolver(config)
        self.store.set_specs(self._specs)
        log_config = config.routing.decision_log
        try:
            self.decision_log = DecisionLog(log_config, clock) if log_config is not None else None
        except OSError as exc:
            raise ConfigError(f"cannot open the decision log: {exc}", key="routing.decision_log.path",
                              file=config.source) from None

    # -- reload --------------------------------------------------------------------------

    def reload(self, config: Config) -> list[str]:
        """Swap in a new, already validated config; returns the sections that changed.

        Listeners, the store, telemetry and the expiry policy are fixed for the life of
        the process: a change there is refused (``ConfigError``) and nothing is swapped.
        What was learned (output estimates, quality tallies) is kept.
        """
        old = self.config
        fixed = [name for name in ("server", "store", "telemetry") if getattr(old, name) != getattr(config, name)]
        if old.reservations.expiry_policy != config.reservations.expiry_policy:
            fixed.append("reservations.expiry_policy")
        if old.limits.max_message_bytes != config.limits.max_message_bytes:
            fixed.append("limits.max_message_bytes")
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} changed, which needs a restart; the running config stays",
                              key=fixed[0], file=config.source)
        classifier = self.classifier
        if config.routing.classifier != old.routing.classifier:
            try:
                classifier = open_classifier(config.routing)
            except ClassifierError as exc:
                raise ConfigError(str(exc), key="routing.classifier", file=config.source) from None
        log_config = config.routing.decision_log
        decision_log = self.decision_log
        if log_config != old.routing.decision_log:
            try:
                decision_log = DecisionLog(log_config, self.clock) if log_config is not None else None
            except OSError as exc:
                raise ConfigError(f"cannot open the decision log: {exc}", key="routing.decision_log.path",
                                  file=config.source) from None
            if self.decision_log is not None:
                self.decision_log.close()
        # Nothing below can fail: the swap is all or nothing.
        self.classifier, self.decision_log = classifier, decision_log
        if config.estimation.message_overhead_tokens != old.estimation.message_overhead_tokens:
            self.counter = TokenCounter(config.estimation.message_overhead_tokens)
        self.outputs.reconfigure(config.estimation)
        self.quality.config, self.quality.catalog = config.quality, config.catalog
        self._specs = self._resolver(config)
        self.store.set_specs(self._specs)
        self.config = config
        return [name for name in ("catalog", "budgets", "routing", "estimation", "reservations", "limits", "quality",
                                  "auth") if getattr(old, name) != getattr(config, name)]

    # -- Route ---------------------------------------------------------------------

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
        fingerprint = ""
        if reserve and idempotency_key:
            check_idempotency_key(idempotency_key)
            fingerprint = _fingerprint("route", scope, prompt, signals.task_type, signals.agent_mode,
                                       signals.min_tier, sorted(signals.needs), signals.latency or "",
                                       max_output_tokens, ttl_ms, accept_shadow)
            try:
                return await self._route(scope, prompt, signals, max_output_tokens, reserve, idempotency_key,
                                         ttl_ms, accept_shadow, fingerprint)
            except InvalidRequest:
                replay = await self._replay(scope, idempotency_key, fingerprint)
                if replay is None:
                    raise
                hold = replay.hold
                first = self._replayed_choice([], hold)
                requirement = TierRequirement(first.model.tier, first.model.tier_rank, "replay of idempotency key",
                                              "rule")
                return RouteDecision(chosen=first, fallbacks=(), requirement=requirement,
                                     reason="replay of idempotency key", difficulty=0.0, outcome=Outcome.ADMITTED,
                                     reservation=replay)
        return await self._route(scope, prompt, signals, max_output_tokens, reserve, idempotency_key, ttl_ms,
                                 accept_shadow, fingerprint)

    async def _route(self, scope: Scope, prompt: Prompt, signals: Signals, max_output_tokens: int, reserve: bool,
                     idempotency_key: str, ttl_ms: int, accept_shadow: bool, fingerprint: str) -> RouteDecision:
        cfg = self.config
        self._check_signals(signals)
        self._check_max_output(max_output_tokens)
        ttl = self._ttl(ttl_ms) if reserve else 0
        base_tokens = self._count(prompt)
        requirement = from_signals(signals, cfg.routing, cfg.catalog)
        score = 0.0
        if requirement is None and self.classifier is not None:
            p_cheap_ok = self.classifier.predict(prompt.messages or (), base_tokens, signals.task_type)
            # Reported as difficulty, like the heuristic's score: higher means harder.
            score = 1.0 - p_cheap_ok
            requirement = requirement_from_probability(p_cheap_ok, signals.task_type, cfg.routing, cfg.catalog)
        elif requirement is None:
            scored = difficulty.score(prompt.messages or (), base_tokens)
            score = scored.score
            requirement = from_difficulty(scored.score, scored.reasons, cfg.routing, cfg.catalog)
        unguarded = requirement
        guard = self.quality.min_tier(signals.task_type)
        if guard is not None and cfg.catalog.tier_rank(guard[0]) > requirement.rank:
            since = datetime.fromtimestamp(guard[1] / 1000, UTC).isoformat(timespec="seconds")
            requirement = TierRequirement(
                tier=guard[0],
                rank=cfg.catalog.tier_rank(guard[0]),
                reason=f"{requirement.reason}; quality guard: {signals.task_type or '<none>'} needs {guard[0]} "
                f"since {since}",
                source=requirement.source,
            )
        priced = self._eligible(scope, signals, base_tokens, max_output_tokens)
        capable = [p for p in priced if p.model.tier_rank >= requirement.rank]
        if not capable:
            raise InvalidRequest(
                f"no model of tier {requirement.tier} or above has the capabilities, context window, latency and "
                f"provider this request needs ({base_tokens} input tokens, max_output_tokens={max_output_tokens}, "
                f"needs={sorted(str(c) for c in signals.needs) or 'none'}, "
                f"latency={signals.latency or 'any'}{self._provider_note(scope)})"
            )
        # Cheaper tiers, best first, for a soft pool to downgrade to.
        downgrades = sorted(
            (p for p in priced if p.model.tier_rank < requirement.rank),
            key=lambda p: (-p.model.tier_rank, p.cost),
        )
        pools = self._pools(scope)
        margin = self._margin(pools)
        high = scope.priority == "high"
        chosen = capable[0]
        reason = requirement.reason
        outcome = Outcome.ADMITTED
        reservation: ReserveOutcome | None = None
        refused: BudgetExceeded | None = None
        downgraded_by = ""
        for attempt in [chosen, *downgrades]:
            hold = apply_margin(attempt.cost, margin)
            if refused is not None and hold > refused.refusal.remaining:
                continue  # cannot fit the soft pool that already refused
            try:
                if reserve:
                    reservation = await self.store.reserve(self._hold_request(
                        scope, pools, attempt, hold, ttl, idempotency_key, signals.task_type, fingerprint))
                else:
                    await self._check_fits(pools, hold, high)
            except BudgetExceeded as exc:
                if exc.refusal.policy != Policy.SOFT:
                    raise
                refused = refused or exc
                continue
            if reservation is not None and reservation.replayed:
                # The key's first reservation, whatever this request would route to today.
                first = self._replayed_choice(priced, reservation.hold)
                return RouteDecision(
                    chosen=first,
                    fallbacks=self._fallbacks(priced, first, requirement),
                    requirement=requirement,
                    reason=f"{requirement.reason}; replay of idempotency key",
                    difficulty=score,
                    outcome=Outcome.ADMITTED if first.model.tier_rank >= requirement.rank else Outcome.DOWNGRADED,
                    reservation=reservation,
                )
            if attempt is not chosen:
                outcome = Outcome.DOWNGRADED
                downgraded_by = refused.refusal.level if refused else ""
                reason = (
                    f"{requirement.reason}; downgraded to {attempt.model.name} ({attempt.model.tier}): "
                    f"soft budget {refused.refusal.pool_id if refused else ''} could not hold {chosen.model.name}"
                )
                chosen = attempt
            break
        else:
            assert refused is not None
            raise refused
        if outcome == Outcome.ADMITTED and reservation is not None and any(p.warning for p in reservation.pools):
            outcome = Outcome.WARNED
        if requirement is not unguarded:
            unguarded_choice = next((p for p in priced if p.model.tier_rank >= unguarded.rank), None)
            if unguarded_choice is not None:
                self.quality.note_escalation_cost(signals.task_type, chosen.cost - unguarded_choice.cost)
        shadow = shadow_hold = None
        if accept_shadow:
            shadow, shadow_hold = await self._shadow(scope, signals.task_type, chosen, priced, ttl, reserve)
        decided = RouteDecision(
            chosen=chosen,
            fallbacks=self._fallbacks(priced, chosen, requirement),
            requirement=requirement,
            reason=reason,
            difficulty=score,
            outcome=outcome,
            reservation=reservation,
            downgraded_by=downgraded_by,
            shadow=shadow,
            shadow_reservation=shadow_hold,
        )
        self._log_decision(scope, signals, prompt, base_tokens, decided)
        return decided

    async def _shadow(
        self, scope: Scope, task_type: str, chosen: Priced, priced: list[Priced], ttl: int, reserve: bool
    ) -> tuple[ShadowPlan | None, ReserveOutcome | None]:
        """Sample this decision for a quality comparison, holding the shadow call on the quality pool."""
        reference_rank = self.config.catalog.tier_rank(self.quality.reference_tier)
        reference = next((p for p in priced if p.model.tier_rank >= reference_rank), None)
        cheap = next((p for p in priced if p.model.tier_rank == 0), None)
        plan = self.quality.plan_shadow(task_type, chosen.model.tier, cheap.model.name if cheap else None,
                                        reference.model.name if reference else None)
        if plan is None or not reserve:
            return plan, None
        shadow = reference if plan.purpose == "reference" else cheap
        assert shadow is not None
        spec = self.config.budgets.templates[Level.QUALITY]
        pool = PoolRef(f"quality:{scope.org}", Level.QUALITY, spec)
        request = HoldRequest(
            reservation_id=fresh_reservation_id(scope.org),
            pools=(pool,),
            amount=apply_margin(shadow.cost, self._margin([pool])),
            tokens=shadow.input_tokens + shadow.output_tokens,
            ttl_ms=ttl,
            model=shadow.model.name,
            task_type=task_type,
            fresh=True,
        )
        try:
            return plan, await self.store.reserve(request)
        except BudgetExceeded:
            # The quality budget is spent: no comparison this time, never the product's money.
            return None, None

    # -- Feedback ------------------------------------------------------------------------

    async def feedback(self, reservation_id: str, score: float, *, source: str = "user") -> tuple[str, str]:
        """Count a quality signal for a reserved call; returns its (task type, tier).

        ``source`` is ``user``, ``automated_eval``, ``human_review`` or ``shadow_comparison``;
        only the last is a paired comparison for the quality guard.
        """
        parse_reservation_id(reservation_id)
        if not 0.0 <= score <= 1.0:  # NaN fails this too
            raise InvalidRequest(f"score must be between 0 and 1, got {score}")
        hold = await self.store.describe(reservation_id)
        model = self.config.catalog.models.get(hold.model)
        if model is None:
            raise InvalidRequest(f"model {hold.model!r} of this reservation is no longer in the catalog")
        await self.quality.record(hold.task_type, model.tier, source == SHADOW_COMPARISON, score)
        if self.decision_log is not None:
            self.decision_log.feedback(reservation_id, score, source)
        return hold.task_type, model.tier

    # -- Escalate ---------------------------------------------------------------------------

    async def escalate(
        self,
        reservation_id: str,
        scope: Scope,
        prompt: Prompt,
        signals: Signals,
        *,
        max_output_tokens: int = 0,
        model: str = "",
        reason: str = "",
        usage: Usage | None = None,
        ttl_ms: int = 0,
    ) -> Escalation:
        """Route and reserve the next attempt of a failed call, one tier up or on ``model``.

        The new reservation's id is derived from the failed one's, so a retried
        Escalate returns the same attempt. A soft pool refuses an escalation as a hard
        one does: downgrading it would retry the tier that just failed.
        """
        cfg = self.config
        org = parse_reservation_id(reservation_id).org
        if org != scope.org:
            raise InvalidRequest(f"reservation {reservation_id} belongs to another organisation than scope.org_id")
        if reason and not _ESCALATION_REASON.fullmatch(reason):
            raise InvalidRequest("reason must be 1-64 characters: letters, digits, space and ._:/- (e.g. invalid_json)")
        self._check_max_output(max_output_tokens)
        if usage is not None:
            self._check_usage(usage)
        ttl = self._ttl(ttl_ms)
        parent = await self.store.describe(reservation_id)
        if parent.attempt > cfg.routing.max_escalations:
            raise EscalationRefused(
                f"reservation {reservation_id} is attempt {parent.attempt}; routing.max_escalations="
                f"{cfg.routing.max_escalations} allows no further escalation of this call"
            )
        failed = cfg.catalog.models.get(parent.model)
        if failed is None:
            raise InvalidRequest(f"model {parent.model!r} of this reservation is no longer in the catalog")
        signals = dataclasses.replace(signals, task_type=parent.task_type)
        base_tokens = self._count(prompt)
        priced = self._eligible(scope, signals, base_tokens, max_output_tokens)
        why = f" after {reason}" if reason else ""
        if model:
            target = cfg.catalog.model(model)
            options = [p for p in priced if p.model is target]
            requirement = TierRequirement(target.tier, target.tier_rank,
                                          f"escalation of {failed.name}{why} -> {target.name}", "escalation")
            if not options:
                raise InvalidRequest(f"{target.name} lacks the capabilities, context window, latency or provider "
                                     f"this request needs ({base_tokens} input tokens)")
        else:
            rank = failed.tier_rank + 1
            if rank >= len(cfg.catalog.tiers):
                raise EscalationRefused(
                    f"{failed.name} is in the top tier ({failed.tier}); name a model to retry on another one"
                )
            tier = cfg.catalog.tiers[rank]
            requirement = TierRequirement(tier, rank, f"escalation of {failed.name} ({failed.tier}){why} -> {tier}",
                                          "escalation")
            options = [p for p in priced if p.model.tier_rank >= rank]
            if not options:
                raise InvalidRequest(
                    f"no model of tier {tier} or above has the capabilities, context window, latency and provider "
                    f"this request needs ({base_tokens} input tokens{self._provider_note(scope)})"
                )
        previous = await self.commit(reservation_id, usage) if usage is not None else None
        pools = self._pools(scope)
        new_id = escalation_id(reservation_id)
        try:
            existing = await self.store.get(new_id)
        except ReservationNotFound:
            existing = None
        if existing is not None:
            chosen = next((p for p in options if p.model.name == existing.model), None)
            if chosen is None:
                raise IdempotencyConflict(
                    f"reservation {reservation_id} was already escalated to {existing.model}, which this request "
                    "would not route to"
                )
            snapshots = await self.store.snapshot(pools, high_priority=scope.priority == "high")
            reservation = ReserveOutcome(existing, tuple(snapshots), replayed=True)
        else:
            chosen = options[0]
            request = self._hold_request(scope, pools, chosen, apply_margin(chosen.cost, self._margin(pools)), ttl,
                                         "", parent.task_type)
            # The id derives from the parent's, so a retried Escalate must find its first reserve.
            request = dataclasses.replace(request, reservation_id=new_id, parent_id=reservation_id,
                                          attempt=parent.attempt + 1, fresh=False)
            reservation = await self.store.reserve(request)
        outcome = Outcome.WARNED if any(p.warning for p in reservation.pools) else Outcome.ADMITTED
        decision = RouteDecision(
            chosen=chosen,
            fallbacks=self._fallbacks(options, chosen, requirement),
            requirement=requirement,
            reason=requirement.reason,
            difficulty=0.0,
            outcome=outcome,
            reservation=reservation,
        )
        if not reservation.replayed:
            self._log_decision(scope, signals, prompt, base_tokens, decision, parent_id=reservation_id,
                               attempt=parent.attempt + 1, escalation_reason=reason)
        return Escalation(decision, reservation_id, parent.attempt + 1, failed.tier, previous)

    # -- Reserve / Commit / Release / Extend ------------------------------------------

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
        if not idempotency_key:
            return await self._reserve(scope, model_name, prompt, task_type, max_output_tokens, "", ttl_ms, "")
        check_idempotency_key(idempotency_key)
        fingerprint = _fingerprint("reserve", scope, prompt, model_name, task_type, max_output_tokens, ttl_ms)
        try:
            return await self._reserve(scope, model_name, prompt, task_type, max_output_tokens, idempotency_key,
                                       ttl_ms, fingerprint)
        except InvalidRequest:
            replay = await self._replay(scope, idempotency_key, fingerprint)
            if replay is None:
                raise
            first = self._replayed_choice([], replay.hold)
            return ReserveResult(first, replay)

    async def _reserve(self, scope: Scope, model_name: str, prompt: Prompt, task_type: str, max_output_tokens: int,
                       idempotency_key: str, ttl_ms: int, fingerprint: str) -> ReserveResult:
        model = self.config.catalog.model(model_name)
        self._check_max_output(max_output_tokens)
        if max_output_tokens > model.max_output_tokens:
            raise InvalidRequest(
                f"max_output_tokens={max_output_tokens} exceeds {model.name}'s limit of {model.max_output_tokens}"
            )
        ttl = self._ttl(ttl_ms)
        base_tokens = self._count(prompt)
        input_tokens = model.input_tokens(base_tokens)
        output_tokens = self.outputs.estimate(task_type, model.name, max_output_tokens)
        if input_tokens + (max_output_tokens or output_tokens) > model.context_window:
            raise InvalidRequest(
                f"{input_tokens} input tokens plus {max_output_tokens or output_tokens} output tokens exceed "
                f"{model.name}'s context window of {model.context_window}"
            )
        priced = Priced(model, input_tokens, output_tokens, model.price.cost(
            input_tokens=input_tokens, output_tokens=output_tokens))
        pools = self._pools(scope)
        hold = apply_margin(priced.cost, self._margin(pools))
        outcome = await self.store.reserve(
            self._hold_request(scope, pools, priced, hold, ttl, idempotency_key, task_type, fingerprint)
        )
        return ReserveResult(priced, outcome)

    async def commit(self, reservation_id: str, usage: Usage) -> CommitOutcome:
        """Charge what the provider reported; the rest of the hold is released."""
        parse_reservation_id(reservation_id)
        self._check_usage(usage)
        hold = await self.store.describe(reservation_id)
        model = self.config.catalog.models.get(hold.model)
        if model is None:
            raise InvalidRequest(f"model {hold.model!r} of this reservation is no longer in the catalog")
        cost = model.price.cost(
            input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
        )
        tokens = usage.input_tokens + usage.output_tokens + usage.reasoning_tokens
        fingerprint = (
            f"{usage.input_tokens}/{usage.cached_input_tokens}/{usage.output_tokens}/{usage.reasoning_tokens}"
        )
        outcome = await self.store.commit(CommitRequest(reservation_id, cost, tokens, fingerprint))
        if not outcome.replayed:
            self._learn(hold, usage, cost)
        return outcome

    async def release(self, reservation_id: str) -> ReleaseOutcome:
        """End a reservation without charging."""
        parse_reservation_id(reservation_id)
        return await self.store.release(reservation_id)

    async def extend(self, reservation_id: str, ttl_ms: int) -> Hold:
        """Push a reservation's expiry to now + ttl."""
        parse_reservation_id(reservation_id)
        return await self.store.extend(reservation_id, self._ttl(ttl_ms))

    async def budget(self, scope: Scope) -> list[PoolSnapshot]:
        """Every pool of a scope as a request of its priority sees it."""
        pools = self._pools(scope)
        return await self.store.snapshot(pools, high_priority=scope.priority == "high")

    # -- internals --------------------------------------------------------------------

    def _count(self, prompt: Prompt) -> int:
        limits = self.config.limits
        if prompt.messages is None:
            tokens = prompt.input_tokens
            if tokens is None:
                raise InvalidRequest("prompt is required: send messages or input_tokens")
            if not 0 <= tokens <= limits.max_tokens:
                raise InvalidRequest(f"prompt.input_tokens must be between 0 and {limits.max_tokens}, got {tokens}")
            return tokens
        messages = prompt.messages
        if not messages:
            raise InvalidRequest("prompt.messages is empty: send at least one message, or input_tokens")
        if len(messages) > limits.max_messages:
            raise InvalidRequest(f"{len(messages)} messages exceed the limit of {limits.max_messages}")
        chars = sum(len(content) for _, content in messages)
        if chars > limits.max_text_chars:
            raise InvalidRequest(f"{chars} characters of message text exceed the limit of {limits.max_text_chars}")
        for role, _ in messages:
            if role not in _ROLES:
                raise InvalidRequest(f"message role {role[:20]!r} is not one of: {', '.join(_ROLES)}")
        return self.counter.count_messages(messages)

    def _eligible(self, scope: Scope, signals: Signals, base_tokens: int, max_output_tokens: int) -> list[Priced]:
        task_type = signals.task_type
        return eligible(
            self.config.catalog,
            needs=signals.needs,
            base_input_tokens=base_tokens,
            max_output_tokens=max_output_tokens,
            output_estimate=lambda m: self.outputs.estimate(task_type, m.name, max_output_tokens),
            latency=signals.latency,
            provider_ok=self._provider_rule(scope),
        )

    def _provider_rule(self, scope: Scope) -> Callable[[str], bool]:
        """Every provider list that applies to the scope (``*`` and each of its pool ids) must permit."""
        providers = self.config.routing.providers
        if not providers:
            return lambda provider: True
        rules = [r for r in (providers.get(key) for key in ("*", *(pool_id for _, pool_id in scope.ids()))) if r]
        return lambda provider: all(r.permits(provider) for r in rules)

    def _provider_note(self, scope: Scope) -> str:
        providers = self.config.routing.providers
        keys = [k for k in ("*", *(pool_id for _, pool_id in scope.ids())) if k in providers]
        return f", provider lists of {', '.join(keys)}" if keys else ""

    def _fallbacks(self, priced: list[Priced], chosen: Priced, requirement: TierRequirement) -> tuple[Priced, ...]:
        floor = min(chosen.model.tier_rank, requirement.rank)
        candidates = [p for p in priced if p.model.tier_rank >= floor]
        return fallbacks(candidates, chosen, self.config.routing.fallbacks)

    def _pools(self, scope: Scope) -> list[PoolRef]:
        if len(scope.tags) > self.config.limits.max_tags:
            raise InvalidRequest(
                f"scope.tags has {len(scope.tags)} entries; limits.max_tags allows {self.config.limits.max_tags}"
            )
        budgets = self.config.budgets
        refs = []
        request = budgets.templates.get(Level.REQUEST)
        if request is not None:
            refs.append(PoolRef(pool_id(Level.REQUEST, scope.org), Level.REQUEST, request))
        refs.extend(PoolRef(pool_id, level, spec) for pool_id, level, spec in budgets.pools_for(scope))
        if self.overrides:
            now = self.clock()
            refs = [r if (o := self.overrides.get(r.pool_id)) is None else PoolRef(r.pool_id, r.level,
                                                                                  o.apply(r.spec, now))
                    for r in refs]
        return refs

    def _resolver(self, config: Config) -> SpecResolver:
        """The store's pool specs: the config's, with the admin overrides of the moment over them."""
        base = spec_resolver(config.budgets)

        def resolve(pool_id: str) -> tuple[Level, PoolSpec] | None:
            found = base(pool_id)
            override = self.overrides.get(pool_id)
            if found is None or override is None:
                return found
            return found[0], override.apply(found[1], self.clock())

        return resolve

    def pool_ref(self, pool_id: str) -> PoolRef:
        """A pool by id, with its effective spec, or ``InvalidRequest`` if no config covers it."""
        if parse_pool_id(pool_id).level == Level.REQUEST:
            raise InvalidRequest(f"{pool_id!r} is a request pool, which caps each call and has no state to change")
        resolved = self._specs(pool_id)
        if resolved is None:
            raise InvalidRequest(f"no budget in the config covers pool {pool_id!r}")
        return PoolRef(pool_id, resolved[0], resolved[1])

    def _margin(self, pools: Sequence[PoolRef]) -> int:
        # One hold covers every pool, so it takes the most cautious margin among them.
        margins = [p.spec.margin_bp for p in pools if p.spec.margin_bp is not None]
        return max([self.config.estimation.margin_bp, *margins]) if margins else self.config.estimation.margin_bp

    def _hold_request(
        self,
        scope: Scope,
        pools: list[PoolRef],
        priced: Priced,
        amount: int,
        ttl: int,
        idempotency_key: str,
        task_type: str,
        fingerprint: str = "",
    ) -> HoldRequest:
        return HoldRequest(
            reservation_id=(keyed_reservation_id(scope.org, idempotency_key) if idempotency_key
                            else fresh_reservation_id(scope.org)),
            pools=tuple(pools),
            amount=amount,
            tokens=priced.input_tokens + priced.output_tokens,
            ttl_ms=ttl,
            high_priority=scope.priority == "high",
            model=priced.model.name,
            task_type=task_type,
            fresh=not idempotency_key,
            fingerprint=fingerprint,
        )

    async def _check_fits(self, pools: list[PoolRef], amount: int, high: bool) -> None:
        """Route without reserving: refuse as admission would, from a snapshot."""
        snapshots = {s.pool_id: s for s in await self.store.snapshot(pools, high_priority=high)}
        for ref in pools:
            if ref.spec.policy is Policy.WARN:
                continue
            snap = snapshots.get(ref.pool_id)
            remaining = snap.remaining if snap else ref.spec.usable_cap(high_priority=high)
            if amount > remaining:
                raise BudgetExceeded(Refusal(
                    ref.pool_id, str(ref.level), str(ref.spec.policy), "cost", amount, remaining,
                    snap.resets_at_ms if snap else None,
                ))

    async def _replay(self, scope: Scope, idempotency_key: str, fingerprint: str) -> ReserveOutcome | None:
        """The key's first reservation, if there is one, for a request refused before it reached the store.

        What the sidecar learned since (output estimates, the quality guard) can make the
        very request that was admitted then fail a check now; its retry must still replay.
        """
        try:
            hold = await self.store.get(keyed_reservation_id(scope.org, idempotency_key))
        except ReservationNotFound:
            return None
        if hold.fingerprint != fingerprint:
            raise IdempotencyConflict(
                f"reservation {hold.reservation_id} already exists for a different request under this "
                "idempotency key; use a new key for a new call"
            )
        snapshots = await self.store.snapshot(self._pools(scope), high_priority=scope.priority == "high")
        return ReserveOutcome(hold, tuple(snapshots), replayed=True)

    def _replayed_choice(self, priced: list[Priced], hold: Hold) -> Priced:
        """The candidate a replayed reservation was made for, as routing sees it now."""
        found = next((p for p in priced if p.model.name == hold.model), None)
        if found is not None:
            return found
        model = self.config.catalog.models.get(hold.model)
        if model is None:
            raise InvalidRequest(f"model {hold.model!r} of reservation {hold.reservation_id} is no longer in the "
                                 "catalog; use a new idempotency key")
        return Priced(model, hold.tokens, 0, self.estimated_cost(hold))

    def _log_decision(
        self,
        scope: Scope,
        signals: Signals,
        prompt: Prompt,
        base_tokens: int,
        decision: RouteDecision,
        *,
        parent_id: str = "",
        attempt: int = 1,
        escalation_reason: str = "",
    ) -> None:
        if self.decision_log is None:
            return
        chosen = decision.chosen
        self.decision_log.decision(
            reservation_id=decision.reservation.hold.reservation_id if decision.reservation else "",
            org=scope.org,
            team=scope.team,
            tags=scope.tags,
            task_type=signals.task_type,
            agent_mode=signals.agent_mode,
            messages=prompt.messages,
            input_tokens=base_tokens,
            decision={
                "model": chosen.model.name,
                "tier": chosen.model.tier,
                "required_tier": decision.requirement.tier,
                "source": decision.requirement.source,
                "reason": decision.reason,
                "difficulty": round(decision.difficulty, 4),
                "outcome": decision.outcome,
                "estimated_cost_nanos": chosen.cost,
            },
            shadow=(
                {"model": decision.shadow.model, "tier": decision.shadow.tier, "purpose": decision.shadow.purpose}
                if decision.shadow else None
            ),
            parent_id=parent_id,
            attempt=attempt,
            escalation_reason=escalation_reason,
        )


    def _check_usage(self, usage: Usage) -> None:
        limit = self.config.limits.max_tokens
        for name in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens"):
            value = getattr(usage, name)
            if not 0 <= value <= limit:
                raise InvalidRequest(f"usage.{name} must be between 0 and {limit}, got {value}")
        if usage.cached_input_tokens > usage.input_tokens:
            raise InvalidRequest("usage.cached_input_tokens cannot exceed usage.input_tokens (which includes them)")

    @staticmethod
    def _check_signals(signals: Signals) -> None:
        # Task types and modes become keys of learned estimates and quality counts.
        for name in ("task_type", "agent_mode"):
            value = getattr(signals, name)
            if value and not ID_PATTERN.fullmatch(value):
                raise InvalidRequest(f"signals.{name} {value[:40]!r} must be 1-128 characters from A-Z a-z 0-9 . _ @ -")

    def _check_max_output(self, max_output_tokens: int) -> None:
        if not 0 <= max_output_tokens <= self.config.limits.max_tokens:
            raise InvalidRequest(
                f"max_output_tokens must be between 0 and {self.config.limits.max_tokens}, got {max_output_tokens}"
            )

    def _ttl(self, ttl_ms: int) -> int:
        cfg = self.config.reservations
        if ttl_ms == 0:
            return cfg.ttl_ms
        if not 0 < ttl_ms <= cfg.max_ttl_ms:
            raise InvalidRequest(f"ttl_ms must be between 1 and {cfg.max_ttl_ms} (0 for the default), got {ttl_ms}")
        return ttl_ms

    def estimated_cost(self, hold: Hold) -> int:
        """The cost estimated for a reservation, before the margin it was held with.

        The hold took the largest margin among its pools (``_margin``), so that is the
        margin taken off again; the request pool, which keeps no state, is not among the
        hold's pools and is added from the config.
        """
        refs = [PoolRef(p, level, spec) for p in hold.pool_ids if (found := self._specs(p)) for level, spec in [found]]
        request = self.config.budgets.templates.get(Level.REQUEST)
        if request is not None:
            refs.append(PoolRef(pool_id(Level.REQUEST, reservation_org(hold.reservation_id)), Level.REQUEST, request))
        return hold.amount * 10_000 // self._margin(refs)

    def _learn(self, hold: Hold, usage: Usage, cost: int) -> None:
        self.outputs.observe(hold.task_type, hold.model, usage.output_tokens + usage.reasoning_tokens)
        self.outputs.record_error(hold.task_type, hold.model, self.estimated_cost(hold), cost)



def _fingerprint(kind: str, scope: Scope, prompt: Prompt, *options: object) -> str:
    """What a caller sent for a reservation, digested: the same request retried, the same fingerprint."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{kind}\0{scope.org}\0{scope.team}\0{scope.user}\0{scope.session}\0{scope.priority}".encode())
    if prompt.messages is None:
        digest.update(f"\0tokens={prompt.input_tokens}".encode())
    else:
        for role, content in prompt.messages:
            digest.update(f"\0{role}\1".encode())
            digest.update(content.encode("utf-8", "surrogatepass"))
    digest.update("\0".join(["", *map(str, options)]).encode())
    return f"{kind}:{digest.hexdigest()}"
