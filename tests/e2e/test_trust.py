"""The caller's view of money, from outside: real sidecar processes, real gRPC, real Redis.

Each test is one way the promise "money moves only as the caller was told, and no
tenant touches another's budget" was once broken from outside: dotted org ids read
two ways, a refused reserve charged later, a retry that could not replay, rejected
input that held memory, garbage bytes answered UNKNOWN, and an error answered after
a write.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.redis_server import RedisServer, redis_available
from tests.support.sidecar_process import SidecarProcess, audit, redis_store, write_config
from tests.support.tenants import STORES, bearer, callers, prompt, refused, sidecar_on
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

C = grpc.StatusCode
LONG_ORG = "x" * 120 + ".acme.eu"  # the longest org id there may be: 128 characters
TOKENS = {"dotted": "tok-dotted-1", "tail": "tok-tail-2", "long": "tok-long-3", "lookalike": "tok-look-4",
          "ops": "tok-ops-5"}
GRANTS = {"dotted": ["acme.eu"], "tail": ["eu"], "long": [LONG_ORG], "lookalike": ["acme"], "ops": ["*"]}


def auth(name: str) -> tuple[tuple[str, str], ...]:
    return bearer(TOKENS[name])


def with_callers(data: dict[str, Any]) -> None:
    data["auth"] = {"callers": callers(TOKENS, GRANTS, admins=["ops"])}


@pytest.fixture(scope="module", params=STORES)
def tenants_sidecar(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[SidecarProcess]:
    with sidecar_on(request, tmp_path_factory.mktemp(f"trust-{request.param}"), with_callers) as proc:
        yield proc


@pytest.fixture
async def stub(tenants_sidecar: SidecarProcess) -> AsyncIterator[pb_grpc.TollgateServiceStub]:
    async with grpc.aio.insecure_channel(tenants_sidecar.target) as channel:
        yield pb_grpc.TollgateServiceStub(channel)


# -- 1. one grammar for reservation ids: a dotted org is one org ----------------------------------


def _uses(stub: pb_grpc.TollgateServiceStub, rid: str, scope: pb.Scope, who: str) -> dict[str, Any]:
    """Every RPC that takes a reservation id, as ``who`` would send it."""
    a = auth(who)
    usage = pb.Usage(input_tokens=9, output_tokens=3)
    return {
        "Commit": lambda: stub.Commit(pb.CommitRequest(reservation_id=rid, usage=usage), metadata=a),
        "Release": lambda: stub.Release(pb.ReleaseRequest(reservation_id=rid), metadata=a),
        "Extend": lambda: stub.Extend(pb.ExtendRequest(reservation_id=rid, ttl_ms=60_000), metadata=a),
        "Feedback": lambda: stub.Feedback(pb.FeedbackRequest(reservation_id=rid, score=0.5,
                                                             source=pb.FEEDBACK_SOURCE_USER), metadata=a),
        "Escalate": lambda: stub.Escalate(pb.EscalateRequest(reservation_id=rid, scope=scope, prompt=prompt(),
                                                             reason="invalid_json"), metadata=a),
    }


@pytest.mark.parametrize(("owner", "org", "intruder"), [
    ("dotted", "acme.eu", "tail"),       # the intruder's org is the tail of the owner's
    ("long", LONG_ORG, "tail"),          # a maximal-length dotted org
    ("dotted", "acme.eu", "lookalike"),  # the intruder's org is the head of the owner's
])
@pytest.mark.parametrize("rpc", ["Commit", "Release", "Extend", "Feedback", "Escalate"])
async def test_a_dotted_org_is_one_tenant_on_every_rpc_that_takes_a_reservation_id(
        stub: pb_grpc.TollgateServiceStub, owner: str, org: str, intruder: str, rpc: str) -> None:
    scope = pb.Scope(org_id=org, user_id="u1")
    reserved = await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt()),
                                  metadata=auth(owner))
    rid = reserved.reservation.reservation_id
    before = await stub.GetBudget(pb.GetBudgetRequest(scope=scope), metadata=auth(owner))
    intruder_scope = pb.Scope(org_id=GRANTS[intruder][0], user_id="u1")
    assert "may not use reservations of org" in await refused(
        _uses(stub, rid, intruder_scope, intruder)[rpc](), C.PERMISSION_DENIED)
    after = await stub.GetBudget(pb.GetBudgetRequest(scope=scope), metadata=auth(owner))
    assert after == before  # the intruder's call moved nothing
    # The owner is not refused its own reservation.
    await _uses(stub, rid, scope, owner)[rpc]()


async def test_reservation_ids_shaped_to_confuse_a_parser_are_refused_before_any_lookup(
        stub: pb_grpc.TollgateServiceStub) -> None:
    a = auth("tail")
    for rid in ("0" * 24 + "..eu", "0" * 24 + ".eu/x", "0" * 23 + ".eu", "." + "0" * 24, "0" * 24 + "." + "e" * 129,
                "0" * 24 + ".{eu}", "0" * 24 + ".eu\n", "0" * 24 + ".eu:r:x", "0" * 25 + ".eu"):
        details = await refused(stub.Commit(pb.CommitRequest(reservation_id=rid), metadata=a), C.INVALID_ARGUMENT)
        assert "is not a reservation id" in details
    # Well formed, but of orgs that only look like the caller's: someone else's.
    for rid in ("0" * 24 + ".acme.eu.", "0" * 24 + ".acme..eu", "0" * 24 + ".eu.", "0" * 24 + ".EU"):
        await refused(stub.Commit(pb.CommitRequest(reservation_id=rid), metadata=a), C.PERMISSION_DENIED)


# -- 3. a retried Reserve replays, whatever the sidecar learned since --------------------------------


async def _move_the_estimate(stub: pb_grpc.TollgateServiceStub, scope: pb.Scope, who: str) -> None:
    for _ in range(30):
        r = await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt(),
                                                 task_type="summarize"), metadata=auth(who))
        await stub.Commit(pb.CommitRequest(reservation_id=r.reservation.reservation_id,
                                           usage=pb.Usage(input_tokens=40, output_tokens=3_900)), metadata=auth(who))


async def test_a_keyed_reserve_replays_after_the_estimate_moved(stub: pb_grpc.TollgateServiceStub) -> None:
    scope = pb.Scope(org_id="acme.eu", user_id="replayer")
    request = pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt(), task_type="summarize",
                                reservation=pb.ReservationOptions(idempotency_key="call-77"))
    route = pb.RouteRequest(scope=scope, prompt=prompt(), reserve=True, signals=pb.TaskSignals(task_type="summarize"),
                            reservation=pb.ReservationOptions(idempotency_key="route-77"))
    first = await stub.Reserve(request, metadata=auth("dotted"))
    routed = await stub.Route(route, metadata=auth("dotted"))
    await _move_the_estimate(stub, pb.Scope(org_id="acme.eu", user_id="other"), "dotted")
    fresh = await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt(),
                                                 task_type="summarize"), metadata=auth("dotted"))
    assert fresh.reservation.held_nanos != first.reservation.held_nanos  # the estimate did move
    again = await stub.Reserve(request, metadata=auth("dotted"))
    assert again.reservation.replayed
    assert again.reservation.reservation_id == first.reservation.reservation_id
    assert again.reservation.held_nanos == first.reservation.held_nanos
    rerouted = await stub.Route(route, metadata=auth("dotted"))
    assert rerouted.reservation.replayed
    assert rerouted.reservation.reservation_id == routed.reservation.reservation_id
    # A different request under the same key is not a retry.
    other = pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt("something else"),
                              task_type="summarize", reservation=pb.ReservationOptions(idempotency_key="call-77"))
    assert "different request" in await refused(stub.Reserve(other, metadata=auth("dotted")), C.FAILED_PRECONDITION)


@pytest.mark.redis
async def test_a_keyed_reserve_replays_after_a_restart_and_on_another_sidecar(
        tmp_path: Path, redis_server: Any) -> None:
    store = redis_store(redis_server.url)
    config = write_config(tmp_path / "t.yaml", lambda d: d.update(store=store))
    scope = pb.Scope(org_id="acme.eu", user_id="mover")
    request = pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt(), task_type="summarize",
                                reservation=pb.ReservationOptions(idempotency_key="k-restart"))
    with SidecarProcess(tmp_path, config=config, store=None) as one:
        async with grpc.aio.insecure_channel(one.target) as channel:
            first = await pb_grpc.TollgateServiceStub(channel).Reserve(request)
    with SidecarProcess(tmp_path, config=config, store=None) as two:
        async with grpc.aio.insecure_channel(two.target) as channel:
            s = pb_grpc.TollgateServiceStub(channel)
            await _move_the_estimate_unauthenticated(s)
            again = await s.Reserve(request)
    assert again.reservation.replayed and again.reservation.reservation_id == first.reservation.reservation_id


async def test_a_keyed_reserve_replays_after_the_embedded_store_restarts(tmp_path: Path) -> None:
    scope = pb.Scope(org_id="acme.eu", user_id="mover")
    request = pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt(), task_type="summarize",
                                reservation=pb.ReservationOptions(idempotency_key="k-restart"))
    proc = SidecarProcess(tmp_path)
    with proc:
        async with grpc.aio.insecure_channel(proc.target) as channel:
            first = await pb_grpc.TollgateServiceStub(channel).Reserve(request)
    with SidecarProcess(tmp_path, db=proc.db) as again_proc:
        async with grpc.aio.insecure_channel(again_proc.target) as channel:
            s = pb_grpc.TollgateServiceStub(channel)
            await _move_the_estimate_unauthenticated(s)
            again = await s.Reserve(request)
    assert again.reservation.replayed and again.reservation.reservation_id == first.reservation.reservation_id


async def _move_the_estimate_unauthenticated(stub: pb_grpc.TollgateServiceStub) -> None:
    scope = pb.Scope(org_id="acme.eu", user_id="other")
    for _ in range(30):
        r = await stub.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt(),
                                                 task_type="summarize"))
        await stub.Commit(pb.CommitRequest(reservation_id=r.reservation.reservation_id,
                                           usage=pb.Usage(input_tokens=40, output_tokens=3_900)))


# -- 2. a reserve the sidecar gave up on is never charged ---------------------------------------------


@pytest.mark.redis
async def test_a_reserve_refused_during_a_redis_stall_is_never_charged(tmp_path: Path) -> None:
    if not redis_available():
        pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (CI does this itself)")
    with RedisServer(tmp_path / "redis") as redis:

        def edit(data: dict[str, Any]) -> None:
            data["store"] = {**redis_store(redis.url), "timeout": "250ms"}
            data["reservations"] = {"ttl": "2s"}

        config = write_config(tmp_path / "t.yaml", edit)
        scope = pb.Scope(org_id="stall.eu", user_id="u")
        with SidecarProcess(tmp_path, config=config, store=None) as proc:
            async with grpc.aio.insecure_channel(proc.target) as channel:
                s = pb_grpc.TollgateServiceStub(channel)
                # Warm: the connections open, the script loaded and the org known, so that each
                # Reserve below is one script call, written to Redis's socket as it stalls.
                warm = await s.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt()))
                await s.Release(pb.ReleaseRequest(reservation_id=warm.reservation.reservation_id))
                os.kill(redis.proc.pid, signal.SIGSTOP)
                try:
                    calls = [s.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt()))
                             for _ in range(10)]
                    answers = await asyncio.gather(*calls, return_exceptions=True)
                    await asyncio.sleep(1.5)  # well past the store timeout: the scripts sit in Redis's buffers
                finally:
                    os.kill(redis.proc.pid, signal.SIGCONT)
                told = [a.reservation.reservation_id for a in answers if isinstance(a, pb.ReserveResponse)]
                codes = {a.code() for a in answers if isinstance(a, grpc.aio.AioRpcError)}
                assert codes <= {C.UNAVAILABLE}, codes
                assert len(told) < 10  # the stall really refused calls
                for rid in told:
                    await s.Release(pb.ReleaseRequest(reservation_id=rid))
                await asyncio.sleep(3.0)  # past the TTL: any hold left would now be charged
                for pool in (await s.GetBudget(pb.GetBudgetRequest(scope=scope))).pools:
                    assert (pool.spent_nanos, pool.held_nanos) == (0, 0), pool
        result = audit(config)
        assert result.returncode == 0, result.stdout + result.stderr


# -- 4. rejected input costs no memory ------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_rejected_requests_leave_no_memory_behind(tmp_path: Path) -> None:
    config = write_config(tmp_path / "t.yaml")
    with SidecarProcess(tmp_path, config=config) as proc:
        assert proc.proc is not None
        async with grpc.aio.insecure_channel(proc.target) as channel:
            s = pb_grpc.TollgateServiceStub(channel)
            scope = pb.Scope(org_id="acme")
            many = pb.Prompt(messages=pb.Messages(items=[pb.Message(role="user", content="hi")] * 100_000))
            tags = pb.Scope(org_id="acme", tags={f"k{i}": "v" for i in range(100_000)})
            await refused(s.Route(pb.RouteRequest(scope=scope, prompt=many)), C.INVALID_ARGUMENT)
            baseline = _rss_kib(proc.proc.pid)
            for _ in range(25):
                await refused(s.Route(pb.RouteRequest(scope=scope, prompt=many)), C.INVALID_ARGUMENT)
                await refused(s.GetBudget(pb.GetBudgetRequest(scope=tags)), C.INVALID_ARGUMENT)
                await refused(s.Commit(pb.CommitRequest(reservation_id="0" * 24 + "." + "a" * 4_000_000)),
                              C.INVALID_ARGUMENT)
            grown_mib = (_rss_kib(proc.proc.pid) - baseline) / 1024
    # Before, each of these pinned ~20-27 MB until a full collection: 75 of them, well over 1 GB.
    assert grown_mib < 100, f"RSS grew {grown_mib:.0f} MiB over 75 rejected requests"


# -- 5. garbage bytes answer INVALID_ARGUMENT, quietly ----------------------------------------------------

METHODS = [f"/tollgate.v1.{service.name}/{method.name}"
           for service in pb.DESCRIPTOR.services_by_name.values() for method in service.methods]


@pytest.mark.parametrize("body", [b"\x0f", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 10, b"\xff" * 64])
async def test_garbage_bytes_answer_invalid_argument_on_every_method(tmp_path: Path, body: bytes) -> None:
    assert len(METHODS) == 14
    with SidecarProcess(tmp_path) as proc:
        async with grpc.aio.insecure_channel(proc.target) as channel:
            for method in METHODS:
                call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
                details = await refused(call(body), C.INVALID_ARGUMENT)
                assert "malformed request" in details and "DecodeError" not in details, details
        log = proc.log_path.read_text()
    assert "Traceback" not in log and "Unexpected" not in log


# -- 6. an error answer changes nothing that lasts --------------------------------------------------------


def _ledger_digest(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = [list(conn.execute(f"SELECT * FROM {t} ORDER BY 1")) for t in ("pools", "reservations")]
    return hashlib.sha256(repr(rows).encode()).hexdigest()


async def test_a_top_up_past_the_largest_cap_changes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "t.yaml", with_callers)
    with SidecarProcess(tmp_path, config=config) as proc:
        async with grpc.aio.insecure_channel(proc.target) as channel:
            admin = pb_grpc.AdminServiceStub(channel)
            s = pb_grpc.TollgateServiceStub(channel)
            ops = auth("ops")
            scope = pb.Scope(org_id="acme", user_id="rich")
            await admin.TopUp(pb.TopUpRequest(pool_id="org:acme", amount_nanos=4 * 10**15), metadata=ops)
            before = await s.GetBudget(pb.GetBudgetRequest(scope=scope), metadata=ops)
            digest = _ledger_digest(proc.db)
            for _ in range(3):
                details = await refused(admin.TopUp(pb.TopUpRequest(pool_id="org:acme", amount_nanos=4 * 10**15),
                                                    metadata=ops), C.INVALID_ARGUMENT)
                assert "nothing was changed" in details
            assert await s.GetBudget(pb.GetBudgetRequest(scope=scope), metadata=ops) == before
            assert _ledger_digest(proc.db) == digest
            # The org still works: its budget reads, and a reserve both holds and answers.
            held = await s.Reserve(pb.ReserveRequest(scope=scope, model="gpt-4o-mini", prompt=prompt()), metadata=ops)
            await s.Release(pb.ReleaseRequest(reservation_id=held.reservation.reservation_id), metadata=ops)
        # The restarted sidecar reads the override back without failing either.
    with SidecarProcess(tmp_path, config=config, db=proc.db) as again:
        async with grpc.aio.insecure_channel(again.target) as channel:
            await pb_grpc.TollgateServiceStub(channel).GetBudget(pb.GetBudgetRequest(scope=scope), metadata=ops)
    result = audit(config, proc.db)
    assert result.returncode == 0, result.stdout + result.stderr
