"""The wire: the only package that imports grpc.

``parse`` turns bodies into messages where the error table sees them, ``convert``
translates messages into the application's values and back, ``status`` is the one
table from error kinds to status codes and reasons, ``handlers`` are the servicers
(authentication and authorization first, then one call into the application),
``interceptor`` wraps each RPC in its telemetry, and ``server`` wires the process.
"""
