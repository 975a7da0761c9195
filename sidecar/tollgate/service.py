"""gRPC handlers: protobuf in, domain call, protobuf out. No business logic here.

Every domain error maps to one status code in ``_STATUS``; nothing reaches a
client as UNKNOWN. A budget refusal carries a ``tollgate.v1.BudgetExceeded`` both
in the standard ``grpc-status-details-bin`` (a ``google.rpc.Status``) and in the
``tollgate-budget-exceeded-bin`` trailer, which a client can decode with nothing
but protobuf.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2, message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2

from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

from .app import Outcome, Prompt, RouteDecision, Tollgate, Usage
from .app.admin import Admin
from .auth import Authenticator, Caller
from .catalog import Capability, Latency
from .config import Policy
from .errors import (
    BudgetExceeded,
    CallerGone,
    EscalationRefused,
    IdempotencyConflict,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    ReservationEnded,
    ReservationNotFound,
    StoreUnavailable,
    TollgateError,
    Unauthenticated,
)
from .ids import reservation_org
from .ledger import CommitOutcome, PoolSnapshot, ReserveOutcome
from .routing.rules import Signals
from .routing.select import Priced
from .scope import Level, Priority, Scope
from .telemetry import Telemetry

__all__ = ["BUDGET_EXCEEDED_TRAILER", "AdminServicer", "Malformed", "TollgateServicer", "add_to_server"]

log = logging.getLogger("tollgate.service")

BUDGET_EXCEEDED_TRAILER = "tollgate-budget-exceeded-bin"

_STATUS: dict[type[TollgateError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    BudgetExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ReservationNotFound: grpc.StatusCode.NOT_FOUND,
    ReservationEnded: grpc.StatusCode.FAILED_PRECONDITION,
    IdempotencyConflict: grpc.StatusCode.FAILED_PRECONDITION,
    EscalationRefused: grpc.StatusCode.OUT_OF_RANGE,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    CallerGone: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

# The authenticated caller of the RPC being handled; None when no callers are configured.
_CALLER: ContextVar[Caller | None] = ContextVar("tollgate_caller", default=None)

_LEVEL = {
    Level.REQUEST: pb.POOL_LEVEL_REQUEST,
    Level.SESSION: pb.POOL_LEVEL_SESSION,
    Level.USER: pb.POOL_LEVEL_USER,
    Level.TEAM: pb.POOL_LEVEL_TEAM,
    Level.ORG: pb.POOL_LEVEL_ORG,
    Level.QUALITY: pb.POOL_LEVEL_QUALITY,
}
_POLICY = {Policy.HARD: pb.POLICY_HARD, Policy.SOFT: pb.POLICY_SOFT, Policy.WARN: pb.POLICY_WARN}
_OUTCOME = {
    Outcome.ADMITTED: pb.POLICY_OUTCOME_ADMITTED,
    Outcome.DOWNGRADED: pb.POLICY_OUTCOME_DOWNGRADED,
    Outcome.WARNED: pb.POLICY_OUTCOME_WARNED,
}
_LATENCY: dict[int, Latency | None] = {
    pb.LATENCY_CLASS_UNSPECIFIED: None,
    pb.LATENCY_CLASS_FAST: Latency.FAST,
    pb.LATENCY_CLASS_STANDARD: Latency.STANDARD,
    pb.LATENCY_CLASS_SLOW: Latency.SLOW,
}
_LATENCY_PB = {v: k for k, v in _LATENCY.items() if v is not None}
_SOURCE = {
    "rule": pb.DECISION_SOURCE_RULE,
    "difficulty": pb.DECISION_SOURCE_DIFFICULTY,
    "escalation": pb.DECISION_SOURCE_ESCALATION,
}

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request body that did not parse as its message: the handler answers INVALID_ARGUMENT.

    Parsing happens in the method's deserializer, outside any handler; returning this
    instead of raising brings a garbage body to the error table like any bad request.
    """

    message: str
    problem: str


def _parser(message_class: Any) -> Callable[[bytes], Any]:
    parse = message_class.FromString
    name = message_class.DESCRIPTOR.full_name

    def parse_or_flag(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Malformed(name, str(exc)[:120])
        except Exception as exc:  # whatever else the parser raises, the body is the caller's to fix
            return Malformed(name, type(exc).__name__)

    return parse_or_flag


def add_to_server(servicer: Any, server: grpc.aio.Server, service: ServiceDescriptor) -> None:
    """Serve ``service``'s methods from ``servicer``, bodies parsed where the error table sees them."""
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_parser(message_factory.GetMessageClass(method.input_type)),
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def _translated(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Turn domain errors into their status; anything unexpected into INTERNAL, logged."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        token = None
        failure: _Failure
        try:
            auth = self.gate.runtime.auth
            if auth.enabled:
                caller = auth.authenticate(*_credentials(context))
                auth.admit(caller)
                token = _CALLER.set(caller)
            if isinstance(request, Malformed):
                raise InvalidRequest(f"malformed request: the body is not a valid {request.message} "
                                     f"({request.problem}); send a message built by the generated stubs")
            return await handler(self, request, context)
        except TollgateError as exc:
            if isinstance(exc, BudgetExceeded):
                self.telemetry.refused(exc.refusal)
            failure = _failure(exc)
        except (ValueError, OverflowError) as exc:
            # Protobuf conversion of out-of-range values ends up here.
            failure = _Failure(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {str(exc)[:200]}")
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            failure = _Failure(grpc.StatusCode.INTERNAL, "internal error; the sidecar log has the details")
        finally:
            if token is not None:
                _CALLER.reset(token)
        # Answered by setting the status, not by ``context.abort``: gRPC keeps the exception
        # an abort raises on the call, whose frames then hold the rejected request in a
        # reference cycle until a full garbage collection (megabytes per hostile request).
        # With a non-OK code set, gRPC sends the status and discards the returned message.
        context.set_code(failure.code)
        context.set_details(failure.message)
        if failure.trailers:
            context.set_trailing_metadata(failure.trailers)
        return cast(Resp, None)

    return wrapper


@dataclass(frozen=True, slots=True)
class _Failure:
    code: grpc.StatusCode
    message: str
    trailers: tuple[tuple[str, bytes], ...] = ()


def _failure(exc: TollgateError) -> _Failure:
    code = next((c for cls, c in _STATUS.items() if isinstance(exc, cls)), grpc.StatusCode.INTERNAL)
    message = str(exc)
    if isinstance(exc, BudgetExceeded):
        r = exc.refusal
        detail = pb.BudgetExceeded(
            pool_id=r.pool_id,
            level=_LEVEL.get(Level(r.level), pb.POOL_LEVEL_UNSPECIFIED),
            policy=_POLICY[Policy(r.policy)],
            requested_nanos=r.requested,
            remaining_nanos=max(r.remaining, 0),
            limit=r.limit,
        )
        if r.resets_at_ms is not None:
            detail.resets_at.CopyFrom(_timestamp(r.resets_at_ms))
        packed = any_pb2.Any()
        packed.Pack(detail)
        status = status_pb2.Status(code=code.value[0], message=message, details=[packed])
        return _Failure(code, message, (
            ("grpc-status-details-bin", status.SerializeToString()),
            (BUDGET_EXCEEDED_TRAILER, detail.SerializeToString()),
        ))
    return _Failure(code, message)


class TollgateServicer(pb_grpc.TollgateServiceServicer):
    """The TollgateService handlers over one ``Tollgate``."""

    def __init__(self, gate: Tollgate, telemetry: Telemetry | None = None) -> None:
        self.gate = gate
        self.telemetry = telemetry or Telemetry(enable_tracing=False)

    def _scope(self, scope: pb.Scope | None) -> Scope:
        """The request's scope, once the caller is known to be allowed it."""
        out = _scope(scope, self.gate.config.limits.max_tags)
        Authenticator.authorize(_CALLER.get(), out.org, out.team)
        return out

    async def _authorize_reservation(self, reservation_id: str) -> None:
        """Refuse a reservation of an org (or a team) outside the caller's grants; nothing is read otherwise."""
        org = reservation_org(reservation_id)  # the id's grammar is checked for every caller
        caller = _CALLER.get()
        if caller is None:
            return
        if caller.permits(org):
            return
        teams = {f"team:{org}/{t}" for t in caller.team_grants(org)}
        if teams:
            hold = await self.gate.describe(reservation_id)
            if not teams.isdisjoint(hold.pool_ids):
                return
        raise PermissionDenied(f"caller {caller.name} may not use reservations of org {org[:128]!r}")

    async def _undo_if_gone(self, context: grpc.aio.ServicerContext, *held: ReserveOutcome | None) -> None:
        """Release fresh holds whose caller stopped waiting before the answer: nobody can name them.

        A keyed hold stays: the caller's retry with its key finds it.
        """
        remaining = context.time_remaining()
        if not (context.cancelled() or (remaining is not None and remaining <= 0)):
            return
        for outcome in held:
            if outcome is not None and not outcome.replayed:
                await self.gate.release(outcome.hold.reservation_id)
        raise CallerGone("the call's deadline passed before its answer; nothing is held, retry with an "
                         "idempotency key")

    @_translated
    async def Route(self, request: pb.RouteRequest, context: grpc.aio.ServicerContext) -> pb.RouteResponse:
        decision = await self.gate.route(
            self._scope(request.scope if request.HasField("scope") else None),
            _prompt(request.prompt, self.gate.config.limits.max_messages),
            _signals(request.signals),
            max_output_tokens=request.max_output_tokens,
            reserve=request.reserve,
            idempotency_key=request.reservation.idempotency_key,
            ttl_ms=request.reservation.ttl_ms,
            accept_shadow=request.accept_shadow,
        )
        if not request.reservation.idempotency_key:
            await self._undo_if_gone(context, decision.reservation, decision.shadow_reservation)
        response = pb.RouteResponse(decision=_decision(decision))
        if decision.reservation is not None:
            response.reservation.CopyFrom(_reservation(decision.reservation))
        if decision.shadow is not None:
            response.shadow.CopyFrom(pb.Shadow(model=decision.shadow.model, tier=decision.shadow.tier,
                                               purpose=decision.shadow.purpose))
            if decision.shadow_reservation is not None:
                response.shadow.reservation.CopyFrom(_reservation(decision.shadow_reservation))
        self.telemetry.routed(decision, request.max_output_tokens)
        return response

    @_translated
    async def Reserve(self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext) -> pb.ReserveResponse:
        result = await self.gate.reserve(
            self._scope(request.scope if request.HasField("scope") else None),
            request.model,
            _prompt(request.prompt, self.gate.config.limits.max_messages),
            task_type=request.task_type,
            max_output_tokens=request.max_output_tokens,
            idempotency_key=request.reservation.idempotency_key,
            ttl_ms=request.reservation.ttl_ms,
        )
        if not request.reservation.idempotency_key:
            await self._undo_if_gone(context, result.reservation)
        self.telemetry.reserved(result.reservation)
        return pb.ReserveResponse(
            reservation=_reservation(result.reservation),
            estimated_input_tokens=result.estimate.input_tokens,
            estimated_output_tokens=result.estimate.output_tokens,
            estimated_cost_nanos=result.estimate.cost,
        )

    @_translated
    async def Commit(self, request: pb.CommitRequest, context: grpc.aio.ServicerContext) -> pb.CommitResponse:
        usage = _usage(request.usage)
        await self._authorize_reservation(request.reservation_id)
        outcome = await self.gate.commit(request.reservation_id, usage)
        self.telemetry.committed(outcome, self.gate.estimated_cost(outcome.hold), usage)
        return _commit_response(outcome)

    @_translated
    async def Escalate(self, request: pb.EscalateRequest, context: grpc.aio.ServicerContext) -> pb.EscalateResponse:
        scope = self._scope(request.scope if request.HasField("scope") else None)
        await self._authorize_reservation(request.reservation_id)
        escalation = await self.gate.escalate(
            request.reservation_id,
            scope,
            _prompt(request.prompt, self.gate.config.limits.max_messages),
            _signals(request.signals),
            max_output_tokens=request.max_output_tokens,
            model=request.model,
            reason=request.reason,
            usage=_usage(request.usage) if request.HasField("usage") else None,
            ttl_ms=request.reservation.ttl_ms,
        )
        previous = escalation.previous_commit
        estimated = self.gate.estimated_cost(previous.hold) if previous is not None else 0
        self.telemetry.escalated(escalation, estimated, request.max_output_tokens)
        assert escalation.decision.reservation is not None
        response = pb.EscalateResponse(
            decision=_decision(escalation.decision),
            reservation=_reservation(escalation.decision.reservation),
            previous_reservation_id=escalation.parent_id,
            attempt=escalation.attempt,
        )
        if previous is not None:
            response.previous_commit.CopyFrom(_commit_response(previous))
        return response

    @_translated
    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        await self._authorize_reservation(request.reservation_id)
        outcome = await self.gate.release(request.reservation_id)
        self.telemetry.released(outcome)
        return pb.ReleaseResponse(
            reservation_id=outcome.hold.reservation_id,
            released_nanos=outcome.hold.amount,
            pools=[_pool(p) for p in outcome.pools],
            replayed=outcome.replayed,
        )

    @_translated
    async def Extend(self, request: pb.ExtendRequest, context: grpc.aio.ServicerContext) -> pb.ExtendResponse:
        await self._authorize_reservation(request.reservation_id)
        hold = await self.gate.extend(request.reservation_id, request.ttl_ms)
        self.telemetry.extended(hold)
        return pb.ExtendResponse(reservation_id=hold.reservation_id, expires_at=_timestamp(hold.expires_ms))

    @_translated
    async def Feedback(self, request: pb.FeedbackRequest, context: grpc.aio.ServicerContext) -> pb.FeedbackResponse:
        if request.source == pb.FEEDBACK_SOURCE_UNSPECIFIED or request.source not in pb.FeedbackSource.values():
            raise InvalidRequest("source is required: USER, AUTOMATED_EVAL, SHADOW_COMPARISON or HUMAN_REVIEW")
        await self._authorize_reservation(request.reservation_id)
        task_type, tier = await self.gate.feedback(
            request.reservation_id, request.score,
            source=pb.FeedbackSource.Name(request.source).removeprefix("FEEDBACK_SOURCE_").lower(),
        )
        return pb.FeedbackResponse(task_type=task_type, tier=tier)

    @_translated
    async def GetQuality(
        self, request: pb.GetQualityRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetQualityResponse:
        Authenticator.authorize_admin(_CALLER.get(), "GetQuality (quality across every tenant)")
        z = self.gate.config.quality.z
        out = pb.GetQualityResponse()
        for r in await self.gate.quality.report():
            item = out.task_types.add(task_type=r.task_type, guard_min_tier=r.guard_tier,
                                      escalation_cost_nanos=r.escalation_cost, shadow_samples=r.shadow.n,
                                      shadow_match=r.shadow.mean)
            item.shadow_match_low, item.shadow_match_high = r.shadow.interval(z)
            if r.guard_since_ms:
                item.guard_since.CopyFrom(_timestamp(r.guard_since_ms))
            for tier, tally in sorted(r.tiers.items()):
                low, high = tally.interval(z)
                item.tiers.add(tier=tier, samples=tally.n, quality=tally.mean, quality_low=low, quality_high=high)
        return out

    @_translated
    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBudgetResponse:
        pools = await self.gate.budget(self._scope(request.scope if request.HasField("scope") else None))
        return pb.GetBudgetResponse(pools=[_pool(p) for p in pools])


class AdminServicer(pb_grpc.AdminServiceServicer):
    """The AdminService handlers: admin callers only, each action audited by ``Admin``."""

    def __init__(self, admin: Admin, telemetry: Telemetry) -> None:
        self.admin = admin
        self.gate = admin.gate
        self.telemetry = telemetry

    @staticmethod
    def _admin() -> str:
        caller = _CALLER.get()
        if caller is None:
            raise PermissionDenied("admin operations need an admin caller: configure auth.callers with admin: true")
        Authenticator.authorize_admin(caller, "this operation")
        return caller.name

    @_translated
    async def SetPoolCap(self, request: pb.SetPoolCapRequest,
                         context: grpc.aio.ServicerContext) -> pb.SetPoolCapResponse:
        change = await self.admin.set_cap(self._admin(), request.pool_id, request.cap_nanos, request.reason)
        return pb.SetPoolCapResponse(before=_pool(change.before), after=_pool(change.after))

    @_translated
    async def TopUp(self, request: pb.TopUpRequest, context: grpc.aio.ServicerContext) -> pb.TopUpResponse:
        change = await self.admin.top_up(self._admin(), request.pool_id, request.amount_nanos, request.reason)
        return pb.TopUpResponse(before=_pool(change.before), after=_pool(change.after))

    @_translated
    async def ResetWindow(self, request: pb.ResetWindowRequest,
                          context: grpc.aio.ServicerContext) -> pb.ResetWindowResponse:
        change = await self.admin.reset_window(self._admin(), request.pool_id, request.reason)
        return pb.ResetWindowResponse(before=_pool(change.before), after=_pool(change.after))

    @_translated
    async def EndReservation(self, request: pb.EndReservationRequest,
                             context: grpc.aio.ServicerContext) -> pb.EndReservationResponse:
        outcome = await self.admin.end_reservation(self._admin(), request.reservation_id, charge=request.charge,
                                                   reason=request.reason)
        return pb.EndReservationResponse(
            reservation_id=outcome.hold.reservation_id, state=str(outcome.hold.state),
            charged_nanos=outcome.hold.charged, pools=[_pool(p) for p in outcome.pools], replayed=outcome.replayed,
        )


# -- conversions ------------------------------------------------------------------------------


def _scope(scope: pb.Scope | None, max_tags: int) -> Scope:
    if scope is None:
        raise InvalidRequest("scope is required: set scope.org_id to the organisation that pays")
    # Counted before anything is built from them: a rejected request must cost no memory.
    if len(scope.tags) > max_tags:
        raise InvalidRequest(f"scope.tags has {len(scope.tags)} entries; limits.max_tags allows {max_tags}")
    if scope.priority == pb.PRIORITY_HIGH:
        priority = Priority.HIGH
    elif scope.priority in (pb.PRIORITY_UNSPECIFIED, pb.PRIORITY_NORMAL):
        priority = Priority.NORMAL
    else:
        raise InvalidRequest(f"scope.priority {scope.priority} is not a known Priority value")
    return Scope(
        org=scope.org_id,
        team=scope.team_id,
        user=scope.user_id,
        session=scope.session_id,
        tags=dict(scope.tags),
        priority=priority,
    )


def _prompt(prompt: pb.Prompt, max_messages: int) -> Prompt:
    which = prompt.WhichOneof("input")
    if which == "messages":
        items = prompt.messages.items
        # Counted before anything is built from them: a rejected request must cost no memory.
        if len(items) > max_messages:
            raise InvalidRequest(f"{len(items)} messages exceed the limit of {max_messages} (limits.max_messages)")
        return Prompt(messages=tuple([(m.role, m.content) for m in items]))
    if which == "input_tokens":
        return Prompt(input_tokens=prompt.input_tokens)
    raise InvalidRequest("prompt is required: set prompt.messages or prompt.input_tokens")


def _credentials(context: grpc.aio.ServicerContext) -> tuple[str | None, tuple[str, ...]]:
    """The call's ``authorization`` metadata, and its mTLS client certificate's identities.

    The identities are what gRPC verified: the certificate's subject alternative
    names (DNS or URI, as SPIFFE uses), else its common name.
    """
    authorization = next(
        (v for k, v in context.invocation_metadata() or () if k == "authorization" and isinstance(v, str)), None
    )
    identities = tuple(i.decode("utf-8", "replace") for i in context.peer_identities() or () if i)
    return authorization, identities


def _usage(u: pb.Usage) -> Usage:
    return Usage(
        input_tokens=u.input_tokens,
        cached_input_tokens=u.cached_input_tokens,
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
    )


def _commit_response(outcome: CommitOutcome) -> pb.CommitResponse:
    return pb.CommitResponse(
        reservation_id=outcome.hold.reservation_id,
        charged_nanos=outcome.hold.charged,
        overshoot_nanos=outcome.hold.overshoot,
        released_nanos=outcome.released,
        pools=[_pool(p) for p in outcome.pools],
        replayed=outcome.replayed,
    )


def _signals(s: pb.TaskSignals) -> Signals:
    needs = frozenset(
        cap
        for cap, wanted in (
            (Capability.TOOLS, s.needs_tools),
            (Capability.VISION, s.needs_vision),
            (Capability.JSON, s.needs_json),
        )
        if wanted
    )
    if s.latency not in _LATENCY:
        raise InvalidRequest(f"signals.latency {s.latency} is not a known LatencyClass value")
    return Signals(
        task_type=s.task_type, agent_mode=s.agent_mode, min_tier=s.min_tier, needs=needs, latency=_LATENCY[s.latency]
    )


def _decision(decision: RouteDecision) -> pb.Decision:
    return pb.Decision(
        chosen=_candidate(decision.chosen),
        fallbacks=[_candidate(p) for p in decision.fallbacks],
        reason=decision.reason,
        source=_SOURCE[decision.requirement.source],
        required_tier=decision.requirement.tier,
        difficulty=decision.difficulty,
        estimated_input_tokens=decision.chosen.input_tokens,
        estimated_output_tokens=decision.chosen.output_tokens,
        outcome=_OUTCOME[decision.outcome],
    )


def _timestamp(ms: int) -> Timestamp:
    return Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _candidate(priced: Priced) -> pb.Candidate:
    m = priced.model
    return pb.Candidate(
        model=m.name, provider=m.provider, tier=m.tier, estimated_cost_nanos=priced.cost, latency=_LATENCY_PB[m.latency]
    )


def _pool(snap: PoolSnapshot) -> pb.PoolState:
    spec = snap.spec
    resets = snap.resets_at_ms
    return pb.PoolState(
        pool_id=snap.pool_id,
        level=_LEVEL[snap.level],
        policy=_POLICY[spec.policy],
        cap_nanos=spec.cap,
        usable_cap_nanos=snap.usable_cap,
        spent_nanos=snap.spent,
        held_nanos=snap.held,
        remaining_nanos=snap.remaining,
        calls=snap.calls,
        max_calls=spec.max_calls,
        tokens=snap.tokens,
        max_tokens=spec.max_tokens,
        warning=snap.warning,
        resets_at=None if resets is None else _timestamp(resets),
    )


def _reservation(outcome: ReserveOutcome) -> pb.Reservation:
    hold = outcome.hold
    return pb.Reservation(
        reservation_id=hold.reservation_id,
        model=hold.model,
        held_nanos=hold.amount,
        expires_at=_timestamp(hold.expires_ms),
        pools=[_pool(p) for p in outcome.pools],
        replayed=outcome.replayed,
    )
