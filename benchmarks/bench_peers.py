"""What an LLM call costs the app when something sits in its path: Tollgate beside the gateways users pick.

    python benchmarks/bench_peers.py [--seconds 6] [--reps 3] [--rate 200] [--peers ...] [--json]

One load generator (this process, asyncio on uvloop, the ``openai`` SDK) drives, in interleaved
slices, the same ~2,000-token 10-message Chat Completions request (its last turn new each call) to
a fake OpenAI-compatible provider on loopback (``peers/fake_openai.py``, its own process):

- ``direct``: straight to the provider; the floor every other peer is measured against.
- ``tollgate``: the provider SDK gated by Tollgate (``GatedOpenAI``): Route(reserve) to the sidecar
  (``tollgate serve``, embedded SQLite store; with ``--redis``, also on a redis-server), the call
  straight to the provider, then its Commit in the background (batched with others under load).
  The sidecar never carries the provider's bytes. With ``--peers``: ``tollgate-inline`` waits for
  each Commit instead (``wait_for_commit=True``); ``tollgate-uds`` talks to the sidecar over a
  Unix-domain socket instead of loopback TCP.
- ``portkey``: the Portkey AI gateway (open source, Node.js, ``@portkey-ai/gateway`` from npm),
  proxying the call. It routes and retries; it keeps no budgets.
- ``litellm``: the LiteLLM proxy (from the package index, in a venv of its own, run without a
  database, hence without budgets), proxying the call.

A peer that cannot be installed here is left out and said so. Levels: one call at a time; an open
loop at ``--rate`` calls/s (sends leave on a timetable, latency counts from the scheduled time);
saturation (32 calls in flight). Per peer and level: calls/s, latency p50/p99 and what it adds to
``direct``'s, the app's CPU per call (this process) and what it adds to ``direct``'s, and the
gateway's CPU per call (its process; for Tollgate on Redis, redis-server's too). Nothing asserts a
speed: the machine is shared, so every figure is a ratio within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "sidecar"))
sys.path.insert(0, str(HERE))

from bench_estimate import SYSTEM, TURNS  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tollgate-bench"
PORTKEY_VERSION = "1.15.2"
LITELLM_SPEC = "litellm[proxy]<1.111"
MODEL = "gpt-5.4-mini"
LITELLM_KEY = "sk-bench-" + "0" * 32
SATURATION = 32
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before answering on {url}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers, even if not 200
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing answered on {url} after {seconds:.0f} s")


@dataclass
class Peer:
    name: str
    call: Callable[[list[dict[str, str]]], Awaitable[Any]]
    pids: list[int] = field(default_factory=list)
    version: str = ""
    flush: Callable[[], Awaitable[None]] | None = None
    """Waits for the work a call left in the background (Tollgate's commits), which its slice then includes."""
    close: Callable[[], Awaitable[None]] | None = None


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    app_cpu: float = 0.0
    gateway_cpu: float = 0.0
    errors: int = 0
    first_error: str = ""

    def add(self, other: Sample) -> None:
        self.latencies += other.latencies
        self.seconds += other.seconds
        self.app_cpu += other.app_cpu
        self.gateway_cpu += other.gateway_cpu
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error


class Conversation:
    """The benchmark's request: 10 messages, ~2,000 tokens, a new last turn every call."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> list[dict[str, str]]:
        self.n += 1
        turns = [{"role": role, "content": text} for role, text in TURNS]
        turns[-1] = {"role": "user", "content": f"{turns[-1]['content']} (request {self.n})"}
        return [{"role": "system", "content": SYSTEM}, *turns]


async def one(peer: Peer, conv: Conversation, scheduled: float | None, sample: Sample) -> None:
    start = time.perf_counter() if scheduled is None else scheduled
    try:
        await peer.call(conv.next())
    except Exception as exc:  # a failed call is counted, not fatal to the run
        sample.errors += 1
        sample.first_error = sample.first_error or f"{type(exc).__name__}: {str(exc)[:200]}"
        return
    sample.latencies.append(time.perf_counter() - start)


async def run_slice(peer: Peer, level: str, seconds: float, rate: float, conv: Conversation) -> Sample:
    sample = Sample()
    cpu0, gw0, t0 = time.process_time(), cpu_seconds(peer.pids), time.perf_counter()
    end = t0 + seconds
    if level == "one at a time":
        while time.perf_counter() < end:
            await one(peer, conv, None, sample)
    elif level == "saturation":
        async def worker() -> None:
            while time.perf_counter() < end:
                await one(peer, conv, None, sample)
        await asyncio.gather(*(worker() for _ in range(SATURATION)))
    else:
        tasks = []
        i = 0
        while True:
            scheduled = t0 + i / rate
            if scheduled >= end:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(peer, conv, scheduled, sample)))
            i += 1
        await asyncio.gather(*tasks)
    if peer.flush is not None:  # the background commits of this slice's calls are this slice's CPU
        await peer.flush()
    sample.seconds = time.perf_counter() - t0
    sample.app_cpu = time.process_time() - cpu0
    sample.gateway_cpu = cpu_seconds(peer.pids) - gw0
    return sample


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the peers ----------------------------------------------------------------------------------------


class Stack:
    """The processes of one run, stopped together."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))

    def start(self, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{Path(args[0]).name}-{len(self.procs)}.log", "wb")  # noqa: SIM115 - lives with the run
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kw)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def openai_client(base_url: str, **headers: str) -> Any:
    import openai

    # The SDK's own pool of keep-alive connections, as an app holds it; no retries, so failures show.
    return openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", default_headers=headers or None,
                              max_retries=0, timeout=30)


def direct_peer(provider: str) -> Peer:
    client = openai_client(provider)
    return Peer("direct", lambda msgs: client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=64))


def tollgate_peer(stack: Stack, provider: str, store: str, *, wait_for_commit: bool = False,
                  unix: bool = False) -> Peer:
    from tollgate import __version__
    from tollgate_client import AsyncClient, Scope
    from tollgate_client.openai import GatedOpenAI

    port = free_port()
    config: dict[str, Any] = {
        # The catalog's OpenAI models only: the one provider the fake stands for.
        "routing": {"providers": {"*": {"allow": ["openai"]}}},
        "telemetry": {"metrics_port": 0},
        "budgets": {"overrides": {"org:bench": {"cap": "1000000.00"}},
                    # Caps and counts no run reaches: every call is admitted, as in production most are.
                    "templates": {"team": {"cap": "1000000.00", "policy": "soft"},
                                  "user": {"cap": "1000000.00", "policy": "soft", "max_open": 0},
                                  "session": {"cap": "1000000.00", "policy": "hard", "max_calls": 0,
                                              "max_open": 0}}},
    }
    pids = []
    if store == "redis":
        redis_port = free_port()
        redis = stack.start(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"])
        pids.append(redis.pid)
        config["store"] = {"kind": "redis", "url": f"redis://127.0.0.1:{redis_port}/0"}
        time.sleep(0.5)
    path = stack.tmp / f"tollgate-{store}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = [sys.executable, "-m", "tollgate.cli", "serve", "--config", str(path), "--port", str(port)]
    socket_path = stack.tmp / f"tollgate-{port}.sock"
    if unix:
        args += ["--unix-socket", str(socket_path)]
    if store == "sqlite":
        args += ["--db", str(stack.tmp / "ledger.db")]
    proc = stack.start(args, env=dict(os.environ, PYTHONPATH=str(ROOT / "sidecar")))
    pids.insert(0, proc.pid)
    tollgate = AsyncClient(f"unix://{socket_path}" if unix else f"127.0.0.1:{port}", timeout=10.0)
    gated = GatedOpenAI(openai_client(provider), tollgate=tollgate, wait_for_commit=wait_for_commit,
                        scope=Scope(org="bench", team="t", user="u", session="s"))
    deadline = time.monotonic() + 30
    while True:
        try:
            asyncio.get_event_loop().run_until_complete(tollgate.get_budget(Scope(org="bench")))
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"tollgate did not start; see {stack.tmp}") from None
            time.sleep(0.2)
    name = (("tollgate" if store == "sqlite" else "tollgate+redis") + ("-inline" if wait_for_commit else "")
            + ("-uds" if unix else ""))
    return Peer(name, lambda msgs: gated.chat.completions.create(messages=msgs, max_tokens=64, task_type="extract"),
                pids, __version__, flush=tollgate.flush, close=tollgate.close)


def portkey_peer(stack: Stack, provider: str) -> Peer:
    home = CACHE / "portkey"
    entry = home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not entry.exists():
        subprocess.run(["npm", "install", "--prefix", str(home), "--no-audit", "--no-fund",
                        f"@portkey-ai/gateway@{PORTKEY_VERSION}"], check=True, capture_output=True, timeout=600)
    port = free_port()
    proc = stack.start(["node", str(entry), f"--port={port}", "--headless"],
                       env=dict(os.environ, NODE_ENV="production"))
    wait_http(f"http://127.0.0.1:{port}/", proc, 30)
    client = openai_client(f"http://127.0.0.1:{port}/v1", **{"x-portkey-provider": "openai",
                                                             "x-portkey-custom-host": provider})
    return Peer("portkey", lambda msgs: client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=64),
                [proc.pid], PORTKEY_VERSION)


def litellm_peer(stack: Stack, provider: str) -> Peer:
    venv = CACHE / "litellm-venv"
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", LITELLM_SPEC], check=True, timeout=900)
    version = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; "
                              "print(m.version('litellm'))"], capture_output=True, text=True).stdout.strip()
    port = free_port()
    config = stack.tmp / "litellm.yaml"
    config.write_text(yaml.safe_dump({
        "model_list": [{"model_name": MODEL, "litellm_params": {
            "model": f"openai/{MODEL}", "api_base": provider, "api_key": "sk-bench"}}],
        # A master key as a deployment has one; no database, so no virtual keys and no budgets.
        "general_settings": {"master_key": LITELLM_KEY},
    }))
    proc = stack.start([str(exe), "--config", str(config), "--port", str(port), "--host", "127.0.0.1",
                        "--num_workers", "1"])
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, 90)
    client = openai_client(f"http://127.0.0.1:{port}/v1", authorization=f"Bearer {LITELLM_KEY}")
    return Peer("litellm", lambda msgs: client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=64),
                [proc.pid], version)


# -- the run ---------------------------------------------------------------------------------------------


def summary(name: str, s: Sample, base: Sample | None) -> dict[str, Any]:
    n = max(len(s.latencies), 1)
    row: dict[str, Any] = {
        "peer": name, "calls": len(s.latencies), "errors": s.errors, "first_error": s.first_error,
        "calls_per_s": len(s.latencies) / s.seconds if s.seconds else 0.0,
        "p50_ms": pct(s.latencies, 0.5) * 1e3, "p99_ms": pct(s.latencies, 0.99) * 1e3,
        "app_cpu_us": s.app_cpu / n * 1e6, "gateway_cpu_us": s.gateway_cpu / n * 1e6,
    }
    if base is not None:
        b = summary("direct", base, None)
        row["added_p50_ms"] = row["p50_ms"] - b["p50_ms"]
        row["added_p99_ms"] = row["p99_ms"] - b["p99_ms"]
        row["added_app_cpu_us"] = row["app_cpu_us"] - b["app_cpu_us"]
        row["cpu_per_call_us"] = row["gateway_cpu_us"] + row["added_app_cpu_us"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per peer and level, over all repetitions")
    parser.add_argument("--reps", type=int, default=3, help="interleaved slices per peer and level")
    parser.add_argument("--rate", type=float, default=200.0, help="the open loop's calls per second")
    parser.add_argument("--peers", default="direct,tollgate,portkey,litellm", help="which peers, comma-separated")
    parser.add_argument("--redis", action="store_true", help="also Tollgate on a Redis store (redis-server)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    wanted = args.peers.split(",")
    stack = Stack()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    peers: list[Peer] = []
    skipped: dict[str, str] = {}
    try:
        fake_port = free_port()
        fake = stack.start([sys.executable, str(HERE / "peers" / "fake_openai.py"), str(fake_port)])
        provider = f"http://127.0.0.1:{fake_port}/v1"
        wait_http(f"http://127.0.0.1:{fake_port}/", fake, 15)
        builders: dict[str, Callable[[], Peer]] = {
            "direct": lambda: direct_peer(provider),
            "tollgate": lambda: tollgate_peer(stack, provider, "sqlite"),
            "tollgate-inline": lambda: tollgate_peer(stack, provider, "sqlite", wait_for_commit=True),
            "tollgate-uds": lambda: tollgate_peer(stack, provider, "sqlite", unix=True),
            "portkey": lambda: portkey_peer(stack, provider),
            "litellm": lambda: litellm_peer(stack, provider),
        }
        if args.redis:
            builders["tollgate+redis"] = lambda: tollgate_peer(stack, provider, "redis")
            wanted.append("tollgate+redis")
        for name in ["direct", *[w for w in wanted if w != "direct"]]:
            try:
                peers.append(builders[name]())
            except Exception as exc:  # a peer that does not install here is reported, not fatal
                skipped[name] = f"{type(exc).__name__}: {exc}"
        conv = Conversation()
        for peer in peers:  # warm up: connections, caches, JITs
            loop.run_until_complete(run_slice(peer, "one at a time", 1.0, args.rate, conv))
        levels = ["one at a time", f"{args.rate:g}/s", "saturation"]
        results: dict[str, dict[str, Sample]] = {level: {p.name: Sample() for p in peers} for level in levels}
        for level in levels:
            for _ in range(args.reps):
                for peer in peers:
                    got = loop.run_until_complete(run_slice(peer, level, args.seconds / args.reps, args.rate, conv))
                    results[level][peer.name].add(got)
        report = {
            "format": "tollgate-bench-peers/1",
            "versions": {p.name: p.version for p in peers if p.version},
            "skipped": skipped,
            "levels": {level: [summary(name, s, None if name == "direct" else by["direct"])
                               for name, s in by.items()] for level, by in results.items()},
        }
    finally:
        for peer in peers:
            if peer.close is not None:
                loop.run_until_complete(peer.close())
        stack.stop()
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    lines = []
    for level, rows in report["levels"].items():
        lines.append(f"== {level} ==")
        lines.append(f"{'peer':<15} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} "
                     f"{'app µs':>8} {'+app µs':>8} {'gw µs':>8} {'CPU µs':>8}  errors")
        for r in rows:
            extra = (f"{r['added_p50_ms']:>8.2f} {r['added_p99_ms']:>8.2f}" if "added_p50_ms" in r
                     else f"{'':>8} {'':>8}")
            cpu = (f"{r['added_app_cpu_us']:>8.0f} {r['gateway_cpu_us']:>8.0f} {r['cpu_per_call_us']:>8.0f}"
                   if "cpu_per_call_us" in r else f"{'':>8} {'':>8} {'':>8}")
            lines.append(f"{r['peer']:<15} {r['calls_per_s']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {extra} "
                         f"{r['app_cpu_us']:>8.0f} {cpu}  {r['errors']}")
        by = {r["peer"]: r for r in rows}
        for peer in ("portkey", "litellm"):
            if "tollgate" in by and peer in by:
                t, o = by["tollgate"], by[peer]
                lines.append(f"tollgate ÷ {peer}: +p50 {ratio(t['added_p50_ms'], o['added_p50_ms'])}, "
                             f"+p99 {ratio(t['added_p99_ms'], o['added_p99_ms'])}, "
                             f"CPU per call {ratio(t['cpu_per_call_us'], o['cpu_per_call_us'])}, "
                             f"calls/s {ratio(t['calls_per_s'], o['calls_per_s'])}")
        for r in rows:
            if r["first_error"]:
                lines.append(f"{r['peer']}: first error: {r['first_error']}")
        lines.append("")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    for name, why in report["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    lines.append("+p50/+p99: latency added to direct's; +app µs: the app's CPU per call above direct's; gw µs: the "
                 "gateway process's CPU per call; CPU µs = gw + +app.")
    return "\n".join(lines)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 else "n/a"


if __name__ == "__main__":
    sys.exit(main())
