"""The Go client in clients/go, as the Go module it is: gofmt, go vet and go test, the latter against a real sidecar.

Everything runs in module mode from clients/go: the dependencies pinned in go.mod and go.sum come from the
module proxy of the environment (GOPROXY, default https://proxy.golang.org) into the module cache, and
-mod=readonly makes a go.mod that is not tidy an error rather than something silently fixed. The committed
tollgatev1 stubs must match proto/ (scripts/gen_protos.py --check --go). Go's build and module caches stay where
they normally are, so only the first run downloads and compiles gRPC.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.sidecar_process import ROOT, SidecarProcess, write_config

from .. import auth_sidecar
from ..lossy_proxy import LossyProxy

GO_CLIENT = ROOT / "clients" / "go"
TOOLS = ("go", "gofmt")
INTEGRATION_TESTS = (
    "TestIntegrationRouteReserveCommitReplay",
    "TestIntegrationBudgetRefusal",
    "TestIntegrationWithReservationReleasesOnError",
    "TestIntegrationWithReservationCommits",
    "TestIntegrationErrors",
    "TestIntegrationReserveIdempotencyKey",
    "TestIntegrationEscalateFeedbackQuality",
    "TestIntegrationCallWithEscalation",
    "TestIntegrationCallWithShadow",
)
TIMEOUT = 600  # the first run downloads and compiles gRPC; later runs take seconds


def _tools() -> dict[str, str]:
    found = {tool: shutil.which(tool) for tool in TOOLS}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        pytest.fail(f"the Go client tests need {', '.join(missing)} on PATH (Go 1.21 or later)", pytrace=False)
    return {tool: path for tool, path in found.items() if path is not None}


def _go_env() -> dict[str, str]:
    """The environment's Go settings (GOPROXY included), in module mode, never changing go.mod or go.sum."""
    flags = [flag for flag in os.environ.get("GOFLAGS", "").split() if not flag.startswith("-mod=")]
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOLLGATE_")}
    env.update(GO111MODULE="on", GOFLAGS=" ".join([*flags, "-mod=readonly"]), GOWORK="off")
    if not any(env.get(name) for name in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(Path(tempfile.gettempdir()) / "tollgate-go-build")
    return env


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=GO_CLIENT, env=env or _go_env(), capture_output=True, text=True, timeout=TIMEOUT)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(result.args)}\nexit {result.returncode}\n{result.stdout}{result.stderr}"


def _tiny_org(data: dict[str, Any]) -> None:
    data["budgets"]["overrides"] = {"org:tiny": {"cap": "0.001", "policy": "hard"}}
    # Every cheap decision that accepts shadow calls is sampled; the guard never changes a tier.
    data["quality"] = {"enabled": True, "guard": False, "shadow_share": 1.0, "warmup_share": 1.0}


@pytest.fixture(scope="module")
def go() -> str:
    """`go`, with the module's dependencies downloaded and verified against go.sum."""
    go = _tools()["go"]
    result = _run([go, "mod", "download"])
    assert result.returncode == 0, _output(result)
    result = _run([go, "mod", "verify"])
    assert result.returncode == 0, _output(result)
    return go


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    """A real sidecar on TCP and a Unix socket, with org `tiny` capped at $0.001, hard."""
    tmp = tmp_path_factory.mktemp("sidecar")
    config = write_config(tmp / "tollgate.yaml", _tiny_org)
    with SidecarProcess(tmp, config=config, unix_socket=tmp / "tollgate.sock") as process:
        yield process


@pytest.fixture(scope="module")
def callers_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    """A real sidecar with callers: one limited to a call a second (tests/clients/auth_sidecar.py)."""
    with auth_sidecar.auth_sidecar(tmp_path_factory.mktemp("sidecar-auth")) as process:
        yield process


def test_go_mod_is_a_module_with_committed_stubs() -> None:
    go_mod = (GO_CLIENT / "go.mod").read_text()
    assert go_mod.startswith("module github.com/tollgate/tollgate/clients/go\n"), go_mod
    assert (GO_CLIENT / "go.sum").is_file(), "go.sum is committed next to go.mod"
    tracked = subprocess.run(["git", "ls-files", "tollgatev1"], cwd=GO_CLIENT, capture_output=True, text=True)
    if tracked.returncode == 0:  # in a git checkout: the stubs are committed, not generated at build time
        assert sorted(Path(name).name for name in tracked.stdout.split()) == [
            "tollgate.pb.go",
            "tollgate_grpc.pb.go",
        ], f"the tollgatev1 stubs are not committed:\n{tracked.stdout}"


def test_go_stubs_match_the_proto(go: str) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check", "--go"],
                            cwd=ROOT, env=_go_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, _output(result)
    assert "generated Go code is up to date" in result.stdout, _output(result)


def test_go_mod_is_tidy(go: str) -> None:
    result = _run([go, "mod", "tidy", "-diff"])
    if result.returncode != 0 and "flag provided but not defined: -diff" in result.stderr:
        pytest.skip("`go mod tidy -diff` needs Go 1.23 or later")
    assert result.returncode == 0, f"go.mod or go.sum is not tidy:\n{_output(result)}"


def test_gofmt_clean() -> None:
    result = _run([_tools()["gofmt"], "-l", "."])
    assert result.returncode == 0 and result.stdout == "", f"not gofmt-formatted:\n{_output(result)}"


def test_go_vet(go: str) -> None:
    result = _run([go, "vet", "./..."])
    assert result.returncode == 0, _output(result)


def test_go_test_against_a_sidecar(go: str, sidecar: SidecarProcess, callers_sidecar: SidecarProcess) -> None:
    assert sidecar.unix_socket is not None
    env = _go_env()
    env["TOLLGATE_TARGET"] = sidecar.target
    env["TOLLGATE_UNIX_TARGET"] = f"unix://{sidecar.unix_socket}"
    env.update(auth_sidecar.env(callers_sidecar))
    with LossyProxy(sidecar.target) as proxy:
        env["TOLLGATE_LOSSY_TARGET"] = proxy.target
        result = _run([go, "test", "-count=1", "-v", "./..."], env=env)
    report = f"{_output(result)}\n--- sidecar log ---\n{sidecar.logs()}"
    assert result.returncode == 0, report
    assert "--- SKIP" not in result.stdout, f"integration tests were skipped:\n{report}"
    for name in INTEGRATION_TESTS:
        for transport in ("tcp", "unix"):
            assert f"--- PASS: {name}/{transport} " in result.stdout, f"{name}/{transport} did not pass:\n{report}"
    assert "--- PASS: TestIntegrationRetryAfterALostAnswer " in result.stdout, report
    for case in ("rate_limited", "budget_exceeded", "message_too_large", "credentials_and_grants"):
        assert f"--- PASS: TestIntegrationErrorsByReason/{case} " in result.stdout, report
    assert (proxy.lost, proxy.passed) == (2, 2), f"the proxy lost {proxy.lost} answers, passed {proxy.passed}"
