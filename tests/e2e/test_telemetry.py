"""What an SRE sees: spans in a real OTLP receiver, /metrics over HTTP, JSON logs — all against the ledger."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.parser import text_string_to_metric_families

import tollgate
from tests.support.eventually import eventually_async
from tests.support.otlp_receiver import OtlpReceiver, attributes
from tests.support.sidecar_process import SidecarProcess, free_port, write_config
from tollgate_client import AsyncClient, BudgetExceededError, ReservationNotFoundError, Scope, Usage

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
    assert resource["service.version"] == tollgate.__version__
    r = attributes(route.attributes)
    assert r["tollgate.model"] == decision.model
    assert r["tollgate.provider"] == decision.provider
    assert r["tollgate.request.max_output_tokens"] == 300
    assert r["tollgate.tier"] == "cheap" and r["tollgate.routing.source"] == "rule"
    assert "task_type=extract" in r["tollgate.routing.reason"]
    assert r["tollgate.cost.held_nanos"] == decision.reservation.held_nanos
    assert r["tollgate.outcome"] == "admitted"
    assert r["tollgate.pool.user.id"] == "user:shop/u-17"
    assert r["rpc.system"] == "grpc" and r["rpc.method"] == "Route" and r["rpc.grpc.status_code"] == 0
    c = attributes(commit.attributes)
    assert c["tollgate.usage.input_tokens"] == 40 and c["tollgate.usage.output_tokens"] == 12
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


def test_start_up_says_where_traces_and_metrics_go(tmp_path: Path, receiver: OtlpReceiver) -> None:
    port = free_port()
    with traced_sidecar(tmp_path, receiver.endpoint, metrics_port=port) as sidecar:
        logs = sidecar.logs()
    assert f"metrics on http://127.0.0.1:{port}/metrics" in logs
    assert f"traces to {receiver.endpoint} over OTLP as service 'tollgate-under-test'" in logs


async def test_a_refusal_is_no_server_error_and_no_span_is_an_llm_call(tmp_path: Path,
                                                                        receiver: OtlpReceiver) -> None:
    """The gRPC conventions' span status, and the rule GenAI-aware backends count LLM calls by."""
    tracer = CLIENT_PROVIDER.get_tracer("app")

    def edit(data: dict[str, Any]) -> None:
        data["telemetry"] = {"metrics_port": 0}
        data["budgets"]["overrides"] = {"org:poor": {"cap": "0.000001", "policy": "hard"}}

    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
           "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with SidecarProcess(tmp_path, config=write_config(tmp_path / "tollgate.yaml", edit), env=env) as sidecar:
        async with AsyncClient(sidecar.target) as client:
            with tracer.start_as_current_span("app.request") as app_span:
                with pytest.raises(BudgetExceededError):
                    await client.reserve(Scope(org="poor"), "gpt-4o-mini", input_tokens=5_000)
                with pytest.raises(ReservationNotFoundError):
                    await client.commit("0123456789abcdef01234567.poor", Usage(input_tokens=1, output_tokens=1))
                d = await client.route(Scope(org="rich"), input_tokens=100, task_type="extract", reserve=True)
                assert d.reservation is not None
                await client.commit(d.reservation.reservation_id, Usage(input_tokens=100, output_tokens=5))
        trace_id = app_span.get_span_context().trace_id.to_bytes(16, "big")
        spans = [s for _, s in receiver.wait_for(4, lambda s: s.trace_id == trace_id)]
    by_method = {attributes(s.attributes)["rpc.method"]: s for s in spans}
    reserve = attributes(by_method["Reserve"].attributes)
    assert reserve["rpc.grpc.status_code"] == 8  # RESOURCE_EXHAUSTED: told, not failed
    assert by_method["Reserve"].status.code == 0  # UNSET
    assert "error.type" not in reserve
    commits = [s for s in spans if attributes(s.attributes)["rpc.method"] == "Commit"]
    assert sorted(attributes(s.attributes)["rpc.grpc.status_code"] for s in commits) == [0, 5]  # OK, NOT_FOUND
    assert all(s.status.code == 0 for s in spans)
    # GenAI-aware backends (Phoenix, SigNoz, Langfuse...) count a span as an LLM call when it carries
    # gen_ai.* attributes (an operation name, a model, usage): the sidecar's carry none.
    assert not [k for s in spans for k in attributes(s.attributes) if k.startswith("gen_ai.")]


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def usd_nanos(usd: float) -> int:
    """A USD figure scraped from /metrics in nano-USD, for comparison with the ledger's integers."""
    return round(usd * 1_000_000_000)


def total(metrics: dict[str, float], name: str, **labels: str) -> float:
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(v for k, v in metrics.items() if k.startswith(name + "{") and all(w in k for w in want))


async def test_metrics_add_up_to_the_ledger(tmp_path: Path) -> None:
    port = free_port()

    def edit(data: dict[str, Any]) -> None:
        data["telemetry"] = {"metrics_port": port, "metrics_host": "127.0.0.1", "watch_pools": ["team:fin/risk"]}
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
    # One total that sums to the spend; the per-level view beside it.
    assert usd_nanos(total(metrics, "tollgate_spend_usd_total")) == charged == pools["org:fin"].spent_nanos
    assert usd_nanos(total(metrics, "tollgate_pool_spend_usd_total", level="org")) == charged
    team = pools["team:fin/risk"]
    assert usd_nanos(total(metrics, "tollgate_pool_spend_usd_total", level="team")) == team.spent_nanos
    assert total(metrics, "tollgate_tokens_total", kind="input") == sum(500 + i * 10 for i in range(30) if i % 5 != 4)
    assert total(metrics, "tollgate_tokens_total", kind="output") == 400 + 50 * 23
    # The watched pool, by id; no other id is a label.
    assert metrics["tollgate_pool_utilisation_ratio{pool=team:fin/risk}"] == pytest.approx(
        (team.spent_nanos + team.held_nanos) / team.usable_cap_nanos)
    assert usd_nanos(metrics["tollgate_pool_spent_usd{pool=team:fin/risk}"]) == team.spent_nanos
    assert usd_nanos(metrics["tollgate_pool_cap_usd{pool=team:fin/risk}"]) == team.usable_cap_nanos
    assert metrics["process_resident_memory_bytes{}"] > 10 * 2**20
    assert not [k for k in metrics if "_created" in k]
    assert total(metrics, "tollgate_decisions_total") == 30
    assert total(metrics, "tollgate_decisions_total", tier="frontier") == 15
    assert total(metrics, "tollgate_refusals_total", level="user", policy="hard", limit="cost") == refused == 3
    assert total(metrics, "tollgate_rpc_duration_seconds_count", method="Commit", code="OK") == 24
    assert total(metrics, "tollgate_rpc_duration_seconds_count", method="Reserve", code="RESOURCE_EXHAUSTED") == 3
    assert total(metrics, "tollgate_estimation_ratio_count") == 24
    assert total(metrics, "tollgate_overshoots_total") >= 1
    assert total(metrics, "tollgate_open_reservations") == 0
    # No org, user or session id is ever a label, but for the pools an operator watches.
    assert not any("ana" in k or "fin" in k or "risk" in k for k in metrics if "pool=team:fin/risk" not in k)


def test_a_metrics_port_taken_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "t.yaml", lambda d: d.update(telemetry={"metrics_host": "127.0.0.1"}))
        result = subprocess.run([sys.executable, "-m", "tollgate.cli", "serve", "--config", str(config), "--port", "0",
                                 "--store", "memory", "--metrics-port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr and "--metrics-port" in result.stderr
    assert "Traceback" not in result.stderr


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
