"""Only the right callers, only their own budgets: listeners, credentials, tenancy and abuse, over real gRPC."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme

from tests.support.sidecar_process import SidecarProcess, audit, write_config
from tests.support.tenants import STORES, bearer, callers, prompt, refused, sidecar_on
from tollgate.config import load_config
from tollgate.errors import ConfigError
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

C = grpc.StatusCode
TOKENS = {"acme-app": "tok-acme-7f3a", "bravo-app": "tok-bravo-91c2", "search-app": "tok-search-55d0",
          "ops": "tok-ops-0b1e", "slow-app": "tok-slow-4242"}


def callers_config(data: dict[str, Any]) -> None:
    grants = {"acme-app": ["acme"], "bravo-app": ["bravo"], "search-app": ["acme/search"], "ops": ["*"],
              "slow-app": ["slow"]}
    data["auth"] = {"callers": callers(TOKENS, grants, admins=["ops"], rates={"slow-app": 5})}
    # One user may hold at most 5 reservations open at once.
    data["budgets"]["templates"]["user"]["max_open"] = 5
    data["limits"] = {"max_message_bytes": 262_144, "max_tags": 4}


def auth(name: str) -> tuple[tuple[str, str], ...]:
    return bearer(TOKENS[name])


# -- listeners ------------------------------------------------------------------------------------


def test_plaintext_off_loopback_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "t.yaml", lambda d: d.setdefault("server", {}).update(host="0.0.0.0"))
    with pytest.raises(ConfigError, match=r"server\.host: 0\.0\.0\.0 is not a loopback address.*server\.tls"):
        load_config(config)
    # The explicit override is accepted, and so is loopback.
    write_config(config, lambda d: d.setdefault("server", {}).update(host="0.0.0.0", allow_insecure=True))
    assert load_config(config).server.allow_insecure
    write_config(config, lambda d: d.setdefault("server", {}).update(host="::1"))
    load_config(config)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_sidecar(tmp: Path, ca: trustme.CA, *, mtls: bool, edit: Any = None) -> SidecarProcess:
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_cert.private_key_pem.write_to_path(str(tmp / "server.key"))
    server_cert.cert_chain_pems[0].write_to_path(str(tmp / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    client = ca.issue_cert("checkout-service") if mtls else None

    def config(data: dict[str, Any]) -> None:
        tls = {"cert": "server.pem", "key": "server.key"}
        if mtls:
            tls["client_ca"] = "ca.pem"
        data.setdefault("server", {})["tls"] = tls
        if edit is not None:
            edit(data)

    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem.bytes(),
        private_key=client.private_key_pem.bytes() if client else None,
        certificate_chain=client.cert_chain_pems[0].bytes() if client else None,
    )
    return SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", config), credentials=creds)


async def test_tls_listener_serves_tls_only(tmp_path: Path, ca: trustme.CA) -> None:
    with tls_sidecar(tmp_path, ca, mtls=False) as sidecar:
        assert sidecar.credentials is not None
        async with grpc.aio.secure_channel(sidecar.target, sidecar.credentials) as channel:
            budget = await pb_grpc.TollgateServiceStub(channel).GetBudget(
                pb.GetBudgetRequest(scope=pb.Scope(org_id="acme")), timeout=5)
            assert budget.pools[0].pool_id == "org:acme"
        async with grpc.aio.insecure_channel(sidecar.target) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.TollgateServiceStub(plain).GetBudget(
                    pb.GetBudgetRequest(scope=pb.Scope(org_id="acme")), timeout=2)
            assert err.value.code() == C.UNAVAILABLE


async def test_mtls_identifies_the_caller_by_its_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    def callers(data: dict[str, Any]) -> None:
        data["auth"] = {"callers": [{"name": "checkout", "subject": "checkout-service", "grants": ["acme"]}]}

    with tls_sidecar(tmp_path, ca, mtls=True, edit=callers) as sidecar:
        assert sidecar.credentials is not None
        async with grpc.aio.secure_channel(sidecar.target, sidecar.credentials) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            await stub.GetBudget(pb.GetBudgetRequest(scope=pb.Scope(org_id="acme")), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetBudget(pb.GetBudgetRequest(scope=pb.Scope(org_id="bravo")), timeout=5)
            assert err.value.code() == C.PERMISSION_DENIED and "checkout" in (err.value.details() or "")
        # Without a client certificate the handshake itself fails.
        anonymous = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
        async with grpc.aio.secure_channel(sidecar.target, anonymous) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.TollgateServiceStub(channel).GetBudget(
                    pb.GetBudgetRequest(scope=pb.Scope(org_id="acme")), timeout=3)
            assert err.value.code() == C.UNAVAILABLE


# -- callers and tenants, on both stores ----------------------------------------------------------


@pytest.fixture(scope="module", params=STORES)
def sidecar(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with sidecar_on(request, tmp_path_factory.mktemp(f"security-{request.param}"), callers_config) as proc:
        yield proc


@pytest.fixture
async def stub(sidecar: SidecarProcess) -> AsyncIterator[pb_grpc.TollgateServiceStub]:
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        yield pb_grpc.TollgateServiceStub(channel)


async def test_credentials_are_required_and_checked(stub: pb_grpc.TollgateServiceStub) -> None:
    request = pb.GetBudgetRequest(scope=pb.Scope(org_id="acme"))
    assert "credentials are required" in await refused(stub.GetBudget(request), C.UNAUTHENTICATED)
    assert "unknown token" in await refused(
        stub.GetBudget(request, metadata=(("authorization", "Bearer tok-acme-7f3b"),)), C.UNAUTHENTICATED)
    assert "Bearer <token>" in await refused(
        stub.GetBudget(request, metadata=(("authorization", TOKENS["acme-app"]),)), C.UNAUTHENTICATED)
    await stub.GetBudget(request, metadata=auth("acme-app"))
    # Quality spans every tenant: admins only.
    assert "admin" in await refused(stub.GetQuality(pb.GetQualityRequest(), metadata=auth("acme-app")),
                                    C.PERMISSION_DENIED)
    await stub.GetQuality(pb.GetQualityRequest(), metadata=auth("ops"))


async def test_a_tenant_cannot_touch_another_tenants_budget(sidecar: SidecarProcess,
                                                            stub: pb_grpc.TollgateServiceStub) -> None:
    bravo = pb.Scope(org_id="bravo", user_id="bea")
    routed = await stub.Route(pb.RouteRequest(scope=bravo, prompt=prompt(), reserve=True,
                                              signals=pb.TaskSignals(task_type="extract")),
                              metadata=auth("bravo-app"))
    rid = routed.reservation.reservation_id
    before = await stub.GetBudget(pb.GetBudgetRequest(scope=bravo), metadata=auth("bravo-app"))
    a = auth("acme-app")
    attempts = [
        stub.Route(pb.RouteRequest(scope=bravo, prompt=prompt(), reserve=True), metadata=a),
        stub.Reserve(pb.ReserveRequest(scope=bravo, model="gpt-4o-mini", prompt=prompt()), metadata=a),
        stub.GetBudget(pb.GetBudgetRequest(scope=bravo), metadata=a),
        stub.Commit(pb.CommitRequest(reservation_id=rid, usage=pb.Usage(input_tokens=1, output_tokens=1)),
                    metadata=a),
        stub.Release(pb.ReleaseRequest(reservation_id=rid), metadata=a),
        stub.Extend(pb.ExtendRequest(reservation_id=rid, ttl_ms=60_000), metadata=a),
        stub.Feedback(pb.FeedbackRequest(reservation_id=rid, score=0.0, source=pb.FEEDBACK_SOURCE_USER), metadata=a),
        stub.Escalate(pb.EscalateRequest(reservation_id=rid, scope=bravo, prompt=prompt()), metadata=a),
        # Its own scope with the other tenant's reservation id does not get through either.
        stub.Escalate(pb.EscalateRequest(reservation_id=rid, scope=pb.Scope(org_id="acme"), prompt=prompt()),
                      metadata=a),
    ]
    for attempt in attempts:
        assert "acme-app may not use" in await refused(attempt, C.PERMISSION_DENIED)
    after = await stub.GetBudget(pb.GetBudgetRequest(scope=bravo), metadata=auth("bravo-app"))
    assert after == before  # nothing changed: no hold, no charge, no release, no extension
    # The owner still ends it normally: it was neither committed nor released by the intruder.
    done = await stub.Commit(pb.CommitRequest(reservation_id=rid, usage=pb.Usage(input_tokens=30, output_tokens=5)),
                             metadata=auth("bravo-app"))
    assert done.charged_nanos > 0 and not done.replayed


async def test_team_grants_reach_their_team_only(stub: pb_grpc.TollgateServiceStub) -> None:
    s = auth("search-app")
    mine = pb.Scope(org_id="acme", team_id="search", user_id="sam")
    routed = await stub.Route(pb.RouteRequest(scope=mine, prompt=prompt(), reserve=True,
                                              signals=pb.TaskSignals(task_type="extract")), metadata=s)
    for other in (pb.Scope(org_id="acme", team_id="ads"), pb.Scope(org_id="acme")):
        await refused(stub.Route(pb.RouteRequest(scope=other, prompt=prompt(), reserve=True), metadata=s),
                      C.PERMISSION_DENIED)
    theirs = await stub.Route(pb.RouteRequest(scope=pb.Scope(org_id="acme", team_id="ads"), prompt=prompt(),
                                              reserve=True), metadata=auth("acme-app"))
    await refused(stub.Release(pb.ReleaseRequest(reservation_id=theirs.reservation.reservation_id), metadata=s),
                  C.PERMISSION_DENIED)
    # Its own team's reservation it may end; an org-wide caller may too.
    await stub.Release(pb.ReleaseRequest(reservation_id=routed.reservation.reservation_id), metadata=s)
    await stub.Release(pb.ReleaseRequest(reservation_id=theirs.reservation.reservation_id), metadata=auth("acme-app"))


async def test_a_runaway_caller_hits_its_limits_and_others_are_served(stub: pb_grpc.TollgateServiceStub) -> None:
    a = auth("acme-app")
    loop_user = pb.Scope(org_id="acme", user_id=f"loop-{uuid.uuid4().hex[:6]}")
    held = []
    for _ in range(5):
        r = await stub.Route(pb.RouteRequest(scope=loop_user, prompt=prompt(), reserve=True,
                                             signals=pb.TaskSignals(task_type="extract")), metadata=a)
        held.append(r.reservation.reservation_id)
    details = await refused(stub.Route(pb.RouteRequest(scope=loop_user, prompt=prompt(), reserve=True,
                                                       signals=pb.TaskSignals(task_type="extract")), metadata=a),
                            C.RESOURCE_EXHAUSTED)
    assert "reservations are open" in details
    # Another user of the same org is served meanwhile, and the first is again once it ends one.
    other = pb.Scope(org_id="acme", user_id="calm")
    served = await stub.Route(pb.RouteRequest(scope=other, prompt=prompt(), reserve=True,
                                              signals=pb.TaskSignals(task_type="extract")), metadata=a)
    await stub.Release(pb.ReleaseRequest(reservation_id=served.reservation.reservation_id), metadata=a)
    await stub.Release(pb.ReleaseRequest(reservation_id=held.pop()), metadata=a)
    r = await stub.Route(pb.RouteRequest(scope=loop_user, prompt=prompt(), reserve=True,
                                         signals=pb.TaskSignals(task_type="extract")), metadata=a)
    for rid in [*held, r.reservation.reservation_id]:
        await stub.Release(pb.ReleaseRequest(reservation_id=rid), metadata=a)


async def test_a_caller_over_its_rate_is_slowed_and_others_are_not(stub: pb_grpc.TollgateServiceStub) -> None:
    request = pb.GetBudgetRequest(scope=pb.Scope(org_id="slow"))
    results = await asyncio.gather(*(stub.GetBudget(request, metadata=auth("slow-app")) for _ in range(20)),
                                   return_exceptions=True)
    limited = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert 10 <= len(limited) <= 16  # a burst of 5 (one second of rate), then refusals
    assert all(r.code() == C.RESOURCE_EXHAUSTED and "over its rate of 5 calls/s" in (r.details() or "")
               for r in limited)
    await stub.GetBudget(pb.GetBudgetRequest(scope=pb.Scope(org_id="acme")), metadata=auth("acme-app"))


async def test_size_and_tag_limits_answer_clearly(stub: pb_grpc.TollgateServiceStub) -> None:
    a = auth("acme-app")
    huge = pb.RouteRequest(scope=pb.Scope(org_id="acme"), prompt=prompt("z" * 300_000))
    assert "larger than max" in await refused(stub.Route(huge, metadata=a), C.RESOURCE_EXHAUSTED)
    tagged = pb.RouteRequest(scope=pb.Scope(org_id="acme", tags={f"k{i}": "v" for i in range(5)}), prompt=prompt())
    assert "limits.max_tags allows 4" in await refused(stub.Route(tagged, metadata=a), C.INVALID_ARGUMENT)
    long_id = pb.RouteRequest(scope=pb.Scope(org_id="acme", user_id="u" * 129), prompt=prompt())
    assert "scope.user_id" in await refused(stub.Route(long_id, metadata=a), C.INVALID_ARGUMENT)


def test_the_ledger_balances_after_the_attacks(sidecar: SidecarProcess) -> None:
    result = audit(sidecar.config, sidecar.db if sidecar.store == "sqlite" else None)
    assert result.returncode == 0, result.stdout + result.stderr
