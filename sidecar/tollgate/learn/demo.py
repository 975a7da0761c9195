"""``tollgate demo``: a simulated agent workload against a running sidecar.

Three kinds of simulated traffic share one org: coding agents (plan, then code in
tool loops whose context grows every turn, debugging now and then), a support bot
(extract, classify, summarize) and free-form chat with no task signals, so the
difficulty score decides. Usage is simulated; no provider is called. The run ends
with the calls and spend per model and the saving against sending every call to
the frontier model.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from tollgate_client import AsyncClient, BudgetExceededError, Decision, Scope, UnavailableError, Usage

from ..config import Config, load_config
from ..money import format_usd

__all__ = ["run_demo"]

CHAT = [
    "What's the capital of Australia?",
    "Translate 'good morning, see you tomorrow' into Spanish.",
    "Give me three names for a coffee shop.",
    "Explain in detail how a B-tree differs from an LSM tree, with the trade-offs for write-heavy workloads "
    "and why compaction matters.",
    "Design the architecture of a multi-region rate limiter; discuss consistency, failure modes and the "
    "trade-offs between a central store and local token buckets.",
    "Summarize this paragraph in one sentence: the meeting moved to Thursday because the venue was booked.",
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


@dataclass(frozen=True, slots=True)
class Call:
    """One simulated LLM call: what the app sends and what the provider would report."""

    scope: Scope
    messages: tuple[tuple[str, str], ...]
    task_type: str = ""
    agent_mode: str = ""
    output_tokens: int = 300


def _workload(rng: random.Random, org: str, run: str, calls: int) -> Iterator[Call]:
    made = 0
    agent = 0
    while made < calls:
        kind = rng.choices(["agent", "support", "chat"], [5, 3, 2])[0]
        if kind == "agent":
            agent += 1
            scope = Scope(org=org, team="platform", user=f"dev-{agent % 3}", session=f"{run}-agent-{agent}")
            history: list[tuple[str, str]] = [("system", "You are a careful coding agent. " * 15)]
            history.append(("user", "Plan the work: " + rng.choice(CODE_STEPS)))
            yield Call(scope, tuple(history), task_type="planning", agent_mode="architect",
                       output_tokens=rng.randint(300, 900))
            made += 1
            for step in range(rng.randint(3, 7)):
                if made >= calls:
                    return
                history.append(("assistant", "Here is the change:\n```python\n" + "x = compute(x)\n" * 20 + "```"))
                history.append(("tool", TOOL_RESULT.format(n=step)))
                if rng.random() < 0.2:
                    history.append(("user", "The tests fail:\n" + TRACEBACK))
                    yield Call(scope, tuple(history), task_type="debugging", agent_mode="debug",
                               output_tokens=rng.randint(200, 700))
                else:
                    history.append(("user", rng.choice(CODE_STEPS)))
                    yield Call(scope, tuple(history), agent_mode="code", output_tokens=rng.randint(150, 600))
                made += 1
        elif kind == "support":
            task, text = rng.choice(SUPPORT)
            scope = Scope(org=org, team="support", user="support-bot", session=f"{run}-support")
            yield Call(scope, (("user", text),), task_type=task, output_tokens=rng.randint(20, 150))
            made += 1
        else:
            scope = Scope(org=org, team="web", user=f"visitor-{rng.randint(1, 20)}", session=f"{run}-chat")
            yield Call(scope, (("user", rng.choice(CHAT)),), output_tokens=rng.randint(40, 500))
            made += 1


class _Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = sys.stdout.isatty()
        self.last = 0.0

    def show(self, done: int, spent: int) -> None:
        now = time.monotonic()
        if done < self.total and now - self.last < (0.05 if self.tty else 1.0):
            return
        self.last = now
        width = 30
        filled = width * done // self.total
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} calls  spent {format_usd(spent, 4)}"
        if self.tty:
            print("\r" + line, end="", flush=True)
            if done == self.total:
                print()
        else:
            print(line, flush=True)


async def _wait_for(client: AsyncClient, org: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            await client.get_budget(Scope(org=org))
            return
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _run(target: str, calls: int, seed: int, org: str, wait: float, config: Config) -> int:
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    frontier = max(
        (m for m in config.catalog.models.values() if m.tier == config.catalog.tiers[-1]),
        key=lambda m: m.price.output,
    )
    per_model_calls: Counter[str] = Counter()
    per_model_spend: Counter[str] = Counter()
    tiers: dict[str, str] = {}
    outcomes: Counter[str] = Counter()
    baseline = spent = 0
    progress = _Progress(calls)
    async with AsyncClient(target, timeout=5.0) as client:
        await _wait_for(client, org, wait)
        print(f"tollgate demo: {calls} simulated LLM calls against {target} (org {org!r}, run {run})")
        for done, call in enumerate(_workload(rng, org, run, calls), start=1):
            try:
                decision: Decision = await client.route(
                    call.scope, messages=call.messages, task_type=call.task_type, agent_mode=call.agent_mode,
                    max_output_tokens=4096, reserve=True,
                )
            except BudgetExceededError as exc:
                outcomes[f"refused by {exc.pool_id}"] += 1
                progress.show(done, spent)
                continue
            outcomes[decision.outcome] += 1
            cached = decision.estimated_input_tokens // 2 if rng.random() < 0.3 else 0
            usage = Usage(input_tokens=decision.estimated_input_tokens, cached_input_tokens=cached,
                          output_tokens=call.output_tokens)
            assert decision.reservation is not None
            result = await client.commit(decision.reservation.reservation_id, usage)
            per_model_calls[decision.model] += 1
            per_model_spend[decision.model] += result.charged_nanos
            tiers[decision.model] = decision.tier
            spent += result.charged_nanos
            # The same call on the frontier model: its tokenizer sees the same text.
            chosen = config.catalog.models.get(decision.model)
            if chosen is None:
                print(f"\nthe sidecar routed to {decision.model}, which this demo's catalog does not list: pass "
                      "the sidecar's config with --config", file=sys.stderr)
                return 2
            base_tokens = decision.estimated_input_tokens * 100 // chosen.token_ratio_pct
            baseline += frontier.price.cost(
                input_tokens=frontier.input_tokens(base_tokens), output_tokens=call.output_tokens
            )
            progress.show(done, spent)
    _table(per_model_calls, per_model_spend, tiers, spent, baseline, frontier.name, outcomes)
    return 0


def _table(calls: Counter[str], spend: Counter[str], tiers: dict[str, str], spent: int, baseline: int,
           frontier: str, outcomes: Counter[str]) -> None:
    total_calls = sum(calls.values())
    print()
    print(f"{'model':<20} {'tier':<9} {'calls':>6} {'share':>6} {'spend':>12}")
    print("-" * 57)
    for model, n in sorted(calls.items(), key=lambda kv: -spend[kv[0]]):
        print(f"{model:<20} {tiers[model]:<9} {n:>6} {n / max(total_calls, 1):>6.0%} {format_usd(spend[model], 4):>12}")
    print("-" * 57)
    print(f"{'total':<20} {'':<9} {total_calls:>6} {'':>6} {format_usd(spent, 4):>12}")
    print(f"{'all on ' + frontier:<37} {format_usd(baseline, 4):>19}")
    saving = 1 - spent / baseline if baseline else 0.0
    print(f"{'saving':<37} {saving:>19.1%}")
    details = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
    print(f"\npolicy outcomes: {details}")
    print("Inspect a budget with: tollgate budget --org demo --team platform")


def run_demo(*, target: str, calls: int, seed: int, org: str, wait: float, config_path: str | None = None) -> int:
    """Run the demo workload; returns a process exit code."""
    config = load_config(config_path)
    try:
        return asyncio.run(_run(target, calls, seed, org, wait, config))
    except UnavailableError as exc:
        print(f"cannot reach the sidecar at {target}: {exc}. Start it with `make run` or `tollgate serve`.",
              file=sys.stderr)
        return 1

