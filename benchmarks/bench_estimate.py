"""Cost of input-token counting and difficulty scoring on a realistic conversation.

Run with ``python benchmarks/bench_estimate.py`` from the repository root. Prints
microseconds per call for:

- ``count_messages`` cold: every message encoded (empty cache);
- ``count_messages`` warm: a growing conversation where only the last turn is new;
- ``difficulty.score`` on the same conversation.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sidecar"))

from tollgate.estimate import TokenCounter
from tollgate.routing import difficulty

SYSTEM = (
    "You are a senior backend engineer helping a teammate. Answer precisely, show code when it helps, "
    "and say when you are unsure. The codebase is a Python 3.11 service using asyncio, SQLAlchemy 2.0 "
    "and PostgreSQL 15, deployed on Kubernetes."
)

TURNS: list[tuple[str, str]] = [
    (
        "user",
        "We have a background job that syncs invoices from Stripe into our invoices table every five "
        "minutes. Since last week it sometimes inserts the same invoice twice. Here is the core of it:\n\n"
        "```python\nasync def sync_invoices(session: AsyncSession, client: StripeClient) -> int:\n"
        "    cursor = await get_cursor(session, 'stripe_invoices')\n    created = 0\n"
        "    async for invoice in client.list_invoices(created_after=cursor):\n"
        "        exists = await session.scalar(\n"
        "            select(Invoice.id).where(Invoice.external_id == invoice.id)\n        )\n"
        "        if exists is None:\n            session.add(Invoice.from_stripe(invoice))\n"
        "            created += 1\n        cursor = max(cursor, invoice.created)\n"
        "    await set_cursor(session, 'stripe_invoices', cursor)\n    await session.commit()\n"
        "    return created\n```\n\nThe model is plain:\n\n```python\nclass Invoice(Base):\n"
        "    __tablename__ = 'invoices'\n\n    id: Mapped[int] = mapped_column(primary_key=True)\n"
        "    external_id: Mapped[str] = mapped_column(String(64), index=True)\n"
        "    customer_id: Mapped[int] = mapped_column(ForeignKey('customers.id'))\n"
        "    amount_due: Mapped[int]\n    currency: Mapped[str] = mapped_column(String(3))\n"
        "    status: Mapped[str] = mapped_column(String(16))\n"
        "    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))\n\n"
        "    @classmethod\n    def from_stripe(cls, invoice: stripe.Invoice) -> 'Invoice':\n"
        "        return cls(**cls.columns_from_stripe(invoice))\n```\n\n"
        "It runs from a CronJob-style loop inside the worker deployment. We didn't change the job "
        "itself recently; the only related change was bumping the worker deployment from one to two "
        "replicas to keep up with the email queue. Any idea what could cause the duplicates?",
    ),
    (
        "assistant",
        "The check-then-insert is not atomic. If two runs of the job overlap — for example a slow run "
        "that is still going when the next five-minute tick fires, or two replicas of the worker after "
        "the last deploy scaled the deployment to two pods — both can run the `select` before either "
        "commits, both see no row, and both insert. Nothing in the database stops it because "
        "`external_id` is not unique.\n\nThere is a second, smaller issue: the cursor is the maximum "
        "`created` timestamp seen, and the next run asks for `created_after=cursor`. Invoices created in "
        "the same second as the last one seen can be skipped or, depending on whether the API treats the "
        "bound as inclusive, fetched again.\n\nI would fix it at the database level first:\n\n"
        "1. Add a unique constraint on `invoices.external_id` (after removing the existing duplicates).\n"
        "2. Insert with `ON CONFLICT (external_id) DO NOTHING` so a concurrent run is harmless.\n"
        "3. Make the job single-flight with a Postgres advisory lock so overlapping runs skip instead "
        "of racing.",
    ),
    ("user", "How do I find and remove the duplicates that are already there without losing payments linked to them?"),
    (
        "assistant",
        "Payments reference invoices by `invoice_id`, so re-point them to the surviving row before "
        "deleting the others. In one transaction:\n\n```sql\nWITH ranked AS (\n"
        "  SELECT id, external_id,\n"
        "         first_value(id) OVER (PARTITION BY external_id ORDER BY id) AS keep_id\n"
        "  FROM invoices\n)\nUPDATE payments p\nSET invoice_id = r.keep_id\nFROM ranked r\n"
        "WHERE p.invoice_id = r.id AND r.id <> r.keep_id;\n\nDELETE FROM invoices i\nUSING ranked r\n"
        "WHERE i.id = r.id AND r.id <> r.keep_id;\n```\n\nRun it first with `BEGIN; ... ROLLBACK;` and "
        "compare the counts, then add the constraint in a separate migration:\n\n```sql\n"
        "ALTER TABLE invoices ADD CONSTRAINT invoices_external_id_key UNIQUE (external_id);\n```\n\n"
        "A few precautions, since this touches billing data:\n\n"
        "- Check first which tables reference `invoices`. Besides `payments`, look for credit notes, "
        "refunds, line items and anything in the analytics schema; each needs the same `UPDATE` before "
        "the `DELETE`, or the foreign keys will block the delete (or cascade, which is worse).\n"
        "- Keep the lowest id as the survivor so that links created first, which are the ones your "
        "customers have seen in emails and PDFs, stay valid.\n"
        "- Adding the constraint takes an `ACCESS EXCLUSIVE` lock while it builds the index. On a "
        "large table, build the index first with `CREATE UNIQUE INDEX CONCURRENTLY` and then attach it "
        "with `ADD CONSTRAINT ... UNIQUE USING INDEX`, which only takes the lock briefly.\n"
        "- Pause the sync job during the cleanup, or new duplicates can appear between the delete and "
        "the constraint.",
    ),
    ("user", "Makes sense. What would the insert look like with SQLAlchemy 2.0?"),
    (
        "assistant",
        "Use the PostgreSQL dialect's `insert`, which has `on_conflict_do_nothing`:\n\n```python\n"
        "from sqlalchemy.dialects.postgresql import insert\n\n"
        "stmt = (\n    insert(Invoice)\n    .values(**Invoice.columns_from_stripe(invoice))\n"
        "    .on_conflict_do_nothing(index_elements=[Invoice.external_id])\n"
        "    .returning(Invoice.id)\n)\ninserted = await session.scalar(stmt)\n"
        "if inserted is not None:\n    created += 1\n```\n\n`returning` gives you the id only when a row "
        "was inserted, so `created` stays accurate.\n\n"
        "If you also want to pick up changes to invoices you already have (Stripe invoices move from "
        "`draft` to `open` to `paid`), use `on_conflict_do_update` instead, and only update when the "
        "incoming row is newer, so a delayed page of old data cannot overwrite a fresher status:\n\n"
        "```python\nstmt = insert(Invoice).values(**values)\nstmt = stmt.on_conflict_do_update(\n"
        "    index_elements=[Invoice.external_id],\n"
        "    set_={'status': stmt.excluded.status, 'amount_due': stmt.excluded.amount_due},\n"
        "    where=Invoice.updated_at < stmt.excluded.updated_at,\n)\n```\n\n"
        "That needs an `updated_at` column fed from the event timestamp rather than from `now()`, "
        "otherwise the comparison says nothing about which version is newer.",
    ),
    ("user", "And the advisory lock? We run two replicas of the worker, and sometimes a third during deploys."),
    (
        "assistant",
        "Take a transaction-level advisory lock at the start of the job and skip the run if another "
        "replica holds it. A transaction-level lock (`pg_try_advisory_xact_lock`) is the safer choice "
        "over a session-level one here: it is released automatically when the transaction commits or "
        "rolls back, so a worker that crashes, is OOM-killed or loses its connection mid-run cannot "
        "leave the lock held, and a pooled connection returned to the pool never carries a stale lock "
        "into an unrelated request.\n\n```python\nfrom sqlalchemy import func, select\n\n"
        "# Any 64-bit constant works; keep it in one place so other jobs never reuse it.\n"
        "SYNC_LOCK_ID = 0x5EED_1A7E\n\n\n"
        "async def sync_invoices(session: AsyncSession, client: StripeClient) -> int:\n"
        "    got_lock = await session.scalar(select(func.pg_try_advisory_xact_lock(SYNC_LOCK_ID)))\n"
        "    if not got_lock:\n        log.info('another replica is syncing invoices; skipping')\n"
        "        return 0\n    cursor = await get_cursor(session, 'stripe_invoices')\n"
        "    created = 0\n    async for invoice in client.list_invoices(created_after=cursor):\n"
        "        stmt = (\n            insert(Invoice)\n"
        "            .values(**Invoice.columns_from_stripe(invoice))\n"
        "            .on_conflict_do_nothing(index_elements=[Invoice.external_id])\n"
        "            .returning(Invoice.id)\n        )\n"
        "        if await session.scalar(stmt) is not None:\n            created += 1\n"
        "        cursor = max(cursor, invoice.created)\n"
        "    await set_cursor(session, 'stripe_invoices', cursor)\n    await session.commit()\n"
        "    return created\n```\n\n"
        "Two things to watch. First, the whole run is one transaction, so the lock is held for as long "
        "as the sync takes; with thousands of invoices per run that is a long transaction, which holds "
        "back vacuum on busy tables. If runs get long, commit in batches and take the lock on a "
        "dedicated connection with the session-level `pg_try_advisory_lock`, releasing it in a "
        "`finally`. Second, with the unique constraint and `ON CONFLICT` in place the lock is an "
        "optimisation rather than the correctness guarantee: it saves duplicate API calls and wasted "
        "work, but a bug that bypasses it can no longer create duplicates. That is the property you "
        "want — correctness enforced by the database, efficiency by the lock.\n\n"
        "During deploys, the third replica simply finds the lock taken and skips its tick; the next "
        "tick five minutes later runs normally on whichever pod wins.",
    ),
    (
        "user",
        "Last thing: the cursor. Should we switch from the created timestamp to Stripe's "
        "starting_after pagination, and what are the trade-offs if a sync run fails halfway through?",
    ),
]


def _per_call_us(fn: Callable[[int], object], iterations: int, repeats: int = 7) -> float:
    """Median over ``repeats`` runs of the mean time per call, so one noisy run does not skew it."""
    runs = []
    call = 0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            fn(call)
            call += 1
        runs.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(runs)


def main() -> None:
    messages = [("system", SYSTEM), *TURNS]
    counter = TokenCounter(4)
    tokens = counter.count_messages(messages)
    chars = sum(len(content) for _, content in messages)
    turns = sum(role in ("user", "assistant") for role, _ in messages)
    print(f"conversation: {len(messages)} messages, {turns} turns, {chars} chars, {tokens} tokens")

    def cold(_: int) -> None:
        counter.clear()
        counter.count_messages(messages)

    head = messages[:-1]
    last_role, last_text = messages[-1]

    def warm(i: int) -> None:
        # A new final turn each time, as in a growing agent conversation.
        counter.count_messages([*head, (last_role, f"{last_text} (attempt {i})")])

    counter.clear()
    counter.count_messages(head)
    cold_us = _per_call_us(cold, 100)
    counter.clear()
    counter.count_messages(head)
    misses_before, hits_before = counter.misses, counter.hits
    warm_us = _per_call_us(warm, 1000)
    warm_calls = 7 * 1000
    new_per_call = (counter.misses - misses_before) / warm_calls
    cached_per_call = (counter.hits - hits_before) / warm_calls

    scored = difficulty.score(messages, tokens)
    score_us = _per_call_us(lambda _: difficulty.score(messages, tokens), 3000)

    print(f"count_messages cold (no cache):        {cold_us:8.1f} us/call")
    print(
        f"count_messages warm (last turn new):   {warm_us:8.1f} us/call"
        f"  ({new_per_call:.0f} encoded, {cached_per_call:.0f} from cache per call)"
    )
    print(
        f"difficulty.score:                      {score_us:8.1f} us/call"
        f"  (score {scored.score:.2f}, reasons {', '.join(scored.reasons)})"
    )


if __name__ == "__main__":
    main()
