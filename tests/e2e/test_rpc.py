"""A real sidecar process over loopback gRPC: the lifecycle, and every bad input answered right."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.sidecar_process import SidecarProcess, audit, write_config
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

C = grpc.StatusCode


def _config(data: dict) -> None:  # type: ignore[type-arg]
    data["budgets"]["overrides"] = {
        "org:tiny": {"cap": "0.001", "policy": "hard"},
        "user:acme/soft": {"cap": "0.01", "policy": "soft", "priority_reserve": 0.0},
    }


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    tmp = tmp_path_factory.mktemp("rpc")
    with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", _config),
                        unix_socket=tmp / "tollgate.sock") as proc:
        yield proc


@pytest.fixture
async def stub(sidecar: SidecarProcess) -> AsyncIterator[pb_grpc.TollgateServiceStub]:
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        yield pb_grpc.TollgateServiceStub(channel)


def msgs(*texts: str) -> pb.Prompt:
    return pb.Prompt(messages=pb.Messages(items=[pb.Message(role="user", content=t) for t in texts]))


SCOPE = pb.Scope(org_id="acme", team_id="search", user_id="alice", session_id="run-1")


async def test_route_reserve_commit(stub: pb_grpc.TollgateServiceStub) -> None:
    routed = await stub.Route(pb.RouteRequest(
        scope=SCOPE, prompt=msgs("Extract every email address: bob@example.com, eve@example.org"),
        signals=pb.TaskSignals(task_type="extract"), max_output_tokens=200, reserve=True,
    ))
    d = routed.decision
    assert d.chosen.tier == "cheap" and d.source == pb.DECISION_SOURCE_RULE
    assert "task_type=extract" in d.reason
    assert d.estimated_output_tokens == 200  # bounded by max_output_tokens
    assert [f.estimated_cost_nanos for f in d.fallbacks] == sorted(f.estimated_cost_nanos for f in d.fallbacks)
    r = routed.reservation
    assert r.model == d.chosen.model
    # Hold = estimated cost × 1.30, rounded up.
    assert r.held_nanos == -(-d.chosen.estimated_cost_nanos * 13 // 10)
    assert {p.pool_id for p in r.pools} == {"session:acme/run-1", "user:acme/alice", "team:acme/search", "org:acme"}
    assert all(p.held_nanos >= r.held_nanos for p in r.pools)

    done = await stub.Commit(pb.CommitRequest(
        reservation_id=r.reservation_id, usage=pb.Usage(input_tokens=30, output_tokens=12)))
    assert 0 < done.charged_nanos < r.held_nanos
    assert done.released_nanos == r.held_nanos - done.charged_nanos
    assert done.overshoot_nanos == 0 and not done.replayed
    again = await stub.Commit(pb.CommitRequest(
        reservation_id=r.reservation_id, usage=pb.Usage(input_tokens=30, output_tokens=12)))
    assert again.replayed and again.charged_nanos == done.charged_nanos
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Commit(pb.CommitRequest(
            reservation_id=r.reservation_id, usage=pb.Usage(input_tokens=30, output_tokens=13)))
    assert err.value.code() == C.FAILED_PRECONDITION and "different usage" in (err.value.details() or "")


async def test_difficulty_routes_hard_requests_up(stub: pb_grpc.TollgateServiceStub) -> None:
    easy = await stub.Route(pb.RouteRequest(scope=SCOPE, prompt=msgs("What is the capital of France?")))
    hard = await stub.Route(pb.RouteRequest(scope=SCOPE, prompt=msgs(
        "Our payment service deadlocks under load. Design a new architecture for the ledger that avoids the "
        "race condition between concurrent refunds, and explain the trade-offs of optimistic vs pessimistic "
        "locking.\n```python\nasync def refund(tx):\n    async with lock:\n        await ledger.debit(tx)\n```\n"
        "Traceback (most recent call last):\n  File \"ledger.py\", line 42, in debit\nRuntimeError: deadlock"
    )))
    assert easy.decision.source == pb.DECISION_SOURCE_DIFFICULTY
    assert easy.decision.chosen.tier == "cheap"
    assert hard.decision.chosen.tier == "frontier", hard.decision.reason
    assert hard.decision.difficulty > easy.decision.difficulty


async def test_capabilities_and_context_window_constrain_the_choice(stub: pb_grpc.TollgateServiceStub) -> None:
    json_route = await stub.Route(pb.RouteRequest(
        scope=SCOPE, prompt=msgs("Return the user as JSON"),
        signals=pb.TaskSignals(task_type="format", needs_json=True)))
    models = [json_route.decision.chosen, *json_route.decision.fallbacks]
    assert all(m.model in ("gemini-2.0-flash", "gpt-4o-mini", "gpt-4o") for m in models)
    big = await stub.Route(pb.RouteRequest(
        scope=SCOPE, prompt=pb.Prompt(input_tokens=150_000), signals=pb.TaskSignals(task_type="extract")))
    # 150k tokens fit only the models with a 200k+ window.
    assert big.decision.chosen.model == "gemini-2.0-flash"
    assert all(f.model not in ("gpt-4o-mini", "gpt-4o") for f in big.decision.fallbacks)


async def test_budget_refusal_carries_structured_details(stub: pb_grpc.TollgateServiceStub) -> None:
    scope = pb.Scope(org_id="tiny")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Reserve(pb.ReserveRequest(scope=scope, model="claude-opus-4-1", prompt=pb.Prompt(input_tokens=5000)))
    e = err.value
    assert e.code() == C.RESOURCE_EXHAUSTED
    assert "org:tiny" in (e.details() or "")
    trailers = dict(e.trailing_metadata() or ())
    detail = pb.BudgetExceeded.FromString(trailers["tollgate-budget-exceeded-bin"])
    assert detail.pool_id == "org:tiny" and detail.policy == pb.POLICY_HARD and detail.limit == "cost"
    assert detail.remaining_nanos == 800_000  # $0.001 less the 20 % priority reserve
    assert detail.requested_nanos > detail.remaining_nanos
    assert detail.resets_at.seconds > 0
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    unpacked = pb.BudgetExceeded()
    assert status.details[0].Unpack(unpacked) and unpacked == detail
    pools = await stub.GetBudget(pb.GetBudgetRequest(scope=scope))
    assert pools.pools[0].held_nanos == 0 and pools.pools[0].spent_nanos == 0


async def test_soft_pool_downgrades_route_and_refuses_reserve(stub: pb_grpc.TollgateServiceStub) -> None:
    scope = pb.Scope(org_id="acme", user_id="soft")  # $0.01 soft
    prompt = pb.Prompt(input_tokens=2_000)
    routed = await stub.Route(pb.RouteRequest(
        scope=scope, prompt=prompt, signals=pb.TaskSignals(task_type="planning"), max_output_tokens=500, reserve=True))
    d = routed.decision
    assert d.required_tier == "frontier"
    assert d.outcome == pb.POLICY_OUTCOME_DOWNGRADED
    assert d.chosen.tier != "frontier" and "downgraded" in d.reason and "user:acme/soft" in d.reason
    assert routed.reservation.held_nanos <= 10_000_000
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Reserve(pb.ReserveRequest(scope=scope, model="claude-opus-4-1", prompt=prompt))
    assert err.value.code() == C.RESOURCE_EXHAUSTED
    await stub.Release(pb.ReleaseRequest(reservation_id=routed.reservation.reservation_id))


async def test_release_extend_and_ended_reservations(stub: pb_grpc.TollgateServiceStub) -> None:
    r = (await stub.Reserve(pb.ReserveRequest(
        scope=SCOPE, model="gpt-4o", prompt=pb.Prompt(input_tokens=100),
        reservation=pb.ReservationOptions(ttl_ms=60_000)))).reservation
    ext = await stub.Extend(pb.ExtendRequest(reservation_id=r.reservation_id, ttl_ms=600_000))
    assert ext.expires_at.seconds > r.expires_at.seconds
    rel = await stub.Release(pb.ReleaseRequest(reservation_id=r.reservation_id))
    assert rel.released_nanos == r.held_nanos and not rel.replayed
    assert (await stub.Release(pb.ReleaseRequest(reservation_id=r.reservation_id))).replayed
    for call in (
        stub.Commit(pb.CommitRequest(reservation_id=r.reservation_id, usage=pb.Usage(input_tokens=1))),
        stub.Extend(pb.ExtendRequest(reservation_id=r.reservation_id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == C.FAILED_PRECONDITION and "released" in (err.value.details() or "")


async def test_idempotency_key_makes_reserve_retry_safe(stub: pb_grpc.TollgateServiceStub) -> None:
    req = pb.RouteRequest(scope=SCOPE, prompt=pb.Prompt(input_tokens=500), signals=pb.TaskSignals(task_type="codegen"),
                          reserve=True, reservation=pb.ReservationOptions(idempotency_key="call-7f3a"))
    first = await stub.Route(req)
    second = await stub.Route(req)
    assert second.reservation.replayed
    assert second.reservation.reservation_id == first.reservation.reservation_id
    budget = await stub.GetBudget(pb.GetBudgetRequest(scope=pb.Scope(org_id="acme", session_id="run-1")))
    session = next(p for p in budget.pools if p.pool_id == "session:acme/run-1")
    assert session.held_nanos >= first.reservation.held_nanos
    await stub.Release(pb.ReleaseRequest(reservation_id=first.reservation.reservation_id))


BAD_REQUESTS = [
    ("no scope", "Route", pb.RouteRequest(prompt=pb.Prompt(input_tokens=1)), C.INVALID_ARGUMENT, "scope"),
    ("empty org", "Route", pb.RouteRequest(scope=pb.Scope(), prompt=pb.Prompt(input_tokens=1)),
     C.INVALID_ARGUMENT, "org_id is required"),
    ("id with colon", "Route", pb.RouteRequest(scope=pb.Scope(org_id="a:b"), prompt=pb.Prompt(input_tokens=1)),
     C.INVALID_ARGUMENT, "not a valid id"),
    ("id with brace", "GetBudget", pb.GetBudgetRequest(scope=pb.Scope(org_id="acme", user_id="{x}")),
     C.INVALID_ARGUMENT, "scope.user_id"),
    ("id too long", "Route", pb.RouteRequest(scope=pb.Scope(org_id="a" * 129), prompt=pb.Prompt(input_tokens=1)),
     C.INVALID_ARGUMENT, "1-128 characters"),
    ("no prompt", "Route", pb.RouteRequest(scope=SCOPE), C.INVALID_ARGUMENT, "prompt is required"),
    ("empty messages", "Route", pb.RouteRequest(scope=SCOPE, prompt=pb.Prompt(messages=pb.Messages())),
     C.INVALID_ARGUMENT, "empty"),
    ("bad role", "Route", pb.RouteRequest(scope=SCOPE, prompt=pb.Prompt(messages=pb.Messages(
        items=[pb.Message(role="wizard", content="hi")]))), C.INVALID_ARGUMENT, "role"),
    ("negative tokens", "Route", pb.RouteRequest(scope=SCOPE, prompt=pb.Prompt(input_tokens=-5)),
     C.INVALID_ARGUMENT, "input_tokens"),
    ("absurd tokens", "Route", pb.RouteRequest(scope=SCOPE, prompt=pb.Prompt(input_tokens=2**62)),
     C.INVALID_ARGUMENT, "input_tokens"),
    ("negative max output", "Route", pb.RouteRequest(scope=SCOPE, prompt=pb.Prompt(input_tokens=1),
                                                     max_output_tokens=-1), C.INVALID_ARGUMENT, "max_output_tokens"),
    ("unknown tier", "Route", pb.RouteRequest(scope=SCOPE, prompt=pb.Prompt(input_tokens=1),
                                              signals=pb.TaskSignals(min_tier="ultra")), C.INVALID_ARGUMENT, "tier"),
    ("too large for any model", "Route", pb.RouteRequest(scope=SCOPE, prompt=pb.Prompt(input_tokens=5_000_000)),
     C.INVALID_ARGUMENT, "context window"),
    ("unknown model", "Reserve", pb.ReserveRequest(scope=SCOPE, model="gpt-9", prompt=pb.Prompt(input_tokens=1)),
     C.INVALID_ARGUMENT, "unknown model"),
    ("ttl too long", "Reserve", pb.ReserveRequest(scope=SCOPE, model="gpt-4o", prompt=pb.Prompt(input_tokens=1),
                                                  reservation=pb.ReservationOptions(ttl_ms=10**12)),
     C.INVALID_ARGUMENT, "ttl_ms"),
    ("bad priority", "Route", pb.RouteRequest(scope=pb.Scope(org_id="acme", priority=99),  # type: ignore[arg-type]
                                              prompt=pb.Prompt(input_tokens=1)), C.INVALID_ARGUMENT, "priority"),
    ("bad idempotency key", "Reserve", pb.ReserveRequest(scope=SCOPE, model="gpt-4o", prompt=pb.Prompt(input_tokens=1),
                                                         reservation=pb.ReservationOptions(idempotency_key="a b")),
     C.INVALID_ARGUMENT, "idempotency_key"),
    ("malformed reservation id", "Commit", pb.CommitRequest(reservation_id="../../etc"),
     C.INVALID_ARGUMENT, "not a reservation id"),
    ("unknown reservation", "Commit", pb.CommitRequest(reservation_id="0" * 24 + ".acme"),
     C.NOT_FOUND, "no reservation"),
    ("unknown reservation release", "Release", pb.ReleaseRequest(reservation_id="1" * 24 + ".acme"),
     C.NOT_FOUND, "no reservation"),
]


@pytest.mark.parametrize(("method", "request_", "code", "text"), [b[1:] for b in BAD_REQUESTS],
                         ids=[b[0] for b in BAD_REQUESTS])
async def test_bad_input_gets_a_clear_status(
    stub: pb_grpc.TollgateServiceStub, method: str, request_: object, code: grpc.StatusCode, text: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, method)(request_)
    assert err.value.code() == code, err.value.details()
    assert text in (err.value.details() or ""), err.value.details()


async def test_bad_usage_is_refused_and_leaves_the_hold(stub: pb_grpc.TollgateServiceStub) -> None:
    r = (await stub.Reserve(pb.ReserveRequest(scope=SCOPE, model="gpt-4o-mini",
                                              prompt=pb.Prompt(input_tokens=10)))).reservation
    for usage, text in (
        (pb.Usage(input_tokens=-1), "usage.input_tokens"),
        (pb.Usage(input_tokens=10, cached_input_tokens=11), "cached_input_tokens"),
        (pb.Usage(output_tokens=2**40), "usage.output_tokens"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Commit(pb.CommitRequest(reservation_id=r.reservation_id, usage=usage))
        assert err.value.code() == C.INVALID_ARGUMENT and text in (err.value.details() or "")
    done = await stub.Commit(pb.CommitRequest(reservation_id=r.reservation_id, usage=pb.Usage(input_tokens=10)))
    assert not done.replayed


async def test_health_reflection_and_unix_socket(sidecar: SidecarProcess) -> None:
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="tollgate.v1.TollgateService"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = [r async for r in refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]))]
        names = {s.name for s in replies[0].list_services_response.service}
        assert {"tollgate.v1.TollgateService", "grpc.health.v1.Health"} <= names
    assert sidecar.unix_socket is not None
    assert oct(sidecar.unix_socket.stat().st_mode & 0o777) == "0o600"
    async with grpc.aio.insecure_channel(f"unix:{sidecar.unix_socket}") as channel:
        out = await pb_grpc.TollgateServiceStub(channel).GetBudget(pb.GetBudgetRequest(scope=SCOPE))
        assert len(out.pools) == 4


def test_ledger_audits_clean_after_everything(sidecar: SidecarProcess, tmp_path: Path) -> None:
    """Runs last in this module: no bad input above left the ledger inconsistent."""
    result = audit(sidecar.config, sidecar.db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
