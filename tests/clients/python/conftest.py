"""Fixtures of the client tests: a fake sidecar on a free loopback port and a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tollgate_client import AsyncClient

from .fake_tollgate import FakeTollgate, serve


@pytest.fixture
def fake() -> FakeTollgate:
    return FakeTollgate()


@pytest.fixture
async def target(fake: FakeTollgate) -> AsyncIterator[str]:
    """The ``host:port`` of a running server backed by ``fake``, on a free loopback port."""
    server, port = await serve(fake, "127.0.0.1:0")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.fixture
async def client(target: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(target) as c:
        yield c
