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

__all__ = ["Malformed", "add_to_server"]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request body that did not parse as its message: the handler answers INVALID_ARGUMENT.

    Parsing happens in the method's deserializer, outside any handler; returning this
    instead of raising brings a garbage body to the error table like any bad request.
    """

    message: str
    problem: str


def _parser(message_class: Any) -> Callable[[bytes], Any]:
    parse = message_class.FromString
    name = message_class.DESCRIPTOR.full_name

    def parse_or_flag(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Malformed(name, str(exc)[:120])
        except Exception as exc:  # whatever else the parser raises, the body is the caller's to fix
            return Malformed(name, type(exc).__name__)

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
