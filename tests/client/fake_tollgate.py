"""A small in-memory Tollgate servicer for the client tests, served by a real grpc.aio server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

NOW = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
RESETS_AT = datetime(2030, 2, 1, tzinfo=UTC)
HELD = 1_300_000


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


@dataclass
class FakeTollgate(pb_grpc.TollgateServiceServicer):
    """Answers like the sidecar, keeping reservations in memory and recording every request.

    ``failures`` makes a method abort with a given status; ``delay`` makes every
    method wait before answering.
    """

    requests: list[tuple[str, Message]] = field(default_factory=list)
    metadata: list[dict[str, str | bytes]] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    delay: float = 0.0
    open: dict[str, str] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

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
        if failure is not None:
            await context.abort(failure.code, failure.details, trailing_metadata=failure.trailing_metadata)
        try:
            return answer()
        except UnknownReservation as missing:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no reservation {missing}")
        except EndedReservation as ended:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"reservation {ended} already ended")
        raise AssertionError("unreachable: abort raises")

    def _hold(self, model: str, idempotency_key: str) -> pb.Reservation:
        reservation_id = f"res-{idempotency_key or next(self._ids)}"
        replayed = reservation_id in self.open
        self.open[reservation_id] = model
        return pb.Reservation(
            reservation_id=reservation_id,
            model=model,
            held_nanos=HELD,
            expires_at=ts(NOW + timedelta(seconds=30)),
            pools=[pool(), pool("org:acme")],
            replayed=replayed,
        )

    def _end(self, reservation_id: str) -> None:
        if reservation_id in self.ended:
            raise EndedReservation(reservation_id)
        if reservation_id not in self.open:
            raise UnknownReservation(reservation_id)
        del self.open[reservation_id]
        self.ended.add(reservation_id)

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
            self._end(request.reservation_id)
            return pb.CommitResponse(
                reservation_id=request.reservation_id,
                charged_nanos=900_000,
                overshoot_nanos=0,
                released_nanos=HELD - 900_000,
                pools=[pool(held=0)],
            )

        return await self._answer("Commit", request, context, answer)

    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        def answer() -> pb.ReleaseResponse:
            self._end(request.reservation_id)
            return pb.ReleaseResponse(reservation_id=request.reservation_id, released_nanos=HELD, pools=[pool(held=0)])

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


async def serve(fake: FakeTollgate, address: str) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server for ``fake`` on ``address``; returns it and the bound port."""
    server = grpc.aio.server()
    pb_grpc.add_TollgateServiceServicer_to_server(fake, server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
