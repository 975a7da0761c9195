"""One run: start the processes, play the callers and the faults, heal, settle, check, report."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.checker import Violation, check
from tests.harness.env import Environment
from tests.harness.history import History
from tests.harness.nemesis import Nemesis
from tests.harness.store import StoreView
from tests.harness.tenants import ALLOWANCE_USD, MAX_TTL_MS, usd_nanos
from tests.harness.workload import Clients, Workload, make_plans

__all__ = ["RunResult", "run_seed"]


@dataclass(slots=True)
class RunResult:
    seed: int
    store: str
    intents: int
    calls: int
    faults: Counter[str]
    violations: list[Violation]
    stats: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    t0: float = 0.0

    @property
    def kinds(self) -> dict[str, int]:
        return dict(sorted(Counter(v.kind for v in self.violations).items()))

    def summary(self) -> str:
        faults = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())) or "none"
        found = ", ".join(f"{k} {n}" for k, n in self.kinds.items()) or "none"
        return (f"SEED={self.seed} store={self.store}: {self.intents} ops, {self.calls} calls, "
                f"{sum(self.faults.values())} faults ({faults}) in {self.seconds:.0f}s -> "
                f"{len(self.violations)} violations ({found})")

    def render(self, limit: int = 40) -> str:
        shown = _representatives(self.violations, limit)
        lines = [v.render(self.seed, self.store, self.t0) for v in shown]
        if len(shown) < len(self.violations):
            lines.append(f"... {len(self.violations) - len(shown)} more violations of the same kinds")
        return "\n".join(lines)


def _representatives(violations: list[Violation], limit: int) -> list[Violation]:
    """At most ``limit``, spread over the kinds so none is hidden behind another's flood."""
    by_kind: dict[str, list[Violation]] = {}
    for v in violations:
        by_kind.setdefault(v.kind, []).append(v)
    out: list[Violation] = []
    while len(out) < min(limit, len(violations)):
        for items in by_kind.values():
            if items and len(out) < limit:
                out.append(items.pop(0))
    return out


async def run_seed(seed: int, store: str, ops: int, workdir: Path, *, tasks: int = 24,
                   fault_seconds: float = 180.0, log: Callable[[str], None] = print) -> RunResult:
    """Run one seed on one store kind and check it; the processes are stopped whatever happens."""
    started = time.monotonic()
    log(f"SEED={seed} store={store} ops={ops} callers={tasks}")
    env = Environment(store, workdir / f"{store}-{seed}")
    await asyncio.to_thread(env.start)
    phases = {"start": time.monotonic() - started}
    clients = Clients(lambda i: env.sidecars[i].target)
    try:
        log(f"  {env.describe()}")
        plans = make_plans(seed, store, ops, tasks, env.n_sidecars)
        history = History()
        workload = Workload(plans, history, clients, sticky=env.fail_open)
        nemesis = Nemesis(env, clients, seed)
        stop = asyncio.Event()
        faults = asyncio.create_task(nemesis.run(stop))
        work = asyncio.create_task(workload.run())
        await asyncio.wait({work, faults}, timeout=fault_seconds, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        await faults  # heals everything on its way out
        await work
        phases["calls"] = time.monotonic() - started - sum(phases.values())
        serving = await asyncio.to_thread(env.wait_serving, 30)
        told = {c.rid for c in history.calls if c.op in ("reserve", "route") and c.ok}
        view = await _settle(env, told, MAX_TTL_MS / 1000 + 20)
        phases["settle"] = time.monotonic() - started - sum(phases.values())
        audit = await asyncio.to_thread(env.audit)
        phases["audit"] = time.monotonic() - started - sum(phases.values())
        result = check(plans, history, view, audit=audit,
                       sidecar_logs=env.sidecar_logs() if env.fail_open else (),
                       allowance=usd_nanos(ALLOWANCE_USD) if env.fail_open else 0, serving=serving)
        stats = dict(result.stats)
        stats["unresolved"] = workload.unresolved
        stats["restarts"] = sum(s.restarts for s in env.sidecars)
        run = RunResult(seed, store, len(plans), len(history.calls), nemesis.counts, result.violations, stats,
                        history.counts(), time.monotonic() - started, history.t0)
    finally:
        await clients.close()
        await asyncio.to_thread(env.stop)
    run.seconds = time.monotonic() - started
    run_dir = workdir / f"{store}-{seed}"
    (run_dir / "history.txt").write_text("".join(c.render(history.t0) + "\n" for c in history.calls))
    (run_dir / "faults.txt").write_text("".join(f"+{a - history.t0:.3f}s..+{b - history.t0:.3f}s {f.describe()}\n"
                                                for a, b, f in nemesis.log))
    if run.violations:
        (run_dir / "violations.txt").write_text(run.render(limit=len(run.violations)) + "\n")
        log(run.render())
        log(f"  every violation: {run_dir / 'violations.txt'}; every call: {run_dir / 'history.txt'}")
    outcomes = ", ".join(f"{k} {n}" for k, n in sorted(run.outcomes.items()))
    log(f"  calls: {outcomes}")
    log("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    log(f"  store: {stats.get('records', 0)} records; {stats.get('lost_keyless_records', 0)} from keyless calls "
        f"whose answers were lost (charged {stats.get('lost_keyless_charged', 0)}); "
        f"{stats.get('undone_holds', 0)} holds undone by the sidecar; "
        f"{stats.get('unresolved', 0)} intents gave up; {stats.get('restarts', 0)} sidecar restarts"
        + (f"; {stats.get('fail_open_admitted', 0)} admitted on the fail-open allowance" if env.fail_open else ""))
    log(run.summary())
    return run


async def _settle(env: Environment, told: set[str], within: float) -> StoreView:
    """Wait until no hold is open and every told reservation is in the store (or ``within`` seconds pass)."""
    deadline = time.monotonic() + within
    while True:
        view = await asyncio.to_thread(env.read)
        missing = told - set(view.records)
        if (not view.open_records() and not missing) or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.5)
