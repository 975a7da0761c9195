"""What an SRE sees in a real Jaeger: the app's request, Tollgate's spans beneath it, the decision and the cost.

Jaeger v2 is built from the Go module proxy (tests/support/jaeger.py) and read back through
its own query API, as its UI reads it. ``scripts/jaeger_screenshot.py`` runs the same
scenario and photographs the trace in Jaeger's UI for the README.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

import tollgate
from tests.support.jaeger import Jaeger, tags
from tests.support.sidecar_process import SidecarProcess, write_config
from tollgate_client import AsyncClient, BudgetExceededError, Decision, Scope, Usage

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="building Jaeger needs go on PATH")

NANOS_PER_USD = 1_000_000_000


@dataclass(frozen=True)
class Checkout:
    """What the app did and was told, to compare with what Jaeger shows."""

    trace_id: str
    decision: Decision
    charged_nanos: int


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    with Jaeger(tmp_path_factory.mktemp("jaeger")) as running:
        yield running


def traced_sidecar(tmp: Path, jaeger: Jaeger) -> SidecarProcess:
    def edit(data: dict[str, Any]) -> None:
        data["telemetry"] = {"metrics_port": 0}
        data["budgets"]["overrides"] = {"org:shop-trial": {"cap": "0.0001", "policy": "hard"}}

    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
           "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_SERVICE_NAME": "tollgate",
           "POD_NAME": "checkout-7d9f", "POD_NAMESPACE": "shop"}
    return SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", edit), env=env)


async def checkout(sidecar: SidecarProcess, jaeger: Jaeger) -> Checkout:
    """An app's request as most are traced: its own span, Tollgate's calls, and its own provider call's span."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=jaeger.otlp_endpoint, insecure=True)))
    tracer = provider.get_tracer("checkout")
    try:
        async with AsyncClient(sidecar.target) as client:
            with tracer.start_as_current_span("checkout.answer_question") as app:
                decision = await client.route(
                    Scope(org="shop", team="web", user="u-17"),
                    messages=[{"role": "user", "content": "Extract the SKU and the quantity: 3 x X-1"}],
                    task_type="extract", max_output_tokens=300, reserve=True)
                assert decision.reservation is not None
                # The app's own provider call, traced as the GenAI conventions say: the one LLM call.
                with tracer.start_as_current_span(f"chat {decision.model}", kind=SpanKind.CLIENT, attributes={
                        "gen_ai.operation.name": "chat", "gen_ai.provider.name": decision.provider,
                        "gen_ai.request.model": decision.model, "gen_ai.usage.input_tokens": 40,
                        "gen_ai.usage.output_tokens": 12}):
                    pass
                done = await client.commit(decision.reservation.reservation_id,
                                           Usage(input_tokens=40, output_tokens=12))
                # A trial org past its cap: refused, which is the product working, not a failure.
                with pytest.raises(BudgetExceededError):
                    await client.reserve(Scope(org="shop-trial"), "claude-opus-4-1", input_tokens=20_000)
    finally:
        provider.shutdown()
    return Checkout(f"{app.get_span_context().trace_id:032x}", decision, done.charged_nanos)


async def test_jaeger_shows_the_decision_and_the_cost_under_the_apps_request(tmp_path: Path, jaeger: Jaeger) -> None:
    with traced_sidecar(tmp_path, jaeger) as sidecar:
        seen = await checkout(sidecar, jaeger)
    trace = jaeger.trace(seen.trace_id, spans=5)
    services = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    spans = {s["operationName"]: s for s in trace["spans"]}
    app = spans["checkout.answer_question"]
    assert services[app["processID"]] == "checkout"

    route = spans["tollgate.v1.TollgateService/Route"]
    commit = spans["tollgate.v1.TollgateService/Commit"]
    refused = spans["tollgate.v1.TollgateService/Reserve"]
    for span in (route, commit, refused):
        # The sidecar's spans are children of the app's span, from the tollgate service.
        assert [(r["refType"], r["spanID"]) for r in span["references"] if r["refType"] == "CHILD_OF"] == [
            ("CHILD_OF", app["spanID"])]
        assert services[span["processID"]] == "tollgate"
    process = {t["key"]: t["value"] for t in trace["processes"][route["processID"]]["tags"]}
    assert process["service.version"] == tollgate.__version__ and process["k8s.pod.name"] == "checkout-7d9f"

    # The decision and the money, in USD for reading and in nano-USD exactly.
    r = tags(route)
    assert r["tollgate.model"] == seen.decision.model and r["tollgate.tier"] == "cheap"
    assert r["tollgate.routing.source"] == "rule" and "task_type=extract" in r["tollgate.routing.reason"]
    held = reservation_of(seen)
    assert r["tollgate.cost.held_nanos"] == held
    assert r["tollgate.cost.held_usd"] == pytest.approx(held / NANOS_PER_USD)
    c = tags(commit)
    assert c["tollgate.cost.charged_nanos"] == seen.charged_nanos
    assert c["tollgate.cost.charged_usd"] == pytest.approx(seen.charged_nanos / NANOS_PER_USD)
    assert c["tollgate.usage.input_tokens"] == 40 and c["tollgate.usage.output_tokens"] == 12

    # The refusal is told, not failed: no error flag, the status code on the span, the pool that said no.
    f = tags(refused)
    assert f["rpc.grpc.status_code"] == 8 and f["tollgate.refusal.pool_id"] == "org:shop-trial"
    assert "error" not in f and f.get("otel.status_code") != "ERROR"
    assert not any(tags(s).get("error") for s in trace["spans"])

    # A GenAI-aware backend counts a span with gen_ai.* attributes as an LLM call: only the app's is one.
    llm_calls = [s["operationName"] for s in trace["spans"] if any(k.startswith("gen_ai.") for k in tags(s))]
    assert llm_calls == [f"chat {seen.decision.model}"]


def reservation_of(seen: Checkout) -> int:
    assert seen.decision.reservation is not None
    return seen.decision.reservation.held_nanos
