"""Traces, metrics and logs: what an SRE and finance see of every call.

- **Traces** (OpenTelemetry, OTLP/gRPC): one span per RPC, continuing the caller's
  trace from W3C ``traceparent``/``tracestate`` in the gRPC metadata. Its attributes are
  ``rpc.*`` (the gRPC conventions) and ``tollgate.*``, never ``gen_ai.*``: GenAI-aware
  backends count every span carrying those as an LLM call, and the sidecar makes none;
  the app's own provider span does. A span is an error only for the status codes the gRPC
  conventions call server errors: a budget refusal is the product working. A Commit span
  links to its Reserve span. Configured by the standard ``OTEL_*`` variables; off unless
  an OTLP endpoint is set. Export runs on the SDK's batch thread with a bounded queue: a
  dead collector costs dropped spans (counted), never RPC latency.
- **Metrics** (Prometheus, ``/metrics`` on its own port): base units (USD, tokens,
  seconds); labels are bounded sets (tier, model, level, policy, method, code); no org,
  user or session id ever becomes a label, except the pools an operator lists to watch.
- **Logs**: one JSON line per money-changing RPC with its trace and span ids and
  figures; never prompt text.

Why one long module: traces, metrics and logs share the per-RPC record that the wire's
interceptor fills; it is the next to split, by signal.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from . import __version__
from .errors import Refusal
from .ledger import CommitOutcome, Hold, PoolSnapshot, ReleaseOutcome, ReserveOutcome
from .ledger.pools import pool_warning
from .money import NANOS_PER_USD

__all__ = ["MONEY_METHODS", "ItemStatus", "Metrics", "Telemetry", "tracing_enabled"]

log = logging.getLogger("tollgate.rpc")

MONEY_METHODS = frozenset({"Reserve", "Commit", "Release", "Extend", "Escalate"})
"""RPCs that always move money, so always log a line (Route does when it reserves)."""
# Fields the handlers add for the one log line of the RPC they run in.
_LOG_FIELDS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("tollgate_log_fields",
                                                                                   default=None)
_LINKS_KEPT = 100_000
_NO_SPAN = contextlib.nullcontext(None)
SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})
"""The status codes that mark a server span as an error (OpenTelemetry's gRPC conventions): the others
are the caller's to handle (a refusal, a bad argument), and must not feed an error-rate SLO."""

# Every counter would otherwise export a ``_created`` series beside it, which dashboards never use.
disable_created_metrics()


def tracing_enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` environment asks for trace export."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true" or env.get("OTEL_TRACES_EXPORTER", "") == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class Metrics:
    """Every Prometheus instrument, in a registry of its own."""

    def __init__(self, watched_pools: Sequence[str] = ()) -> None:
        # Labelled children by (instrument, label values): ``labels()`` validates and locks on
        # every call, several times per RPC, for a set of children that stops growing at once.
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.watched = frozenset(watched_pools)
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)  # the sidecar's memory and CPU, which its limits are set by
        PlatformCollector(registry=r)
        self.decisions = Counter("tollgate_decisions", "Routing decisions", ["tier", "model", "source", "outcome"],
                                 registry=r)
        self.spend = Counter("tollgate_spend_usd", "USD charged by commits, each call once: sum() is the spend",
                             ["model"], registry=r)
        self.pool_spend = Counter(
            "tollgate_pool_spend_usd", "USD charged to the pools of each level; a call counts once per level of "
            "its scope, so sum by level, never across levels", ["level"], registry=r)
        self.holds = Counter("tollgate_held_usd", "USD held by admitted reservations (margin included)", ["model"],
                             registry=r)
        self.tokens = Counter("tollgate_tokens", "Tokens committed, by kind (input, cached_input, output, reasoning)",
                              ["model", "kind"], registry=r)
        self.refusals = Counter("tollgate_refusals", "Reservations refused by a budget pool",
                                ["level", "policy", "limit"], registry=r)
        self.downgrades = Counter("tollgate_downgrades", "Routes downgraded by a soft pool", ["level"], registry=r)
        self.warnings = Counter("tollgate_pool_warnings", "Reservations that took a pool past its warning threshold",
                                ["level"], registry=r)
        self.escalations = Counter("tollgate_escalations", "Failed calls escalated to a next attempt",
                                   ["from_tier", "to_tier"], registry=r)
        self.overshoot = Counter("tollgate_overshoots", "Commits whose cost exceeded their hold", ["model"], registry=r)
        self.overshoot_usd = Counter("tollgate_overshoot_usd", "USD charged above the hold", ["model"], registry=r)
        self.estimate_ratio = Histogram(
            "tollgate_estimation_ratio", "Actual cost / estimated cost (before the margin) per commit", ["model"],
            buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.3, 1.5, 2.0, 3.0, 5.0), registry=r,
        )
        self.expired = Counter("tollgate_expired_reservations", "Reservations ended by their TTL", registry=r)
        self.open = Gauge("tollgate_open_reservations", "Reservations this sidecar holds open", registry=r)
        self.store_errors = Counter("tollgate_store_errors", "Calls the budget store did not answer", ["method"],
                                    registry=r)
        self.rpc = Histogram(
            "tollgate_rpc_duration_seconds", "Server-side RPC latency", ["method", "code"],
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r,
        )
        self.spans_dropped = Counter("tollgate_spans_dropped", "Spans the OTLP exporter failed to deliver",
                                     registry=r)
        self.utilisation = Gauge(
            "tollgate_pool_utilisation_ratio", "(spent + held) / usable cap of each watched pool, as this sidecar "
            "last saw it (telemetry.watch_pools)", ["pool"], registry=r)
        self.pool_spent = Gauge("tollgate_pool_spent_usd", "Spent in the current window of each watched pool",
                                ["pool"], registry=r)
        self.pool_cap = Gauge("tollgate_pool_cap_usd", "Usable cap of each watched pool", ["pool"], registry=r)
        self.info = Gauge("tollgate_build_info", "1, labelled with the sidecar's version", ["version"], registry=r)
        self.info.labels(__version__).set(1)

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, remembered."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found


class _QualityCollector:
    """The quality guard's figures, read at scrape time (task types are the application's own set)."""

    MAX_TASK_TYPES = 200  # a bound on label cardinality, whatever callers send

    def __init__(self, guard: Any) -> None:
        self._guard = guard

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        match = GaugeMetricFamily("tollgate_quality_shadow_match", "Share of shadow comparisons where the cheap "
                                  "answer matched the reference", labels=["task_type"])
        samples = GaugeMetricFamily("tollgate_quality_shadow_samples", "Shadow comparisons in the window",
                                    labels=["task_type"])
        escalated = GaugeMetricFamily("tollgate_quality_escalated", "1 while the guard raises the task type's "
                                      "minimum tier", labels=["task_type", "tier"])
        for task_type, tally in list(self._guard.shadow_tallies().items())[: self.MAX_TASK_TYPES]:
            match.add_metric([task_type], tally.mean)
            samples.add_metric([task_type], tally.n)
        for task_type, (tier, _) in list(self._guard.overrides().items())[: self.MAX_TASK_TYPES]:
            escalated.add_metric([task_type, tier], 1)
        return [match, samples, escalated]


class _CountingExporter(SpanExporter):
    """Counts what the exporter failed to deliver; the batch processor never blocks a caller."""

    def __init__(self, inner: SpanExporter, dropped: Counter) -> None:
        self._inner = inner
        self._dropped = dropped

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._dropped.inc(len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _resource() -> Resource:
    attrs = {"service.name": os.environ.get("OTEL_SERVICE_NAME", "tollgate"), "service.version": __version__}
    for env, key in (("POD_NAME", "k8s.pod.name"), ("POD_NAMESPACE", "k8s.namespace.name"),
                     ("NODE_NAME", "k8s.node.name")):
        if os.environ.get(env):
            attrs[key] = os.environ[env]
    return Resource.create(attrs)


def _usd(nanos: int) -> float:
    # A display figure for trace viewers; the nano-dollar integer beside it is the truth.
    return nanos / NANOS_PER_USD


@dataclass(slots=True)
class ItemStatus:
    """The answer of one item of a batch: a gRPC status code's name and number."""

    code: str = "OK"
    number: int = 0


class Telemetry:
    """Tracing, metrics and RPC logs for one sidecar process."""

    def __init__(self, *, exporter: SpanExporter | None = None, enable_tracing: bool | None = None,
                 watched_pools: Sequence[str] = ()) -> None:
        self.metrics = Metrics(watched_pools)
        self._provider: TracerProvider | None = None
        if enable_tracing is None:
            enable_tracing = tracing_enabled()
        if enable_tracing or exporter is not None:
            if exporter is None:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter()
            self._provider = TracerProvider(resource=_resource())
            self._provider.add_span_processor(
                BatchSpanProcessor(_CountingExporter(exporter, self.metrics.spans_dropped))
            )
            self.tracer: trace.Tracer = self._provider.get_tracer("tollgate")
        else:
            self.tracer = trace.NoOpTracer()
        self._reserve_spans: OrderedDict[str, trace.SpanContext] = OrderedDict()

    @property
    def tracing(self) -> bool:
        return self._provider is not None

    @property
    def service_name(self) -> str:
        return os.environ.get("OTEL_SERVICE_NAME", "tollgate")

    def watch_quality(self, guard: Any) -> None:
        """Export the quality guard's per-task-type figures."""
        self.metrics.registry.register(_QualityCollector(guard))

    def serve_metrics(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on a thread of its own."""
        start_http_server(port, addr=host, registry=self.metrics.registry)

    def shutdown(self) -> None:
        """Flush what spans are queued (bounded) and stop the exporter."""
        if self._provider is not None:
            self._provider.shutdown()

    # -- one RPC: its span, its latency sample and (for money RPCs) its log line ----------------

    def server_span(self, method: str, carrier: dict[str, str]) -> contextlib.AbstractContextManager[Any]:
        """The RPC's span, continuing the caller's trace; with tracing off, no span at all (``None``).

        An RPC that no one traces pays nothing for a no-op span and its context switches.
        ``carrier`` is the call's text metadata, where W3C trace context travels.
        """
        if self._provider is None:
            return _NO_SPAN
        return self.tracer.start_as_current_span(
            f"tollgate.v1.TollgateService/{method}",
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": "tollgate.v1.TollgateService", "rpc.method": method},
            record_exception=False,
            set_status_on_exception=False,
        )

    @staticmethod
    def collect_log_fields() -> tuple[dict[str, Any], contextvars.Token[dict[str, Any] | None]]:
        """Start collecting the fields handlers add to this RPC's log line; reset the token after."""
        fields: dict[str, Any] = {}
        return fields, _LOG_FIELDS.set(fields)

    @staticmethod
    def stop_collecting(token: contextvars.Token[dict[str, Any] | None]) -> None:
        _LOG_FIELDS.reset(token)

    def rpc_done(self, method: str, code: str, code_number: int, elapsed_s: float, span: Any, *, money: bool,
                 carrier: Callable[[], dict[str, str]], fields: dict[str, Any]) -> None:
        """Record one finished RPC: its span's status, its latency, and for money RPCs a log line."""
        self.metrics.child(self.metrics.rpc, method, code).observe(elapsed_s)
        self._done(method, code, code_number, elapsed_s, span, money=money, carrier=carrier, fields=fields)

    @contextlib.contextmanager
    def batch_item(self, method: str) -> Iterator[ItemStatus]:
        """One item of a batch RPC, told as if it had come alone: a span of its own under the batch's
        and its own log line. The handler sets the yielded status to the item's answer."""
        status = ItemStatus()
        started = time.perf_counter()
        fields, token = self.collect_log_fields()
        span_cm = _NO_SPAN if self._provider is None else self.tracer.start_as_current_span(
            f"tollgate.v1.TollgateService/{method}", kind=SpanKind.INTERNAL,
            attributes={"tollgate.batch.item": True}, record_exception=False, set_status_on_exception=False)
        try:
            with span_cm as span:
                try:
                    yield status
                except BaseException:  # the batch was cancelled (its caller left) in this item
                    if status.code == "OK":
                        status.code, status.number = "CANCELLED", 1
                    raise
                finally:
                    self._done(method, status.code, status.number, time.perf_counter() - started, span,
                               money=True, carrier=dict, fields=fields)
        finally:
            self.stop_collecting(token)

    def _done(self, method: str, code: str, code_number: int, elapsed_s: float, span: Any, *, money: bool,
              carrier: Callable[[], dict[str, str]], fields: dict[str, Any]) -> None:
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code_number)
            if code in SERVER_ERRORS:
                span.set_attribute("error.type", code)
                span.set_status(Status(StatusCode.ERROR, code))
        if code == "UNAVAILABLE":
            self.store_failed(method)
        if (money or method in MONEY_METHODS) and log.isEnabledFor(logging.INFO):
            # With tracing off, the caller's own trace context still joins the line to its trace.
            ctx = span.get_span_context() if span is not None else _caller_context(carrier())
            log.info(method, extra={"fields": {
                "rpc": method, "code": code, "ms": round(elapsed_s * 1000, 3),
                "trace_id": f"{ctx.trace_id:032x}" if ctx.is_valid else "",
                "span_id": f"{ctx.span_id:016x}" if ctx.is_valid else "",
                **fields,
            }})

    # -- what the handlers report ----------------------------------------------------------------

    def routed(self, decision: Any, max_output_tokens: int) -> None:
        """A Route decision (``core.RouteDecision``)."""
        chosen = decision.chosen
        self.metrics.child(self.metrics.decisions, chosen.model.tier, chosen.model.name, decision.requirement.source,
                                      decision.outcome).inc()
        if decision.downgraded_by:
            self.metrics.child(self.metrics.downgrades, decision.downgraded_by).inc()
        _annotate(
            {"tollgate.model": chosen.model.name, "tollgate.tier": chosen.model.tier,
             "tollgate.outcome": decision.outcome},
            lambda: {
                "tollgate.provider": chosen.model.provider,
                **({"tollgate.request.max_output_tokens": max_output_tokens} if max_output_tokens else {}),
                "tollgate.required_tier": decision.requirement.tier,
                "tollgate.routing.source": decision.requirement.source,
                "tollgate.routing.reason": decision.reason,
                "tollgate.routing.difficulty": decision.difficulty,
                "tollgate.routing.fallbacks": [p.model.name for p in decision.fallbacks],
                "tollgate.estimate.input_tokens": chosen.input_tokens,
                "tollgate.estimate.output_tokens": chosen.output_tokens,
                "tollgate.cost.estimated_nanos": chosen.cost,
                "tollgate.cost.estimated_usd": _usd(chosen.cost),
            },
        )
        if decision.reservation is not None:
            self.reserved(decision.reservation)

    def reserved(self, outcome: ReserveOutcome) -> None:
        """An admitted (or replayed) reservation."""
        hold = outcome.hold
        if not outcome.replayed:
            self.metrics.child(self.metrics.holds, hold.model).inc(_usd(hold.amount))
            self.metrics.open.inc()
            for pool in outcome.pools:
                # Past the threshold now, and not before this hold: this reservation crossed it.
                if pool.warning and not _warned(pool, pool.held - hold.amount):
                    self.metrics.child(self.metrics.warnings, str(pool.level)).inc()
        self._watch(outcome.pools)
        span = trace.get_current_span()
        if span.is_recording():
            self._reserve_spans[hold.reservation_id] = span.get_span_context()
            if len(self._reserve_spans) > _LINKS_KEPT:
                self._reserve_spans.popitem(last=False)
        _annotate(
            {"tollgate.reservation.id": hold.reservation_id, "tollgate.model": hold.model,
             "tollgate.cost.held_nanos": hold.amount},
            lambda: {
                "tollgate.reservation.replayed": outcome.replayed,
                "tollgate.cost.held_usd": _usd(hold.amount),
                **_pools(outcome.pools),
            },
        )

    def committed(self, outcome: CommitOutcome, estimated: int, usage: Any) -> None:
        """A commit; ``estimated`` is the cost estimated before the margin."""
        hold = outcome.hold
        self._count_commit(outcome, estimated, usage)
        self._link(hold.reservation_id)
        _annotate(
            {"tollgate.reservation.id": hold.reservation_id, "tollgate.model": hold.model,
             "tollgate.cost.charged_nanos": hold.charged, "tollgate.cost.overshoot_nanos": hold.overshoot},
            lambda: {
                "tollgate.usage.input_tokens": usage.input_tokens,
                "tollgate.usage.cached_input_tokens": usage.cached_input_tokens,
                "tollgate.usage.output_tokens": usage.output_tokens,
                "tollgate.usage.reasoning_tokens": usage.reasoning_tokens,
                "tollgate.reservation.replayed": outcome.replayed,
                "tollgate.cost.held_nanos": hold.amount,
                "tollgate.cost.charged_usd": _usd(hold.charged),
                "tollgate.cost.overshoot_usd": _usd(hold.overshoot),
                **_pools(outcome.pools),
            },
        )

    def _count_commit(self, outcome: CommitOutcome, estimated: int, usage: Any = None) -> None:
        hold = outcome.hold
        self._watch(outcome.pools)
        if outcome.replayed:
            return
        m = self.metrics
        charged = _usd(hold.charged)
        m.child(m.spend, hold.model).inc(charged)
        for pool in outcome.pools:
            m.child(m.pool_spend, str(pool.level)).inc(charged)
        if usage is not None:
            for kind, count in (("input", usage.input_tokens), ("cached_input", usage.cached_input_tokens),
                                ("output", usage.output_tokens), ("reasoning", usage.reasoning_tokens)):
                if count:
                    m.child(m.tokens, hold.model, kind).inc(count)
        if hold.overshoot:
            m.child(m.overshoot, hold.model).inc()
            m.child(m.overshoot_usd, hold.model).inc(_usd(hold.overshoot))
        if estimated > 0:
            self.metrics.child(self.metrics.estimate_ratio, hold.model).observe(hold.charged / estimated)
        self.metrics.open.dec()

    def escalated(self, escalation: Any, estimated: int, max_output_tokens: int) -> None:
        """An Escalate (``core.Escalation``); ``estimated`` is the failed attempt's estimate, for its commit."""
        previous = escalation.previous_commit
        if previous is not None:
            self._count_commit(previous, estimated)
        decision = escalation.decision
        if not decision.reservation.replayed:
            self.metrics.child(self.metrics.escalations, escalation.failed_tier, decision.chosen.model.tier).inc()
        # The failed attempt's Route span stays linkable: its commit may still come separately.
        parent = (self._reserve_spans.pop if previous is not None else self._reserve_spans.get)(escalation.parent_id,
                                                                                                 None)
        span = trace.get_current_span()
        if parent is not None and span.is_recording():
            span.add_link(parent, {"tollgate.link": "escalated_from"})
        _annotate(
            {"tollgate.escalation.parent_id": escalation.parent_id, "tollgate.escalation.attempt": escalation.attempt},
            lambda: {
                "tollgate.escalation.from_tier": escalation.failed_tier,
                "tollgate.escalation.previous_charged_nanos": previous.hold.charged if previous is not None else 0,
            },
        )
        self.routed(decision, max_output_tokens)

    def released(self, outcome: ReleaseOutcome) -> None:
        hold = outcome.hold
        if not outcome.replayed:
            self.metrics.open.dec()
        self._watch(outcome.pools)
        self._link(hold.reservation_id)
        _annotate({"tollgate.reservation.id": hold.reservation_id, "tollgate.cost.released_nanos": hold.amount},
                  lambda: {"tollgate.cost.released_usd": _usd(hold.amount), **_pools(outcome.pools)})

    def extended(self, hold: Hold) -> None:
        _annotate({"tollgate.reservation.id": hold.reservation_id, "tollgate.reservation.expires_ms": hold.expires_ms})

    def refused(self, refusal: Refusal) -> None:
        self.metrics.child(self.metrics.refusals, refusal.level, refusal.policy, refusal.limit).inc()
        _annotate(
            {"tollgate.policy.outcome": "refused", "tollgate.refusal.pool_id": refusal.pool_id},
            lambda: {
                "tollgate.refusal.limit": refusal.limit,
                "tollgate.refusal.requested": refusal.requested,
                "tollgate.refusal.remaining": refusal.remaining,
            },
        )

    def store_failed(self, method: str) -> None:
        self.metrics.child(self.metrics.store_errors, method).inc()

    def expired(self, count: int) -> None:
        self.metrics.expired.inc(count)
        self.metrics.open.dec(count)

    def _watch(self, pools: Sequence[PoolSnapshot]) -> None:
        """Export the figures of the pools an operator asked to watch, as this answer saw them."""
        if not self.metrics.watched:
            return
        m = self.metrics
        for pool in pools:
            if pool.pool_id in m.watched:
                m.child(m.utilisation, pool.pool_id).set(
                    (pool.spent + pool.held) / pool.usable_cap if pool.usable_cap > 0 else 0.0)
                m.child(m.pool_spent, pool.pool_id).set(_usd(pool.spent))
                m.child(m.pool_cap, pool.pool_id).set(_usd(pool.usable_cap))

    def _link(self, reservation_id: str) -> None:
        reserve = self._reserve_spans.pop(reservation_id, None)
        span = trace.get_current_span()
        if reserve is not None and span.is_recording():
            span.add_link(reserve, {"tollgate.link": "reserve"})


def _warned(pool: PoolSnapshot, held: int) -> bool:
    """Whether ``pool`` was past its warning threshold with ``held`` held (the ledger's rule, in ledger/pools.py)."""
    return pool_warning(pool.spec, pool.spent, held)


def _pools(pools: Sequence[PoolSnapshot]) -> dict[str, Any]:
    out: dict[str, Any] = {"tollgate.pools": [p.pool_id for p in pools]}
    for p in pools:
        out[f"tollgate.pool.{p.level}.id"] = p.pool_id
        out[f"tollgate.pool.{p.level}.remaining_nanos"] = p.remaining
        out[f"tollgate.pool.{p.level}.spent_nanos"] = p.spent
    return out


def _annotate(logged: dict[str, Any], span_only: Callable[[], dict[str, Any]] | None = None) -> None:
    """Attributes of the current span; ``logged`` ones are also fields of the RPC's log line.

    ``span_only`` is called only for a recording span: with tracing off, the RPC pays for
    its log fields alone.
    """
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(logged)
        if span_only is not None:
            span.set_attributes(span_only())
    fields = _LOG_FIELDS.get()
    if fields is not None:
        for key, value in logged.items():
            fields[_log_name(key)] = value


@functools.lru_cache(maxsize=256)
def _log_name(attribute: str) -> str:
    """A log field's name: its span attribute's, without ``tollgate.`` and with ``_`` for dots."""
    return attribute.removeprefix("tollgate.").replace(".", "_")


def _caller_context(carrier: dict[str, str]) -> trace.SpanContext:
    """The span context the caller sent in ``traceparent``, or an invalid one."""
    if "traceparent" not in carrier:
        return trace.INVALID_SPAN_CONTEXT
    return trace.get_current_span(propagate.extract(carrier)).get_span_context()
