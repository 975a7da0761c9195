"""The Node.js client (clients/node) against a real sidecar: ``node --test`` over TCP and a Unix socket, through
a proxy that loses answers (tests/clients/lossy_proxy.py) for the retries, and against a sidecar with callers
(tests/clients/auth_sidecar.py) for errors told apart by reason."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.sidecar_process import SidecarProcess, write_config

from .. import auth_sidecar
from ..lossy_proxy import LossyProxy
from .conftest import NODE_DIR


def _config(data: dict[str, Any]) -> None:
    # The live tests' refusal case: reserving claude-opus-4-1 for 5,000 input tokens does not fit $0.001.
    data["budgets"]["overrides"] = {"org:tiny": {"cap": "0.001", "policy": "hard"}}
    # Routing in these tests is decided by task-type rules; the learned difficulty model plays no part.
    data["routing"]["classifier"] = "none"
    # Every cheap decision that accepts shadow calls is sampled; the guard never changes a tier.
    data["quality"] = {"enabled": True, "guard": False, "shadow_share": 1.0, "warmup_share": 1.0}


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    tmp = tmp_path_factory.mktemp("node-client")
    with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", _config), store="memory",
                        unix_socket=tmp / "t.sock") as proc:
        yield proc


@pytest.fixture(scope="module")
def callers_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with auth_sidecar.auth_sidecar(tmp_path_factory.mktemp("node-client-auth")) as proc:
        yield proc


def _node_test(node: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], str]:
    files = sorted(str(path.relative_to(NODE_DIR)) for path in (NODE_DIR / "test").glob("*.test.js"))
    assert files, f"no test files in {NODE_DIR / 'test'}"
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", *files],
        cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=300,
    )
    return result, f"{result.stdout}\n{result.stderr}"


def _summary(output: str, name: str) -> int:
    match = re.search(rf"^# {name} (\d+)$", output, re.MULTILINE)
    assert match is not None, f"no '# {name}' line in node's output:\n{output}"
    return int(match.group(1))


def _env(**targets: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOLLGATE_")}
    return {**env, **targets}


def test_node_client_against_a_live_sidecar(node: str, node_modules: Path, sidecar: SidecarProcess,
                                            callers_sidecar: SidecarProcess) -> None:
    with LossyProxy(sidecar.target) as proxy:
        result, output = _node_test(node, _env(
            TOLLGATE_TARGET=sidecar.target,
            TOLLGATE_UNIX_TARGET=f"unix://{sidecar.unix_socket}",
            TOLLGATE_LOSSY_TARGET=proxy.target,
            **auth_sidecar.env(callers_sidecar),
        ))
    assert result.returncode == 0, (
        f"node --test failed ({result.returncode}):\n{output}\n--- sidecar log ---\n{sidecar.logs()[-8000:]}"
    )
    assert "# SKIP" not in output, f"some Node.js tests were skipped although every target was set:\n{output}"
    assert _summary(output, "fail") == 0 and _summary(output, "pass") == _summary(output, "tests") > 0, output
    assert re.search(r"^\s*ok \d+ - holds once for a reserve whose answer was lost", output, re.MULTILINE), output
    assert re.search(r"^\s*ok \d+ - refuses a caller over its rate with RateLimitedError", output, re.MULTILINE), output
    assert (proxy.lost, proxy.passed) == (2, 2), f"the proxy lost {proxy.lost} answers, passed {proxy.passed}"


def test_node_unit_tests_need_no_sidecar(node: str, node_modules: Path) -> None:
    result, output = _node_test(node, _env())
    assert result.returncode == 0, f"node --test failed ({result.returncode}) without a sidecar:\n{output}"
    assert re.search(r"over TCP # SKIP set TOLLGATE_TARGET", output), f"the live tests did not skip:\n{output}"
    assert _summary(output, "fail") == 0 and _summary(output, "pass") > 0, output
