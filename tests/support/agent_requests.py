"""Agent-style requests with no task signals, each with the tier a careful operator would trust.

What agents and chat apps send when they do not say what the task is: planning and
architecture, debugging with and without a trace, proofs, performance diagnosis, code
completion, extraction, formatting, chit-chat and multi-turn tool loops. The router must
keep every frontier-worthy request off the cheap tier and every trivial one off the
frontier tier; ``medium`` marks the requests where either neighbour is defensible.

The set is small and written by hand, so it checks the router's failure modes; it is not
training data and must not steer training.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AGENT_REQUESTS", "AgentRequest"]

Messages = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AgentRequest:
    kind: str
    tier: str  # "cheap" | "medium" | "frontier"
    messages: Messages


SYSTEM = ("system", "You are a senior software engineer working in the user's repository. Use the tools "
                    "available to read files and run commands. Keep answers precise.")

PY_TRACE = """Traceback (most recent call last):
  File "/srv/app/billing/settle.py", line 142, in settle_batch
    await self._apply(tx, ledger)
  File "/srv/app/billing/settle.py", line 88, in _apply
    row = await conn.fetchrow(QUERY, tx.account_id)
  File "/srv/venv/lib/python3.11/site-packages/asyncpg/pool.py", line 222, in fetchrow
    return await con.fetchrow(query, *args, timeout=timeout)
asyncpg.exceptions.DeadlockDetectedError: deadlock detected
DETAIL:  Process 4121 waits for ShareLock on transaction 99182; blocked by process 4177.
"""

KEY_ERROR_TRACE = """Traceback (most recent call last):
  File "scripts/report.py", line 31, in <module>
    print(row["total"])
KeyError: 'total'
"""

JAVA_TRACE = """java.lang.NullPointerException: Cannot invoke "String.length()" because "name" is null
    at com.acme.users.NameFormatter.format(NameFormatter.java:27)
    at com.acme.users.UserController.show(UserController.java:64)
"""

PLAN_EXPLAIN = """                                   QUERY PLAN
 Nested Loop  (cost=0.86..91234.55 rows=1 width=64) (actual time=0.041..8214.772 rows=1822 loops=1)
   ->  Index Scan using orders_created_idx on orders o  (actual time=0.020..310.2 rows=91822 loops=1)
         Index Cond: (created_at > (now() - '7 days'::interval))
   ->  Index Scan using customers_pkey on customers c  (actual time=0.085..0.086 rows=0 loops=91822)
         Filter: (region = 'eu'::text)
 Planning Time: 0.412 ms
 Execution Time: 8215.301 ms
"""

TEST_OUTPUT_PASS = "$ pytest -q\n" + "".join(f"tests/test_parser.py::test_case_{n} PASSED\n" for n in range(14)) + \
    "14 passed in 0.41s\n"

TEST_OUTPUT_FAIL = """$ pytest -q tests/test_cache.py
F.
FAILED tests/test_cache.py::test_eviction_under_concurrent_writers - AssertionError: assert 1023 == 1024
1 failed, 1 passed in 2.13s
"""

GO_CODE = """```go
type Cache struct {
    mu    sync.Mutex
    items map[string]*list.Element
    order *list.List
    cap   int
}

func (c *Cache) Get(key string) (string, bool) {
    c.mu.Lock()
    defer c.mu.Unlock()
    if el, ok := c.items[key]; ok {
        c.order.MoveToFront(el)
        return el.Value.(*entry).value, true
    }
    return "", false
}
```"""

CSV_ROWS = "name,email,joined\nAna Silva,ana@example.com,2024-03-02\nBo Chen,bo@example.org,2023-11-19\n" \
           "Cy Okafor,cy@example.net,2025-01-07\n"


def _user(text: str) -> Messages:
    return (SYSTEM, ("user", text))


def _tool_loop(steps: int, last: str, tool_output: str = TEST_OUTPUT_PASS) -> Messages:
    history: list[tuple[str, str]] = [SYSTEM, ("user", "Add input validation to the config parser and keep the "
                                                       "tests green.")]
    for n in range(steps):
        history.append(("assistant", f"Step {n + 1}: editing parser.py.\n```python\nif not isinstance(value, str):\n"
                                     f"    raise ConfigError(path, key, 'expected a string')\n```"))
        history.append(("tool", tool_output))
    history.append(("user", last))
    return tuple(history)


AGENT_REQUESTS: tuple[AgentRequest, ...] = (
    # Planning and architecture: frontier.
    AgentRequest("planning", "frontier", _user(
        "Plan the migration of our monolith's billing module into its own service. We have 40 call sites, a "
        "shared Postgres schema and nightly batch jobs. Give the phases, what can run in parallel, how to keep "
        "both paths consistent during the cut-over, and how we roll back.")),
    AgentRequest("architecture", "frontier", _user(
        "Design the architecture for a multi-tenant job scheduler that must survive a region outage: "
        "leader election, exactly-once execution of each job, and fair sharing between tenants. Discuss the "
        "trade-offs of using Postgres advisory locks versus etcd leases.")),
    AgentRequest("architecture", "frontier", _user(
        "We need to add offline sync to our mobile app. Users edit the same documents on several devices. "
        "Should we use CRDTs or operational transforms, and how would you structure the server side so that "
        "merges stay deterministic?")),
    AgentRequest("planning", "frontier", _user(
        "Break down the work to replace our homegrown feature-flag system with OpenFeature across 12 services "
        "in three languages, without a flag-day. What order, what risks, and what do we measure to know it "
        "worked?")),
    AgentRequest("architecture", "frontier", _user(
        "How should we shard the events table (2 TB, growing 50 GB a week) so queries by customer and by time "
        "both stay fast? Compare hash sharding by customer with time-based partitioning plus a customer index.")),
    AgentRequest("planning", "frontier", _user(
        "Propose a plan to make our API idempotent end to end: clients retry on timeouts, we have a payment "
        "provider behind us that is not idempotent, and a queue between the API and the workers.")),
    # Proofs and formal reasoning: frontier.
    AgentRequest("proof", "frontier", _user(
        "Prove that the two-phase locking protocol guarantees conflict-serializable schedules, and show with a "
        "counterexample that it does not prevent deadlock.")),
    AgentRequest("proof", "frontier", _user(
        "Show that for any connected graph, a spanning tree found by Kruskal's algorithm has minimum total "
        "weight. Make the exchange argument rigorous.")),
    AgentRequest("proof", "frontier", _user(
        "Is snapshot isolation serializable? If not, construct the smallest schedule with write skew and explain "
        "which constraint it breaks.")),
    # Debugging, hard: frontier.
    AgentRequest("debugging", "frontier", _user(
        "Our settlement job deadlocks once or twice a day under load. Here is the trace; the job updates the "
        "accounts table in the order the transactions arrive.\n\n" + PY_TRACE + "\nWhat is going on and how do "
        "we fix it for good?")),
    AgentRequest("debugging", "frontier", _user(
        "This LRU cache loses an entry now and then when many goroutines write at once, and the eviction test "
        "fails about 1 run in 50. Find the race.\n\n" + GO_CODE + "\n\n" + TEST_OUTPUT_FAIL)),
    AgentRequest("debugging", "frontier", _user(
        "After the upgrade to Postgres 16 this query went from 40 ms to 8 s. Nothing else changed. Why did the "
        "planner pick this, and what should we do?\n\n" + PLAN_EXPLAIN)),
    AgentRequest("debugging", "frontier", _user(
        "Memory in our Node service grows about 200 MB an hour until the pod is OOM-killed. Heap snapshots show "
        "retained closures from the websocket handlers. How would you find the leak and what are the usual "
        "causes in this setup?")),
    # Performance diagnosis: frontier.
    AgentRequest("performance", "frontier", _user(
        "p99 latency of our checkout endpoint jumped from 180 ms to 1.4 s after we moved to the new Kubernetes "
        "cluster, but p50 did not move. CPU is at 30 %. What would you look at first, and why?")),
    AgentRequest("performance", "frontier", _user(
        "Our Kafka consumers fall behind every evening even though we doubled the partitions and the "
        "consumers. Throughput per consumer dropped. What are the likely causes and how do we confirm each?")),
    AgentRequest("concurrency", "frontier", _user(
        "Implement a lock-free multi-producer single-consumer queue in Rust and explain why each atomic "
        "ordering you use is sufficient.")),
    AgentRequest("security", "frontier", _user(
        "Review this login flow for security problems: the session id is the user id signed with HMAC-SHA1, "
        "stored in a cookie without SameSite, and password resets send a 6-digit code valid for a day.")),
    # Tool loop that hits a hard failure: frontier.
    AgentRequest("tool-loop", "frontier", _tool_loop(
        4, "The eviction test still fails intermittently after your change. Figure out the root cause before "
           "editing anything else.", TEST_OUTPUT_FAIL)),
    # Code completion and routine coding: medium.
    AgentRequest("code", "medium", _user(
        "Write a Python function that parses an ISO 8601 duration like 'P3DT4H12M' into a timedelta, with tests.")),
    AgentRequest("code", "medium", _user(
        "Complete this function so it returns the n most common words in a text, ignoring case and punctuation:"
        "\n\n```python\ndef top_words(text: str, n: int) -> list[tuple[str, int]]:\n    ...\n```")),
    AgentRequest("code", "medium", _user(
        "Write a SQL query that returns, per customer, the total of their orders in the last 30 days and the "
        "date of their latest order, including customers with no orders.")),
    AgentRequest("code", "medium", _user(
        "Add a --dry-run flag to this argparse CLI so it prints what it would delete instead of deleting:\n\n"
        "```python\nparser = argparse.ArgumentParser()\nparser.add_argument('path')\nargs = parser.parse_args()\n"
        "for f in Path(args.path).glob('*.tmp'):\n    f.unlink()\n```")),
    AgentRequest("code", "medium", _user(
        "Write a Dockerfile for a FastAPI app with a multi-stage build and a non-root user.")),
    AgentRequest("debugging", "medium", _user(
        "My script crashes with this, what's wrong?\n\n" + KEY_ERROR_TRACE)),
    AgentRequest("debugging", "medium", _user(
        "Getting this when I open a user page with no name set:\n\n" + JAVA_TRACE)),
    AgentRequest("explain", "medium", _user(
        "Explain how Python's asyncio event loop schedules coroutines, with a small example.")),
    AgentRequest("tool-loop", "medium", _tool_loop(
        3, "Tests pass. Now add a test for an empty config file and make it pass.")),
    # Extraction, formatting, classification: cheap.
    AgentRequest("extraction", "cheap", _user(
        "Extract the order number, the date and the total from this email as JSON: 'Your order A-77812 placed "
        "on 3 March 2026 has shipped. Total charged: €54.20.'")),
    AgentRequest("extraction", "cheap", _user(
        "Pull out every email address in this text: contact ana@example.com or sales@acme.io, not "
        "noreply@acme.io.")),
    AgentRequest("formatting", "cheap", _user("Convert this CSV to a Markdown table:\n\n" + CSV_ROWS)),
    AgentRequest("formatting", "cheap", _user(
        "Reformat this JSON with two-space indentation: {\"a\":1,\"b\":{\"c\":[1,2,3]}}")),
    AgentRequest("formatting", "cheap", _user(
        "Turn these notes into bullet points: met with legal, contract ok, need signature by Friday, Bo to "
        "follow up.")),
    AgentRequest("classification", "cheap", _user(
        "Classify this support ticket as billing, shipping or account: 'I was charged twice for my order.'")),
    AgentRequest("classification", "cheap", _user(
        "Is the sentiment of this review positive or negative? 'Arrived late and the box was crushed.'")),
    AgentRequest("translation", "cheap", _user("Translate into French: 'The meeting moved to Thursday at 3 pm.'")),
    AgentRequest("summary", "cheap", _user(
        "Summarise in one sentence: the release slipped a week because the payment provider changed its API, "
        "and the team used the time to fix two crash bugs.")),
    AgentRequest("rewrite", "cheap", _user(
        "Fix the typos: 'Plese find attached the reprot for last quater.'")),
    AgentRequest("commit-message", "cheap", _tool_loop(
        3, "All tests pass. Write a one-line commit message for these changes.")),
    # Chit-chat and small talk: cheap.
    AgentRequest("chit-chat", "cheap", (("user", "thanks!"),)),
    AgentRequest("chit-chat", "cheap", (("user", "hi, are you there?"),)),
    AgentRequest("chit-chat", "cheap", (("user", "ok sounds good, go ahead"),)),
    AgentRequest("chit-chat", "cheap", (("user", "What's the capital of Australia?"),)),
    AgentRequest("chit-chat", "cheap", (("user", "Give me three name ideas for a coffee shop."),)),
    AgentRequest("tool-loop", "cheap", _tool_loop(2, "Great, thanks. That's all for now.")),
)
