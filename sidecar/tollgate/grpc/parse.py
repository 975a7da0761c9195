"""Request bodies parsed where the error table sees them.

gRPC parses a request in the method's deserializer, before any handler runs: a body
that does not parse would surface as UNKNOWN with the parser's exception in the
message. Here a garbage body becomes a ``Malformed`` value instead, which the handler
answers with INVALID_ARGUMENT like any bad request (and nothing is logged per call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError

from ..ids import MAX_RESERVATION_ID

__all__ = ["BODY_LIMITS", "MAX_COMMIT_BATCH", "MAX_COMMIT_BATCH_BYTES", "Malformed", "add_to_server"]

MAX_COMMIT_BATCH = 256
"""The most commits one CommitBatch carries: a client's sender sends what piled up while its last
batch was in flight, which at thousands of calls per second is tens, not hundreds."""

MAX_COMMIT_BATCH_BYTES = MAX_COMMIT_BATCH * (MAX_RESERVATION_ID + 64)
"""The largest body a valid CommitBatch takes: per commit, the longest reservation id and four int64
figures with their tags and lengths (under 64 bytes). Bodies beyond it are refused before they are
parsed, where thousands of empty commits in the message size limit would cost ~25 bytes of memory per
byte."""

BODY_LIMITS: dict[str, tuple[int, str]] = {
    "tollgate.v1.CommitBatchRequest": (MAX_COMMIT_BATCH_BYTES, f"send at most {MAX_COMMIT_BATCH} commits per batch"),
}
"""Per request message, the most bytes a valid body can take and what to do instead; only where that
is far below gRPC's own limit."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request body refused before any handler: it did not parse as its message, or it is larger than
    any valid one. The handler answers INVALID_ARGUMENT with ``why``.

    Parsing happens in the method's deserializer, outside any handler; returning this
    instead of raising brings a garbage body to the error table like any bad request.
    """

    why: str


def _parser(message_class: Any) -> Callable[[bytes], Any]:
    parse = message_class.FromString
    name = message_class.DESCRIPTOR.full_name
    limit, instead = BODY_LIMITS.get(name, (0, ""))

    def garbage(problem: str) -> Malformed:
        return Malformed(f"malformed request: the body is not a valid {name} ({problem}); send a message built "
                         "by the generated stubs")

    def parse_or_flag(data: bytes) -> Any:
        if limit and len(data) > limit:
            return Malformed(f"the body is {len(data):,} bytes, more than any valid {name} takes ({limit:,}); "
                             f"{instead}")
        try:
            return parse(data)
        except DecodeError as exc:
            return garbage(str(exc)[:120])
        except Exception as exc:  # whatever else the parser raises, the body is the caller's to fix
            return garbage(type(exc).__name__)

    return parse_or_flag


def add_to_server(servicer: Any, server: grpc.aio.Server, service: ServiceDescriptor) -> None:
    """Serve ``service``'s methods from ``servicer``, bodies parsed where the error table sees them."""
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_parser(message_factory.GetMessageClass(method.input_type)),
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
