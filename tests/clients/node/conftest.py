"""The Node.js client's tests: node and npm found, the package's dependencies installed once per lock file."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.sidecar_process import ROOT

NODE_DIR = ROOT / "clients" / "node"
STAMP = NODE_DIR / "node_modules" / ".tollgate-npm-ci-stamp"
MIN_NODE_MAJOR = 18


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the Node.js client's tests need Node.js >= {MIN_NODE_MAJOR} and npm",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="package")
def node() -> str:
    node = _tool("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        pytest.fail(f"the Node.js client needs Node.js >= {MIN_NODE_MAJOR}, found {version!r}", pytrace=False)
    return node


@pytest.fixture(scope="package")
def node_modules(node: str) -> Path:
    """``npm ci`` in clients/node, skipped while node_modules matches package-lock.json and this node."""
    npm = _tool("npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    wanted = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes() + version.encode()).hexdigest()
    if STAMP.is_file() and STAMP.read_text().strip() == wanted:
        return STAMP.parent
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci in {NODE_DIR} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
                    pytrace=False)
    # npm ci empties node_modules first, so a stale stamp never survives a reinstall.
    STAMP.write_text(wanted + "\n")
    return STAMP.parent
