"""The gRPC handlers: each translates its request, calls the application, translates the answer.

Every error answer comes from one table (``status.py``); nothing reaches a client as
UNKNOWN. Callers are authenticated before anything else, from the snapshot's
credentials, and authorized against the scope or the reservation id they name.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar, cast

import grpc

from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

from ..app import Tollgate
from ..app.admin import Admin
from ..auth import Authenticator, Caller
from ..errors import (
    BudgetExceeded,
    CallerGone,
    InvalidRequest,
    PermissionDenied,
    StoreUnavailable,
    TollgateError,
)
from ..ids import reservation_org
from ..ledger import ReserveOutcome
from ..scope import Scope
from ..telemetry import Telemetry
from . import convert
from .parse import MAX_COMMIT_BATCH, Malformed
from .status import Failure, failure, internal_failure

__all__ = ["AdminServicer", "TollgateServicer"]

log = logging.getLogger("tollgate.service")

# The authenticated caller of the RPC being handled; None when no callers are configured.
_CALLER: ContextVar[Caller | None] = ContextVar("tollgate_caller", default=None)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")

ANSWER_MARGIN_S = 0.005
"""A keyless hold answered with less than this left of its caller's deadline is undone instead.

gRPC sends the deadline as a timeout, so the sidecar's deadline is later than the caller's by the
request's time in flight, and the answer needs time to travel back: an answer sent in the last
instant would reach a caller who has stopped waiting, leaving a hold nobody can name.
"""
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def _translated(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Turn domain errors into their status; anything unexpected into INTERNAL, logged."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        token = None
        answer: Failure
        try:
            auth = self.gate.runtime.auth
            if auth.enabled:
                caller = auth.authenticate(*_credentials(context))
                auth.admit(caller)
                token = _CALLER.set(caller)
            if isinstance(request, Malformed):
                raise InvalidRequest(request.why)
            return await handler(self, request, context)
        except TollgateError as exc:
            if isinstance(exc, BudgetExceeded):
                self.telemetry.refused(exc.refusal)
            answer = failure(exc)
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            answer = internal_failure()
        finally:
            if token is not None:
                _CALLER.reset(token)
        # Answered by setting the status, not by ``context.abort``: gRPC keeps the exception
        # an abort raises on the call, whose frames then hold the rejected request in a
        # reference cycle until a full garbage collection (megabytes per hostile request).
        # With a non-OK code set, gRPC sends the status and discards the returned message.
        context.set_code(answer.code)
        context.set_details(answer.message)
        context.set_trailing_metadata(answer.trailers)
        return cast(Resp, None)

    return wrapper


class TollgateServicer(pb_grpc.TollgateServiceServicer):
    """The TollgateService handlers over one ``Tollgate``."""

    def __init__(self, gate: Tollgate, telemetry: Telemetry | None = None) -> None:
        self.gate = gate
        self.telemetry = telemetry or Telemetry(enable_tracing=False)
        self._background: set[asyncio.Task[None]] = set()

    def _scope(self, scope: pb.Scope | None) -> Scope:
        """The request's scope, once the caller is known to be allowed it."""
        out = convert.scope(scope, self.gate.config.limits.max_tags)
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

    async def _keyless(self, context: grpc.aio.ServicerContext, work: Awaitable[T],
                       holds: Callable[[T], tuple[ReserveOutcome | None, ...]]) -> T:
        """Run ``work``, whose fresh holds only its answer names, so that no answer lost on the way leaves one.

        A keyed call needs none of this: the caller's retry with its key finds its hold. A keyless hold
        is undone when the caller leaves mid-call (gRPC cancels the handler; the work still finishes, in
        the background) and when too little of the deadline is left for the answer to arrive. (A done
        callback on the call, to catch the rest, kept a drain waiting on SIGTERM now and then: not used.)
        """
        if self.gate.interruptible:
            task = asyncio.ensure_future(work)
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(lambda done: self._undo_later(holds, done))
                raise
        else:  # nothing in it yields, so nothing can interrupt it: spare the task and its loop turns
            result = await work
        fresh = [o.hold.reservation_id for o in holds(result) if o is not None and not o.replayed]
        if not fresh:
            return result
        remaining = context.time_remaining()
        if context.cancelled() or (remaining is not None and remaining < ANSWER_MARGIN_S):
            for reservation_id in fresh:
                await self.gate.release(reservation_id)
            raise CallerGone("the call's deadline passed before its answer; nothing is held, retry with an "
                             "idempotency key")
        return result

    def _undo_later(self, holds: Callable[[T], tuple[ReserveOutcome | None, ...]], done: asyncio.Future[T]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        self._release_later([o.hold.reservation_id for o in holds(done.result())
                             if o is not None and not o.replayed])

    def _release_later(self, reservation_ids: list[str]) -> None:
        if not reservation_ids:
            return
        task = asyncio.get_running_loop().create_task(self._release_all(reservation_ids))
        self._background.add(task)  # a task nobody references may be collected before it runs
        task.add_done_callback(self._background.discard)

    async def _release_all(self, reservation_ids: list[str]) -> None:
        for reservation_id in reservation_ids:
            try:
                await self.gate.release(reservation_id)
            except TollgateError as exc:  # ended meanwhile, or the store is down: its expiry resolves it
                log.warning("could not release %s, whose caller left before the answer: %s", reservation_id, exc)

    @_translated
    async def Route(self, request: pb.RouteRequest, context: grpc.aio.ServicerContext) -> pb.RouteResponse:
        scope = self._scope(request.scope if request.HasField("scope") else None)
        caller = _CALLER.get()
        work = self.gate.route(
            scope,
            convert.prompt(request.prompt, self.gate.config.limits.max_messages),
            convert.signals(request.signals),
            max_output_tokens=request.max_output_tokens,
            reserve=request.reserve,
            idempotency_key=request.reservation.idempotency_key,
            ttl_ms=request.reservation.ttl_ms,
            # A shadow call is held on the org's quality pool, which a caller granted only a team of
            # the org could not then commit or release: such callers are never sampled.
            accept_shadow=request.accept_shadow and (caller is None or caller.permits(scope.org)),
        )
        decision = (await work if request.reservation.idempotency_key else
                    await self._keyless(context, work, lambda d: (d.reservation, d.shadow_reservation)))
        response = pb.RouteResponse(decision=convert.decision(decision))
        if decision.reservation is not None:
            response.reservation.CopyFrom(convert.reservation(decision.reservation))
        if decision.shadow is not None:
            response.shadow.CopyFrom(pb.Shadow(model=decision.shadow.model, tier=decision.shadow.tier,
                                               purpose=decision.shadow.purpose))
            if decision.shadow_reservation is not None:
                response.shadow.reservation.CopyFrom(convert.reservation(decision.shadow_reservation))
        self.telemetry.routed(decision, request.max_output_tokens)
        return response

    @_translated
    async def Reserve(self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext) -> pb.ReserveResponse:
        work = self.gate.reserve(
            self._scope(request.scope if request.HasField("scope") else None),
            request.model,
            convert.prompt(request.prompt, self.gate.config.limits.max_messages),
            task_type=request.task_type,
            max_output_tokens=request.max_output_tokens,
            idempotency_key=request.reservation.idempotency_key,
            ttl_ms=request.reservation.ttl_ms,
        )
        result = (await work if request.reservation.idempotency_key else
                  await self._keyless(context, work, lambda r: (r.reservation,)))
        self.telemetry.reserved(result.reservation)
        return pb.ReserveResponse(
            reservation=convert.reservation(result.reservation),
            estimated_input_tokens=result.estimate.input_tokens,
            estimated_output_tokens=result.estimate.output_tokens,
            estimated_cost_nanos=result.estimate.cost,
        )

    @_translated
    async def Commit(self, request: pb.CommitRequest, context: grpc.aio.ServicerContext) -> pb.CommitResponse:
        return await self._commit(request)

    async def _commit(self, request: pb.CommitRequest) -> pb.CommitResponse:
        usage = convert.usage(request.usage)
        await self._authorize_reservation(request.reservation_id)
        outcome = await self.gate.commit(request.reservation_id, usage)
        self.telemetry.committed(outcome, self.gate.estimated_cost(outcome.hold), usage)
        return convert.commit_response(outcome)

    @_translated
    async def CommitBatch(self, request: pb.CommitBatchRequest,
                          context: grpc.aio.ServicerContext) -> pb.CommitBatchResponse:
        n = len(request.commits)
        if not 1 <= n <= MAX_COMMIT_BATCH:
            raise InvalidRequest(f"commits holds {n} commits; send 1 to {MAX_COMMIT_BATCH} per CommitBatch")
        response = pb.CommitBatchResponse()
        # Once the store fails a commit, the rest would each wait out its timeout in turn: they are
        # answered with that failure untried, so the batch takes one timeout and the sender retries.
        unavailable: Failure | None = None
        for item in request.commits:
            result = response.results.add()
            with self.telemetry.batch_item("Commit") as status:
                if unavailable is not None:
                    answer = unavailable
                else:
                    try:
                        result.response.CopyFrom(await self._commit(item))
                        continue
                    except TollgateError as exc:
                        answer = failure(exc)
                        if isinstance(exc, StoreUnavailable):
                            unavailable = answer
                    except Exception:
                        log.exception("unexpected error in a commit of CommitBatch")
                        answer = internal_failure()
                result.code, result.message, result.reason = answer.code.value[0], answer.message, answer.reason
                status.code, status.number = answer.code.name, answer.code.value[0]
        return response

    @_translated
    async def Escalate(self, request: pb.EscalateRequest, context: grpc.aio.ServicerContext) -> pb.EscalateResponse:
        scope = self._scope(request.scope if request.HasField("scope") else None)
        await self._authorize_reservation(request.reservation_id)
        escalation = await self.gate.escalate(
            request.reservation_id,
            scope,
            convert.prompt(request.prompt, self.gate.config.limits.max_messages),
            convert.signals(request.signals),
            max_output_tokens=request.max_output_tokens,
            model=request.model,
            reason=request.reason,
            usage=convert.usage(request.usage) if request.HasField("usage") else None,
            ttl_ms=request.reservation.ttl_ms,
        )
        previous = escalation.previous_commit
        estimated = self.gate.estimated_cost(previous.hold) if previous is not None else 0
        self.telemetry.escalated(escalation, estimated, request.max_output_tokens)
        assert escalation.decision.reservation is not None
        response = pb.EscalateResponse(
            decision=convert.decision(escalation.decision),
            reservation=convert.reservation(escalation.decision.reservation),
            previous_reservation_id=escalation.parent_id,
            attempt=escalation.attempt,
        )
        if previous is not None:
            response.previous_commit.CopyFrom(convert.commit_response(previous))
        return response

    @_translated
    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        await self._authorize_reservation(request.reservation_id)
        outcome = await self.gate.release(request.reservation_id)
        self.telemetry.released(outcome)
        return pb.ReleaseResponse(
            reservation_id=outcome.hold.reservation_id,
            released_nanos=outcome.hold.amount,
            pools=[convert.pool(p) for p in outcome.pools],
            replayed=outcome.replayed,
        )

    @_translated
    async def Extend(self, request: pb.ExtendRequest, context: grpc.aio.ServicerContext) -> pb.ExtendResponse:
        await self._authorize_reservation(request.reservation_id)
        hold = await self.gate.extend(request.reservation_id, request.ttl_ms)
        self.telemetry.extended(hold)
        return pb.ExtendResponse(reservation_id=hold.reservation_id, expires_at=convert.timestamp(hold.expires_ms))

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
                item.guard_since.CopyFrom(convert.timestamp(r.guard_since_ms))
            for tier, tally in sorted(r.tiers.items()):
                low, high = tally.interval(z)
                item.tiers.add(tier=tier, samples=tally.n, quality=tally.mean, quality_low=low, quality_high=high)
        return out

    @_translated
    async def GetBudget(
        self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBudgetResponse:
        pools = await self.gate.budget(self._scope(request.scope if request.HasField("scope") else None))
        return pb.GetBudgetResponse(pools=[convert.pool(p) for p in pools])


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
        return pb.SetPoolCapResponse(before=convert.pool(change.before), after=convert.pool(change.after))

    @_translated
    async def TopUp(self, request: pb.TopUpRequest, context: grpc.aio.ServicerContext) -> pb.TopUpResponse:
        change = await self.admin.top_up(self._admin(), request.pool_id, request.amount_nanos, request.reason)
        return pb.TopUpResponse(before=convert.pool(change.before), after=convert.pool(change.after))

    @_translated
    async def ResetWindow(self, request: pb.ResetWindowRequest,
                          context: grpc.aio.ServicerContext) -> pb.ResetWindowResponse:
        change = await self.admin.reset_window(self._admin(), request.pool_id, request.reason)
        return pb.ResetWindowResponse(before=convert.pool(change.before), after=convert.pool(change.after))

    @_translated
    async def EndReservation(self, request: pb.EndReservationRequest,
                             context: grpc.aio.ServicerContext) -> pb.EndReservationResponse:
        outcome = await self.admin.end_reservation(self._admin(), request.reservation_id, charge=request.charge,
                                                   reason=request.reason)
        return pb.EndReservationResponse(
            reservation_id=outcome.hold.reservation_id, state=str(outcome.hold.state),
            charged_nanos=outcome.hold.charged, pools=[convert.pool(p) for p in outcome.pools],
            replayed=outcome.replayed,
        )


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
