"""Connecting to Redis (a URL, Cluster or Sentinel) and bounding every call to it.

Every store beside the ledger on Redis (quality counts, admin overrides) uses the same
client and the same bound: a call that does not answer in time becomes
``StoreUnavailable``, and the sidecar fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlparse

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff

from ..errors import StoreUnavailable

__all__ = ["RedisClient", "connect", "store_errors", "text"]

_STORE_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    MasterNotFoundError,
    OSError,
    asyncio.TimeoutError,
)

RedisClient = aioredis.Redis | RedisCluster


def connect(
    url: str,
    *,
    cluster: bool = False,
    sentinels: Sequence[str] = (),
    service: str = "",
    timeout: float = 0.25,
    max_connections: int = 64,
) -> RedisClient:
    """A client for a ``redis://`` or ``rediss://`` URL (ACL user and password in the URL).

    ``cluster`` connects to Redis Cluster through the URL's node; ``sentinels``
    (``host:port`` each) find the primary of ``service`` through Redis Sentinel, with
    the URL giving the credentials and database.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # The store decides what a failure means (fail closed); a client-side retry
        # would only stretch every call past its bound while Redis is down.
        "retry": Retry(NoBackoff(), 0),
        "max_connections": max_connections,
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    if sentinels:
        parsed = urlparse(url)
        hosts = [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in sentinels]
        sentinel = Sentinel(hosts, sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
                            socket_timeout=timeout, socket_connect_timeout=timeout)
        db = int(parsed.path.lstrip("/") or 0)
        return sentinel.master_for(service, username=parsed.username, password=parsed.password, db=db,
                                   ssl=parsed.scheme == "rediss", retry=Retry(NoBackoff(), 0))
    # A blocking pool queues callers for a free connection (within the call's bound)
    # instead of failing a burst that exceeds the pool.
    pool = aioredis.BlockingConnectionPool.from_url(url, timeout=timeout, **options)
    return aioredis.Redis(connection_pool=pool)


def text(reply: object) -> str:
    """A string reply as text: the clients made here do not decode replies, so they are bytes."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, str):
        return reply
    raise TypeError(f"expected a string reply from Redis, got {type(reply).__name__}")


@contextlib.asynccontextmanager
async def store_errors(bound_s: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(bound_s):
            yield
    except _STORE_ERRORS as exc:
        raise StoreUnavailable(f"the Redis budget store did not answer: {str(exc) or type(exc).__name__}") from exc
    except redis_errors.ResponseError as exc:
        if "TOLLGATE_SKEW" in str(exc):
            raise StoreUnavailable(f"clock skew between this sidecar and Redis is over a window: {exc}") from exc
        raise
