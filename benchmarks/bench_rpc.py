"""Latency of the per-LLM-call path at low load, against a bare gRPC echo in the same run.

Starts two processes on loopback: a Tollgate sidecar (embedded SQLite store by default;
``--store redis`` starts a redis-server of its own) and a bare ``grpc.aio`` + uvloop
echo server. One call at a time, interleaved so both see the same machine
conditions, it measures:

- ``echo``: one unary RPC carrying the same request bytes as Route (the floor);
- ``route+reserve``: ``Route(reserve=true)`` with a 10-turn conversation of ~2,000
  tokens that grows by one turn per call (as an agent's does), task signals and a
  scope of 4 pools;
- ``commit``: ``Commit`` with usage.

Prints p50 / p99 in milliseconds and the ratios to the echo. Figures only: this
machine is shared, so nothing here asserts a speed.

    python benchmarks/bench_rpc.py [--calls 2000] [--store sqlite|memory|redis] [--throughput-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import grpc

from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.sidecar_process import SidecarProcess, free_port, write_config  # noqa: E402
from tollgate.estimate import TokenCounter  # noqa: E402

ECHO_SERVER = """
import asyncio, sys, grpc, uvloop

async def echo(request, context):
    return request

async def main(port):
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()

uvloop.run(main(int(sys.argv[1])))
"""

PARAGRAPH = (
    "The service retries failed payments with exponential backoff, but the ledger sometimes records a "
    "charge twice when the provider times out after accepting the request. "
)


def conversation(turns: int) -> list[pb.Message]:
    messages = [pb.Message(role="system", content="You are a careful senior engineer. " * 10)]
    for i in range(turns):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append(pb.Message(role=role, content=f"Turn {i}. " + PARAGRAPH * 6))
    return messages


def _roomy_budgets(data: dict) -> None:  # type: ignore[type-arg]
    for level in ("session", "user", "team", "org"):
        data["budgets"]["templates"][level] = {"cap": "1000000.00", "policy": "hard"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def run(calls: int, store: str, seconds: float, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        echo_port = free_port()
        echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(echo_port)])
        stack.callback(echo.wait, 5)
        stack.callback(echo.terminate)

        def edit(data: dict) -> None:  # type: ignore[type-arg]
            # Caps high enough that the run never meets them: this measures the path, not refusals.
            _roomy_budgets(data)
            if store == "redis":
                server = stack.enter_context(RedisServer(Path(tmp) / "redis"))
                data["store"] = {"kind": "redis", "url": server.url}

        config = write_config(Path(tmp) / "bench.yaml", edit)
        sidecar = SidecarProcess(Path(tmp), config=config, store=None if store == "redis" else store).start()
        stack.callback(sidecar.stop)
        asyncio.run(_measure(sidecar.target, f"127.0.0.1:{echo_port}", calls, store))
        if seconds > 0:
            asyncio.run(_throughput(sidecar.target, seconds, concurrency, store))


async def _throughput(target: str, seconds: float, concurrency: int, store: str) -> None:
    """Closed loop: ``concurrency`` clients each doing Route(reserve) then Commit, for ``seconds``."""
    scope = pb.Scope(org_id="bench", team_id="t", user_id="u", session_id="s")
    prompt = pb.Prompt(messages=pb.Messages(items=conversation(10)))
    done = 0
    stop = time.perf_counter() + seconds

    async def client(stub: pb_grpc.TollgateServiceStub) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            routed = await stub.Route(pb.RouteRequest(scope=scope, prompt=prompt, reserve=True,
                                                      signals=pb.TaskSignals(task_type="codegen")))
            await stub.Commit(pb.CommitRequest(reservation_id=routed.reservation.reservation_id,
                                               usage=pb.Usage(input_tokens=2_000, output_tokens=300)))
            done += 1

    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.TollgateServiceStub(ch)
        started = time.perf_counter()
        await asyncio.gather(*(client(stub) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(f"throughput, {store} store, {concurrency} concurrent clients on one channel: "
          f"{done / elapsed:,.0f} LLM calls/s (Route+Reserve and Commit each; {2 * done / elapsed:,.0f} RPC/s)")


async def _measure(target: str, echo_target: str, calls: int, store: str) -> None:
    scope = pb.Scope(org_id="bench", team_id="t", user_id="u", session_id="s")
    base = conversation(10)
    async with grpc.aio.insecure_channel(target) as ch, grpc.aio.insecure_channel(echo_target) as ech:
        stub = pb_grpc.TollgateServiceStub(ch)
        echo = ech.unary_unary("/bench.Echo/Call")
        timings: dict[str, list[float]] = {"echo": [], "route+reserve": [], "commit": []}
        for i in range(calls + 200):
            messages = [*base, pb.Message(role="user", content=f"Next step {i}: " + PARAGRAPH)]
            request = pb.RouteRequest(
                scope=scope, prompt=pb.Prompt(messages=pb.Messages(items=messages)),
                signals=pb.TaskSignals(task_type="codegen"), max_output_tokens=2_000, reserve=True,
            )
            payload = request.SerializeToString()
            t0 = time.perf_counter()
            await echo(payload)
            t1 = time.perf_counter()
            routed = await stub.Route(request)
            t2 = time.perf_counter()
            await stub.Commit(pb.CommitRequest(reservation_id=routed.reservation.reservation_id,
                                               usage=pb.Usage(input_tokens=2_000, output_tokens=300)))
            t3 = time.perf_counter()
            if i >= 200:  # warm-up: connections, caches, the output estimate
                timings["echo"].append((t1 - t0) * 1e3)
                timings["route+reserve"].append((t2 - t1) * 1e3)
                timings["commit"].append((t3 - t2) * 1e3)
    tokens = TokenCounter().count_messages([(m.role, m.content) for m in base])
    print(f"{calls} calls, one at a time; a {len(base) + 1}-message conversation of ~{tokens} tokens, "
          f"4 pools, {store} store")
    print(f"{'path':<16} {'p50 ms':>8} {'p99 ms':>8} {'p50 ×echo':>10} {'p99 ×echo':>10}")
    e50, e99 = statistics.median(timings["echo"]), percentile(timings["echo"], 0.99)
    for name, values in timings.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(f"{name:<16} {p50:>8.3f} {p99:>8.3f} {p50 / e50:>10.2f} {p99 / e99:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--store", choices=("sqlite", "memory", "redis"), default="sqlite")
    parser.add_argument("--throughput-seconds", type=float, default=0.0,
                        help="then measure closed-loop throughput for this long (0: skip)")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    run(args.calls, args.store, args.throughput_seconds, args.concurrency)


if __name__ == "__main__":
    main()
