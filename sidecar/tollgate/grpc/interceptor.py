"""The telemetry of every TollgateService RPC: one span, one latency sample, one log line for money."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc

from ..telemetry import Telemetry

__all__ = ["TelemetryInterceptor"]

_SERVICE_PREFIX = "/tollgate.v1.TollgateService/"

if TYPE_CHECKING:  # generic in the stubs only
    _Handler = grpc.RpcMethodHandler[Any, Any]


class TelemetryInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each TollgateService method's handler in its telemetry."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._t = telemetry
        # grpc.aio asks on every RPC; a method's handler is the same object each time, so its
        # traced wrapper is built once rather than per call.
        self._wrapped: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(details)
        method_path = details.method
        if handler is None or handler.unary_unary is None or not method_path.startswith(_SERVICE_PREFIX):
            return handler
        known = self._wrapped.get(method_path)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(method_path[len(_SERVICE_PREFIX):], handler)
        self._wrapped[method_path] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: _Handler) -> _Handler:
        # Under grpc.aio a unary-unary behaviour is a coroutine function of an aio context (the stubs
        # describe the blocking server's); intercept_service wraps only handlers that have one.
        inner = cast("Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]", handler.unary_unary)
        t = self._t

        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            fields, token = t.collect_log_fields()
            code = grpc.StatusCode.OK
            with t.server_span(method, _carrier(context) if t.tracing else {}) as span:
                try:
                    response = await inner(request, context)
                    # A refusal is answered by setting the status rather than raising.
                    code = context.code() or grpc.StatusCode.OK
                    return response
                except BaseException:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    t.stop_collecting(token)
                    t.rpc_done(method, code.name, code.value[0], time.perf_counter() - started, span,
                               money=method == "Route" and getattr(request, "reserve", False),
                               carrier=lambda: _carrier(context), fields=fields)

        return grpc.unary_unary_rpc_method_handler(
            traced, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _carrier(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    """The call's text metadata, where W3C trace context travels."""
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
