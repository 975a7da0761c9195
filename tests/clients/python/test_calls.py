"""AsyncClient against a real grpc.aio server: what it sends and what it returns."""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from tollgate_client import (
    AsyncClient,
    Candidate,
    CommitResult,
    Decision,
    ExtendResult,
    PoolState,
    ReleaseResult,
    Reservation,
    ReserveResult,
    Scope,
    Usage,
)
from tollgate_client.v1 import tollgate_pb2 as pb

from .fake_tollgate import HELD, NOW, RESETS_AT, FakeTollgate, serve

SCOPE = Scope(org="acme", team="search", user="alice", session="run-7", tags={"feature": "summary"}, priority="high")


async def test_route_sends_scope_messages_and_signals(client: AsyncClient, fake: FakeTollgate) -> None:
    await client.route(
        SCOPE,
        messages=[
            {"role": "system", "content": "Be brief."},
            ("user", "Summarise this."),
            {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "image_url"}, "part two"]},
            {"role": "assistant", "content": None},
        ],
        task_type="extract",
        agent_mode="ask",
        min_tier="medium",
        needs_tools=True,
        needs_vision=True,
        needs_json=True,
        max_output_tokens=512,
    )
    [request] = fake.calls("Route")
    assert isinstance(request, pb.RouteRequest)
    assert request.scope == pb.Scope(
        org_id="acme",
        team_id="search",
        user_id="alice",
        session_id="run-7",
        tags={"feature": "summary"},
        priority=pb.PRIORITY_HIGH,
    )
    assert request.prompt.WhichOneof("input") == "messages"
    assert [(m.role, m.content) for m in request.prompt.messages.items] == [
        ("system", "Be brief."),
        ("user", "Summarise this."),
        ("user", "part one\npart two"),
        ("assistant", ""),
    ]
    assert request.signals == pb.TaskSignals(
        task_type="extract", agent_mode="ask", min_tier="medium", needs_tools=True, needs_vision=True, needs_json=True
    )
    assert request.max_output_tokens == 512
    assert not request.reserve
    assert not request.HasField("reservation")


async def test_route_converts_the_decision(client: AsyncClient) -> None:
    decision = await client.route(Scope(org="acme"), input_tokens=120)
    assert decision == Decision(
        model="gpt-4o-mini",
        provider="openai",
        tier="cheap",
        reason="rule task_type=extract -> cheap",
        source="rule",
        required_tier="cheap",
        difficulty=0.25,
        estimated_input_tokens=120,
        estimated_output_tokens=300,
        estimated_cost_nanos=1_000_000,
        outcome="admitted",
        fallbacks=(
            Candidate("claude-haiku", "anthropic", "cheap", 1_200_000),
            Candidate("gpt-4o", "openai", "strong", 9_000_000),
        ),
        reservation=None,
    )
    assert decision.candidate == Candidate("gpt-4o-mini", "openai", "cheap", 1_000_000)


async def test_route_with_reserve_returns_the_reservation(client: AsyncClient, fake: FakeTollgate) -> None:
    decision = await client.route(
        Scope(org="acme", user="alice"), input_tokens=0, reserve=True, idempotency_key="k1", ttl_ms=45_000
    )
    [request] = fake.calls("Route")
    assert request.prompt.WhichOneof("input") == "input_tokens"
    assert request.prompt.input_tokens == 0
    assert request.scope.priority == pb.PRIORITY_NORMAL
    assert request.reserve
    assert request.reservation == pb.ReservationOptions(idempotency_key="k1", ttl_ms=45_000)

    reservation = decision.reservation
    assert isinstance(reservation, Reservation)
    assert reservation.reservation_id == "res-k1"
    assert reservation.model == "gpt-4o-mini"
    assert reservation.held_nanos == HELD
    assert reservation.expires_at == NOW + timedelta(seconds=30)
    assert reservation.expires_at.tzinfo is UTC
    assert not reservation.replayed
    assert reservation.pools[0] == PoolState(
        pool_id="user:alice",
        level="user",
        policy="hard",
        cap_nanos=5_000_000_000,
        usable_cap_nanos=4_500_000_000,
        spent_nanos=1_000_000,
        held_nanos=HELD,
        remaining_nanos=4_500_000_000 - 1_000_000 - HELD,
        resets_at=RESETS_AT,
        calls=3,
        max_calls=100,
        tokens=1234,
        max_tokens=0,
        warning=False,
    )
    assert [p.pool_id for p in reservation.pools] == ["user:alice", "org:acme"]

    again = await client.route(Scope(org="acme", user="alice"), input_tokens=0, reserve=True, idempotency_key="k1")
    assert again.reservation is not None and again.reservation.replayed


async def test_reserve_commit_release_extend_and_get_budget(client: AsyncClient, fake: FakeTollgate) -> None:
    reserved = await client.reserve(
        SCOPE, "gpt-4o", messages=[("user", "hi")], task_type="chat", max_output_tokens=64, ttl_ms=10_000
    )
    [request] = fake.calls("Reserve")
    assert request.model == "gpt-4o"
    assert request.task_type == "chat"
    assert request.max_output_tokens == 64
    # Retries are on by default, so the client gave the reservation a key of its own.
    key = request.reservation.idempotency_key
    assert re.fullmatch(r"[0-9a-f]{32}", key), key
    assert request.reservation == pb.ReservationOptions(idempotency_key=key, ttl_ms=10_000)
    assert reserved.reservation.idempotency_key == key
    assert [(m.role, m.content) for m in request.prompt.messages.items] == [("user", "hi")]
    assert isinstance(reserved, ReserveResult)
    assert reserved.reservation.model == "gpt-4o"
    assert (reserved.estimated_input_tokens, reserved.estimated_output_tokens) == (120, 300)
    assert reserved.estimated_cost_nanos == 1_000_000
    reservation_id = reserved.reservation.reservation_id

    extended = await client.extend(reservation_id, ttl_ms=120_000)
    assert extended == ExtendResult(reservation_id, NOW + timedelta(minutes=2))
    assert fake.calls("Extend")[0] == pb.ExtendRequest(reservation_id=reservation_id, ttl_ms=120_000)

    usage = Usage(1000, cached_input_tokens=200, output_tokens=50, reasoning_tokens=7)
    committed = await client.commit(reservation_id, usage)
    assert fake.calls("Commit")[0] == pb.CommitRequest(
        reservation_id=reservation_id,
        usage=pb.Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=50, reasoning_tokens=7),
    )
    assert isinstance(committed, CommitResult)
    assert committed.charged_nanos == 900_000
    assert committed.overshoot_nanos == 0
    assert committed.released_nanos == HELD - 900_000
    assert committed.pools[0].held_nanos == 0
    assert not committed.replayed

    other = await client.reserve(SCOPE, "gpt-4o", input_tokens=10)
    released = await client.release(other.reservation.reservation_id)
    assert released == ReleaseResult(other.reservation.reservation_id, HELD, released.pools, False)
    assert fake.calls("Release")[0] == pb.ReleaseRequest(reservation_id=other.reservation.reservation_id)

    pools = await client.get_budget(Scope(org="acme", user="alice"))
    assert fake.calls("GetBudget")[0].scope.user_id == "alice"
    assert [(p.pool_id, p.level, p.policy, p.warning) for p in pools] == [
        ("user:alice", "user", "hard", False),
        ("org:acme", "org", "soft", True),
    ]
    assert pools[1].resets_at is None


async def test_metadata_is_sent_with_every_call(target: str, fake: FakeTollgate) -> None:
    async with AsyncClient(target, metadata=[("authorization", "Bearer t0k3n")]) as client:
        await client.get_budget(Scope(org="acme"))
        await client.route(Scope(org="acme"), input_tokens=5)
    assert [m.get("authorization") for m in fake.metadata] == ["Bearer t0k3n", "Bearer t0k3n"]


async def test_unix_socket_target(fake: FakeTollgate) -> None:
    # A short directory keeps the socket path under the 107-byte limit of sun_path.
    with tempfile.TemporaryDirectory(prefix="tg-") as directory:
        target = f"unix://{Path(directory) / 'tollgate.sock'}"
        server, _ = await serve(fake, target)
        try:
            async with AsyncClient(target) as client:
                decision = await client.route(Scope(org="acme"), input_tokens=42)
        finally:
            await server.stop(None)
    assert decision.model == "gpt-4o-mini"
    assert fake.calls("Route")[0].prompt.input_tokens == 42


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ValueError),
        ({"messages": [("user", "hi")], "input_tokens": 3}, ValueError),
        ({"input_tokens": -1}, ValueError),
        ({"input_tokens": 1.5}, TypeError),
        ({"messages": "hello"}, TypeError),
        ({"messages": {"role": "user", "content": "hi"}}, TypeError),
        ({"messages": [("user",)]}, TypeError),
        ({"messages": [{"content": "no role"}]}, ValueError),
        ({"messages": [("user", 42)]}, TypeError),
        ({"input_tokens": 1, "max_output_tokens": -5}, ValueError),
        ({"input_tokens": 1, "idempotency_key": "k"}, ValueError),
        ({"input_tokens": 1, "ttl_ms": 1000}, ValueError),
    ],
)
async def test_route_rejects_bad_arguments_before_sending(
    client: AsyncClient, fake: FakeTollgate, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await client.route(Scope(org="acme"), **kwargs)  # type: ignore[arg-type]
    assert fake.requests == []


async def test_other_calls_reject_bad_arguments_before_sending(client: AsyncClient, fake: FakeTollgate) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        await client.reserve(Scope(org="acme"), "gpt-4o")
    with pytest.raises(ValueError, match="model"):
        await client.reserve(Scope(org="acme"), "", input_tokens=1)
    with pytest.raises(ValueError, match="reservation id"):
        await client.commit("", Usage(1))
    with pytest.raises(TypeError, match="Usage"):
        await client.commit("res-1", {"input_tokens": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl_ms"):
        await client.extend("res-1", ttl_ms=-1)
    with pytest.raises(TypeError, match="Scope"):
        await client.get_budget("acme")  # type: ignore[arg-type]
    assert fake.requests == []


async def test_closed_client_refuses_calls(target: str) -> None:
    client = AsyncClient(target)
    await client.get_budget(Scope(org="acme"))
    await client.close()
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_budget(Scope(org="acme"))


def test_client_can_be_created_outside_an_event_loop() -> None:
    client = AsyncClient("unix:///run/tollgate.sock", timeout=0.5)
    assert client.target == "unix:///run/tollgate.sock"
    assert client.timeout == 0.5
    assert repr(client) == (
        "AsyncClient('unix:///run/tollgate.sock', timeout=0.5, "
        "retry=Retry(attempts=4, budget_s=5.0, backoff_s=0.05, max_backoff_s=1.0))"
    )
    with pytest.raises(ValueError, match="timeout"):
        AsyncClient(timeout=0)
    with pytest.raises(ValueError, match="target"):
        AsyncClient("")
