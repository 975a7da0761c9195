"""Faults on a schedule drawn from the seed, one at a time, while the callers run.

The schedule is an endless sequence of (pause, fault) drawn from ``random.Random(seed)``;
the nemesis plays it until told to stop, then heals everything. Timing aside, a seed
replays the same faults in the same order.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from tests.harness.env import Environment
from tests.harness.workload import Clients

__all__ = ["Fault", "Nemesis", "schedule"]

# Fault kinds and their weights, per store kind.
_WEIGHTS: dict[str, dict[str, float]] = {
    "redis": {"redis_stall": 3, "redis_kill": 1, "sidecar_kill": 1.5, "sidecar_stall": 1, "proxy_delay": 2,
              "proxy_stall": 2, "proxy_cut": 1.5, "proxy_partition": 1},
    "failopen": {"redis_stall": 2, "redis_kill": 2, "proxy_partition": 2, "proxy_stall": 1.5, "proxy_delay": 1,
                 "proxy_cut": 1, "sidecar_stall": 0.5},
    "cluster": {"node_stall": 3, "sidecar_kill": 1.5, "sidecar_stall": 1},
    "sqlite": {"sidecar_kill": 1, "sidecar_stall": 1.5},
}


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    target: int
    duration: float
    delay: float = 0.0
    """proxy_delay: seconds added to every chunk."""
    pause: float = 0.0
    """How long the nemesis waits before this fault."""

    def describe(self) -> str:
        extra = f" +{self.delay * 1000:.0f}ms/chunk" if self.kind == "proxy_delay" else ""
        return f"{self.kind}[{self.target}] {self.duration:.2f}s{extra}"


def schedule(seed: int, kind: str, sidecars: int) -> Iterator[Fault]:
    """The faults of a seed, in order, forever."""
    rng = random.Random(f"nemesis-{seed}")
    weights = _WEIGHTS[kind]
    names = sorted(weights)
    while True:
        name = rng.choices(names, weights=[weights[n] for n in names])[0]
        target = rng.randrange(3 if name == "node_stall" else sidecars)
        duration = {
            "redis_stall": rng.uniform(0.1, 2.0),
            "node_stall": rng.uniform(0.1, 2.0),
            "redis_kill": rng.uniform(0.3, 2.5 if kind == "failopen" else 1.2),
            "sidecar_kill": rng.uniform(0.2, 1.5),
            "sidecar_stall": rng.uniform(0.1, 1.0),
            "proxy_delay": rng.uniform(0.5, 3.0),
            "proxy_stall": rng.uniform(0.1, 2.0),
            "proxy_cut": 0.0,
            "proxy_partition": rng.uniform(0.3, 2.0 if kind == "failopen" else 1.2),
        }[name]
        delay = rng.uniform(0.05, 0.6) if name == "proxy_delay" else 0.0
        # The embedded store has one sidecar: while it restarts no caller gets anywhere, so faults come further apart.
        pause = rng.uniform(0.5, 2.0) if kind == "sqlite" else rng.uniform(0.1, 0.9)
        yield Fault(name, target, duration, delay, pause=pause)


class Nemesis:
    """Plays a seed's schedule against an ``Environment``."""

    def __init__(self, env: Environment, clients: Clients, seed: int) -> None:
        self.env = env
        self.clients = clients
        self.seed = seed
        self.log: list[tuple[float, float, Fault]] = []
        """(start, end, fault) of every fault injected, wall-clock seconds."""

    @property
    def counts(self) -> Counter[str]:
        return Counter(f.kind for _, _, f in self.log)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            for fault in schedule(self.seed, self.env.kind, self.env.n_sidecars):
                if await _wait(stop, fault.pause):
                    return
                start = time.time()
                await self._inject(fault, stop)
                self.log.append((start, time.time(), fault))
                if stop.is_set():
                    return
        finally:
            await asyncio.to_thread(self.env.heal)
            for i in range(self.env.n_sidecars):
                if self.env.sidecars[i].restarts:
                    self.clients.reset(i)

    async def _inject(self, fault: Fault, stop: asyncio.Event) -> None:
        env, i = self.env, fault.target
        if fault.kind == "redis_stall":
            env.redis_signal(signal.SIGSTOP)
            try:
                await _wait(stop, fault.duration)
            finally:
                env.redis_signal(signal.SIGCONT)
        elif fault.kind == "node_stall":
            env.node_signal(i, signal.SIGSTOP)
            try:
                await _wait(stop, fault.duration)
            finally:
                env.node_signal(i, signal.SIGCONT)
        elif fault.kind == "redis_kill":
            await asyncio.to_thread(env.redis_kill)
            try:
                await _wait(stop, fault.duration)
            finally:
                await asyncio.to_thread(env.redis_restart)
        elif fault.kind == "sidecar_kill":
            await asyncio.to_thread(env.sidecar_kill, i)
            self.clients.reset(i)
            try:
                await _wait(stop, fault.duration)
            finally:
                await asyncio.to_thread(env.sidecar_restart, i)
                self.clients.reset(i)
        elif fault.kind == "sidecar_stall":
            env.sidecar_signal(i, signal.SIGSTOP)
            try:
                await _wait(stop, fault.duration)
            finally:
                env.sidecar_signal(i, signal.SIGCONT)
        elif fault.kind == "proxy_delay":
            env.proxies[i].delay(fault.delay)
            try:
                await _wait(stop, fault.duration)
            finally:
                env.proxies[i].delay(0.0)
        elif fault.kind == "proxy_stall":
            env.proxies[i].stall()
            try:
                await _wait(stop, fault.duration)
            finally:
                env.proxies[i].resume()
        elif fault.kind == "proxy_cut":
            env.proxies[i].cut()
        elif fault.kind == "proxy_partition":
            env.proxies[i].refuse(True)
            try:
                await _wait(stop, fault.duration)
            finally:
                env.proxies[i].refuse(False)
        else:  # pragma: no cover - the schedule only draws the kinds above
            raise ValueError(fault.kind)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if it was."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
