"""scripts/test_tools.sh, which ``make test`` runs first: what the client and Redis tests need besides Python is
installed from Debian's packages as root, or named with the command to run, and a missing Go stops it at once.

Each case runs the script with a PATH of its own: links to the few commands it uses, the tools the case has, and a
stand-in ``apt-get`` that records its arguments and "installs" by linking what was asked for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.sidecar_process import ROOT

SCRIPT = ROOT / "scripts" / "test_tools.sh"
BASICS = ("bash", "sed", "id", "cat", "chmod", "ln")
APT_GET = """#!/bin/bash
echo "$*" >> "{log}"
if [[ "$1" == install ]]; then
  for package in "$@"; do
    case "$package" in
      redis-server) ln -sf "{true}" "{bin}/redis-server" ;;
      redis-tools) ln -sf "{true}" "{bin}/redis-cli" ;;
      nodejs) ln -sf "{node}" "{bin}/node" ;;
      npm) ln -sf "{true}" "{bin}/npm" ;;
      prometheus) ln -sf "{true}" "{bin}/prometheus"; ln -sf "{true}" "{bin}/promtool" ;;
    esac
  done
fi
"""


def _bin(tmp_path: Path, tools: tuple[str, ...], *, root: bool = True, apt: bool = True) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in (*BASICS, *tools):
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"`{name}` is not on PATH", pytrace=False)
        (folder / name).symlink_to(found)
    if not root:
        (folder / "id").unlink()
        (folder / "id").write_text("#!/bin/bash\necho 1000\n")
        (folder / "id").chmod(0o755)
    if apt:
        node = shutil.which("node") or "/bin/true"
        (folder / "apt-get").write_text(APT_GET.format(log=tmp_path / "apt.log", bin=folder, true=shutil.which("true"),
                                                       node=node))
        (folder / "apt-get").chmod(0o755)
    return folder


def _run(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PATH", "GOFLAGS")}
    return subprocess.run(["bash", str(SCRIPT)], env={**env, "PATH": str(folder)}, capture_output=True, text=True,
                          timeout=60)


ALL = ("redis-server", "redis-cli", "node", "npm", "go", "gofmt", "prometheus", "promtool")


def test_nothing_to_do_when_everything_is_there(tmp_path: Path) -> None:
    result = _run(_bin(tmp_path, ALL))
    assert (result.returncode, result.stderr) == (0, "")
    assert not (tmp_path / "apt.log").exists()


def test_root_installs_what_is_missing_from_debians_packages(tmp_path: Path) -> None:
    result = _run(_bin(tmp_path, ("go", "gofmt")))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "update -qq", "install -y -qq redis-server redis-tools nodejs npm prometheus"]
    assert "installing redis-server redis-tools nodejs npm prometheus" in result.stderr


def test_anyone_else_is_told_the_command_and_stopped(tmp_path: Path) -> None:
    result = _run(_bin(tmp_path, ("node", "npm", "go", "gofmt", "prometheus", "promtool"), root=False))
    assert result.returncode == 1
    assert "sudo sh -c 'apt-get update && apt-get install -y redis-server redis-tools'" in result.stderr
    assert not (tmp_path / "apt.log").exists()


def test_a_missing_go_stops_it_before_anything_is_installed(tmp_path: Path) -> None:
    result = _run(_bin(tmp_path, ("node", "npm")))
    assert result.returncode == 1
    assert "Go 1.21 or later is needed" in result.stderr and "/usr/local/go" in result.stderr
    assert not (tmp_path / "apt.log").exists()


def test_make_test_runs_it_first_and_ci_runs_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\ntest: test-tools " in makefile and "scripts/test_tools.sh" in makefile
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("\nmake test")
