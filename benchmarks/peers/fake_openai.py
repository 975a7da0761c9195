"""An OpenAI-compatible provider that answers at once, for measuring what sits between an app and it.

    python benchmarks/peers/fake_openai.py PORT

HTTP/1.1 with keep-alive on uvloop, one fixed Chat Completions answer (with usage) to every POST:
the cheapest provider there can be, so that what a gateway adds is all that differs between peers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import cast

import uvloop

ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1764892800, "model": "gpt-5.4-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "The answer is 42."},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 2000, "completion_tokens": 8, "total_tokens": 2008},
}).encode()
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + str(len(ANSWER)).encode()
            + b"\r\nconnection: keep-alive\r\n\r\n" + ANSWER)


class Provider(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buffer[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.transport.write(RESPONSE)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Provider, "127.0.0.1", port, backlog=1024)
    print(f"fake provider on 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
