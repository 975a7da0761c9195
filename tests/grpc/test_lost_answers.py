"""Answers a caller never read: a keyless hold is undone, a keyed one waits for the retry with its key.

The store here is the embedded ledger with a pause after each hold is written, so the caller's
deadline passes while the sidecar still works on the call, at any instant one chooses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import yaml

from tests.support.catalog import suite_config_text
from tests.support.eventually import eventually_async
from tollgate.app import Tollgate
from tollgate.config import parse_config
from tollgate.grpc.handlers import TollgateServicer
from tollgate.grpc.parse import add_to_server
from tollgate.ledger import HoldRequest, LocalLedger, MemoryJournal, ReserveOutcome, spec_resolver
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

C = grpc.StatusCode
SCOPE = pb.Scope(org_id="acme", team_id="core", user_id="ann")
PROMPT = pb.Prompt(messages=pb.Messages(items=[pb.Message(role="user", content="Pull the dates out of: " * 20)]))


class PausingLedger(LocalLedger):
    """The embedded ledger, pausing ``pause_s`` after it wrote a hold and before it answers."""

    suspends = True
    pause_s = 0.0

    async def reserve(self, request: HoldRequest) -> ReserveOutcome:
        outcome = await super().reserve(request)
        await asyncio.sleep(self.pause_s)
        return outcome


@pytest.fixture
async def sidecar() -> AsyncIterator[tuple[pb_grpc.TollgateServiceStub, PausingLedger]]:
    data = yaml.safe_load(suite_config_text())
    config = parse_config(yaml.safe_dump(data))
    store = PausingLedger(MemoryJournal(), specs=spec_resolver(config.budgets))
    server = grpc.aio.server()
    add_to_server(TollgateServicer(Tollgate(config, store)), server, pb.DESCRIPTOR.services_by_name["TollgateService"])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.TollgateServiceStub(channel), store
    finally:
        await server.stop(None)


def _reserve(key: str = "") -> pb.ReserveRequest:
    return pb.ReserveRequest(scope=SCOPE, model="gpt-4o-mini", prompt=PROMPT,
                             max_output_tokens=100, reservation=pb.ReservationOptions(idempotency_key=key))


def _route(key: str = "") -> pb.RouteRequest:
    return pb.RouteRequest(scope=SCOPE, prompt=PROMPT, max_output_tokens=100, reserve=True,
                           signals=pb.TaskSignals(task_type="extract"),
                           reservation=pb.ReservationOptions(idempotency_key=key))


async def _held(stub: pb_grpc.TollgateServiceStub) -> int:
    budget = await stub.GetBudget(pb.GetBudgetRequest(scope=SCOPE))
    return next(p.held_nanos for p in budget.pools if p.pool_id == "org:acme")


async def _held_is(stub: pb_grpc.TollgateServiceStub, amount: int) -> bool:
    return await _held(stub) == amount


@pytest.mark.parametrize("method", ["Reserve", "Route"])
async def test_a_keyless_hold_whose_caller_left_mid_call_is_undone_once_the_call_finishes(
        sidecar: tuple[pb_grpc.TollgateServiceStub, PausingLedger], method: str) -> None:
    stub, store = sidecar
    store.pause_s = 0.3
    call = stub.Reserve(_reserve(), timeout=0.05) if method == "Reserve" else stub.Route(_route(), timeout=0.05)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await call
    assert gone.value.code() == C.DEADLINE_EXCEEDED
    store.pause_s = 0.0
    # The hold was written before the caller left: it is there until the paused call finishes.
    assert await _held(stub) > 0
    await eventually_async(lambda: _held_is(stub, 0), "the hold undone", timeout=5)


async def test_a_keyed_hold_whose_caller_left_stays_for_the_retry_with_its_key(
        sidecar: tuple[pb_grpc.TollgateServiceStub, PausingLedger]) -> None:
    stub, store = sidecar
    store.pause_s = 0.3
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.Reserve(_reserve("k-1"), timeout=0.05)
    assert gone.value.code() == C.DEADLINE_EXCEEDED
    await asyncio.sleep(0.4)
    store.pause_s = 0.0
    held = await _held(stub)
    retry = await stub.Reserve(_reserve("k-1"), timeout=5)
    assert retry.reservation.replayed
    assert held == retry.reservation.held_nanos == await _held(stub)


async def test_whatever_instant_the_caller_gives_up_the_ledger_holds_exactly_what_it_was_told(
        sidecar: tuple[pb_grpc.TollgateServiceStub, PausingLedger]) -> None:
    """Pauses swept across the deadline: an answer lost in the last instant must leave nothing behind."""
    stub, store = sidecar
    deadline_s = 0.02
    told = 0
    outcomes: set[grpc.StatusCode] = set()
    for step in range(60):
        store.pause_s = deadline_s * step / 40  # from no pause to half again the deadline
        try:
            answer = await stub.Reserve(_reserve(), timeout=deadline_s)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == C.DEADLINE_EXCEEDED, exc
            outcomes.add(exc.code())
        else:
            told += answer.reservation.held_nanos
            outcomes.add(C.OK)
    assert outcomes == {C.OK, C.DEADLINE_EXCEEDED}  # the sweep crossed the deadline
    store.pause_s = 0.0
    await eventually_async(lambda: _held_is(stub, told), f"held {told}, as the answers said", timeout=5)
