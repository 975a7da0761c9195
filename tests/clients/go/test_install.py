"""The Go client depended on as an application depends on it, from outside the repository, and its README example
run against a live sidecar.

A scratch module in a temporary directory runs the README's lines as written, with the path of a copy of the
client's folder as a fresh checkout has it: a ``replace`` directive to the checkout, then ``go get``, which takes
the client's dependencies from the module proxy of the environment (GOPROXY). The README's program is the module's
main.go; ``callProvider``, which the README leaves to the application, is a stand-in reporting fixed usage.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.sidecar_process import ROOT, SidecarProcess

from ..readme_example import PROVIDER_USAGE, assert_settled, nanos, readme_block, sidecar, with_target

__all__ = ["sidecar"]

CLIENT = ROOT / "clients" / "go"
README = CLIENT / "README.md"
MODULE = "github.com/tollgate/tollgate/clients/go"
TIMEOUT = 600  # a first run downloads and compiles gRPC

INPUT_TOKENS, OUTPUT_TOKENS = PROVIDER_USAGE["prompt_tokens"], PROVIDER_USAGE["completion_tokens"]
PROVIDER_STAND_IN = f"""package main

import "context"

// completion is what the stand-in provider reports of a call.
type completion struct {{
	InputTokens, OutputTokens int64
}}

// callProvider stands in for the application's provider call: it answers at once with fixed usage.
func callProvider(ctx context.Context, model string) (*completion, error) {{
	return &completion{{InputTokens: {INPUT_TOKENS}, OutputTokens: {OUTPUT_TOKENS}}}, nil
}}
"""


def _env() -> dict[str, str]:
    """The environment's Go settings (GOPROXY included), in module mode, outside any workspace."""
    go = shutil.which("go")
    if go is None or shutil.which("gofmt") is None:
        pytest.fail("the Go client tests need go and gofmt on PATH (Go 1.21 or later)", pytrace=False)
    flags = [flag for flag in os.environ.get("GOFLAGS", "").split() if not flag.startswith("-mod=")]
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOLLGATE_")}
    return {**env, "GO111MODULE": "on", "GOFLAGS": " ".join(flags), "GOWORK": "off"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"$ {shlex.join(args)}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _readme_lines(checkout_root: Path) -> list[list[str]]:
    lines = []
    for line in readme_block(README, "sh", "go get").splitlines():
        command = line.split("#", 1)[0].strip().replace("/path/to/tollgate", str(checkout_root))
        if command:
            lines.append(shlex.split(command))
    return lines


@pytest.fixture
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's client module as a fresh checkout has it; returns the checkout's root."""
    root = tmp_path_factory.mktemp("checkout") / "tollgate"
    shutil.copytree(CLIENT, root / "clients" / "go")
    return root


def test_a_scratch_module_gets_the_client_and_runs_the_readme_example(tmp_path: Path, checkout: Path,
                                                                     sidecar: SidecarProcess) -> None:
    app = tmp_path / "app"
    app.mkdir()
    _run(["go", "mod", "init", "example.com/app"], cwd=app)
    lines = _readme_lines(checkout)
    assert [line[:3] for line in lines] == [["go", "mod", "edit"], ["go", "get", f"{MODULE}@v0.0.0"]], lines
    for line in lines:
        _run(line, cwd=app)
    (app / "main.go").write_text(with_target(readme_block(README, "go", "package main"), sidecar.target))
    (app / "provider.go").write_text(PROVIDER_STAND_IN)
    _run(["go", "mod", "tidy"], cwd=app)
    assert f"replace {MODULE} => {checkout / 'clients' / 'go'}" in (app / "go.mod").read_text()
    unformatted = _run(["gofmt", "-l", "main.go"], cwd=app).stdout
    assert not unformatted, "the README's program is not gofmt-formatted"
    _run(["go", "vet", "./..."], cwd=app)
    _run(["go", "build", "-mod=readonly", "-o", "app", "."], cwd=app)
    out = _run([str(app / "app")], cwd=app).stdout.split()
    assert len(out) >= 3 and out[-1].startswith("$"), out
    assert out[0]
    assert_settled(sidecar, nanos(out[-1]))
