"""A small in-memory Tollgate servicer for the client tests, served by a real grpc.aio server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

NOW = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
RESETS_AT = datetime(2030, 2, 1, tzinfo=UTC)
HELD = 1_300_000
ERROR_DOMAIN = "tollgate.dev"


def ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def candidate(model: str, provider: str, tier: str, cost: int) -> pb.Candidate:
    return pb.Candidate(model=model, provider=provider, tier=tier, estimated_cost_nanos=cost)


def pool(pool_id: str = "user:alice", *, held: int = HELD) -> pb.PoolState:
    return pb.PoolState(
        pool_id=pool_id,
        level=pb.POOL_LEVEL_USER,
        policy=pb.POLICY_HARD,
        cap_nanos=5_000_000_000,
        usable_cap_nanos=4_500_000_000,
        spent_nanos=1_000_000,
        held_nanos=held,
        remaining_nanos=4_500_000_000 - 1_000_000 - held,
        resets_at=ts(RESETS_AT),
        calls=3,
        max_calls=100,
        tokens=1234,
        warning=False,
    )


class UnknownReservation(Exception):
    """The fake has never issued this reservation id."""


class EndedReservation(Exception):
    """The reservation was already committed or released."""


@dataclass
class Failure:
    """How the fake refuses the next calls of one method."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


def status_details(code: grpc.StatusCode, details: str, *messages: Message) -> tuple[str, bytes]:
    """The standard ``grpc-status-details-bin`` trailer: a ``google.rpc.Status`` with ``messages`` as its details."""
    anys = []
    for message in messages:
        packed = any_pb2.Any()
        packed.Pack(message)
        anys.append(packed)
    status = status_pb2.Status(code=code.value[0], message=details, details=anys)
    return ("grpc-status-details-bin", status.SerializeToString())


def error_info(reason: str, domain: str = ERROR_DOMAIN) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=domain)


def refused(code: grpc.StatusCode, details: str, reason: str, *before: Message,
            trailers: tuple[tuple[str, str | bytes], ...] = ()) -> Failure:
    """A refusal as the sidecar sends it: ``before`` (a BudgetExceeded), then the ErrorInfo with ``reason``."""
    return Failure(code, details, (status_details(code, details, *before, error_info(reason)), *trailers))


@dataclass
class Hang:
    """The call takes effect, but its answer never arrives: the fake waits until the client gives up."""

    seconds: float = 30.0


@dataclass
class FakeTollgate(pb_grpc.TollgateServiceServicer):
    """Answers like the sidecar, keeping reservations in memory and recording every request.

    ``failures`` makes a method abort with a given status on every call;
    ``script`` gives a method's next calls, one entry each, a ``Failure`` (refused
    before anything happened) or a ``Hang`` (done, but never answered), after
    which it answers normally; ``delay`` makes every method wait before answering.
    Like the sidecar, a repeated reserve with the same idempotency key returns the
    first reservation with ``replayed`` set, a repeated commit or release of
    a reservation ended the same way answers again with ``replayed`` set, and the
    fake's own refusals carry the sidecar's ``ErrorInfo`` reason (``refused``
    builds scripted ones that do).
    """

    requests: list[tuple[str, Message]] = field(default_factory=list)
    metadata: list[dict[str, str | bytes]] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    script: dict[str, list[Failure | Hang]] = field(default_factory=dict)
    delay: float = 0.0
    open: dict[str, str] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)
    """Ended reservations: how each ended, ``"Commit"`` or ``"Release"``."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def keys(self, method: str) -> list[str]:
        """The idempotency key each ``method`` request carried, in order."""
        return [request.reservation.idempotency_key for request in self.calls(method)]  # type: ignore[attr-defined]

    def calls(self, method: str) -> list[Message]:
        return [request for name, request in self.requests if name == method]

    def methods(self) -> list[str]:
        return [name for name, _ in self.requests]

    async def _answer(
        self, method: str, request: Message, context: grpc.aio.ServicerContext, answer: Callable[[], Message]
    ) -> Message:
        self.requests.append((method, request))
        self.metadata.append(dict(context.invocation_metadata() or ()))
        if self.delay:
            await asyncio.sleep(self.delay)
        failure = self.failures.get(method)
        scripted = self.script[method].pop(0) if self.script.get(method) else None
        if isinstance(scripted, Failure):
            failure = scripted
        try:
            if failure is None:
                response = answer()
                if isinstance(scripted, Hang):
                    await asyncio.sleep(scripted.seconds)  # cancelled when the client's deadline passes
                return response
        except UnknownReservation as missing:
            failure = refused(grpc.StatusCode.NOT_FOUND, f"no reservation {missing}", "RESERVATION_NOT_FOUND")
        except EndedReservation as ended:
            failure = refused(grpc.StatusCode.FAILED_PRECONDITION, f"reservation {ended} already ended",
                              "RESERVATION_ENDED")
        await context.abort(failure.code, failure.details, trailing_metadata=failure.trailing_metadata)
        raise AssertionError("unreachable: abort raises")

    def _hold(self, model: str, idempotency_key: str) -> pb.Reservation:
        reservation_id = f"res-{idempotency_key or next(self._ids)}"
        replayed = reservation_id in self.open or reservation_id in self.ended
        if not replayed:
            self.open[reservation_id] = model
        return pb.Reservation(
            reservation_id=reservation_id,
            model=model,
            held_nanos=HELD,
            expires_at=ts(NOW + timedelta(seconds=30)),
            pools=[pool(), pool("org:acme")],
            replayed=replayed,
        )

    def _end(self, reservation_id: str, how: str) -> bool:
        """End the reservation by ``how``; True when it already ended that way (a replay)."""
        if reservation_id in self.ended:
            if self.ended[reservation_id] == how:
                return True
            raise EndedReservation(reservation_id)
        if reservation_id not in self.open:
            raise UnknownReservation(reservation_id)
        del self.open[reservation_id]
        self.ended[reservation_id] = how
        return False

    async def Route(self, request: pb.RouteRequest, context: grpc.aio.ServicerContext) -> pb.RouteResponse:
        def answer() -> pb.RouteResponse:
            decision = pb.Decision(
                chosen=candidate("gpt-4o-mini", "openai", "cheap", 1_000_000),
                fallbacks=[
                    candidate("claude-haiku", "anthropic", "cheap", 1_200_000),
                    candidate("gpt-4o", "openai", "strong", 9_000_000),
                ],
                reason="rule task_type=extract -> cheap",
                source=pb.DECISION_SOURCE_RULE,
                required_tier="cheap",
                difficulty=0.25,
                estimated_input_tokens=120,
                estimated_output_tokens=300,
                outcome=pb.POLICY_OUTCOME_ADMITTED,
            )
            response = pb.RouteResponse(decision=decision)
            if request.reserve:
                response.reservation.CopyFrom(self._hold("gpt-4o-mini", request.reservation.idempotency_key))
            return response

        return await self._answer("Route", request, context, answer)

    async def Reserve(self, request: pb.ReserveRequest, context: grpc.aio.ServicerContext) -> pb.ReserveResponse:
        def answer() -> pb.ReserveResponse:
            return pb.ReserveResponse(
                reservation=self._hold(request.model, request.reservation.idempotency_key),
                estimated_input_tokens=120,
                estimated_output_tokens=300,
                estimated_cost_nanos=1_000_000,
            )

        return await self._answer("Reserve", request, context, answer)

    async def Commit(self, request: pb.CommitRequest, context: grpc.aio.ServicerContext) -> pb.CommitResponse:
        def answer() -> pb.CommitResponse:
            replayed = self._end(request.reservation_id, "Commit")
            return pb.CommitResponse(
                reservation_id=request.reservation_id,
                charged_nanos=900_000,
                overshoot_nanos=0,
                released_nanos=HELD - 900_000,
                pools=[pool(held=0)],
                replayed=replayed,
            )

        return await self._answer("Commit", request, context, answer)

    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        def answer() -> pb.ReleaseResponse:
            replayed = self._end(request.reservation_id, "Release")
            return pb.ReleaseResponse(reservation_id=request.reservation_id, released_nanos=HELD,
                                      pools=[pool(held=0)], replayed=replayed)

        return await self._answer("Release", request, context, answer)

    async def Extend(self, request: pb.ExtendRequest, context: grpc.aio.ServicerContext) -> pb.ExtendResponse:
        def answer() -> pb.ExtendResponse:
            if request.reservation_id not in self.open:
                raise UnknownReservation(request.reservation_id)
            ttl = timedelta(milliseconds=request.ttl_ms or 30_000)
            return pb.ExtendResponse(reservation_id=request.reservation_id, expires_at=ts(NOW + ttl))

        return await self._answer("Extend", request, context, answer)

    async def GetBudget(self, request: pb.GetBudgetRequest, context: grpc.aio.ServicerContext) -> pb.GetBudgetResponse:
        def answer() -> pb.GetBudgetResponse:
            org = pb.PoolState(pool_id="org:acme", level=pb.POOL_LEVEL_ORG, policy=pb.POLICY_SOFT, warning=True)
            return pb.GetBudgetResponse(pools=[pool(), org])

        return await self._answer("GetBudget", request, context, answer)

    async def Feedback(self, request: pb.FeedbackRequest, context: grpc.aio.ServicerContext) -> pb.FeedbackResponse:
        def answer() -> pb.FeedbackResponse:
            if request.reservation_id not in self.open and request.reservation_id not in self.ended:
                raise UnknownReservation(request.reservation_id)
            return pb.FeedbackResponse(task_type="extract", tier="cheap")

        return await self._answer("Feedback", request, context, answer)

    async def GetQuality(self, request: pb.GetQualityRequest,
                         context: grpc.aio.ServicerContext) -> pb.GetQualityResponse:
        return await self._answer("GetQuality", request, context, pb.GetQualityResponse)

    async def Escalate(self, request: pb.EscalateRequest, context: grpc.aio.ServicerContext) -> pb.EscalateResponse:
        def answer() -> pb.EscalateResponse:
            # As the sidecar does: the next attempt's id derives from the failed one's, so a retry replays.
            if request.reservation_id not in self.open and request.reservation_id not in self.ended:
                raise UnknownReservation(request.reservation_id)
            previous = None
            if request.HasField("usage"):
                replayed = self._end(request.reservation_id, "Commit")
                previous = pb.CommitResponse(reservation_id=request.reservation_id, charged_nanos=900_000,
                                             replayed=replayed)
            held = self._hold("gpt-4o", f"escalated-{request.reservation_id}")
            return pb.EscalateResponse(
                decision=pb.Decision(chosen=candidate("gpt-4o", "openai", "strong", 9_000_000),
                                     reason=f"escalation: {request.reason}", source=pb.DECISION_SOURCE_ESCALATION),
                reservation=held,
                previous_reservation_id=request.reservation_id,
                previous_commit=previous,
                attempt=2,
            )

        return await self._answer("Escalate", request, context, answer)


async def serve(fake: FakeTollgate, address: str) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server for ``fake`` on ``address``; returns it and the bound port."""
    server = grpc.aio.server()
    pb_grpc.add_TollgateServiceServicer_to_server(fake, server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
