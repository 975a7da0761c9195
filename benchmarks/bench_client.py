"""Instructions the Python client spends per LLM call outside the network, counted by callgrind.

    python benchmarks/bench_client.py [--calls 2000] [--live]

What a gated call costs the app besides its two RPCs' transport: building the Route request from a
10-message conversation, decoding the Route answer (4 pools, 3 fallbacks, the reservation) and the
Commit answer (4 pools), and starting and stopping the reservation keeper around the provider call.
The script runs itself under ``valgrind --tool=callgrind`` twice, with no calls and with ``--calls``,
and prints the difference per call, so start-up cancels out. Instruction counts repeat to within about
1 % on a shared machine, where times do not: they are the before/after of a change to the client.

``--live`` counts the whole app process instead, gRPC's threads and transport included, against a
real sidecar (``tollgate serve`` on SQLite, not counted): ``--lanes`` calls at a time (1), each
Route(reserve) then the commit, awaited (``inline``) or handed to the background sender
(``background``), which batches whatever piled up while its last batch was in flight.

Needs ``valgrind`` (Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "clients" / "python"))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_estimate import SYSTEM, TURNS  # noqa: E402

from tollgate_client import (  # noqa: E402
    Scope,
    Usage,
    _wire,
)
from tollgate_client._wrappers.streams import AsyncKeeper, Hold  # noqa: E402
from tollgate_client.v1 import tollgate_pb2 as pb  # noqa: E402


def answers() -> tuple[bytes, bytes]:
    """A Route(reserve) answer and a Commit answer as the sidecar sends them for a 4-pool scope."""
    pools = [pb.PoolState(pool_id=pid, level=level, policy=pb.POLICY_HARD, cap_nanos=10**12,
                          usable_cap_nanos=8 * 10**11, spent_nanos=123_456_789, held_nanos=2_600_000,
                          remaining_nanos=8 * 10**11 - 126_056_789, calls=42, max_calls=500)
             for pid, level in (("session:acme/s1", pb.POOL_LEVEL_SESSION), ("user:acme/u1", pb.POOL_LEVEL_USER),
                                ("team:acme/t1", pb.POOL_LEVEL_TEAM), ("org:acme", pb.POOL_LEVEL_ORG))]
    for p in pools[1:]:
        p.resets_at.FromSeconds(1_796_000_000)
    route = pb.RouteResponse()
    d = route.decision
    d.chosen.CopyFrom(pb.Candidate(model="gpt-6-luna", provider="openai", tier="cheap", estimated_cost_nanos=2_000_000))
    d.fallbacks.extend([pb.Candidate(model=m, provider=p, tier="cheap", estimated_cost_nanos=3_000_000)
                        for m, p in (("gemini-2.5-flash-lite", "google"), ("claude-haiku-4-5", "anthropic"),
                                     ("gpt-5.4-mini", "openai"))])
    d.reason, d.source, d.required_tier = "rule task_type=extract -> cheap", pb.DECISION_SOURCE_RULE, "cheap"
    d.estimated_input_tokens, d.estimated_output_tokens = 2_000, 512
    d.outcome = pb.POLICY_OUTCOME_ADMITTED
    r = route.reservation
    r.reservation_id, r.model, r.held_nanos = "r-0123456789abcdef0123456789abcdef", "gpt-6-luna", 2_600_000
    r.expires_at.FromSeconds(1_796_000_300)
    r.pools.extend(pools)
    commit = pb.CommitResponse(reservation_id=r.reservation_id, charged_nanos=1_900_000, released_nanos=700_000)
    commit.pools.extend(pools)
    return route.SerializeToString(), commit.SerializeToString()


async def calls(n: int) -> None:
    route_bytes, commit_bytes = answers()
    messages = [("system", SYSTEM), *TURNS]
    scope = Scope(org="acme", team="t1", user="u1", session="s1")
    hold = Hold(model="gpt-6-luna", provider="openai", tier="cheap",
                reservation_id="r-0123456789abcdef0123456789abcdef",
                expires_at=datetime.now(UTC) + timedelta(minutes=5), estimated_input_tokens=2_000)
    for i in range(n):
        call = _wire.route(scope, messages=[*messages[:-1], ("user", f"{messages[-1][1]} ({i})")],
                           task_type="extract", max_output_tokens=512, reserve=True, idempotency_key=f"k{i}")
        call.request.SerializeToString()
        call.convert(pb.RouteResponse.FromString(route_bytes))
        keeper = AsyncKeeper(None, hold, 300_000)  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the provider call
        keeper.stop()
        done = _wire.commit(hold.reservation_id, Usage(input_tokens=2_000, output_tokens=87))
        done.request.SerializeToString()
        done.convert(pb.CommitResponse.FromString(commit_bytes))
    await asyncio.sleep(0)


async def live_calls(n: int, target: str, mode: str, lanes: int) -> None:
    import os

    from tollgate_client import AsyncClient

    messages = [("system", SYSTEM), *TURNS]
    # A session of its own per run: a session's call count is capped (max_calls).
    scope = Scope(org="acme", team="t1", user="u1", session=f"{mode}-{os.getpid()}")
    async with AsyncClient(target, timeout=30.0) as client:
        await client.get_budget(scope)  # the channel is up before the first counted call

        async def lane(first: int) -> None:
            for i in range(first, n, lanes):
                decision = await client.route(
                    scope, messages=[*messages[:-1], ("user", f"{messages[-1][1]} ({i})")],
                    task_type="extract", max_output_tokens=512, reserve=True)
                assert decision.reservation is not None
                usage = Usage(input_tokens=2_000, output_tokens=87)
                if mode == "inline":
                    await client.commit(decision.reservation.reservation_id, usage)
                else:
                    client.commit_in_background(decision.reservation.reservation_id, usage,
                                                expires_at=decision.reservation.expires_at)

        await asyncio.gather(*(lane(k) for k in range(lanes)))
        await client.flush()


def count(n: int, *extra: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", sys.executable, __file__,
                        "--run", str(n), *extra], check=True, capture_output=True)
        return sum(_totals(path) for path in Path(tmp).glob("cg.out.*"))


def _totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def live(calls: int, lanes: int) -> None:
    """The app process per gated call, commits awaited and in the background, against one sidecar."""
    import time

    from tests.support.sidecar_process import SidecarProcess

    with tempfile.TemporaryDirectory() as tmp, SidecarProcess(Path(tmp)) as sidecar:
        time.sleep(1.0)
        for mode in ("inline", "background"):
            extra = ("--target", sidecar.target, "--mode", mode, "--lanes", str(lanes))
            base, loaded = count(0, *extra), count(calls, *extra)
            print(f"{(loaded - base) / calls:,.0f} instructions per call in the whole app process, commit {mode} "
                  f"({calls} calls, {lanes} at a time)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls of the measured run")
    parser.add_argument("--live", action="store_true",
                        help="count the whole app process against a real sidecar, commits inline and in the background")
    parser.add_argument("--lanes", type=int, default=1, help="with --live: calls in flight at once")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run is not None:
        import uvloop

        uvloop.run(live_calls(args.run, args.target, args.mode, args.lanes) if args.target else calls(args.run))
        return 0
    if args.live:
        live(args.calls, args.lanes)
        return 0
    base, loaded = count(0), count(args.calls)
    print(f"{(loaded - base) / args.calls:,.0f} instructions per call in the client, outside the network "
          f"({args.calls} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
