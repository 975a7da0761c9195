"""The Python client installed as an application installs it, from outside the repository, and its README example
run against a live sidecar.

Two fresh virtual environments in a temporary directory: one gets ``pip install <checkout>/clients/python`` (the
newest ``grpcio`` and ``protobuf`` the index offers), the other a wheel built with ``pip wheel`` and exactly the
floors the package declares, so the floors are proven, not assumed. The example imports ``openai``; a stand-in
module beside it answers like Chat Completions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.sidecar_process import ROOT, SidecarProcess

from ..readme_example import PROVIDER_USAGE, assert_settled, nanos, readme_block, sidecar, with_target

__all__ = ["sidecar"]

CLIENT = ROOT / "clients" / "python"
DISTRIBUTION = "tollgate-sidecar-client"
TIMEOUT = 600

OPENAI_STAND_IN = f'''"""A stand-in for the OpenAI SDK: Chat Completions that answer at once and report fixed usage."""


class _Completions:
    async def create(self, *, model, messages, **_):
        return {{"model": model, "choices": [{{"message": {{"role": "assistant", "content": "ok"}}}}],
                "usage": {PROVIDER_USAGE!r}}}


class _Chat:
    completions = _Completions()


class AsyncOpenAI:
    chat = _Chat()
'''


def _floors() -> dict[str, str]:
    """The lowest version of each dependency the package declares, by name."""
    floors = {}
    for requirement in tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(?:,<[0-9.]+)?", requirement)
        assert match is not None, f"a dependency without a plain floor: {requirement!r}"
        floors[match.group(1)] = match.group(2)
    return floors


def _run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"$ {' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client's folder as a fresh checkout has it: no build leftovers, no editable-install metadata."""
    path = tmp_path_factory.mktemp("checkout") / "tollgate" / "clients" / "python"
    shutil.copytree(CLIENT, path, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"))
    return path


def _app(tmp: Path, *install: str | Path) -> Path:
    """A new application: its own virtual environment with ``pip install *install``; returns its python."""
    _run([sys.executable, "-m", "venv", tmp / "venv"], cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    _run([python, "-m", "pip", "install", "--quiet", *install], cwd=tmp)
    (tmp / "openai.py").write_text(OPENAI_STAND_IN)
    return python


def _run_example(python: Path, app: Path, sidecar: SidecarProcess) -> tuple[str, int]:
    """Runs the README example in ``app``; returns the model it printed and what it said was charged."""
    (app / "example.py").write_text(with_target(readme_block(CLIENT / "README.md", "python", "asyncio.run(main())"),
                                                sidecar.target))
    out = _run([python, "example.py"], cwd=app).stdout.split()
    assert len(out) >= 3 and out[-1].startswith("$"), out
    return out[0], nanos(out[-1])


def test_the_distribution_names_are_the_projects_own() -> None:
    client = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    sidecar = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (client["name"], sidecar["name"]) == (DISTRIBUTION, "tollgate-sidecar")
    assert DISTRIBUTION in sidecar["dependencies"]


def test_pip_install_of_the_folder_runs_the_readme_example(tmp_path: Path, checkout: Path,
                                                           sidecar: SidecarProcess) -> None:
    python = _app(tmp_path, checkout)
    shown = _run([python, "-m", "pip", "show", DISTRIBUTION], cwd=tmp_path).stdout
    assert "Location: " + str(tmp_path / "venv") in shown, shown  # installed, not linked to the checkout
    model, charged = _run_example(python, tmp_path, sidecar)
    assert model
    assert_settled(sidecar, charged)


def test_a_wheel_runs_the_readme_example_at_the_declared_floors(tmp_path: Path, checkout: Path,
                                                               sidecar: SidecarProcess) -> None:
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp_path / "dist", checkout],
         cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("tollgate_sidecar_client-*.whl")
    floors = _floors()
    assert set(floors) == {"grpcio", "protobuf"}, floors
    python = _app(tmp_path, wheel, *(f"{name}=={version}" for name, version in floors.items()))
    show = "import grpc, google.protobuf; print(grpc.__version__, google.protobuf.__version__)"
    versions = _run([python, "-c", show], cwd=tmp_path).stdout.split()
    assert versions == [floors["grpcio"], floors["protobuf"]]
    model, charged = _run_example(python, tmp_path, sidecar)
    assert model
    assert_settled(sidecar, charged)
