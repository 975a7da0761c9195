"""The Go client in clients/go: gofmt, go vet and go test, its integration tests against a real sidecar.

The tollgatev1 stubs are not committed: they are generated here from proto/tollgate/v1/tollgate.proto with
protoc, protoc-gen-go and protoc-gen-go-grpc into a temporary GOPATH, next to a copy of the wrapper. Builds
run in GOPATH mode against the Go sources of Debian's -dev packages in /usr/share/gocode, so no module
proxy is needed (clients/go/go.mod is for users who have one). Go's build cache stays where it normally
is (~/.cache/go-build), so only the first run compiles gRPC.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sidecar_process import ROOT, SidecarProcess, write_config

GO_CLIENT = ROOT / "clients" / "go"
IMPORT_PATH = "github.com/tollgate/tollgate/clients/go"
STUBS = f"{IMPORT_PATH}/tollgatev1"
PROTO = "tollgate/v1/tollgate.proto"
GOCODE = Path("/usr/share/gocode")
TOOLS = ("go", "gofmt", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")
APT = (
    "apt-get install -y golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc "
    "golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev"
)
# Debian sources the build needs; golang/protobuf must be 1.4 or later (the 1.3 package lacks registry.go).
NEEDED_SOURCES = (
    "google.golang.org/grpc/clientconn.go",
    "google.golang.org/protobuf/proto/proto.go",
    "google.golang.org/genproto/googleapis/rpc/status/status.pb.go",
    "github.com/golang/protobuf/proto/registry.go",
)
INTEGRATION_TESTS = (
    "TestIntegrationRouteReserveCommitReplay",
    "TestIntegrationBudgetRefusal",
    "TestIntegrationWithReservationReleasesOnError",
    "TestIntegrationWithReservationCommits",
    "TestIntegrationErrors",
)
TIMEOUT = 600  # the first run compiles gRPC; later runs take seconds


def _check_toolchain() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    missing += [str(GOCODE / "src" / src) for src in NEEDED_SOURCES if not (GOCODE / "src" / src).is_file()]
    if missing:
        pytest.fail(f"the Go client tests need {', '.join(missing)}; CI installs them with: {APT}")


def _go_env(gopath: Path) -> dict[str, str]:
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}{os.pathsep}{GOCODE}", GOFLAGS="",
               GOPROXY="off", GOTOOLCHAIN="local")
    if not any(env.get(name) for name in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(Path(tempfile.gettempdir()) / "tollgate-go-build")
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(result.args)}\nexit {result.returncode}\n{result.stdout}{result.stderr}"


def _tiny_org(data: dict[str, Any]) -> None:
    data["budgets"]["overrides"] = {"org:tiny": {"cap": "0.001", "policy": "hard"}}


@pytest.fixture(scope="module")
def gopath(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GOPATH holding a copy of the wrapper and the stubs generated from the proto."""
    _check_toolchain()
    gopath = tmp_path_factory.mktemp("gopath")
    package = gopath / "src" / IMPORT_PATH
    package.mkdir(parents=True)
    for source in GO_CLIENT.glob("*.go"):
        shutil.copy2(source, package)
    mapping = f"M{PROTO}={STUBS}"
    result = _run(
        ["protoc", f"-I{ROOT / 'proto'}", f"--go_out={gopath / 'src'}", f"--go_opt={mapping}",
         f"--go-grpc_out={gopath / 'src'}", f"--go-grpc_opt={mapping}", PROTO],
        cwd=ROOT, env=_go_env(gopath),
    )
    assert result.returncode == 0, _output(result)
    assert sorted(p.name for p in (gopath / "src" / STUBS).iterdir()) == ["tollgate.pb.go", "tollgate_grpc.pb.go"]
    return gopath


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    """A real sidecar on TCP and a Unix socket, with org `tiny` capped at $0.001, hard."""
    tmp = tmp_path_factory.mktemp("sidecar")
    config = write_config(tmp / "tollgate.yaml", _tiny_org)
    with SidecarProcess(tmp, config=config, unix_socket=tmp / "tollgate.sock") as process:
        yield process


def test_gofmt_clean() -> None:
    _check_toolchain()
    result = subprocess.run(["gofmt", "-l", "."], cwd=GO_CLIENT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "", f"not gofmt-formatted:\n{_output(result)}"


def test_go_vet(gopath: Path) -> None:
    result = _run(["go", "vet", IMPORT_PATH, STUBS], cwd=gopath / "src" / IMPORT_PATH, env=_go_env(gopath))
    assert result.returncode == 0, _output(result)


def test_go_test_against_a_sidecar(gopath: Path, sidecar: SidecarProcess) -> None:
    assert sidecar.unix_socket is not None
    env = _go_env(gopath)
    env["TOLLGATE_TARGET"] = sidecar.target
    env["TOLLGATE_UNIX_TARGET"] = f"unix://{sidecar.unix_socket}"
    result = _run(["go", "test", "-count=1", "-v", IMPORT_PATH], cwd=gopath / "src" / IMPORT_PATH, env=env)
    report = f"{_output(result)}\n--- sidecar log ---\n{sidecar.logs()}"
    assert result.returncode == 0, report
    assert "--- SKIP" not in result.stdout, f"integration tests were skipped:\n{report}"
    for name in INTEGRATION_TESTS:
        for transport in ("tcp", "unix"):
            assert f"--- PASS: {name}/{transport} " in result.stdout, f"{name}/{transport} did not pass:\n{report}"
