"""What an SRE sees: spans in a real OTLP receiver, /metrics over HTTP, JSON logs — all against the ledger."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.parser import text_string_to_metric_families

from tests.support.eventually import eventually_async
from tests.support.otlp_receiver import OtlpReceiver, attributes
from tests.support.sidecar_process import SidecarProcess, free_port, write_config
from tollgate_client import AsyncClient, Scope, Usage

CLIENT_PROVIDER = TracerProvider()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def traced_sidecar(tmp: Path, endpoint: str, metrics_port: int = 0) -> SidecarProcess:
    def edit(data: dict[str, Any]) -> None:
        data["telemetry"] = {"metrics_port": metrics_port, "metrics_host": "127.0.0.1"}

    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "tollgate-under-test",
        "POD_NAME": "checkout-7d9f", "POD_NAMESPACE": "shop", "NODE_NAME": "node-3",
    }
    return SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", edit), env=env)


async def test_spans_join_the_callers_trace_with_decision_and_cost(tmp_path: Path, receiver: OtlpReceiver) -> None:
    tracer = CLIENT_PROVIDER.get_tracer("app")
    with traced_sidecar(tmp_path, receiver.endpoint) as sidecar:
        async with AsyncClient(sidecar.target) as client:
            # The client injects the current context into gRPC metadata by itself.
            with tracer.start_as_current_span("checkout.answer_question") as app_span:
                decision = await client.route(
                    Scope(org="shop", user="u-17"), messages=[{"role": "user", "content": "Extract the SKU: X-1"}],
                    task_type="extract", max_output_tokens=300, reserve=True,
                )
                assert decision.reservation is not None
                done = await client.commit(decision.reservation.reservation_id,
                                           Usage(input_tokens=40, output_tokens=12))
            pools = await client.get_budget(Scope(org="shop", user="u-17"))
        spans = receiver.wait_for(3)
    app = app_span.get_span_context()
    ours = {s.name.rsplit("/", 1)[-1]: (res, s) for res, s in spans if s.trace_id == app.trace_id.to_bytes(16, "big")}
    assert {"Route", "Commit"} <= set(ours)
    resource, route = ours["Route"]
    _, commit = ours["Commit"]
    # Children of the app's span, in the app's trace.
    assert route.parent_span_id == app.span_id.to_bytes(8, "big")
    assert commit.parent_span_id == app.span_id.to_bytes(8, "big")
    assert resource["service.name"] == "tollgate-under-test"
    assert resource["k8s.pod.name"] == "checkout-7d9f" and resource["k8s.namespace.name"] == "shop"
    r = attributes(route.attributes)
    assert r["gen_ai.request.model"] == decision.model
    assert r["gen_ai.provider.name"] == decision.provider
    assert r["gen_ai.request.max_tokens"] == 300
    assert r["tollgate.tier"] == "cheap" and r["tollgate.routing.source"] == "rule"
    assert "task_type=extract" in r["tollgate.routing.reason"]
    assert r["tollgate.cost.held_nanos"] == decision.reservation.held_nanos
    assert r["tollgate.policy.outcome"] == "admitted"
    assert r["tollgate.pool.user.id"] == "user:shop/u-17"
    c = attributes(commit.attributes)
    assert c["gen_ai.usage.input_tokens"] == 40 and c["gen_ai.usage.output_tokens"] == 12
    org = next(p for p in pools if p.pool_id == "org:shop")
    assert c["tollgate.cost.charged_nanos"] == done.charged_nanos == org.spent_nanos
    assert c["tollgate.cost.overshoot_nanos"] == 0
    assert c["tollgate.pool.org.remaining_nanos"] == org.remaining_nanos
    # Commit links back to the span that reserved.
    assert [(link.trace_id, link.span_id) for link in commit.links] == [(route.trace_id, route.span_id)]
    # And the JSON log line of the commit carries the same trace.
    lines = [json.loads(line) for line in sidecar.logs().splitlines() if line.startswith("{")]
    logged = next(entry for entry in lines if entry.get("rpc") == "Commit")
    assert logged["trace_id"] == f"{app.trace_id:032x}"
    assert logged["cost_charged_nanos"] == done.charged_nanos and logged["code"] == "OK"
    assert logged["reservation_id"] == decision.reservation.reservation_id
    assert "content" not in json.dumps(lines) and "SKU" not in sidecar.logs()  # never prompt text


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def total(metrics: dict[str, float], name: str, **labels: str) -> float:
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(v for k, v in metrics.items() if k.startswith(name + "{") and all(w in k for w in want))


async def test_metrics_add_up_to_the_ledger(tmp_path: Path) -> None:
    port = free_port()

    def edit(data: dict[str, Any]) -> None:
        data["telemetry"] = {"metrics_port": port, "metrics_host": "127.0.0.1"}
        data["budgets"]["overrides"] = {"user:fin/capped": {"cap": "0.001", "policy": "hard"}}

    with SidecarProcess(tmp_path, config=write_config(tmp_path / "tollgate.yaml", edit)) as sidecar:
        async with AsyncClient(sidecar.target) as client:
            scope = Scope(org="fin", team="risk", user="ana")
            charged = 0
            for i in range(30):
                d = await client.route(scope, input_tokens=500 + i * 10, task_type=["extract", "planning"][i % 2],
                                       max_output_tokens=200, reserve=True)
                assert d.reservation is not None
                if i % 5 == 4:
                    await client.release(d.reservation.reservation_id)
                    continue
                out = 400 if i == 3 else 50  # one commit far above its estimate: an overshoot
                c = await client.commit(d.reservation.reservation_id, Usage(input_tokens=500 + i * 10,
                                                                            output_tokens=out))
                charged += c.charged_nanos
            refused = 0
            for _ in range(3):
                try:
                    await client.reserve(Scope(org="fin", user="capped"), "claude-opus-4-1", input_tokens=5_000)
                except Exception:
                    refused += 1
            pools = {p.pool_id: p for p in await client.get_budget(scope)}
        metrics = scrape(port)
    assert total(metrics, "tollgate_spend_nanos_total", level="org") == charged == pools["org:fin"].spent_nanos
    assert total(metrics, "tollgate_spend_nanos_total", level="team") == pools["team:fin/risk"].spent_nanos
    assert total(metrics, "tollgate_decisions_total") == 30
    assert total(metrics, "tollgate_decisions_total", tier="frontier") == 15
    assert total(metrics, "tollgate_refusals_total", level="user", policy="hard", limit="cost") == refused == 3
    assert total(metrics, "tollgate_rpc_duration_seconds_count", method="Commit", code="OK") == 24
    assert total(metrics, "tollgate_rpc_duration_seconds_count", method="Reserve", code="RESOURCE_EXHAUSTED") == 3
    assert total(metrics, "tollgate_estimation_ratio_count") == 24
    assert total(metrics, "tollgate_overshoot_total") >= 1
    assert total(metrics, "tollgate_open_reservations") == 0
    # No org, user or session id is ever a label.
    assert not any("ana" in k or "fin" in k or "risk" in k for k in metrics)


async def test_a_dead_collector_only_drops_spans(tmp_path: Path) -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with traced_sidecar(tmp_path, dead, metrics_port=port) as sidecar:
        async with AsyncClient(sidecar.target) as client:
            for _ in range(20):
                d = await client.route(Scope(org="o"), input_tokens=100, task_type="extract", reserve=True)
                assert d.reservation is not None
                await client.commit(d.reservation.reservation_id, Usage(input_tokens=100, output_tokens=5))
        await eventually_async(lambda: asyncio.to_thread(
            lambda: total(scrape(port), "tollgate_spans_dropped_total") >= 40), "40 dropped spans counted",
            timeout=20, every=0.2)
