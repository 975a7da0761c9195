"""The wrappers' test bed: a real sidecar on the default catalog, the fake provider, and the ledger's view."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.fake_provider import Fake, wrapper_sidecar
from tests.support.sidecar_process import SidecarProcess
from tollgate_client import AsyncClient, Client, Scope


@pytest.fixture(scope="package")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with wrapper_sidecar(tmp_path_factory.mktemp("wrappers")) as process:
        yield process


@pytest.fixture(scope="package")
def fake() -> Iterator[Fake]:
    with Fake() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh_fake(fake: Fake) -> None:
    fake.calls.clear()
    fake.bad_models.clear()


@pytest.fixture
def scope() -> Scope:
    """A scope of its own per test, so that its ledger is this test's alone."""
    return Scope(org=f"w{uuid.uuid4().hex[:12]}", team="search", user="alice")


@pytest.fixture
async def tollgate(sidecar: SidecarProcess) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(sidecar.target, timeout=5.0) as client:
        yield client


@pytest.fixture
def sync_tollgate(sidecar: SidecarProcess) -> Iterator[Client]:
    with Client(sidecar.target, timeout=5.0) as client:
        yield client
