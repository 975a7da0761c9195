"""The command line against a live sidecar: the demo, budget, audit, and a graceful SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.sidecar_process import ROOT, SidecarProcess, audit, write_config
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc


def tollgate(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"))
    return subprocess.run([sys.executable, "-m", "tollgate.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_demo_says_when_no_sidecar_runs() -> None:
    out = tollgate("demo", "--target", "127.0.0.1:1", "--wait", "0.5", "--calls", "1")
    assert out.returncode == 1 and "cannot reach the sidecar" in out.stderr


def test_sigterm_drains_in_flight_calls_and_exits_zero(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tollgate.yaml")
    sidecar = SidecarProcess(tmp_path, config=config).start()
    results: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with grpc.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            while not stop.is_set():
                try:
                    r = stub.Reserve(pb.ReserveRequest(scope=pb.Scope(org_id="drain"), model="gpt-4o-mini",
                                                       prompt=pb.Prompt(input_tokens=100)), timeout=5)
                    stub.Commit(pb.CommitRequest(reservation_id=r.reservation.reservation_id,
                                                 usage=pb.Usage(input_tokens=100, output_tokens=5)), timeout=5)
                    results.append("ok")
                except grpc.RpcError as exc:
                    results.append(exc.code().name)
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        return

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    while len(results) < 100:
        time.sleep(0.01)
    code = sidecar.terminate(timeout=15)
    stop.set()
    for t in threads:
        t.join(10)
    assert code == 0, sidecar.logs()
    # Calls completed, or (racing the shutdown) were cancelled before being accepted, or were
    # refused as UNAVAILABLE once the listener closed; no other failure, and the ledger balances.
    assert set(results) <= {"ok", "UNAVAILABLE", "CANCELLED"}, set(results)
    assert results.count("ok") >= 100
    assert '"stopped"' in sidecar.logs()
    result = audit(config, sidecar.db)
    assert result.returncode == 0, result.stdout


def test_health_reports_serving(tmp_path: Path) -> None:
    with SidecarProcess(tmp_path) as sidecar, grpc.insecure_channel(sidecar.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_version_and_errors_are_one_line() -> None:
    from tollgate import __version__

    version = tollgate("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"tollgate {__version__}"
    gone = tollgate("budget", "--org", "acme", "--target", "127.0.0.1:1")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
    assert gone.stderr.strip() == ("error: cannot reach the sidecar at 127.0.0.1:1: is it running (tollgate serve), "
                                   "and is --target right? (UNAVAILABLE)")
    debug = tollgate("--debug", "budget", "--org", "acme", "--target", "127.0.0.1:1")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_budget_and_quality_take_a_token_once_callers_are_configured(tmp_path: Path) -> None:
    token = "tok-ops-cli"

    def edit(data: dict[str, Any]) -> None:
        data["auth"] = {"callers": [{"name": "ops", "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                                     "grants": ["*"], "admin": True}]}

    with SidecarProcess(tmp_path, config=write_config(tmp_path / "tollgate.yaml", edit)) as sidecar:
        refused = tollgate("budget", "--org", "acme", "--target", sidecar.target)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("error: UNAUTHENTICATED") and len(refused.stderr.splitlines()) == 1
        assert tollgate("budget", "--org", "acme", "--target", sidecar.target, "--token", token).returncode == 0
        # From the environment, as in a pod: TOLLGATE_TARGET and TOLLGATE_TOKEN.
        env = dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"), TOLLGATE_TARGET=sidecar.target,
                   TOLLGATE_TOKEN=token)
        for verb in (["budget", "--org", "acme"], ["quality"]):
            result = subprocess.run([sys.executable, "-m", "tollgate.cli", *verb], capture_output=True, text=True,
                                    env=env, timeout=120)
            assert result.returncode == 0, result.stderr


def test_the_budget_table_aligns_money_and_shows_the_usable_cap(tmp_path: Path) -> None:
    with SidecarProcess(tmp_path) as sidecar:
        with grpc.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            r = stub.Reserve(pb.ReserveRequest(scope=pb.Scope(org_id="tbl", user_id="ann"), model="gpt-4o-mini",
                                               prompt=pb.Prompt(input_tokens=1234)), timeout=5)
            stub.Commit(pb.CommitRequest(reservation_id=r.reservation.reservation_id,
                                         usage=pb.Usage(input_tokens=1234, output_tokens=77)), timeout=5)
        table = tollgate("budget", "--target", sidecar.target, "--org", "tbl", "--user", "ann")
        as_json = tollgate("budget", "--target", sidecar.target, "--org", "tbl", "--user", "ann", "--json")
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:7] == ["pool", "policy", "cap", "usable", "spent", "held", "remaining"]
    # Every amount has the same decimals, so the columns line up.
    amounts = [a for row in rows for a in re.findall(r"-?\$[0-9,]+\.[0-9]+", row)]
    assert len(amounts) == 5 * len(rows) and {len(a.split(".")[1]) for a in amounts} == {4}
    org = next(row for row in rows if row.startswith("org:tbl"))
    assert re.search(r"  20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00:00Z$", org), org
    pools = {p["pool_id"]: p for p in json.loads(as_json.stdout)}
    # remaining is usable - spent - held, and the JSON has it exactly, resets_at in ISO 8601.
    o = pools["org:tbl"]
    assert o["remaining_nanos"] == o["usable_cap_nanos"] - o["spent_nanos"] - o["held_nanos"]
    assert o["spent_nanos"] > 0 and re.fullmatch(r"[0-9-]{10}T[0-9:]{8}Z", o["resets_at"])
