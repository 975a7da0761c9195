"""Shared test setup: the sidecar package is importable from the source tree."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "sidecar"))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The suite's own redis-server, started once per session on a free port."""
    from tests.redis_server import RedisServer, redis_available

    if not redis_available():
        pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (CI does this itself)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:  # type: ignore[no-untyped-def]
    return str(redis_server.url)
