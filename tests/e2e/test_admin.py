"""Admin operations over real gRPC: caps, top-ups, window resets and stuck reservations, audited."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.sidecar_process import ROOT, SidecarProcess, audit, redis_store, write_config
from tollgate.config import PoolSpec
from tollgate.ledger.overrides import PoolOverride
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

C = grpc.StatusCode
OPS, APP = "tok-ops-admin-1", "tok-app-2"
ADMIN = (("authorization", f"Bearer {OPS}"),)
USER = (("authorization", f"Bearer {APP}"),)


def configure(tmp: Path, store: dict[str, Any] | None = None) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["auth"] = {"audit_log": "audit.jsonl", "callers": [
            {"name": "ops", "token_sha256": hashlib.sha256(OPS.encode()).hexdigest(), "grants": ["*"],
             "admin": True},
            {"name": "app", "token_sha256": hashlib.sha256(APP.encode()).hexdigest(), "grants": ["acme"]},
        ]}
        data["budgets"]["overrides"]["org:acme"] = {"cap": "1.00", "policy": "hard", "priority_reserve": 0}
        if store is not None:
            data["store"] = store

    return write_config(tmp / "tollgate.yaml", edit)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SidecarProcess]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        store = redis_store(url)
        with SidecarProcess(tmp_path, config=configure(tmp_path, store), store=None) as proc:
            yield proc
    else:
        with SidecarProcess(tmp_path, config=configure(tmp_path)) as proc:
            yield proc


def org(stub: pb_grpc.TollgateServiceStub) -> pb.PoolState:
    pools = stub.GetBudget(pb.GetBudgetRequest(scope=pb.Scope(org_id="acme")), metadata=USER, timeout=5).pools
    return next(p for p in pools if p.pool_id == "org:acme")


def route(stub: pb_grpc.TollgateServiceStub, tokens: int = 2_000, task: str = "planning") -> pb.RouteResponse:
    return stub.Route(pb.RouteRequest(scope=pb.Scope(org_id="acme"), prompt=pb.Prompt(input_tokens=tokens),
                                      signals=pb.TaskSignals(task_type=task), max_output_tokens=500,
                                      reserve=True), metadata=USER, timeout=5)


def test_caps_top_ups_and_resets_move_limits_never_the_ledger(sidecar: SidecarProcess) -> None:
    with grpc.insecure_channel(sidecar.target) as channel:
        stub, admin = pb_grpc.TollgateServiceStub(channel), pb_grpc.AdminServiceStub(channel)
        # Only admins.
        with pytest.raises(grpc.RpcError) as err:
            admin.SetPoolCap(pb.SetPoolCapRequest(pool_id="org:acme", cap_nanos=1), metadata=USER, timeout=5)
        assert err.value.code() == C.PERMISSION_DENIED and "admin" in (err.value.details() or "")
        with pytest.raises(grpc.RpcError) as err:
            admin.SetPoolCap(pb.SetPoolCapRequest(pool_id="org:acme", cap_nanos=1), timeout=5)
        assert err.value.code() == C.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            admin.TopUp(pb.TopUpRequest(pool_id="org:{acme}", amount_nanos=1), metadata=ADMIN, timeout=5)
        assert err.value.code() == C.INVALID_ARGUMENT and "not a pool id" in (err.value.details() or "")

        # Spend some, then cut the cap below what a frontier call needs.
        first = route(stub)
        stub.Commit(pb.CommitRequest(reservation_id=first.reservation.reservation_id,
                                     usage=pb.Usage(input_tokens=2_000, output_tokens=400)), metadata=USER, timeout=5)
        spent = org(stub).spent_nanos
        hold = first.reservation.held_nanos
        cut = admin.SetPoolCap(pb.SetPoolCapRequest(pool_id="org:acme", cap_nanos=spent + hold // 2,
                                                     reason="incident 42"), metadata=ADMIN, timeout=5)
        assert cut.before.cap_nanos == 1_000_000_000 and cut.after.cap_nanos == spent + hold // 2
        assert cut.after.spent_nanos == cut.before.spent_nanos == spent  # the ledger is untouched
        with pytest.raises(grpc.RpcError) as err:
            route(stub)
        assert err.value.code() == C.RESOURCE_EXHAUSTED

        # A top-up gives room in this window; a reset gives back what the window used.
        up = admin.TopUp(pb.TopUpRequest(pool_id="org:acme", amount_nanos=3 * hold), metadata=ADMIN, timeout=5)
        assert up.after.remaining_nanos == up.before.remaining_nanos + 3 * hold
        second = route(stub)
        stub.Release(pb.ReleaseRequest(reservation_id=second.reservation.reservation_id), metadata=USER, timeout=5)
        reset = admin.ResetWindow(pb.ResetWindowRequest(pool_id="org:acme", reason="new quarter"), metadata=ADMIN,
                                  timeout=5)
        # Room for all the window used (the top-up is superseded); what was spent stays recorded.
        assert reset.after.spent_nanos == spent and reset.after.remaining_nanos == cut.after.cap_nanos
        assert org(stub).remaining_nanos == cut.after.cap_nanos

        # A stuck reservation of any tenant, ended by the operator: released, or charged its hold.
        stuck = route(stub, 100, "extract")
        other = route(stub, 100, "extract")
        ended = admin.EndReservation(pb.EndReservationRequest(reservation_id=stuck.reservation.reservation_id,
                                                              reason="client crashed"), metadata=ADMIN, timeout=5)
        assert ended.state == "released" and ended.charged_nanos == 0
        charged = admin.EndReservation(pb.EndReservationRequest(reservation_id=other.reservation.reservation_id,
                                                                charge=True), metadata=ADMIN, timeout=5)
        assert charged.state == "committed" and charged.charged_nanos == other.reservation.held_nanos
        again = admin.EndReservation(pb.EndReservationRequest(reservation_id=other.reservation.reservation_id,
                                                              charge=True), metadata=ADMIN, timeout=5)
        assert again.replayed
    # Every action is in the audit log: who, what, why, before and after.
    entries = [json.loads(line) for line in (sidecar.tmp / "audit.jsonl").read_text().splitlines()]
    assert [e["op"] for e in entries] == ["set_cap", "top_up", "reset_window", "end_reservation",
                                          "end_reservation", "end_reservation"]
    assert entries[0]["by"] == "ops" and entries[0]["reason"] == "incident 42"
    assert entries[0]["before"]["cap_nanos"] == 1_000_000_000 and entries[0]["after"]["cap_nanos"] == spent + hold // 2
    assert entries[3]["after"]["state"] == "released"
    result = audit(sidecar.config, sidecar.db if sidecar.store == "sqlite" else None)
    assert result.returncode == 0, result.stdout


def test_overrides_survive_a_restart_and_the_cli_drives_them(tmp_path: Path) -> None:
    config = configure(tmp_path)
    env = {"PYTHONPATH": str(ROOT / "sidecar"), "TOLLGATE_TOKEN": OPS}
    with SidecarProcess(tmp_path, config=config) as sidecar:
        out = subprocess.run([sys.executable, "-m", "tollgate.cli", "admin", "set-cap", "org:acme", "3.50",
                              "--reason", "budget review", "--target", sidecar.target],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "before  org:acme: cap $1.00" in out.stdout and "after   org:acme: cap $3.50" in out.stdout
        denied = subprocess.run([sys.executable, "-m", "tollgate.cli", "admin", "reset", "org:acme",
                                 "--target", sidecar.target, "--token", APP],
                                capture_output=True, text=True, env=env, timeout=60)
        assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr
    with SidecarProcess(tmp_path, config=config, db=sidecar.db) as again, grpc.insecure_channel(again.target) as ch:
        assert org(pb_grpc.TollgateServiceStub(ch)).cap_nanos == 3_500_000_000


def test_bonus_room_ends_with_its_window() -> None:
    spec = PoolSpec(cap=100, max_calls=10)
    override = PoolOverride("org:acme", cap=50, bonus_nanos=30, bonus_calls=2, bonus_until_ms=1_000)
    assert override.apply(spec, 999) == PoolSpec(cap=80, max_calls=12)
    assert override.apply(spec, 1_000) == PoolSpec(cap=50, max_calls=10)
    assert PoolOverride("org:acme", bonus_nanos=5).apply(spec, 10**15).cap == 105  # window-less: for good
    assert PoolOverride.decode(override.encode()) == override
