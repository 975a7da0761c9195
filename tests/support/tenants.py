"""Sidecars with callers configured, on each store: the tenancy tests' common ground."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from tollgate_client.v1 import tollgate_pb2 as pb

from .sidecar_process import SidecarProcess, redis_store, write_config

STORES = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]
"""Parameters of a fixture that runs its tests against a sidecar on each store."""


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata presenting ``token``."""
    return (("authorization", f"Bearer {token}"),)


def callers(tokens: Mapping[str, str], grants: Mapping[str, Sequence[str]], *, admins: Sequence[str] = (),
            rates: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """The ``auth.callers`` section for callers named as in ``tokens``."""
    return [{"name": name, "token_sha256": sha(token), "grants": list(grants[name]),
             **({"admin": True} if name in admins else {}),
             **({"rate": rates[name]} if rates and name in rates else {})}
            for name, token in tokens.items()]


def prompt(text: str = "Extract the total from: invoice 42, total 10 EUR") -> pb.Prompt:
    return pb.Prompt(messages=pb.Messages(items=[pb.Message(role="user", content=text)]))


async def refused(call: Any, code: grpc.StatusCode) -> str:
    """The details of ``call``'s error answer, which must have ``code``."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, (err.value.code(), err.value.details())
    return err.value.details() or ""


@contextmanager
def sidecar_on(request: pytest.FixtureRequest, tmp: Path, edit: Callable[[dict[str, Any]], None]
               ) -> Iterator[SidecarProcess]:
    """A sidecar with the default config changed by ``edit``, on the store the fixture's parameter names."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url

        def on_redis(data: dict[str, Any]) -> None:
            edit(data)
            data["store"] = redis_store(url)

        with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", on_redis), store=None) as proc:
            yield proc
    else:
        with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", edit)) as proc:
            yield proc
