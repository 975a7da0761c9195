"""A TCP proxy between one sidecar and Redis that can delay, stall, cut and refuse.

It runs its own asyncio loop in a daemon thread, so a busy harness loop never adds
latency of its own to the sidecar's Redis traffic. Every control method is safe to
call from any thread.

- ``delay(seconds)``: every chunk, in both directions, waits that long (order kept).
- ``stall()`` / ``resume()``: bytes stop flowing (buffered, not lost) until resumed;
  a script sent meanwhile reaches Redis only after the sidecar has given up on it.
- ``cut()``: every open connection is closed at once, mid-reply if need be.
- ``refuse(True)``: new connections are closed as soon as they are accepted (a partition).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any

__all__ = ["FaultyProxy"]


class FaultyProxy:
    """One listening port on loopback that forwards to ``upstream_port``."""

    def __init__(self, upstream_port: int, *, name: str = "proxy") -> None:
        self.upstream_port = upstream_port
        self.name = name
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"harness-{name}", daemon=True)
        self._server: asyncio.Server | None = None
        self._delay = 0.0
        self._flowing: asyncio.Event | None = None
        self._refusing = False
        self._conns: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.cuts = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FaultyProxy:
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._server = await asyncio.start_server(self._accept, sock=sock)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._cut()

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- faults ---------------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        self._delay = max(0.0, seconds)

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._set_flowing, False)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._set_flowing, True)

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._cut)

    def refuse(self, on: bool) -> None:
        self._refusing = on
        if on:
            self.cut()

    def heal(self) -> None:
        """No delay, no stall, no refusal (open connections are left as they are)."""
        self._delay = 0.0
        self._refusing = False
        self.resume()

    def _set_flowing(self, on: bool) -> None:
        assert self._flowing is not None
        if on:
            self._flowing.set()
        else:
            self._flowing.clear()

    def _cut(self) -> None:
        self.cuts += 1
        for writer in list(self._conns):
            transport = writer.transport
            with contextlib.suppress(Exception):
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    # RST rather than FIN: the peer sees the connection die, as after a network fault.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            transport.abort()
        self._conns.clear()

    # -- forwarding -----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._conns.update((writer, up_writer))
        pumps = [asyncio.create_task(self._pump(reader, up_writer)), asyncio.create_task(self._pump(up_reader, writer))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for w in (writer, up_writer):
                self._conns.discard(w)
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ConnectionError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                await self._flowing.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                    await self._flowing.wait()
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
