"""Escalation over real gRPC: try cheap, validate, escalate — linked in the ledger, the log and the trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from tests.support.otlp_receiver import OtlpReceiver, attributes
from tests.support.sidecar_process import SidecarProcess, audit, redis_store, write_config
from tollgate.app.stores import open_store
from tollgate.config import load_config
from tollgate.ledger import LocalLedger, SqliteJournal, spec_resolver
from tollgate_client import (
    AsyncClient,
    Decision,
    EscalationRefusedError,
    InvalidRequestError,
    Scope,
    Usage,
    call_with_escalation,
)
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

SCOPE = Scope(org="acme", team="search", user="alice")
MESSAGES = [{"role": "user", "content": "Return the invoice as JSON: number 17, total 42.50 EUR"}]


def config(tmp: Path, store: dict[str, Any] | None = None) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["routing"]["decision_log"] = {"path": str(tmp / "decisions.jsonl")}
        if store is not None:
            data["store"] = store

    return write_config(tmp / "tollgate.yaml", edit)


def fake_llm(good_from_tier: str) -> tuple[Any, list[str]]:
    """A provider stand-in: invalid JSON below ``good_from_tier``, valid JSON from there on."""
    order = ["cheap", "medium", "frontier"]
    called: list[str] = []

    async def call(decision: Decision) -> dict[str, Any]:
        called.append(decision.model)
        good = order.index(decision.tier) >= order.index(good_from_tier)
        return {"text": '{"number": 17, "total": "42.50"}' if good else "Sure! Here is the JSON: {number: 17",
                "usage": Usage(input_tokens=40, output_tokens=25)}

    return call, called


def json_check(response: dict[str, Any]) -> str | None:
    try:
        json.loads(response["text"])
    except ValueError:
        return "invalid_json"
    return None


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        store = redis_store(url)
        with SidecarProcess(tmp_path, config=config(tmp_path, store), store=None) as proc:
            yield proc
    else:
        with SidecarProcess(tmp_path, config=config(tmp_path)) as proc:
            yield proc


async def test_cascade_escalates_until_the_check_passes(sidecar: SidecarProcess) -> None:
    call, called = fake_llm("frontier")
    async with AsyncClient(sidecar.target, timeout=10) as client:
        cascade = await call_with_escalation(client, SCOPE, call, check=json_check, usage=lambda r: r["usage"],
                                             messages=MESSAGES, task_type="extract", max_output_tokens=200)
        pools = await client.get_budget(SCOPE)
    assert cascade.passed and json.loads(cascade.response["text"])["number"] == 17
    assert [a.tier for a in cascade.attempts] == ["cheap", "medium", "frontier"]
    assert [a.problem for a in cascade.attempts] == ["invalid_json", "invalid_json", ""]
    assert called == [a.model for a in cascade.attempts]
    # Every attempt was paid for, and nothing is left held.
    org = next(p for p in pools if p.pool_id == "org:acme")
    assert org.held_nanos == 0 and org.spent_nanos >= cascade.charged_nanos > 0
    # The ledger links each attempt to the one that failed before it.
    loaded = load_config(sidecar.config)
    store = (LocalLedger(SqliteJournal(sidecar.db), specs=spec_resolver(loaded.budgets))
             if sidecar.store == "sqlite" else open_store(loaded))
    try:
        holds = [await store.get(a.reservation_id) for a in cascade.attempts]
    finally:
        await store.close()
    assert [h.attempt for h in holds] == [1, 2, 3]
    assert [h.parent_id for h in holds] == ["", holds[0].reservation_id, holds[1].reservation_id]
    assert all(h.state == "committed" and h.task_type == "extract" for h in holds)
    # So does the decision log.
    sidecar.stop()
    lines = [json.loads(x) for x in (sidecar.tmp / "decisions.jsonl").read_text().splitlines()]
    decisions = {x["reservation_id"]: x for x in lines if x["kind"] == "decision"}
    second = decisions[holds[1].reservation_id]
    assert second["parent_id"] == holds[0].reservation_id and second["attempt"] == 2
    assert second["escalation_reason"] == "invalid_json" and second["source"] == "escalation"
    assert "invoice" not in json.dumps(lines)
    assert audit(sidecar.config, sidecar.db if sidecar.store == "sqlite" else None).returncode == 0


async def test_cascade_stops_at_the_depth_limit(sidecar: SidecarProcess) -> None:
    call, _ = fake_llm("frontier")
    async with AsyncClient(sidecar.target, timeout=10) as client:
        # A model that never passes: cheap → medium → frontier, then the sidecar refuses a fourth.
        cascade = await call_with_escalation(
            client, SCOPE, call, check=lambda r: "tests_failed", usage=lambda r: r["usage"], messages=MESSAGES,
            task_type="extract",
        )
        assert not cascade.passed and len(cascade.attempts) == 3
        assert all(a.charged_nanos > 0 for a in cascade.attempts)
        last = cascade.attempts[-1].reservation_id
        with pytest.raises(EscalationRefusedError, match="max_escalations=2"):
            await client.escalate(last, SCOPE, messages=MESSAGES)
        with pytest.raises(InvalidRequestError, match="another organisation"):
            await client.escalate(last, Scope(org="mallory"), messages=MESSAGES)
        pools = await client.get_budget(SCOPE)
    assert all(p.held_nanos == 0 for p in pools)


async def test_escalate_rpc_is_retry_safe_and_reports_the_previous_commit(sidecar: SidecarProcess) -> None:
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        stub = pb_grpc.TollgateServiceStub(channel)
        scope = pb.Scope(org_id="acme", user_id="bob")
        prompt = pb.Prompt(messages=pb.Messages(items=[pb.Message(role="user", content="Classify: spam or ham?")]))
        routed = await stub.Route(pb.RouteRequest(scope=scope, prompt=prompt, reserve=True,
                                                  signals=pb.TaskSignals(task_type="classify")))
        request = pb.EscalateRequest(reservation_id=routed.reservation.reservation_id, scope=scope, prompt=prompt,
                                     reason="low_confidence", usage=pb.Usage(input_tokens=20, output_tokens=3))
        first = await stub.Escalate(request)
        again = await stub.Escalate(request)
        assert first.attempt == 2 and first.decision.source == pb.DECISION_SOURCE_ESCALATION
        assert first.decision.chosen.tier == "medium"
        assert first.previous_reservation_id == routed.reservation.reservation_id
        assert first.previous_commit.charged_nanos > 0 and not first.previous_commit.replayed
        # The retry replays both steps: the same new reservation, the commit not charged twice.
        assert again.reservation.reservation_id == first.reservation.reservation_id and again.reservation.replayed
        assert again.previous_commit.replayed
        assert again.previous_commit.charged_nanos == first.previous_commit.charged_nanos
        budget = await stub.GetBudget(pb.GetBudgetRequest(scope=scope))
        org = next(p for p in budget.pools if p.pool_id == "org:acme")
        assert org.held_nanos == first.reservation.held_nanos
        await stub.Release(pb.ReleaseRequest(reservation_id=first.reservation.reservation_id))


async def test_the_escalation_span_links_to_the_failed_attempt(tmp_path: Path) -> None:
    provider = TracerProvider()
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
               "OTEL_BSP_SCHEDULE_DELAY": "50"}
        with SidecarProcess(tmp_path, config=config(tmp_path), env=env) as sidecar:
            async with AsyncClient(sidecar.target) as client:
                with provider.get_tracer("app").start_as_current_span("app.answer") as app_span:
                    decision = await client.route(SCOPE, messages=MESSAGES, task_type="extract", reserve=True)
                    assert decision.reservation is not None
                    escalation = await client.escalate(decision.reservation.reservation_id, SCOPE,
                                                       messages=MESSAGES, reason="invalid_json",
                                                       usage=Usage(input_tokens=40, output_tokens=25))
                    assert escalation.decision.reservation is not None
                    await client.release(escalation.decision.reservation.reservation_id)
            spans = receiver.wait_for(3)
    trace_id = app_span.get_span_context().trace_id.to_bytes(16, "big")
    ours = {s.name.rsplit("/", 1)[-1]: s for _, s in spans if s.trace_id == trace_id}
    route, escalate = ours["Route"], ours["Escalate"]
    assert [(link.trace_id, link.span_id) for link in escalate.links] == [(route.trace_id, route.span_id)]
    a = attributes(escalate.attributes)
    assert a["tollgate.escalation.parent_id"] == decision.reservation.reservation_id
    assert a["tollgate.escalation.attempt"] == 2 and a["tollgate.escalation.from_tier"] == "cheap"
    assert a["tollgate.tier"] == "medium" and a["tollgate.routing.source"] == "escalation"
    assert a["tollgate.escalation.previous_charged_nanos"] == escalation.previous_commit.charged_nanos  # type: ignore[union-attr]
