"""A TCP proxy in front of a sidecar that loses answers: the call reaches the sidecar and takes effect, but the
connection drops before its answer gets back, as when a network or a process between them fails at the worst time.

The proxy reads the HTTP/2 frames the sidecar sends. On a connection where it is armed, it withholds every frame
of the first stream (the first call's answer) and, once the sidecar has finished that stream, closes the
connection both ways: the client sees UNAVAILABLE for a call that was done. It arms again once a connection's
first answer has been let through, so the losses alternate: the first call of a fresh client is lost, its retry
(on a new connection) passes, the first call of the next fresh client is lost again, and so on.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

_END_STREAM = 0x1
_HEADER = 9  # an HTTP/2 frame header: length (3), type (1), flags (1), stream id (4)


class LossyProxy:
    """Listens on 127.0.0.1 (``target``) and forwards to ``upstream`` ("host:port"), losing answers as above."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._armed = True
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.lost = 0
        """Answers lost so far."""
        self.passed = 0
        """Connections whose first answer was let through."""

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> LossyProxy:
        self._spawn(self._accept)
        return self

    def close(self) -> None:
        self._closed = True
        _shut(self._listener)  # wakes the accepting thread, which close() alone would not
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> LossyProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                _shut(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            self._spawn(_pump, client, server)
            self._spawn(self._answers, server, client)

    def _decide(self) -> bool:
        """Whether the connection whose first answer is arriving loses it."""
        with self._lock:
            lose, self._armed = self._armed, not self._armed
            if lose:
                self.lost += 1
            else:
                self.passed += 1
            return lose

    def _answers(self, server: socket.socket, client: socket.socket) -> None:
        """Forward the sidecar's frames; on a losing connection, withhold the first stream's and then cut."""
        buffer = b""
        first_stream = 0
        lose = False
        try:
            while data := server.recv(65536):
                buffer += data
                out = bytearray()
                while len(buffer) >= _HEADER:
                    end = _HEADER + int.from_bytes(buffer[:3], "big")
                    if len(buffer) < end:
                        break
                    frame, buffer = buffer[:end], buffer[end:]
                    flags, stream = frame[4], int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
                    if stream and not first_stream:
                        first_stream, lose = stream, self._decide()
                    if not (lose and stream == first_stream):
                        out += frame
                    elif flags & _END_STREAM:  # the sidecar is done with the call: drop the connection
                        client.sendall(out)
                        return
                if first_stream and not lose:  # the first answer got through: the rest is forwarded as it is
                    client.sendall(out + buffer)
                    _pump(server, client)
                    return
                client.sendall(out)
        except OSError:
            pass
        finally:
            _shut(client)
            _shut(server)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _shut(source)
        _shut(sink)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
