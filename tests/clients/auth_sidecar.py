"""A real sidecar with callers configured, for the clients' live error tests: one caller limited to one call a
second, one free to spend against org ``tiny`` (capped at $0.001, hard) and ``acme``. The Node.js and Go suites
get its address and the two tokens through the environment (``env``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.sidecar_process import SidecarProcess, write_config

LIMITED_TOKEN = "tok-limited-5d1e"
"""A caller of org ``acme`` allowed one call a second (a burst of one)."""
SPENDER_TOKEN = "tok-spender-a7c0"
"""A caller of orgs ``acme`` and ``tiny`` without a rate."""


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _config(data: dict[str, Any]) -> None:
    data["auth"] = {"callers": [
        {"name": "limited-app", "token_sha256": _sha(LIMITED_TOKEN), "grants": ["acme"], "rate": 1},
        {"name": "spender-app", "token_sha256": _sha(SPENDER_TOKEN), "grants": ["acme", "tiny"]},
    ]}
    # Reserving claude-opus-4-1 for 5,000 input tokens does not fit $0.001.
    data["budgets"]["overrides"] = {"org:tiny": {"cap": "0.001", "policy": "hard"}}
    data["routing"]["classifier"] = "none"


@contextmanager
def auth_sidecar(tmp: Path) -> Iterator[SidecarProcess]:
    with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", _config), store="memory") as proc:
        yield proc


def env(sidecar: SidecarProcess) -> dict[str, str]:
    """What the Node.js and Go live tests read: the sidecar's address and the callers' tokens."""
    return {
        "TOLLGATE_AUTH_TARGET": sidecar.target,
        "TOLLGATE_LIMITED_TOKEN": LIMITED_TOKEN,
        "TOLLGATE_SPENDER_TOKEN": SPENDER_TOKEN,
    }
