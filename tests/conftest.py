"""Shared test setup: the sidecar package is importable from the source tree."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "sidecar"))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The suite's own redis-server, started once per session on a free port."""
    from tests.support.redis_server import RedisServer, redis_available

    if not redis_available():
        pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (CI does this itself)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A seed URL of the suite's own 3-master Redis Cluster, started once per session."""
    from tests.support.redis_cluster import RedisCluster3, redis_cluster_available

    if not redis_cluster_available():
        pytest.fail("redis-server and redis-cli are needed for the cluster tests: `apt-get install -y redis-server` "
                    "(it ships both)")
    with RedisCluster3(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


@pytest.fixture
def redis_url(redis_server) -> str:  # type: ignore[no-untyped-def]
    return str(redis_server.url)
