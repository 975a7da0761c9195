"""A real OTLP/gRPC trace receiver in the test process: the collector's own TraceService."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.support.sidecar_process import free_port


class _Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any) -> Any:
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def attributes(kvs: Any) -> dict[str, Any]:
    """OTLP key-values as a plain dict."""
    out: dict[str, Any] = {}
    for kv in kvs:
        value = kv.value
        which = value.WhichOneof("value")
        if which == "array_value":
            out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[kv.key] = getattr(value, which) if which else None
    return out


class OtlpReceiver:
    """Listens on a free loopback port; ``spans()`` returns (resource attributes, span) pairs received."""

    def __init__(self) -> None:
        self.port = free_port()
        self._sink = _Sink()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self._sink, self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans(self) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        with self._sink.lock:
            requests = list(self._sink.requests)
        out = []
        for request in requests:
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    out.extend((resource, span) for span in ss.spans)
        return out

    def wait_for(self, count: int, where: Callable[[trace_pb2.Span], bool] | None = None, timeout: float = 15.0
                 ) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        """At least ``count`` spans received (of those ``where`` accepts), and all of those."""
        deadline = time.monotonic() + timeout
        while True:
            spans = [(res, s) for res, s in self.spans() if where is None or where(s)]
            if len(spans) >= count:
                return spans
            if time.monotonic() >= deadline:
                raise TimeoutError(f"received {len(spans)} spans, expected {count}")
            time.sleep(0.05)

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(0)
