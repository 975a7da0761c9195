"""Config reload on SIGHUP: validated in full first; a bad file keeps the running config and says why."""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.eventually import eventually
from tests.support.sidecar_process import SidecarProcess, write_config
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

SCOPE = pb.Scope(org_id="acme")


def org_cap(stub: pb_grpc.TollgateServiceStub, metadata: Any = ()) -> int:
    pools = stub.GetBudget(pb.GetBudgetRequest(scope=SCOPE), metadata=metadata, timeout=5).pools
    return next(p.cap_nanos for p in pools if p.pool_id == "org:acme")


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    eventually(check, what, timeout=timeout)


def test_sighup_reloads_a_valid_config_and_keeps_the_old_one_otherwise(tmp_path: Path) -> None:
    config = write_config(tmp_path / "tollgate.yaml")
    with SidecarProcess(tmp_path, config=config) as sidecar, grpc.insecure_channel(sidecar.target) as channel:
        assert sidecar.proc is not None
        stub = pb_grpc.TollgateServiceStub(channel)
        start = org_cap(stub)

        def cap(data: dict[str, Any]) -> None:
            data["budgets"]["overrides"]["org:acme"] = {"cap": "7.00"}

        write_config(config, cap)
        sidecar.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: org_cap(stub) == 7_000_000_000, "the new cap")
        assert start != 7_000_000_000
        assert "config reloaded" in sidecar.logs() and "budgets" in sidecar.logs()

        # An invalid value: refused with file, key and problem; the running config stays.
        write_config(config, lambda d: (cap(d), d["budgets"]["templates"]["user"].update(policy="strict")))
        sidecar.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reload refused" in sidecar.logs(), "the refusal")
        assert "budgets.templates.user.policy: 'strict' is not one of" in sidecar.logs()
        assert org_cap(stub) == 7_000_000_000

        # What needs a restart is refused too, and says so.
        write_config(config, lambda d: (cap(d), d.setdefault("server", {}).update(grace_period="3s")))
        sidecar.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "server changed, which needs a restart" in sidecar.logs(), "the restart refusal")
        assert org_cap(stub) == 7_000_000_000

        # Callers added by a reload take effect at once.
        token = "tok-reload-1"

        def callers(data: dict[str, Any]) -> None:
            cap(data)
            data["auth"] = {"callers": [{"name": "app", "grants": ["acme"],
                                         "token_sha256": hashlib.sha256(token.encode()).hexdigest()}]}

        write_config(config, callers)
        sidecar.proc.send_signal(signal.SIGHUP)

        def locked() -> bool:
            try:
                org_cap(stub)
            except grpc.RpcError as exc:
                return exc.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

        wait_for(locked, "credentials to be required")
        assert org_cap(stub, (("authorization", f"Bearer {token}"),)) == 7_000_000_000
        assert sidecar.proc.poll() is None


@pytest.mark.parametrize("edit", [lambda d: d.update(limits={"max_messages": 2})])
def test_reloaded_limits_apply_to_the_next_request(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    config = write_config(tmp_path / "tollgate.yaml")
    messages = pb.Messages(items=[pb.Message(role="user", content="hi")] * 3)
    request = pb.RouteRequest(scope=SCOPE, prompt=pb.Prompt(messages=messages))
    with SidecarProcess(tmp_path, config=config) as sidecar, grpc.insecure_channel(sidecar.target) as channel:
        assert sidecar.proc is not None
        stub = pb_grpc.TollgateServiceStub(channel)
        stub.Route(request, timeout=5)
        write_config(config, edit)
        sidecar.proc.send_signal(signal.SIGHUP)

        def refused() -> bool:
            try:
                stub.Route(request, timeout=5)
            except grpc.RpcError as exc:
                return exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit of 2" in (exc.details() or "")
            return False

        wait_for(refused, "the new limit")
