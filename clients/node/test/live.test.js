// The client against a real sidecar. Runs only when TOLLGATE_TARGET
// ("host:port") is set, and once more over TOLLGATE_UNIX_TARGET
// ("unix:///path.sock") when that is set too. The sidecar's config must cap
// the org "tiny" at $0.001 with a hard policy:
//   budgets.overrides: {"org:tiny": {cap: "0.001", policy: hard}}
// The retry tests run when TOLLGATE_LOSSY_TARGET is set too: a proxy in front
// of the sidecar's TCP port that loses the answer to the first call of every
// other connection (tests/clients/lossy_proxy.py). The error tests run when
// TOLLGATE_AUTH_TARGET is set: a sidecar with callers configured
// (tests/clients/auth_sidecar.py), TOLLGATE_LIMITED_TOKEN's allowed one call a
// second in org "acme", TOLLGATE_SPENDER_TOKEN's free to spend in "acme" and
// "tiny" (capped at $0.001, hard).
// The escalation and shadow tests need the config's defaults for
// routing.max_escalations (2) and a quality section that samples every cheap
// decision that accepts shadow calls, without the guard changing tiers:
//   quality: {enabled: true, guard: false, shadow_share: 1.0, warmup_share: 1.0}

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";

import {
  BudgetExceededError,
  EscalationRefusedError,
  InvalidRequestError,
  RateLimitedError,
  ReservationEndedError,
  ReservationNotFoundError,
  Status,
  TollgateClient,
  TollgateError,
  callWithEscalation,
  callWithShadow,
  usageFromAnthropic,
  usageFromOpenAI,
} from "../src/index.js";

const TRANSPORTS = [
  ["TCP", process.env.TOLLGATE_TARGET, "TOLLGATE_TARGET"],
  ["a Unix socket", process.env.TOLLGATE_UNIX_TARGET, "TOLLGATE_UNIX_TARGET"],
];

const MESSAGES = [{ role: "user", content: "Classify this ticket: 'I was charged twice'" }];

for (const [transport, target, variable] of TRANSPORTS) {
  const skip = process.env.TOLLGATE_TARGET && target ? false : `set ${variable} to run against a live sidecar`;

  describe(`against a live sidecar over ${transport}`, { skip }, () => {
    /** @type {TollgateClient} */
    let client;
    // A fresh user and session per test, so their pools start empty; org:acme is shared.
    const run = randomUUID().slice(0, 8);
    const scopeFor = (name) => ({ org: "acme", user: `node-${run}-${name}`, session: `s-${run}-${name}` });
    const own = (pools) => pools.filter((p) => p.level === "user" || p.level === "session");

    before(() => {
      client = new TollgateClient(target, { timeoutMs: 10_000 });
    });
    after(() => client.close());

    it("routes with a reservation, commits, and replays the commit", async () => {
      const scope = scopeFor("commit");
      const decision = await client.route(scope, { messages: MESSAGES, taskType: "classify", reserve: true });
      assert.equal(decision.tier, "cheap");
      assert.equal(decision.source, "rule");
      assert.ok(decision.model);
      assert.equal(typeof decision.estimatedCostNanos, "bigint");
      assert.ok(decision.estimatedCostNanos > 0n);
      assert.ok(decision.reservation, "route with reserve: true returns a reservation");
      assert.equal(decision.reservation.model, decision.model);
      assert.ok(decision.reservation.heldNanos >= decision.estimatedCostNanos);
      assert.ok(decision.reservation.expiresAt instanceof Date);
      assert.ok(decision.reservation.expiresAt.getTime() > Date.now());

      const response = { usage: { prompt_tokens: 20, completion_tokens: 8, prompt_tokens_details: { cached_tokens: 0 } } };
      const result = await client.withReservation(decision, async (held) => {
        assert.equal(held.reservationId, decision.reservation.reservationId);
        return held.commit(usageFromOpenAI(response));
      });
      assert.ok(result.chargedNanos > 0n);
      assert.equal(result.replayed, false);
      assert.equal(result.chargedNanos + result.releasedNanos - result.overshootNanos, decision.reservation.heldNanos);

      const again = await client.commit(decision.reservation.reservationId, { inputTokens: 20, outputTokens: 8 });
      assert.equal(again.replayed, true);
      assert.equal(again.chargedNanos, result.chargedNanos);

      await assert.rejects(
        client.commit(decision.reservation.reservationId, { inputTokens: 21, outputTokens: 8 }),
        (error) => error instanceof ReservationEndedError && error.code === Status.FAILED_PRECONDITION,
      );

      const pools = await client.getBudget(scope);
      const user = pools.find((p) => p.level === "user");
      assert.equal(user.poolId, `user:acme/${scope.user}`);
      assert.equal(user.spentNanos, result.chargedNanos);
      assert.equal(user.heldNanos, 0n);
      assert.equal(user.calls, 1);
    });

    it("decodes a budget refusal's RESOURCE_EXHAUSTED details", async () => {
      const error = await client
        .reserve({ org: "tiny" }, "claude-opus-4-1", { inputTokens: 5000 })
        .then(() => assert.fail("org tiny should refuse a $0.001+ hold"), (e) => e);
      assert.ok(error instanceof BudgetExceededError, String(error));
      assert.equal(error.code, Status.RESOURCE_EXHAUSTED);
      assert.equal(error.codeName, "RESOURCE_EXHAUSTED");
      assert.equal(error.reason, "BUDGET_EXCEEDED");
      assert.match(error.details, /org:tiny/);
      assert.equal(error.poolId, "org:tiny");
      assert.equal(error.level, "org");
      assert.equal(error.policy, "hard");
      assert.equal(error.limit, "cost");
      assert.equal(typeof error.requestedNanos, "bigint");
      assert.ok(error.requestedNanos > error.remainingNanos);
      assert.ok(error.remainingNanos <= 1_000_000n, "the cap is $0.001 = 1,000,000 nano-dollars");
      assert.ok(error.resetsAt instanceof Date && error.resetsAt.getTime() > Date.now());
      // The sidecar sends the detail in both trailers.
      assert.equal(error.metadata.get("tollgate-budget-exceeded-bin").length, 1);
      assert.equal(error.metadata.get("grpc-status-details-bin").length, 1);
    });

    it("releases the hold when the withReservation callback throws", async () => {
      const scope = scopeFor("throw");
      const decision = await client.route(scope, { inputTokens: 1000, taskType: "codegen", reserve: true });
      const held = own(await client.getBudget(scope));
      assert.equal(held.length, 2);
      assert.ok(held.every((p) => p.heldNanos === decision.reservation.heldNanos));

      const failure = new Error("provider down");
      await assert.rejects(
        client.withReservation(decision, async () => {
          throw failure;
        }),
        (error) => error === failure,
      );
      await assert.rejects(
        client.commit(decision.reservation.reservationId, { inputTokens: 1 }),
        (error) => error instanceof ReservationEndedError && /released/.test(error.details),
      );
      const pools = own(await client.getBudget(scope));
      assert.equal(pools.length, 2);
      assert.ok(pools.every((p) => p.heldNanos === 0n && p.spentNanos === 0n));
    });

    it("releases the hold when the callback returns without committing", async () => {
      const scope = scopeFor("return");
      const reserved = await client.reserve(scope, "claude-haiku-4-5", { messages: MESSAGES, maxOutputTokens: 100 });
      assert.ok(reserved.reservation.heldNanos > 0n);
      assert.equal(await client.withReservation(reserved, () => "no billable call"), "no billable call");
      const again = await client.release(reserved.reservation.reservationId);
      assert.equal(again.replayed, true);
      assert.equal(again.releasedNanos, reserved.reservation.heldNanos);
      assert.ok(own(await client.getBudget(scope)).every((p) => p.heldNanos === 0n));
    });

    it("replays a reserve by idempotency key, extends it and commits Anthropic usage", async () => {
      const scope = scopeFor("idempotent");
      const options = { inputTokens: 100, idempotencyKey: `k-${run}`, ttlMs: 120_000 };
      const first = await client.reserve(scope, "claude-sonnet-4-5", options);
      const second = await client.reserve(scope, "claude-sonnet-4-5", options);
      assert.equal(first.reservation.replayed, false);
      assert.equal(second.reservation.replayed, true);
      assert.equal(second.reservation.reservationId, first.reservation.reservationId);

      const extended = await client.extend(first.reservation.reservationId, 600_000);
      assert.ok(extended.expiresAt > first.reservation.expiresAt);
      const result = await client.withReservation(first, async (held) => {
        await held.extend(300_000);
        return held.commit(usageFromAnthropic({ usage: { input_tokens: 60, cache_read_input_tokens: 40, output_tokens: 30 } }));
      });
      assert.ok(result.chargedNanos > 0n);
      const user = (await client.getBudget(scope)).find((p) => p.level === "user");
      assert.equal(user.spentNanos, result.chargedNanos);
      assert.equal(user.tokens, 130);
    });

    it("escalates a failed attempt one tier up, commits it in the same step, and refuses past the limit", async () => {
      const scope = scopeFor("escalate");
      const first = await client.route(scope, { messages: MESSAGES, taskType: "classify", latency: "slow", reserve: true });
      assert.equal(first.tier, "cheap");
      assert.ok(["fast", "standard", "slow"].includes(first.latency), first.latency);
      const failed = { inputTokens: 20, outputTokens: 8 };
      const second = await client.escalate(first.reservation.reservationId, scope, {
        messages: MESSAGES,
        reason: "invalid_json",
        usage: failed,
      });
      assert.equal(second.attempt, 2);
      assert.equal(second.previousReservationId, first.reservation.reservationId);
      assert.ok(second.previousCommit.chargedNanos > 0n);
      assert.equal(second.decision.source, "escalation");
      assert.notEqual(second.decision.tier, "cheap");
      const again = await client.escalate(first.reservation.reservationId, scope, { messages: MESSAGES, usage: failed });
      assert.equal(again.decision.reservation.reservationId, second.decision.reservation.reservationId);
      const third = await client.escalate(second.decision.reservation.reservationId, scope, {
        messages: MESSAGES,
        usage: failed,
      });
      await assert.rejects(
        client.escalate(third.decision.reservation.reservationId, scope, { messages: MESSAGES, usage: failed }),
        (error) => error instanceof EscalationRefusedError && error.reason === "ESCALATION_REFUSED",
      );
      await client.commit(third.decision.reservation.reservationId, failed);
      assert.ok(own(await client.getBudget(scope)).every((p) => p.heldNanos === 0n));
    });

    it("runs a cascade with callWithEscalation and counts feedback in the quality report", async () => {
      const scope = scopeFor("cascade");
      const cascade = await callWithEscalation(
        client,
        scope,
        async (decision) => ({ tier: decision.tier, usage: { prompt_tokens: 20, completion_tokens: 8 } }),
        { messages: MESSAGES, taskType: "classify", check: (r) => (r.tier === "cheap" ? "too_vague" : ""), usage: (r) => usageFromOpenAI(r) },
      );
      assert.equal(cascade.passed, true);
      assert.deepEqual(cascade.attempts.map((a) => a.problem), ["too_vague", ""]);
      assert.equal(cascade.attempts[0].tier, "cheap");
      const spent = own(await client.getBudget(scope));
      assert.ok(spent.every((p) => p.heldNanos === 0n && p.spentNanos === cascade.chargedNanos));

      const counted = await client.feedback(cascade.attempts[1].reservationId, true);
      assert.equal(counted.taskType, "classify");
      assert.equal(counted.tier, cascade.attempts[1].tier);
      const report = await client.getQuality();
      const classify = report.find((q) => q.taskType === "classify");
      assert.ok(classify, JSON.stringify(report.map((q) => q.taskType)));
      assert.ok(classify.tiers.some((t) => t.tier === counted.tier && t.samples >= 1));
    });

    it("makes the shadow call of a sampled request with callWithShadow and reports the comparison", async () => {
      const scope = scopeFor("shadow");
      const decision = await client.route(scope, { messages: MESSAGES, taskType: "extract", reserve: true, acceptShadow: true });
      assert.ok(decision.shadow, "the sidecar samples every cheap decision that accepts shadow calls");
      assert.ok(decision.shadow.reservation, "the shadow call is held on the quality pool");
      const models = [];
      const { response, comparison } = await callWithShadow(
        client,
        decision,
        async (model) => {
          models.push(model);
          return { answer: "billing", usage: { prompt_tokens: 20, completion_tokens: 2 } };
        },
        { usage: usageFromOpenAI, answer: (r) => r.answer },
      );
      assert.equal(response.answer, "billing");
      assert.equal(await comparison, 1);
      assert.deepEqual(models, [decision.model, decision.shadow.model]);
      const pools = own(await client.getBudget(scope));
      assert.ok(pools.every((p) => p.heldNanos === 0n && p.calls === 1), "the shadow call is not the product's");
      const extract = (await client.getQuality()).find((q) => q.taskType === "extract");
      assert.ok(extract && extract.shadowSamples >= 1);
    });

    it("maps the sidecar's refusals of bad requests", async () => {
      await assert.rejects(
        client.reserve(scopeFor("bad"), "no-such-model", { inputTokens: 1 }),
        (error) =>
          error instanceof InvalidRequestError && /no-such-model/.test(error.details) && error.reason === "INVALID_REQUEST",
      );
      await assert.rejects(
        client.release("000000000000000000000000.acme"),
        (error) =>
          error instanceof ReservationNotFoundError &&
          error.code === Status.NOT_FOUND &&
          error.reason === "RESERVATION_NOT_FOUND",
      );
    });
  });
}

const lossySkip =
  process.env.TOLLGATE_TARGET && process.env.TOLLGATE_LOSSY_TARGET
    ? false
    : "set TOLLGATE_TARGET and TOLLGATE_LOSSY_TARGET to run through a proxy that loses answers";

describe("retries through a proxy that loses answers", { skip: lossySkip }, () => {
  /** @type {TollgateClient} */
  let direct;
  before(() => {
    direct = new TollgateClient(process.env.TOLLGATE_TARGET, { timeoutMs: 10_000, retry: null });
  });
  after(() => direct.close());

  /** A fresh client through the proxy: its first call takes effect, but its answer never comes back. */
  async function throughTheProxy(call) {
    const client = new TollgateClient(process.env.TOLLGATE_LOSSY_TARGET, { timeoutMs: 10_000 });
    try {
      return await call(client);
    } finally {
      client.close();
    }
  }

  const orgPool = async (scope) => (await direct.getBudget(scope)).find((p) => p.level === "org");

  it("holds once for a reserve whose answer was lost, and commits once", async () => {
    const scope = { org: `node-retry-${randomUUID().slice(0, 8)}`, user: "alice" };
    const { reservation } = await throughTheProxy((client) =>
      client.reserve(scope, "gpt-4o-mini", { inputTokens: 1000 }),
    );
    assert.match(reservation.idempotencyKey, /^[0-9a-f]{32}$/);
    assert.equal(reservation.replayed, true, "the retry found what the lost attempt had held");
    let org = await orgPool(scope);
    assert.equal(org.calls, 1);
    assert.equal(org.heldNanos, reservation.heldNanos);

    const committed = await throughTheProxy((client) =>
      client.commit(reservation.reservationId, { inputTokens: 1000, outputTokens: 100 }),
    );
    assert.equal(committed.replayed, true);
    org = await orgPool(scope);
    assert.deepEqual([org.calls, org.heldNanos, org.spentNanos], [1, 0n, committed.chargedNanos]);
  });
});

const authSkip = process.env.TOLLGATE_AUTH_TARGET
  ? false
  : "set TOLLGATE_AUTH_TARGET, TOLLGATE_LIMITED_TOKEN and TOLLGATE_SPENDER_TOKEN to run against a sidecar with callers";

describe("errors told apart by reason, against a sidecar with callers", { skip: authSkip }, () => {
  const target = process.env.TOLLGATE_AUTH_TARGET;
  const bearer = (token) => ({ authorization: `Bearer ${token}` });
  /** @param {string | undefined} token */
  async function withClient(token, call) {
    const client = new TollgateClient(target, { timeoutMs: 10_000, metadata: token ? bearer(token) : {} });
    try {
      return await call(client);
    } finally {
      client.close();
    }
  }

  it("refuses a caller over its rate with RateLimitedError, not BudgetExceededError", async () => {
    // A burst of one call; the rest of five sent at once are over the rate of one a second.
    const results = await withClient(process.env.TOLLGATE_LIMITED_TOKEN, (client) =>
      Promise.allSettled(Array.from({ length: 5 }, () => client.getBudget({ org: "acme" }))),
    );
    const refused = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    assert.ok(refused.length >= 3 && refused.length <= 4, `refused ${refused.length} of 5`);
    for (const error of refused) {
      assert.equal(error.constructor, RateLimitedError, String(error));
      assert.ok(!(error instanceof BudgetExceededError));
      assert.deepEqual([error.code, error.reason, error.attempts], [Status.RESOURCE_EXHAUSTED, "RATE_LIMITED", 1]);
      assert.match(error.details, /over its rate of 1 calls\/s/);
    }
  });

  it("still refuses a budget with BudgetExceededError and its fields", async () => {
    const error = await withClient(process.env.TOLLGATE_SPENDER_TOKEN, (client) =>
      client.reserve({ org: "tiny" }, "claude-opus-4-1", { inputTokens: 5000 }).catch((e) => e),
    );
    assert.ok(error instanceof BudgetExceededError, String(error));
    assert.deepEqual([error.code, error.reason], [Status.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED"]);
    assert.deepEqual([error.poolId, error.level, error.policy, error.limit], ["org:tiny", "org", "hard", "cost"]);
    assert.ok(error.requestedNanos > error.remainingNanos && error.remainingNanos <= 1_000_000n);
    assert.ok(error.resetsAt instanceof Date);
  });

  it("answers a message over the size limit with a plain TollgateError", async () => {
    const messages = [{ role: "user", content: "z".repeat(5 * 1024 * 1024) }];
    const error = await withClient(process.env.TOLLGATE_SPENDER_TOKEN, (client) =>
      client.route({ org: "acme" }, { messages }).catch((e) => e),
    );
    assert.equal(error.constructor, TollgateError, String(error));
    assert.deepEqual([error.code, error.reason], [Status.RESOURCE_EXHAUSTED, ""]);
  });

  it("gives credentials and grants their reasons", async () => {
    const anonymous = await withClient(undefined, (client) => client.getBudget({ org: "acme" }).catch((e) => e));
    assert.deepEqual([anonymous.code, anonymous.reason], [Status.UNAUTHENTICATED, "UNAUTHENTICATED"]);
    const outside = await withClient(process.env.TOLLGATE_SPENDER_TOKEN, (client) =>
      client.getBudget({ org: "bravo" }).catch((e) => e),
    );
    assert.deepEqual([outside.code, outside.reason], [Status.PERMISSION_DENIED, "PERMISSION_DENIED"]);
  });
});
