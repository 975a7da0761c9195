"""What tracing costs on Route+Reserve: untraced, traced to a live collector, traced to a dead one.

Three sidecars (embedded store) run side by side on loopback; one call at a time, the
same request goes to each in turn, so all three see the same machine conditions.
The live collector is a real OTLP/gRPC TraceService in this process. Prints p50 /
p99 in milliseconds and the ratio to the untraced sidecar; figures only.

    python benchmarks/bench_tracing.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.otlp_receiver import OtlpReceiver  # noqa: E402
from tests.support.sidecar_process import SidecarProcess, free_port, write_config  # noqa: E402
from tollgate_client.v1 import tollgate_pb2 as pb  # noqa: E402
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc  # noqa: E402


def _roomy(data: dict) -> None:  # type: ignore[type-arg]
    for level in ("session", "user", "team", "org"):
        data["budgets"]["templates"][level] = {"cap": "1000000.00", "policy": "hard"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def measure(targets: dict[str, str], calls: int) -> dict[str, list[float]]:
    channels = {name: grpc.aio.insecure_channel(t) for name, t in targets.items()}
    stubs = {name: pb_grpc.TollgateServiceStub(ch) for name, ch in channels.items()}
    scope = pb.Scope(org_id="bench", team_id="t", user_id="u", session_id="s")
    messages = [pb.Message(role="user", content="Summarize the incident report in three bullet points. " * 40)]
    timings: dict[str, list[float]] = {name: [] for name in targets}
    for i in range(calls + 200):
        request = pb.RouteRequest(scope=scope, prompt=pb.Prompt(messages=pb.Messages(items=messages)),
                                  signals=pb.TaskSignals(task_type="summarize"), reserve=True)
        for name, stub in stubs.items():
            t0 = time.perf_counter()
            routed = await stub.Route(request)
            elapsed = time.perf_counter() - t0
            await stub.Commit(pb.CommitRequest(reservation_id=routed.reservation.reservation_id,
                                               usage=pb.Usage(input_tokens=500, output_tokens=60)))
            if i >= 200:
                timings[name].append(elapsed * 1e3)
    for ch in channels.values():
        await ch.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        receiver = stack.enter_context(OtlpReceiver())
        envs = {
            "untraced": {},
            "traced, live collector": {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},
            "traced, dead collector": {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"},
        }
        targets = {}
        for i, (name, env) in enumerate(envs.items()):
            d = Path(tmp) / str(i)
            d.mkdir()
            env = {**env, "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"} if env else env
            sidecar = stack.enter_context(SidecarProcess(d, config=write_config(d / "c.yaml", _roomy), env=env))
            targets[name] = sidecar.target
        timings = asyncio.run(measure(targets, args.calls))
        received = len(receiver.spans())
    base50 = statistics.median(timings["untraced"])
    base99 = percentile(timings["untraced"], 0.99)
    print(f"Route(reserve=true), {args.calls} calls each, interleaved; spans received by the live collector: "
          f"{received}")
    print(f"{'sidecar':<24} {'p50 ms':>8} {'p99 ms':>8} {'p50 ×':>7} {'p99 ×':>7}")
    for name, values in timings.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(f"{name:<24} {p50:>8.3f} {p99:>8.3f} {p50 / base50:>7.2f} {p99 / base99:>7.2f}")


if __name__ == "__main__":
    main()
