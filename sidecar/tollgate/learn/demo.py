"""``tollgate demo``: what the sidecar does, shown in a few seconds against a running sidecar.

Four short beats, then a workload and its table:

1. **Routing**: a rule decides by task type; without one, the predicted difficulty does.
2. **A soft pool downgrades**: a user whose daily pool is nearly spent gets a cheaper model.
3. **A runaway agent loop stops** at its session's hard cap.
4. **A call from a team without budget** is refused before any provider is called.

Every run uses pools of its own (the run id is in the team, user and session ids: the
beats' team is ``RUN-beats``, the workload's ``RUN-platform``, ``RUN-support`` and ``RUN-web``);
the beats also use two pools of the default config that refill within seconds
(``user:demo/intern``, ``session:demo/runaway``, ``team:demo/contractors``), so the first and the twentieth run of a day
look alike. Usage is simulated; no provider is called. The table counts
refused and downgraded calls apart: a saving is measured on the calls served as routed, each
against the same call on the frontier model and on the baseline model ("what you would have
used", ``--baseline``).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.table import Table

from tollgate_client import AsyncClient, BudgetExceededError, Decision, Scope, UnavailableError, Usage

from ..catalog import Model
from ..config import Config, load_config
from ..money import format_usd

__all__ = ["DemoError", "run_demo"]

ORG = "demo"
CHAT = [
    "What's the capital of Australia?",
    "Translate 'good morning, see you tomorrow' into Spanish.",
    "Give me three names for a coffee shop.",
    "thanks!",
    "Explain in detail how a B-tree differs from an LSM tree, with the trade-offs for write-heavy workloads "
    "and why compaction matters.",
    "Design the architecture of a multi-region rate limiter; discuss consistency, failure modes and the "
    "trade-offs between a central store and local token buckets.",
]
SUPPORT = [
    ("extract", "Extract the order number and the email from: 'Order #48213 never arrived, write to me at "
                "jo@example.com'"),
    ("classify", "Classify this ticket as billing, shipping or account: 'I was charged twice this month'"),
    ("summarize", "Summarize the customer's complaint: the app logs me out every time I switch networks, "
                  "I lost my cart twice, and support never answered my email."),
]
CODE_STEPS = [
    "Write the function that parses the config file and returns typed settings.",
    "Add error handling for a missing key, naming the key in the message.",
    "Write unit tests for the parser, including malformed input.",
    "Refactor the retry loop into a helper with exponential backoff.",
]
TOOL_RESULT = "test output:\n" + "PASSED test_case_{n}\n" * 12
TRACEBACK = (
    "Traceback (most recent call last):\n  File \"app/ledger.py\", line 88, in settle\n    "
    "await self.store.commit(tx)\nRuntimeError: deadlock detected while two refunds raced\n"
)
HARD_ASK = ("Design the architecture for a multi-tenant job scheduler that must survive a region outage: leader "
            "election, exactly-once execution of each job, and fair sharing between tenants. Discuss the trade-offs "
            "of Postgres advisory locks versus etcd leases.")


class DemoError(Exception):
    """The demo cannot run as asked; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Call:
    """One simulated LLM call: what the app sends and what the provider would report."""

    scope: Scope
    messages: tuple[tuple[str, str], ...]
    task_type: str = ""
    agent_mode: str = ""
    output_tokens: int = 300


@dataclass
class Tally:
    """What the workload did: served calls per model, and the calls kept apart from the saving."""

    calls: Counter[str] = field(default_factory=Counter)
    spend: Counter[str] = field(default_factory=Counter)
    tiers: dict[str, str] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    downgraded: int = 0
    downgraded_spend: int = 0
    routed_spend: int = 0
    """Spend of the calls served as routed (not downgraded): what the savings compare."""
    on_frontier: int = 0
    on_baseline: int = 0


def _workload(rng: random.Random, run: str, calls: int) -> Iterator[Call]:
    made = 0
    agent = 0
    while made < calls:
        kind = rng.choices(["agent", "support", "chat"], [5, 3, 2])[0]
        if kind == "agent":
            agent += 1
            scope = Scope(org=ORG, team=f"{run}-platform", user=f"{run}-dev-{agent % 3}",
                          session=f"{run}-agent-{agent}")
            history: list[tuple[str, str]] = [("system", "You are a careful coding agent. " * 15)]
            history.append(("user", "Plan the work: " + rng.choice(CODE_STEPS)))
            yield Call(scope, tuple(history), task_type="planning", output_tokens=rng.randint(300, 900))
            made += 1
            for step in range(rng.randint(3, 7)):
                if made >= calls:
                    return
                history.append(("assistant", "Here is the change:\n```python\n" + "x = compute(x)\n" * 20 + "```"))
                history.append(("tool", TOOL_RESULT.format(n=step)))
                if rng.random() < 0.2:
                    history.append(("user", "The tests fail:\n" + TRACEBACK))
                    yield Call(scope, tuple(history), agent_mode="debug", output_tokens=rng.randint(200, 700))
                else:
                    history.append(("user", rng.choice(CODE_STEPS)))
                    yield Call(scope, tuple(history), agent_mode="code", output_tokens=rng.randint(150, 600))
                made += 1
        elif kind == "support":
            task, text = rng.choice(SUPPORT)
            scope = Scope(org=ORG, team=f"{run}-support", user=f"{run}-support-bot", session=f"{run}-support")
            yield Call(scope, (("user", text),), task_type=task, output_tokens=rng.randint(20, 150))
            made += 1
        else:
            scope = Scope(org=ORG, team=f"{run}-web", user=f"{run}-visitor-{rng.randint(1, 20)}",
                          session=f"{run}-chat")
            yield Call(scope, (("user", rng.choice(CHAT)),), output_tokens=rng.randint(40, 500))
            made += 1


def _cost_on(model: Model, chosen: Model, input_tokens: int, output_tokens: int) -> int:
    """The same call on ``model``: its tokenizer sees the text ``chosen``'s counted as ``input_tokens``."""
    base_tokens = input_tokens * 100 // chosen.token_ratio_pct
    return model.price.cost(input_tokens=model.input_tokens(base_tokens), output_tokens=output_tokens)


class Demo:
    def __init__(self, client: AsyncClient, config: Config, console: Console, frontier: Model, baseline: Model,
                 run: str) -> None:
        self.client = client
        self.config = config
        self.out = console
        self.frontier = frontier
        self.baseline = baseline
        self.run = run

    def model(self, name: str) -> Model:
        found = self.config.catalog.models.get(name)
        if found is None:
            raise DemoError(f"the sidecar routed to {name}, which this demo's catalog does not list: pass the "
                            "sidecar's config with --config")
        return found

    async def pool_line(self, scope: Scope, pool_id: str) -> str:
        for pool in await self.client.get_budget(scope):
            if pool.pool_id == pool_id:
                left = format_usd(pool.remaining_nanos)
                return f"{pool_id} ({pool.policy}, cap {format_usd(pool.cap_nanos)}, {left} left)"
        raise DemoError(f"the sidecar has no pool {pool_id}: run the demo against a sidecar on the shipped "
                        "defaults, or give its config the demo's overrides (see default.yaml)")

    def show(self, what: str, d: Decision) -> None:
        self.out.print(f"  {what:<34} -> [bold]{d.model}[/] ({d.tier})  {d.reason}")

    async def serve(self, call: Call, max_output_tokens: int = 4096) -> tuple[Decision, int]:
        """Route, reserve and commit one simulated call; the decision and what it was charged."""
        d = await self.client.route(call.scope, messages=call.messages, task_type=call.task_type,
                                    agent_mode=call.agent_mode, max_output_tokens=max_output_tokens, reserve=True)
        assert d.reservation is not None
        usage = Usage(input_tokens=d.estimated_input_tokens, output_tokens=call.output_tokens)
        result = await self.client.commit(d.reservation.reservation_id, usage)
        return d, result.charged_nanos

    async def routing(self) -> None:
        self.out.print("\n[bold]1. Routing[/]: a rule decides by task type; without one, the predicted difficulty.")
        scope = Scope(org=ORG, team=f"{self.run}-beats", user=f"{self.run}-routing", session=f"{self.run}-routing")
        asks = [
            ("task_type=extract", Call(scope, (("user", SUPPORT[0][1]),), task_type="extract", output_tokens=60)),
            ("task_type=planning", Call(scope, (("user", "Plan the migration of billing to its own service."),),
                                        task_type="planning", output_tokens=600)),
            ("no signal: 'thanks!'", Call(scope, (("user", "thanks!"),), output_tokens=10)),
            ("no signal: an architecture question", Call(scope, (("user", HARD_ASK),), output_tokens=900)),
        ]
        for what, call in asks:
            d, _ = await self.serve(call)
            self.show(what, d)

    async def soft_pool(self) -> None:
        scope = Scope(org=ORG, team=f"{self.run}-beats", user="intern", session=f"{self.run}-intern")
        line = await self.pool_line(scope, f"user:{ORG}/intern")
        self.out.print(f"\n[bold]2. A soft pool downgrades[/]: {line}.")
        call = Call(scope, (("user", "Plan the rollout of the new search index."),), task_type="planning",
                    output_tokens=400)
        d, _ = await self.serve(call)
        self.show(f"planning, outcome {d.outcome}", d)

    async def runaway(self) -> None:
        pool = f"session:{ORG}/runaway"
        scope = Scope(org=ORG, team=f"{self.run}-beats", user=f"{self.run}-bot", session="runaway")
        line = await self.pool_line(scope, pool)
        self.out.print(f"\n[bold]3. A runaway agent loop[/]: its session is {line}.")
        history: list[tuple[str, str]] = [("user", "Fix the flaky test, whatever it takes.")]
        spent = 0
        for calls in range(500):
            history.append(("tool", TOOL_RESULT.format(n=calls) * 4))
            try:
                _, charged = await self.serve(Call(scope, tuple(history), agent_mode="code", output_tokens=400))
            except BudgetExceededError as exc:
                self.out.print(f"  stopped at call {calls + 1}: {exc.pool_id} ({exc.policy}) refused it after "
                               f"{calls} calls and {format_usd(spent, 4)}; the loop could not spend more")
                return
            spent += charged
        raise DemoError(f"the runaway loop was never stopped: is {pool} capped by the sidecar's config?")

    async def refusal(self) -> None:
        scope = Scope(org=ORG, team="contractors", user=f"{self.run}-contractor", session=f"{self.run}-contractor")
        line = await self.pool_line(scope, f"team:{ORG}/contractors")
        self.out.print(f"\n[bold]4. A refused call[/]: the team's pool is {line}.")
        try:
            d = await self.client.route(scope, messages=(("user", "Summarize the meeting notes."),),
                                        task_type="summarize", reserve=True)
        except BudgetExceededError as exc:
            self.out.print(f"  refused by {exc.pool_id} ({exc.policy}): it needed {format_usd(exc.requested_nanos)}, "
                           f"{format_usd(exc.remaining_nanos)} was left; no provider was called")
            return
        if d.reservation is not None:
            await self.client.release(d.reservation.reservation_id)
        raise DemoError("the sidecar admitted a call on a team without budget: is team:demo/contractors hard?")

    async def workload(self, calls: int, seed: int) -> Tally:
        self.out.print(f"\n[bold]5. A workload[/]: {calls} calls from coding agents, a support bot and a chat app.")
        tally = Tally()
        rng = random.Random(seed)
        for call in _workload(rng, self.run, calls):
            try:
                d, charged = await self.serve(call)
            except BudgetExceededError as exc:
                tally.refused[exc.level or "pool"] += 1
                continue
            chosen = self.model(d.model)
            tally.calls[d.model] += 1
            tally.spend[d.model] += charged
            tally.tiers[d.model] = d.tier
            if d.outcome == "downgraded":
                tally.downgraded += 1
                tally.downgraded_spend += charged
                continue
            tally.routed_spend += charged
            tally.on_frontier += _cost_on(self.frontier, chosen, d.estimated_input_tokens, call.output_tokens)
            tally.on_baseline += _cost_on(self.baseline, chosen, d.estimated_input_tokens, call.output_tokens)
        return tally

    def table(self, tally: Tally) -> None:
        served = sum(tally.calls.values())
        table = Table(box=box.SIMPLE_HEAD, show_footer=True, pad_edge=False)
        table.add_column("model", footer="total served")
        table.add_column("tier")
        table.add_column("calls", justify="right", footer=str(served))
        table.add_column("share", justify="right")
        table.add_column("spend", justify="right", footer=format_usd(sum(tally.spend.values()), 4))
        for model, n in sorted(tally.calls.items(), key=lambda kv: -tally.spend[kv[0]]):
            table.add_row(model, tally.tiers[model], str(n), f"{n / max(served, 1):.0%}",
                          format_usd(tally.spend[model], 4))
        self.out.print(table)
        refused = sum(tally.refused.values())
        by = ", ".join(f"{n} by the {level} pool" for level, n in sorted(tally.refused.items()))
        self.out.print(f"refused: {refused} calls{f' ({by})' if by else ''}")
        self.out.print(f"downgraded by a soft pool: {tally.downgraded} calls, {format_usd(tally.downgraded_spend, 4)}")
        routed = served - tally.downgraded
        self.out.print(f"saving on the {routed} calls served as routed ({format_usd(tally.routed_spend, 4)}), "
                       "refused and downgraded calls left out:")
        for label, other in ((f"all on {self.frontier.name} (the frontier model)", tally.on_frontier),
                             (f"all on {self.baseline.name} (what you would have used)", tally.on_baseline)):
            saving = 1 - tally.routed_spend / other if other else 0.0
            verdict = f"saving {saving:.1%}" if saving >= 0 else f"routing costs {-saving:.1%} more"
            self.out.print(f"  vs {label}: {format_usd(other, 4)} -> {verdict}")
        self.out.print(f"\nInspect this run's pools: tollgate budget --org {ORG} --team {self.run}-platform")


def _frontier_and_baseline(config: Config, baseline: str | None) -> tuple[Model, Model]:
    catalog = config.catalog
    frontier = max((m for m in catalog.models.values() if m.tier == catalog.tiers[-1]), key=lambda m: m.price.output)
    if baseline is None:
        # What an app hard-codes when it does not route: the strongest (dearest) model of the middle tier.
        middle = catalog.tiers[len(catalog.tiers) // 2]
        return frontier, max((m for m in catalog.models.values() if m.tier == middle), key=lambda m: m.price.output)
    if baseline not in catalog.models:
        raise DemoError(f"--baseline {baseline!r} is not in the catalog; choose one of: "
                        f"{', '.join(sorted(catalog.models))}")
    return frontier, catalog.models[baseline]


async def _wait_for(client: AsyncClient, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            await client.get_budget(Scope(org=ORG))
            return
        except UnavailableError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _run(target: str, calls: int, seed: int, wait: float, config: Config, baseline: str | None,
               token: str, console: Console) -> int:
    frontier, base = _frontier_and_baseline(config, baseline)
    run = uuid.uuid4().hex[:6]
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with AsyncClient(target, timeout=5.0, metadata=metadata) as client:
        await _wait_for(client, wait)
        console.print(f"tollgate demo against {target}, run {run}: simulated calls, no provider is called")
        demo = Demo(client, config, console, frontier, base, run)
        await demo.routing()
        await demo.soft_pool()
        await demo.runaway()
        await demo.refusal()
        tally = await demo.workload(calls, seed)
        demo.table(tally)
    return 0


def run_demo(*, target: str, calls: int = 120, seed: int = 7, wait: float = 10.0, config_path: str | None = None,
             baseline: str | None = None, token: str = "", console: Console | None = None) -> int:
    """Run the demo; returns a process exit code (``DemoError`` and ``UnavailableError`` say what went wrong)."""
    config = load_config(config_path)
    return asyncio.run(_run(target, calls, seed, wait, config, baseline, token,
                            console or Console(highlight=False, soft_wrap=True)))
