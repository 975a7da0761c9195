"""Instructions per Route+Commit pair in the sidecar's own code, counted by callgrind.

The full-path benchmark (``bench.py``) measures time on a shared machine, where a run
varies by 1.5x from one minute to the next: too coarse to tell whether a change to the
hot path saved 5 %. This one counts instructions instead, which repeat to within about
1 % whatever else the machine does. It builds a sidecar in-process (``serve()`` with the
benchmark's config: its servicer, the telemetry interceptor and the store; logging is
not set up, so the JSON log line is not counted, which ``--servers`` does count) and
calls the interceptor-wrapped ``Route(reserve=true)`` and ``Commit``
handlers directly with the benchmark's request, so the count is Tollgate's work per
LLM call without the gRPC transport, which is the same for every build.

Only user-space instructions count: the kernel work of a store's writes (SQLite's WAL
appends) does not show here; ``bench.py``'s CPU figures include it.

``--servers`` counts whole server processes instead, transport and all threads included:
``tollgate serve`` on each store and the benchmark's bare ``grpc.aio`` echo (answering the
sidecar's own response bytes), each under callgrind, driven over loopback one pair at a
time. Their ratio is the CPU target's ratio without the machine's noise and without the
kernel's share (wake-ups, socket and WAL syscalls), which the two servers pay alike
except for the store's writes.

    python benchmarks/bench_instructions.py [--store memory,sqlite] [--calls 1000] [--servers [--commit-batch N]]
                                           [--json]

``--commit-batch N`` sends the commits to the sidecar as the clients' background sender does
under load, N to a CommitBatch: the sidecar's instructions per pair as batches grow.

Needs ``valgrind`` (Debian's package) and ``callgrind_control`` on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (str(ROOT), str(ROOT / "sidecar"), str(Path(__file__).resolve().parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

WARMUP = 300


class _Context:
    """What the handlers read of a grpc.aio context on a successful call."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def code(self) -> None:
        return None

    def time_remaining(self) -> None:
        return None

    def cancelled(self) -> bool:
        return False


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _wait_for(path: Path) -> None:
    while not path.exists():
        time.sleep(0.02)


async def _child(store: str, calls: int, signals: Path) -> None:
    """Under valgrind: warm up, say so, run ``calls`` pairs once instrumentation is on, say so."""
    import bench
    import grpc
    import yaml

    from tollgate.config import load_config
    from tollgate.grpc.interceptor import TelemetryInterceptor
    from tollgate.grpc.server import serve
    from tollgate_client.v1 import tollgate_pb2 as pb

    tmp = Path(tempfile.mkdtemp(prefix="tollgate-instr-"))
    config_path, _ = bench.write_bench_config(tmp / "bench.yaml", store, None, {})
    data = yaml.safe_load(config_path.read_text())
    data["store"] = {"kind": store, "path": str(tmp / "ledger.db")}
    data["server"]["port"] = 0
    config_path.write_text(yaml.safe_dump(data))
    sidecar = await serve(load_config(config_path))
    servicer = sidecar.servicer
    assert servicer is not None
    interceptor = TelemetryInterceptor(sidecar.telemetry)

    async def handler(method: str) -> Any:
        async def continuation(details: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(getattr(servicer, method))

        wrapped = await interceptor.intercept_service(continuation, _Details(f"/tollgate.v1.TollgateService/{method}"))
        return wrapped.unary_unary

    route, commit = await handler("Route"), await handler("Commit")
    base = bench.base_conversation()
    context = _Context()

    # Built before counting starts: the count is the sidecar's work, from the parse of the bytes on.
    payloads = [bench.route_request(base, "i", n).SerializeToString() for n in range(WARMUP + calls)]

    async def pair(payload: bytes) -> None:
        routed = await route(pb.RouteRequest.FromString(payload), context)
        await commit(pb.CommitRequest(reservation_id=routed.reservation.reservation_id, usage=bench.USAGE), context)

    for payload in payloads[:WARMUP]:
        await pair(payload)
    (signals / "ready").touch()
    _wait_for(signals / "go")
    for payload in payloads[WARMUP:]:
        await pair(payload)
    (signals / "done").touch()
    _wait_for(signals / "exit")
    await sidecar.stop(0)
    shutil.rmtree(tmp, ignore_errors=True)


def measure(store: str, calls: int) -> dict[str, Any]:
    """Run one store's child under callgrind; instructions per pair."""
    with tempfile.TemporaryDirectory(prefix="tollgate-cg-") as tmp:
        signals = Path(tmp)
        out = signals / "callgrind.out"
        child = subprocess.Popen(
            [*_callgrind(out), sys.executable, __file__, "--child", store, "--calls", str(calls),
             "--signals", str(signals)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=str(ROOT / "sidecar")),
        )
        try:
            _wait_until(signals / "ready", child)
            _instrument(child.pid, "on")
            (signals / "go").touch()
            _wait_until(signals / "done", child)
            _instrument(child.pid, "off")
            (signals / "exit").touch()
            _, err = child.communicate(timeout=600)
        finally:
            if child.poll() is None:
                child.kill()
        if child.returncode != 0:
            raise RuntimeError(f"the {store} run failed: {err.decode(errors='replace')[-2000:]}")
        total = sum(_totals(path) for path in signals.glob("callgrind.out.*"))
    return {"store": store, "calls": calls, "instructions_per_pair": total // calls}


def measure_servers(store: str, calls: int, echo: int | None, batch: int = 0) -> dict[str, Any]:
    """Whole-process instructions per pair: the sidecar on ``store``, and (unless ``echo`` is already
    known) the echo answering its bytes. With ``batch``, the sidecar gets the commits as a client's
    background sender sends them: ``batch`` at a time in one CommitBatch (the echo's stay single)."""
    import bench
    import grpc

    from tests.support.sidecar_process import free_port
    from tollgate_client.v1 import tollgate_pb2 as pb

    base = bench.base_conversation()
    last: dict[str, bytes] = {}
    queued: list[pb.CommitRequest] = []

    def tollgate_pair(channel: grpc.Channel, n: int) -> None:
        route = channel.unary_unary(bench.TOLLGATE_ROUTE)
        commit = channel.unary_unary(bench.TOLLGATE_COMMIT)
        last["route"] = route(bench.route_request(base, "i", n).SerializeToString(), timeout=_RPC_TIMEOUT_S)
        rid = pb.RouteResponse.FromString(last["route"]).reservation.reservation_id
        request = pb.CommitRequest(reservation_id=rid, usage=bench.USAGE)
        last["commit_request"] = request.SerializeToString()
        if not batch:
            last["commit"] = commit(last["commit_request"], timeout=_RPC_TIMEOUT_S)
            return
        queued.append(request)
        if len(queued) >= batch:
            answer = channel.unary_unary(_COMMIT_BATCH)(
                pb.CommitBatchRequest(commits=queued).SerializeToString(), timeout=_RPC_TIMEOUT_S)
            last.setdefault("commit", pb.CommitBatchResponse.FromString(answer).results[0].response.SerializeToString())
            queued.clear()

    def echo_pair(channel: grpc.Channel, n: int) -> None:
        # The echo does not parse: the same request bytes, answered with the sidecar's response bytes.
        channel.unary_unary(bench.ECHO_ROUTE)(bench.route_request(base, "i", n).SerializeToString(),
                                               timeout=_RPC_TIMEOUT_S)
        channel.unary_unary(bench.ECHO_COMMIT)(last["commit_request"], timeout=_RPC_TIMEOUT_S)

    with tempfile.TemporaryDirectory(prefix="tollgate-cg-") as tmp:
        work = Path(tmp)
        config, _ = bench.write_bench_config(work / "bench.yaml", store, None, {})
        port = free_port()
        store_args = ["--db", str(work / "ledger.db")] if store == "sqlite" else ["--store", "memory"]
        sidecar = [sys.executable, "-m", "tollgate.cli", "serve", "--config", str(config), "--port", str(port),
                   *store_args]
        tollgate = _count_server(sidecar, f"127.0.0.1:{port}", tollgate_pair, calls)
        if echo is None:
            (work / "route.bin").write_bytes(last["route"])
            (work / "commit.bin").write_bytes(last["commit"])
            port = free_port()
            server = [sys.executable, "-c", bench.BASELINE_SERVER, str(port), str(work / "route.bin"),
                      str(work / "commit.bin")]
            echo = _count_server(server, f"127.0.0.1:{port}", echo_pair, calls)
    return {"store": store, "calls": calls, "commit_batch": batch, "tollgate_instructions_per_pair": tollgate,
            "echo_instructions_per_pair": echo, "ratio": round(tollgate / echo, 2)}


_RPC_TIMEOUT_S = 120.0
_COMMIT_BATCH = "/tollgate.v1.TollgateService/CommitBatch"


def _count_server(command: list[str], target: str, pair: Callable[[Any, int], None], calls: int) -> int:
    """Instructions per ``pair`` of a server process run under callgrind, after a warm-up."""
    import bench
    import grpc

    with tempfile.TemporaryDirectory(prefix="tollgate-cg-") as tmp, open(Path(tmp) / "server.log", "w+b") as log:
        out = Path(tmp) / "callgrind.out"
        # The sidecar logs a line per money RPC: to a file, as a pipe nobody reads would fill and block it.
        server = subprocess.Popen(
            [*_callgrind(out), *command],
            stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ, PYTHONPATH=str(ROOT / "sidecar")),
        )
        try:
            with grpc.insecure_channel(target, options=bench.CHANNEL_OPTIONS) as channel:
                _ready(channel, server, Path(log.name))
                for n in range(WARMUP):
                    pair(channel, n)
                _instrument(server.pid, "on")
                for n in range(WARMUP, WARMUP + calls):
                    pair(channel, n)
                _instrument(server.pid, "off")
        finally:
            server.terminate()
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        return sum(_totals(path) for path in Path(tmp).glob("callgrind.out.*")) // calls


def _ready(channel: Any, server: subprocess.Popen[bytes], log: Path) -> None:
    import grpc

    deadline = time.monotonic() + 600
    while True:
        try:
            grpc.channel_ready_future(channel).result(timeout=5)
            return
        except grpc.FutureTimeoutError:
            if server.poll() is not None:
                why = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the server under callgrind exited: {why}") from None
            if time.monotonic() > deadline:
                raise


def _callgrind(out: Path) -> list[str]:
    """valgrind's command line: counting starts off, so start-up and warm-up are not counted."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p"]


def _instrument(pid: int, state: str) -> None:
    """Turn counting ``on`` or ``off`` in the process under callgrind."""
    subprocess.run(["callgrind_control", "-i", state, str(pid)], check=True, capture_output=True)


def _wait_until(path: Path, child: subprocess.Popen[bytes]) -> None:
    while not path.exists():
        if child.poll() is not None:
            _, err = child.communicate()
            raise RuntimeError(f"the measured process ended early: {err.decode(errors='replace')[-2000:]}")
        time.sleep(0.05)


def _totals(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="memory,sqlite", help="memory, sqlite, or both (default)")
    parser.add_argument("--calls", type=int, default=1_000, help="measured Route+Commit pairs per store")
    parser.add_argument("--servers", action="store_true",
                        help="count the whole server processes (sidecar and echo) instead of the handlers")
    parser.add_argument("--commit-batch", type=int, default=0,
                        help="with --servers: send the commits N at a time in one CommitBatch (0: one Commit each)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--signals", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import uvloop

        uvloop.run(_child(args.child, args.calls, args.signals))
        return 0
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} is not on PATH: apt-get install -y valgrind", file=sys.stderr)
            return 2
    stores = [s.strip() for s in args.store.split(",") if s.strip()]
    for store in stores:
        if store not in ("memory", "sqlite"):
            parser.error(f"unknown store {store!r}: use memory or sqlite")
    results: list[dict[str, Any]] = []
    for store in stores:
        what = "the sidecar and echo processes" if args.servers else "the handlers"
        print(f"[{store}] {args.calls:,} pairs, {what} under callgrind…", file=sys.stderr)
        if args.servers:
            # The echo does the same work whatever the store: counted once, beside the first.
            echo = results[0]["echo_instructions_per_pair"] if results else None
            results.append(measure_servers(store, args.calls, echo, args.commit_batch))
        else:
            results.append(measure(store, args.calls))
    if args.json:
        print(json.dumps({"schema": "tollgate-instructions/1", "results": results}, indent=2))
    elif args.servers:
        for r in results:
            how = f", commits {r['commit_batch']} per CommitBatch" if r["commit_batch"] else ""
            print(f"{r['store']:>7}: {r['tollgate_instructions_per_pair']:>10,} instructions per Route+Commit pair, "
                  f"whole sidecar process{how}; echo {r['echo_instructions_per_pair']:,} ({r['ratio']:.2f}× echo; "
                  f"{r['calls']:,} pairs)")
    else:
        for r in results:
            print(f"{r['store']:>7}: {r['instructions_per_pair']:>10,} instructions per Route+Commit pair "
                  f"(handlers, telemetry and store; {r['calls']:,} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
