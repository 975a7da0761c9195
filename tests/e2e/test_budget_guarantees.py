"""The budget guarantees, each against a real sidecar process over loopback gRPC.

- 200 concurrent Reserves against a pool that admits exactly 37: exactly 37 pass.
- SIGKILL during a burst of reserve/commit traffic, restart on the same SQLite file:
  nothing acknowledged is lost or charged twice, and the audit balances.
- An agent workload with max_output_tokens=16000 but real outputs of a few hundred
  tokens against a $5 cap: at the first refusal at least 90 % of the cap is really
  spent, and overshoot stays under 1 % of the cap.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.sidecar_process import SidecarProcess, audit, write_config
from tollgate.config import load_config
from tollgate.money import apply_margin
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def hold_for(config_path: Path, model: str, input_tokens: int, output_tokens: int) -> int:
    """The hold the sidecar will compute, from the same config: the test does its own arithmetic."""
    config = load_config(config_path)
    price = config.catalog.models[model].price
    return apply_margin(price.cost(input_tokens=input_tokens, output_tokens=output_tokens), config.estimation.margin_bp)


async def test_200_concurrent_reserves_admit_exactly_37(tmp_path: Path) -> None:
    base = write_config(tmp_path / "base.yaml")
    amount = hold_for(base, "gpt-4o", 1_000, 100)
    cap_nanos = 37 * amount + amount // 2

    def edit(data: dict[str, Any]) -> None:
        data["budgets"]["templates"]["org"] = {"cap": f"{cap_nanos / 1e9:.9f}", "policy": "hard",
                                              "priority_reserve": 0.0}
        data["budgets"]["templates"]["request"] = None  # removed from the defaults the file is laid over

    config = write_config(tmp_path / "tollgate.yaml", edit)
    with SidecarProcess(tmp_path, config=config) as sidecar:
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            request = pb.ReserveRequest(scope=pb.Scope(org_id="race"), model="gpt-4o",
                                        prompt=pb.Prompt(input_tokens=1_000), max_output_tokens=100)
            results = await asyncio.gather(*(stub.Reserve(request) for _ in range(200)), return_exceptions=True)
            admitted = [r for r in results if isinstance(r, pb.ReserveResponse)]
            refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
            assert len(admitted) == 37
            assert len(refused) == 163 and {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert {r.reservation.held_nanos for r in admitted} == {amount}
            budget = await stub.GetBudget(pb.GetBudgetRequest(scope=pb.Scope(org_id="race")))
            assert budget.pools[0].held_nanos == 37 * amount <= cap_nanos
    assert audit(config, sidecar.db).returncode == 0


async def test_sigkill_mid_burst_loses_nothing_and_charges_nothing_twice(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        # Holds admitted just before the kill, whose answers never reached the client, are
        # ended by the TTL: keep it short so the test sees that happen.
        data["reservations"] = {"ttl": "3s", "sweep_interval": "100ms"}

    config = write_config(tmp_path / "tollgate.yaml", edit)
    sidecar = SidecarProcess(tmp_path, config=config).start()
    acked_reserves: dict[str, int] = {}
    acked_commits: dict[str, tuple[pb.Usage, int]] = {}
    scope = pb.Scope(org_id="crash", team_id="t", user_id="u1")
    stop = asyncio.Event()
    enough = asyncio.Event()

    async def worker(stub: pb_grpc.TollgateServiceStub, n: int) -> None:
        rng = random.Random(n)
        while not stop.is_set():
            try:
                r = await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini",
                                                         prompt=pb.Prompt(input_tokens=rng.randint(10, 2_000))))
                acked_reserves[r.reservation.reservation_id] = r.reservation.held_nanos
                if rng.random() < 0.8:
                    usage = pb.Usage(input_tokens=rng.randint(10, 2_000), output_tokens=rng.randint(1, 600))
                    c = await stub.Commit(pb.CommitRequest(reservation_id=r.reservation.reservation_id, usage=usage))
                    acked_commits[r.reservation.reservation_id] = (usage, c.charged_nanos)
                    if len(acked_commits) >= 300:
                        enough.set()
            except grpc.aio.AioRpcError:
                return  # the sidecar is gone

    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        stub = pb_grpc.TollgateServiceStub(channel)
        tasks = [asyncio.create_task(worker(stub, n)) for n in range(16)]
        await asyncio.wait_for(enough.wait(), 60)
        sidecar.kill()
        stop.set()
        await asyncio.gather(*tasks)
    assert len(acked_commits) >= 300

    restarted = SidecarProcess(tmp_path, config=config, db=sidecar.db).start()
    try:
        async with grpc.aio.insecure_channel(restarted.target) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            # Every acknowledged commit is there, with its charge, and a retry charges nothing.
            for rid, (usage, charged) in acked_commits.items():
                again = await stub.Commit(pb.CommitRequest(reservation_id=rid, usage=usage))
                assert again.replayed and again.charged_nanos == charged
            # Every acknowledged reservation survived: open ones can still be ended.
            for rid in acked_reserves.keys() - acked_commits.keys():
                try:
                    await stub.Release(pb.ReleaseRequest(reservation_id=rid))
                except grpc.aio.AioRpcError as exc:
                    # Committed before the kill, with the answer lost on the way back.
                    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
            budget = await stub.GetBudget(pb.GetBudgetRequest(scope=scope))
            org = next(p for p in budget.pools if p.pool_id == "org:crash")
            # At most one unacknowledged hold per client was in flight at the kill.
            assert org.held_nanos <= 16 * max(acked_reserves.values())
            assert org.spent_nanos >= sum(charged for _, charged in acked_commits.values())
            for _ in range(100):
                budget = await stub.GetBudget(pb.GetBudgetRequest(scope=scope))
                org = next(p for p in budget.pools if p.pool_id == "org:crash")
                if org.held_nanos == 0:
                    break
                await asyncio.sleep(0.1)
            assert org.held_nanos == 0, "holds orphaned by the kill must expire by TTL"
    finally:
        restarted.stop()
    result = audit(config, sidecar.db)
    assert result.returncode == 0, result.stdout


async def test_agent_workload_spends_the_cap_before_refusal(tmp_path: Path) -> None:
    cap = 5_000_000_000  # $5

    def edit(data: dict[str, Any]) -> None:
        data["budgets"]["templates"] = {"user": {"cap": "5.00", "policy": "hard", "priority_reserve": 0.0}}

    config = write_config(tmp_path / "tollgate.yaml", edit)
    rng = random.Random(2026)
    task_types = ["extract", "classify", "summarize", "codegen", "planning", "debugging", ""]
    weights = [20, 15, 15, 20, 10, 10, 10]
    with SidecarProcess(tmp_path, config=config) as sidecar:
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            scope = pb.Scope(org_id="agents", user_id="dev-1")
            history: list[pb.Message] = [pb.Message(role="system", content="You are a coding agent. " * 20)]
            refused = None
            calls = overshoot = 0
            while refused is None:
                task = rng.choices(task_types, weights)[0]
                text = f"step {calls}: " + "context line. " * rng.randint(5, 60)
                history.append(pb.Message(role="user", content=text))
                if len(history) > 24:  # the agent compacts its context now and then
                    history = history[:1] + history[-8:]
                try:
                    routed = await stub.Route(pb.RouteRequest(
                        scope=scope, prompt=pb.Prompt(messages=pb.Messages(items=history)),
                        signals=pb.TaskSignals(task_type=task), max_output_tokens=16_000, reserve=True))
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    refused = exc
                    break
                out_tokens = rng.randint(150, 450)
                done = await stub.Commit(pb.CommitRequest(
                    reservation_id=routed.reservation.reservation_id,
                    usage=pb.Usage(input_tokens=routed.decision.estimated_input_tokens, output_tokens=out_tokens)))
                overshoot += done.overshoot_nanos
                history.append(pb.Message(role="assistant", content="answer " * (out_tokens // 2)))
                calls += 1
            budget = await stub.GetBudget(pb.GetBudgetRequest(scope=scope))
    (user,) = [p for p in budget.pools if p.pool_id == "user:agents/dev-1"]
    spent_share = user.spent_nanos / cap
    print(f"\n{calls} calls; spent {spent_share:.1%} of the cap at the first refusal; "
          f"overshoot {overshoot / cap:.3%} of the cap")
    assert user.held_nanos == 0
    assert spent_share >= 0.90
    assert overshoot < cap // 100
    assert audit(config, sidecar.db).returncode == 0
