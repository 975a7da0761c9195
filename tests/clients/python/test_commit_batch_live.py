"""Commits in the background and in batches, against a real sidecar process: what each caller was told
against what the ledger did, when answers are lost, the sidecar restarts, or it never comes back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from opentelemetry.sdk.trace import TracerProvider

from tests.support.catalog import suite_config_text
from tests.support.sidecar_process import SidecarProcess, free_port, write_config
from tollgate.app import Tollgate
from tollgate.config import parse_config
from tollgate.errors import StoreUnavailable
from tollgate.grpc.handlers import TollgateServicer
from tollgate.grpc.parse import MAX_COMMIT_BATCH, MAX_COMMIT_BATCH_BYTES
from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver
from tollgate_client import (
    AsyncClient,
    Client,
    PoolState,
    ReservationNotFoundError,
    Retry,
    Scope,
    UnavailableError,
    Usage,
)
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

from ..lossy_proxy import LossyProxy

MODEL = "gpt-4o-mini"
USAGE = Usage(input_tokens=900, output_tokens=120)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    tmp = Path(tmp_path_factory.mktemp("batch-sidecar"))
    metrics = free_port()

    def edit(data: dict[str, Any]) -> None:
        data["telemetry"] = {"metrics_port": metrics}

    with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", edit)) as process:
        process.metrics_port = metrics  # type: ignore[attr-defined]
        yield process


def _scope(name: str) -> Scope:
    return Scope(org=f"batch-{name}-{time.time_ns()}", user="alice")


async def _org(client: AsyncClient, scope: Scope) -> PoolState:
    return next(pool for pool in await client.get_budget(scope) if pool.level == "org")


def _batches(sidecar: SidecarProcess) -> float:
    """CommitBatch RPCs the sidecar has answered OK, from its Prometheus endpoint."""
    port = sidecar.metrics_port  # type: ignore[attr-defined]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    prefix = 'tollgate_rpc_duration_seconds_count{code="OK",method="CommitBatch"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


async def test_a_batch_answers_each_commit_as_commit_would_and_only_good_ones_move_money(
        sidecar: SidecarProcess) -> None:
    scope = _scope("wire")
    async with AsyncClient(sidecar.target) as client:
        a = (await client.reserve(scope, MODEL, input_tokens=1000)).reservation.reservation_id
        b = (await client.reserve(scope, MODEL, input_tokens=1000)).reservation.reservation_id
        usage = pb.Usage(input_tokens=900, output_tokens=120)
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            stub = pb_grpc.TollgateServiceStub(channel)
            answer = await stub.CommitBatch(pb.CommitBatchRequest(commits=[
                pb.CommitRequest(reservation_id=a, usage=usage),
                pb.CommitRequest(reservation_id=f"{'0' * 24}.{scope.org}", usage=usage),
                pb.CommitRequest(reservation_id=b, usage=pb.Usage(input_tokens=-5)),
                pb.CommitRequest(reservation_id=a, usage=usage),
                pb.CommitRequest(reservation_id=a, usage=pb.Usage(input_tokens=901, output_tokens=120)),
            ]))
        got = [(r.code, r.reason, r.HasField("response")) for r in answer.results]
        assert got == [
            (0, "", True),
            (grpc.StatusCode.NOT_FOUND.value[0], "RESERVATION_NOT_FOUND", False),
            (grpc.StatusCode.INVALID_ARGUMENT.value[0], "INVALID_REQUEST", False),
            (0, "", True),
            (grpc.StatusCode.FAILED_PRECONDITION.value[0], "IDEMPOTENCY_CONFLICT", False),
        ]
        first, repeat = answer.results[0].response, answer.results[3].response
        assert (first.replayed, repeat.replayed, repeat.charged_nanos) == (False, True, first.charged_nanos)
        assert "input_tokens" in answer.results[2].message  # says what to fix
        # a's charge once; b still held in full, untouched by its refused commit.
        org = await _org(client, scope)
        held_b = (await client.release(b)).released_nanos
        assert (org.spent_nanos, org.held_nanos) == (first.charged_nanos, held_b)


@pytest.mark.parametrize("size", [0, MAX_COMMIT_BATCH + 1])
async def test_a_batch_of_no_commit_or_too_many_is_refused_whole(sidecar: SidecarProcess, size: int) -> None:
    scope = _scope("size")
    async with AsyncClient(sidecar.target) as client:
        reserved = (await client.reserve(scope, MODEL, input_tokens=1000)).reservation
        request = pb.CommitBatchRequest(commits=[
            pb.CommitRequest(reservation_id=reserved.reservation_id, usage=pb.Usage(input_tokens=10))] * size)
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.TollgateServiceStub(channel).CommitBatch(request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert f"send 1 to {MAX_COMMIT_BATCH}" in (caught.value.details() or "")
        org = await _org(client, scope)
        assert (org.spent_nanos, org.held_nanos) == (0, reserved.held_nanos)  # nothing committed


async def test_a_body_larger_than_any_valid_batch_is_refused_unparsed(sidecar: SidecarProcess) -> None:
    # Two million empty commits fit in gRPC's 4 MiB: parsed, each would be an object (~100 MB in all).
    body = b"\x0a\x00" * (2 * 1024 * 1024 - 16)
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/tollgate.v1.TollgateService/CommitBatch")(body)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"more than any valid tollgate.v1.CommitBatchRequest takes ({MAX_COMMIT_BATCH_BYTES:,})" in (
        caught.value.details() or "")
    # The largest valid batch is under the bound: 256 commits of the longest ids and figures.
    longest = pb.CommitRequest(reservation_id=f"{'f' * 24}.{'o' * 128}", usage=pb.Usage(
        input_tokens=2**63 - 1, cached_input_tokens=2**63 - 1, output_tokens=2**63 - 1, reasoning_tokens=2**63 - 1))
    largest = pb.CommitBatchRequest(commits=[longest] * MAX_COMMIT_BATCH).SerializeToString()
    assert len(largest) <= MAX_COMMIT_BATCH_BYTES


async def test_commits_queued_together_leave_in_one_batch_and_settle_every_pool(sidecar: SidecarProcess) -> None:
    scope = _scope("together")
    async with AsyncClient(sidecar.target) as client:
        holds = [(await client.reserve(scope, MODEL, input_tokens=1000)).reservation for _ in range(40)]
        before = _batches(sidecar)
        futures = [client.commit_in_background(h.reservation_id, USAGE, expires_at=h.expires_at) for h in holds]
        assert not any(f.done() for f in futures)  # nothing waited for the sidecar
        await client.flush()
        results = [f.result() for f in futures]
        assert _batches(sidecar) - before == 1
        assert [r.reservation_id for r in results] == [h.reservation_id for h in holds]
        org = await _org(client, scope)
        assert (org.spent_nanos, org.held_nanos) == (sum(r.charged_nanos for r in results), 0)


async def test_a_batch_whose_answer_is_lost_is_sent_again_and_charges_once(sidecar: SidecarProcess) -> None:
    scope = _scope("lost")
    async with AsyncClient(sidecar.target) as direct:
        holds = [(await direct.reserve(scope, MODEL, input_tokens=1000)).reservation for _ in range(3)]
        with LossyProxy(sidecar.target) as proxy:
            async with AsyncClient(proxy.target, timeout=5.0) as client:
                futures = [client.commit_in_background(h.reservation_id, USAGE, expires_at=h.expires_at)
                           for h in holds]
                await client.flush()
            assert proxy.lost == 1  # the first answer never came back; the batch had taken effect
        results = [f.result() for f in futures]
        assert all(r.replayed for r in results)  # the retry found every commit done
        org = await _org(direct, scope)
        assert (org.spent_nanos, org.held_nanos) == (sum(r.charged_nanos for r in results), 0)


async def test_commits_queued_while_the_sidecar_restarts_are_delivered_after(tmp_path: Path) -> None:
    scope = _scope("restart")
    with SidecarProcess(tmp_path) as sidecar:
        async with AsyncClient(sidecar.target, retry=Retry(budget_s=30.0, max_backoff_s=0.2)) as client:
            holds = [(await client.reserve(scope, MODEL, input_tokens=1000)).reservation for _ in range(5)]
            sidecar.terminate()
            futures = [client.commit_in_background(h.reservation_id, USAGE, expires_at=h.expires_at)
                       for h in holds]
            await asyncio.sleep(0.5)
            assert not any(f.done() for f in futures)  # retried, not given up
            sidecar.start()
            await client.flush()
            results = [f.result() for f in futures]
            org = await _org(client, scope)
    assert (org.spent_nanos, org.held_nanos) == (sum(r.charged_nanos for r in results), 0)


async def test_a_commit_is_given_up_at_its_reservations_expiry_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    async with AsyncClient(nobody, timeout=0.2, retry=Retry(budget_s=0.1, max_backoff_s=0.05)) as client:
        expires = datetime.now(UTC) + timedelta(seconds=0.6)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="tollgate_client"):
            future = client.commit_in_background(f"{'1' * 24}.acme", USAGE, expires_at=expires)
            await client.flush()
        waited = time.monotonic() - started
        with pytest.raises(UnavailableError):
            future.result()
    assert 0.4 < waited < 5.0  # retried until the expiry, not past it
    assert f"{'1' * 24}.acme" in caplog.text and "expiry policy" in caplog.text


async def test_close_sends_what_is_queued(sidecar: SidecarProcess) -> None:
    scope = _scope("close")
    client = AsyncClient(sidecar.target)
    holds = [(await client.reserve(scope, MODEL, input_tokens=1000)).reservation for _ in range(4)]
    futures = [client.commit_in_background(h.reservation_id, USAGE) for h in holds]
    await client.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(RuntimeError, match="closed"):
        client.commit_in_background(holds[0].reservation_id, USAGE)
    async with AsyncClient(sidecar.target) as other:
        org = await _org(other, scope)
    assert (org.spent_nanos, org.held_nanos) == (sum(f.result().charged_nanos for f in futures), 0)


async def test_a_refused_commit_fails_its_own_future_alone(sidecar: SidecarProcess) -> None:
    scope = _scope("refused")
    async with AsyncClient(sidecar.target) as client:
        good = (await client.reserve(scope, MODEL, input_tokens=1000)).reservation
        unknown = client.commit_in_background(f"{'2' * 24}.{scope.org}", USAGE)
        committed = client.commit_in_background(good.reservation_id, USAGE)
        await client.flush()
        with pytest.raises(ReservationNotFoundError):
            unknown.result()
        assert committed.result().charged_nanos > 0
        org = await _org(client, scope)
        assert (org.spent_nanos, org.held_nanos) == (committed.result().charged_nanos, 0)


@contextlib.asynccontextmanager
async def _in_process(servicer: TollgateServicer, *, without: str = "") -> AsyncIterator[str]:
    """A sidecar's servicer on a grpc.aio server of this loop, all its methods but ``without``."""
    service = pb.DESCRIPTOR.services_by_name["TollgateService"]
    handlers = {
        m.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, m.name),
            request_deserializer=message_factory.GetMessageClass(m.input_type).FromString,
            response_serializer=message_factory.GetMessageClass(m.output_type).SerializeToString)
        for m in service.methods if m.name != without
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def _servicer(cls: type[TollgateServicer] = TollgateServicer) -> TollgateServicer:
    config = parse_config(suite_config_text())
    return cls(Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets))))


async def test_a_sidecar_older_than_commit_batch_gets_each_commit_alone() -> None:
    # Every method but CommitBatch, as a sidecar of an earlier version serves them.
    async with _in_process(_servicer(), without="CommitBatch") as target:
        scope = _scope("older")
        async with AsyncClient(target) as client:
            holds = [(await client.reserve(scope, MODEL, input_tokens=1000)).reservation for _ in range(3)]
            futures = [client.commit_in_background(h.reservation_id, USAGE) for h in holds]
            await client.flush()
            results = [f.result() for f in futures]
            org = await _org(client, scope)
        assert (org.spent_nanos, org.held_nanos) == (sum(r.charged_nanos for r in results), 0)


async def test_batches_are_not_sent_in_the_trace_of_the_call_that_started_the_sender() -> None:
    seen: list[dict[str, Any]] = []

    class Recording(TollgateServicer):
        async def CommitBatch(self, request: pb.CommitBatchRequest,
                              context: grpc.aio.ServicerContext) -> pb.CommitBatchResponse:
            seen.append(dict(context.invocation_metadata() or ()))
            return await super().CommitBatch(request, context)

    tracer = TracerProvider().get_tracer("app")
    async with _in_process(_servicer(Recording)) as target, AsyncClient(target) as client:
        scope = _scope("trace")
        for name in ("first call", "second call"):
            with tracer.start_as_current_span(name):
                hold = (await client.reserve(scope, MODEL, input_tokens=1000)).reservation
                client.commit_in_background(hold.reservation_id, USAGE)
            await client.flush()
    # Each commit's span links to its own reservation's instead (the sidecar's side).
    assert len(seen) == 2 and not any("traceparent" in metadata for metadata in seen)


async def test_once_the_store_fails_a_commit_the_rest_of_its_batch_are_answered_untried() -> None:
    class Down(LocalLedger):
        """The embedded ledger whose writes of commits fail, as a store past its timeout does."""

        commits_tried = 0

        async def commit(self, request: Any) -> Any:
            Down.commits_tried += 1
            raise StoreUnavailable("the store did not answer within 250 ms")

    config = parse_config(suite_config_text())
    servicer = TollgateServicer(Tollgate(config, Down(MemoryJournal(), specs=spec_resolver(config.budgets))))
    async with _in_process(servicer) as target, AsyncClient(target) as client:
        scope = _scope("down")
        holds = [(await client.reserve(scope, MODEL, input_tokens=1000)).reservation for _ in range(3)]
        async with grpc.aio.insecure_channel(target) as channel:
            answer = await pb_grpc.TollgateServiceStub(channel).CommitBatch(pb.CommitBatchRequest(commits=[
                pb.CommitRequest(reservation_id=h.reservation_id, usage=pb.Usage(input_tokens=900)) for h in holds]))
        # One store timeout for the batch, not three: the sender retries all of them.
        assert Down.commits_tried == 1
        assert [(r.code, r.reason) for r in answer.results] == [
            (grpc.StatusCode.UNAVAILABLE.value[0], "STORE_UNAVAILABLE")] * 3
        org = await _org(client, scope)
        assert (org.spent_nanos, org.held_nanos) == (0, sum(h.held_nanos for h in holds))


# ---- the blocking client: the same sender, on a thread ----


def _sync_org(client: Client, scope: Scope) -> PoolState:
    return next(pool for pool in client.get_budget(scope) if pool.level == "org")


def test_the_blocking_clients_commits_share_batches_and_settle_every_pool(sidecar: SidecarProcess) -> None:
    scope = _scope("sync")
    with Client(sidecar.target) as client:
        holds = [client.reserve(scope, MODEL, input_tokens=1000).reservation for _ in range(40)]
        before = _batches(sidecar)
        futures = [client.commit_in_background(h.reservation_id, USAGE, expires_at=h.expires_at) for h in holds]
        assert client.flush(30.0)
        results = [f.result(0) for f in futures]
        # The thread takes what is queued whenever it is free: a few batches for 40 commits, not 40 calls.
        assert 1 <= _batches(sidecar) - before <= 10
        org = _sync_org(client, scope)
    assert (org.spent_nanos, org.held_nanos) == (sum(r.charged_nanos for r in results), 0)


def test_the_blocking_client_sends_a_lost_batch_again_and_closes_after_its_commits(sidecar: SidecarProcess) -> None:
    scope = _scope("sync-lost")
    with Client(sidecar.target) as direct:
        holds = [direct.reserve(scope, MODEL, input_tokens=1000).reservation for _ in range(3)]
        with LossyProxy(sidecar.target) as proxy:
            client = Client(proxy.target, timeout=5.0)
            futures = [client.commit_in_background(h.reservation_id, USAGE, expires_at=h.expires_at) for h in holds]
            client.close()  # flushes first
            assert proxy.lost == 1
        results = [f.result(0) for f in futures]
        # The first batch's answer was lost and its retry found it done; later batches went through.
        assert results[0].replayed
        with pytest.raises(RuntimeError, match="closed"):
            client.commit_in_background(holds[0].reservation_id, USAGE)
        org = _sync_org(direct, scope)
    assert (org.spent_nanos, org.held_nanos) == (sum(r.charged_nanos for r in results), 0)
