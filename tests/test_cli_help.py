"""The command line's own contract: every option explained, the version, usage errors, the environment."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest

from tests.support.sidecar_process import ROOT, free_port
from tollgate import __version__
from tollgate.cli import group, main


def commands(command: click.Command, path: str = "tollgate") -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += commands(sub, f"{path} {name}")
    return found


@pytest.mark.parametrize(("path", "command"), commands(group), ids=lambda x: x if isinstance(x, str) else "")
def test_every_verb_and_option_says_what_it_is_for(path: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"{path} has no help"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{path} {param.opts[0]} has no help"
    # Arguments cannot carry help in click: the verb's help names each one.
    for param in command.params:
        if isinstance(param, click.Argument) and param.name not in ("target_id", "usd", "op"):
            assert (param.human_readable_name.upper().rstrip(".") in (command.help or "").upper()), \
                f"{path}: the help does not name {param.human_readable_name}"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tollgate.cli", *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"), **env))


def test_version_and_a_usage_error() -> None:
    assert run("--version").stdout.strip() == f"tollgate {__version__}"
    unknown = run("budgets")
    assert unknown.returncode == 2 and "No such command 'budgets'" in unknown.stderr
    missing = run("budget")
    assert missing.returncode == 2 and "Missing option '--org'" in missing.stderr
    assert main(["check"]) == 2


def test_the_target_comes_from_the_environment() -> None:
    port = free_port()
    gone = run("budget", "--org", "acme", TOLLGATE_TARGET=f"127.0.0.1:{port}")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
    assert gone.stderr.strip().startswith(f"error: cannot reach the sidecar at 127.0.0.1:{port}:")
    assert gone.stderr.strip().endswith("(UNAVAILABLE)") and len(gone.stderr.splitlines()) == 1
