"""A hostile-input campaign: generated protobuf messages for every RPC, against a real sidecar.

Messages are built from the service's own descriptors, field by field: int64 edges,
NaN and infinities where floats exist, empty and 1 MB strings, unicode, ids with
``{ } : *``, newlines and path separators, unknown enum values, and sometimes a
valid scope or reservation id so the checks past the first one are reached too.
Whatever arrives, the answer is a deliberate status, never UNKNOWN or INTERNAL,
the sidecar stays up, and afterwards the ledger audit balances.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.sidecar_process import SidecarProcess, audit, redis_store, write_config
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

SERVICES = [pb.DESCRIPTOR.services_by_name[name] for name in ("TollgateService", "AdminService")]
TOKEN = "tok-fuzz-admin"
METADATA = (("authorization", f"Bearer {TOKEN}"),)
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
INT64 = (-(2**63), -1, 0, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1)
HOSTILE = ("", "acme", "{acme}", "a:b", "*", "a\nb", "../../etc/passwd", "a/b", "x" * 129, "é🚀\u202e",
           "\x00", "org:acme", "tg:{acme}:r:x", " ", "acme.", ".acme")
F = FieldDescriptor

ints = st.one_of(st.sampled_from(INT64), st.integers(min_value=-(2**63), max_value=2**63 - 1))
texts = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40), st.just("y" * (1 << 20)))
floats = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1.0, 0.5, 1.0, 2.0]),
                   st.floats(allow_nan=True, allow_infinity=True))


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    t = field.type
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return ints
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return st.integers(min_value=-(2**31), max_value=2**31 - 1)
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return st.integers(min_value=0, max_value=2**64 - 1)
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return st.integers(min_value=0, max_value=2**32 - 1)
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return floats
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_STRING:
        return texts
    if t == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == F.TYPE_ENUM:
        # Known values, and numbers no version of the contract defines.
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]),
                         st.integers(min_value=-5, max_value=1_000))
    return messages(field.message_type, depth + 1)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts of field values for ``descriptor``, each field present or not; oneofs get at most one member."""
    if depth > 3:
        return st.just({})
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            fields[field.name] = st.dictionaries(_value(key, depth), _value(value, depth), max_size=40)
        elif field.is_repeated:
            fields[field.name] = st.lists(_value(field, depth), max_size=6)
        else:
            fields[field.name] = _value(field, depth)
    return st.fixed_dictionaries({}, optional=fields)


def build(cls: Any, values: dict[str, Any]) -> Any:
    """A message from generated values; a value protobuf itself rejects is left out (the client could not send it)."""
    message = cls()
    descriptor = message.DESCRIPTOR
    seen_oneofs: set[str] = set()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        if field.containing_oneof is not None:
            if field.containing_oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(field.containing_oneof.name)
        try:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                target = getattr(message, name)
                value_field = field.message_type.fields_by_name["value"]
                for k, v in value.items():
                    if value_field.message_type is not None:
                        target[k].CopyFrom(build(target[k].__class__, v))
                    else:
                        target[k] = v
            elif field.is_repeated:
                target = getattr(message, name)
                for v in value:
                    if field.message_type is not None:
                        target.add().CopyFrom(build(target.add().__class__, v))
                        del target[-1]
                    else:
                        target.append(v)
            elif field.message_type is not None:
                getattr(message, name).CopyFrom(build(getattr(message, name).__class__, value))
            else:
                setattr(message, name, value)
        except (ValueError, TypeError):
            continue
    return message


@pytest.fixture(scope="module", params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def sidecar(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    tmp = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    # An admin caller of every org: the campaign reaches the admin operations and every tenant.
    callers = {"callers": [{"name": "fuzz", "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                            "grants": ["*"], "admin": True}]}
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
        store = redis_store(url)
        config = write_config(tmp / "tollgate.yaml", lambda d: d.update(store=store, auth=callers))
        with SidecarProcess(tmp, config=config, store=None) as proc:
            yield proc
    else:
        with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", lambda d: d.update(auth=callers))) as proc:
            yield proc


@pytest.fixture(scope="module")
def live_ids(sidecar: SidecarProcess) -> list[str]:
    """Real reservation ids (open, then some ended), so id-taking RPCs get past the format check."""

    async def make() -> list[str]:
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            ids = []
            for i in range(4):
                r = await stub.Route(pb.RouteRequest(
                    scope=pb.Scope(org_id="acme", user_id=f"u{i}"), reserve=True,
                    prompt=pb.Prompt(messages=pb.Messages(items=[pb.Message(role="user", content="hi")]))),
                    metadata=METADATA)
                ids.append(r.reservation.reservation_id)
            return ids

    return asyncio.run(make())


def _with_live_parts(values: dict[str, Any], descriptor: Descriptor, ids: list[str], pick: int) -> dict[str, Any]:
    """Half the time, a valid scope and a real reservation id in place of generated ones."""
    if pick % 2 == 0:
        return values
    out = dict(values)
    if "reservation_id" in descriptor.fields_by_name:
        out["reservation_id"] = ids[pick % len(ids)]
    if "pool_id" in descriptor.fields_by_name:
        out["pool_id"] = ("org:acme", "user:acme/fuzz1", "team:acme/t", "session:acme/s")[pick % 4]
    if "scope" in descriptor.fields_by_name:
        out["scope"] = {"org_id": "acme", "user_id": f"fuzz{pick % 7}"}
    if "prompt" in descriptor.fields_by_name and pick % 3 == 0:
        out["prompt"] = {"input_tokens": pick}
    if "model" in descriptor.fields_by_name and pick % 5 == 0:
        out["model"] = "gpt-4o-mini"
    return out


@pytest.mark.parametrize("method", [f"{s.name}/{m.name}" for s in SERVICES for m in s.methods])
def test_no_input_breaks_any_rpc(sidecar: SidecarProcess, live_ids: list[str], method: str) -> None:
    service_name, method = method.split("/")
    service = pb.DESCRIPTOR.services_by_name[service_name]
    descriptor = service.methods_by_name[method]
    request_cls = getattr(pb, descriptor.input_type.name)
    codes: dict[str, int] = {}

    async def call_all(requests: list[Any]) -> list[grpc.StatusCode]:
        async with grpc.aio.insecure_channel(
            sidecar.target, options=[("grpc.max_send_message_length", 8 << 20)]
        ) as channel:
            rpc = channel.unary_unary(f"/{service.full_name}/{method}",
                                      request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=lambda b: b)
            out = []
            for request in requests:
                try:
                    await rpc(request, timeout=10, metadata=METADATA)
                    out.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    out.append(exc.code())
            return out

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(st.tuples(messages(descriptor.input_type), st.integers(0, 1_000)), min_size=4, max_size=4))
    def campaign(batch: list[tuple[dict[str, Any], int]]) -> None:
        requests = [build(request_cls, _with_live_parts(values, descriptor.input_type, live_ids, pick))
                    for values, pick in batch]
        for code in asyncio.run(call_all(requests)):
            codes[code.name] = codes.get(code.name, 0) + 1
            assert code not in NEVER, f"{method} answered {code.name}:\n{sidecar.logs()[-3000:]}"

    campaign()
    assert sidecar.proc is not None and sidecar.proc.poll() is None, "the sidecar died"
    assert sum(codes.values()) >= 60


def test_the_ledger_balances_after_the_campaign(sidecar: SidecarProcess) -> None:
    result = audit(sidecar.config, sidecar.db if sidecar.store == "sqlite" else None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in sidecar.logs()
