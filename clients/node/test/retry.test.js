// Retries against an in-process server whose answers are scripted: refused as
// UNAVAILABLE ("down"), or lost after the call took effect ("lost": the
// client's deadline passes first). The server records what each attempt carried.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";

import * as grpc from "@grpc/grpc-js";

import {
  BudgetExceededError,
  DEFAULT_RETRY,
  RateLimitedError,
  STATUS_DETAILS_TRAILER,
  Status,
  TollgateClient,
  TollgateError,
  UnavailableError,
  newIdempotencyKey,
} from "../src/index.js";
import { loadProtos } from "../src/proto.js";
import { backoffMs, retryPolicy } from "../src/retry.js";

import { errorInfoAny, statusDetails } from "./protowire.js";

const SCOPE = { org: "acme", user: "alice" };
const EXPIRES = { seconds: "1796083200", nanos: 0 };
const HEX = /^[0-9a-f]{32}$/;
const QUICK = { attempts: 4, budgetMs: 5000, backoffMs: 10, maxBackoffMs: 20 };

/**
 * Answers like the sidecar, each method's next calls following its script
 * ("down", "lost", a bare status code, or `{ code, reason }` for a refusal
 * with the sidecar's ErrorInfo). As the sidecar does, a repeated reserve
 * under one key returns the first reservation with `replayed` set, and a
 * repeated commit or release of a reservation ended the same way answers
 * again with `replayed` set.
 */
class ScriptedSidecar {
  /** @type {Record<string, Array<"down" | "lost" | number | { code: number, reason: string }>>} */
  script = {};
  /** @type {Record<string, any[]>} */
  requests = {};
  /** @type {Map<string, boolean>} reservation id -> open */
  held = new Map();
  /** @type {Map<string, string>} reservation id -> "commit" or "release" */
  ended = new Map();
  #next = 0;
  /** @type {Array<() => void>} */
  #lost = [];

  reset() {
    this.script = {};
    this.requests = {};
    this.held.clear();
    this.ended.clear();
  }

  keys(method) {
    return (this.requests[method] ?? []).map((request) => request.reservation?.idempotencyKey ?? "");
  }

  attempts(method) {
    return (this.requests[method] ?? []).length;
  }

  #hold(key) {
    const id = `res-${key || `n${++this.#next}`}`;
    const replayed = this.held.has(id) || this.ended.has(id);
    if (!replayed) this.held.set(id, true);
    return { reservationId: id, model: "gpt-4o-mini", heldNanos: "1000", expiresAt: EXPIRES, pools: [], replayed };
  }

  #end(id, how) {
    if (this.ended.has(id)) {
      if (this.ended.get(id) === how) return { replayed: true };
      return { error: { code: Status.FAILED_PRECONDITION, details: "reservation already ended" } };
    }
    if (!this.held.has(id)) return { error: { code: Status.NOT_FOUND, details: `no reservation ${id}` } };
    this.held.delete(id);
    this.ended.set(id, how);
    return { replayed: false };
  }

  async start() {
    const { TollgateService } = loadProtos();
    this.server = new grpc.Server();
    const handler = (name, answer) => (call, callback) => {
      (this.requests[name] ??= []).push(call.request);
      const step = (this.script[name] ?? []).shift();
      if (step === "down") return callback({ code: Status.UNAVAILABLE, details: "connection reset" });
      if (typeof step === "number") return callback({ code: step, details: "scripted" });
      if (typeof step === "object") return callback(refusal(step.code, "scripted", step.reason));
      const [error, response] = answer(call.request);
      if (step === "lost") {
        this.#lost.push(() => callback({ code: Status.CANCELLED }));
        return undefined; // done, but never answered: the client's deadline passes
      }
      return callback(error, response);
    };
    const reservationRoute = (request) => {
      const response = { decision: { chosen: { model: "gpt-4o-mini", provider: "openai", tier: "cheap" } } };
      if (request.reserve) response.reservation = this.#hold(request.reservation.idempotencyKey);
      return [null, response];
    };
    this.server.addService(TollgateService.service, {
      Route: handler("Route", reservationRoute),
      Reserve: handler("Reserve", (request) => [null, { reservation: this.#hold(request.reservation.idempotencyKey) }]),
      Commit: handler("Commit", (request) => {
        const { error, replayed } = this.#end(request.reservationId, "commit");
        return [error ?? null, { reservationId: request.reservationId, chargedNanos: "900", replayed }];
      }),
      Release: handler("Release", (request) => {
        const { error, replayed } = this.#end(request.reservationId, "release");
        return [error ?? null, { reservationId: request.reservationId, releasedNanos: "1000", replayed }];
      }),
      Extend: handler("Extend", (request) => [null, { reservationId: request.reservationId, expiresAt: EXPIRES }]),
      GetBudget: handler("GetBudget", () => [null, { pools: [] }]),
    });
    const port = await new Promise((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    this.target = `127.0.0.1:${port}`;
    return this;
  }

  stop() {
    for (const answer of this.#lost.splice(0)) answer();
    this.server.forceShutdown();
  }
}

/** A grpc-js server error with the sidecar's ErrorInfo `reason` in grpc-status-details-bin. */
function refusal(code, details, reason) {
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_DETAILS_TRAILER, statusDetails(code, details, [errorInfoAny(reason)]));
  return { code, details, metadata };
}

/** Every key the same, `count` of them; returns it. */
function oneKey(keys, count) {
  assert.equal(keys.length, count, `attempts: ${JSON.stringify(keys)}`);
  assert.ok(keys.every((key) => key === keys[0]), `the attempts carried different keys: ${JSON.stringify(keys)}`);
  return keys[0];
}

describe("the retry policy", () => {
  it("defaults to 4 attempts within 5 s, backing off from 50 ms up to 1 s", () => {
    assert.deepEqual(DEFAULT_RETRY, { attempts: 4, budgetMs: 5000, backoffMs: 50, maxBackoffMs: 1000 });
    const policy = (options) => {
      const client = new TollgateClient(undefined, options);
      client.close();
      return client.retry;
    };
    assert.equal(policy({}), DEFAULT_RETRY);
    assert.deepEqual(policy({ retry: { attempts: 2 } }), { ...DEFAULT_RETRY, attempts: 2 });
    for (const off of [null, false, { attempts: 1 }]) assert.equal(policy({ retry: off }), null);
  });

  it("refuses options out of range and unknown ones", () => {
    assert.throws(() => retryPolicy({ attempts: 0 }), RangeError);
    assert.throws(() => retryPolicy({ attempts: 1.5 }), RangeError);
    assert.throws(() => retryPolicy({ budgetMs: -1 }), RangeError);
    assert.throws(() => retryPolicy({ backoffMs: Number.NaN }), RangeError);
    assert.throws(() => retryPolicy({ backoffMs: 200, maxBackoffMs: 100 }), /below retry.backoffMs/);
    assert.throws(() => retryPolicy({ tries: 3 }), /unknown retry option "tries"/);
    assert.throws(() => retryPolicy(3), TypeError);
  });

  it("backs off with full jitter, doubling up to the cap", () => {
    const policy = retryPolicy({ backoffMs: 100, maxBackoffMs: 250 });
    assert.deepEqual([1, 2, 3, 4].map((n) => backoffMs(policy, n, () => 1)), [100, 200, 250, 250]);
    assert.equal(backoffMs(policy, 1, () => 0), 0);
    const waits = Array.from({ length: 200 }, () => backoffMs(policy, 2));
    assert.ok(waits.every((ms) => ms >= 0 && ms < 200) && new Set(waits).size > 100);
  });

  it("generates 32-hex-character keys", () => {
    assert.match(newIdempotencyKey(), HEX);
    assert.notEqual(newIdempotencyKey(), newIdempotencyKey());
  });
});

describe("retries against a scripted sidecar", () => {
  const fake = new ScriptedSidecar();
  /** @type {TollgateClient} */
  let client;
  before(async () => {
    await fake.start();
    client = new TollgateClient(fake.target, { timeoutMs: 300, retry: QUICK });
  });
  beforeEach(() => fake.reset());
  after(() => {
    client.close();
    fake.stop();
  });

  it("retries reserve with the key it generated", async () => {
    fake.script.Reserve = ["down", "down"];
    const { reservation } = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 });
    const key = oneKey(fake.keys("Reserve"), 3);
    assert.match(key, HEX);
    assert.equal(reservation.idempotencyKey, key);
    assert.equal(reservation.replayed, false); // the refused attempts held nothing
    assert.deepEqual([...fake.held.keys()], [reservation.reservationId]);
  });

  it("gives every call a key of its own", async () => {
    const first = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 });
    const second = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 });
    assert.notEqual(first.reservation.idempotencyKey, second.reservation.idempotencyKey);
    assert.equal(fake.held.size, 2);
  });

  it("replays a reserve whose answer was lost instead of holding twice", async () => {
    fake.script.Reserve = ["lost"];
    const started = Date.now();
    const { reservation } = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 });
    assert.ok(Date.now() - started >= 290, "the first attempt ran into its deadline");
    oneKey(fake.keys("Reserve"), 2);
    assert.equal(reservation.replayed, true);
    assert.equal(fake.held.size, 1);
  });

  it("retries route with reserve under one key", async () => {
    fake.script.Route = ["down", "lost"];
    const decision = await client.route(SCOPE, { inputTokens: 100, reserve: true, ttlMs: 9000 });
    const key = oneKey(fake.keys("Route"), 3);
    assert.match(key, HEX);
    assert.equal(decision.reservation.idempotencyKey, key);
    assert.equal(decision.reservation.replayed, true);
    assert.deepEqual(fake.requests.Route.map((r) => Number(r.reservation.ttlMs)), [9000, 9000, 9000]);
    assert.equal(fake.held.size, 1);
  });

  it("keeps the caller's key", async () => {
    fake.script.Reserve = ["down", "lost"];
    const { reservation } = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100, idempotencyKey: "order-17" });
    assert.deepEqual(fake.keys("Reserve"), ["order-17", "order-17", "order-17"]);
    assert.equal(reservation.idempotencyKey, "order-17");
    assert.equal(reservation.replayed, true);
  });

  it("bounds the attempts", async () => {
    fake.script.Reserve = Array(10).fill("down");
    const error = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 }).catch((e) => e);
    const key = oneKey(fake.keys("Reserve"), 4);
    assert.ok(error instanceof UnavailableError, String(error));
    assert.equal(error.code, Status.UNAVAILABLE);
    assert.equal(error.attempts, 4);
    assert.equal(error.idempotencyKey, key); // for a later retry that must not hold twice
  });

  it("never retries other statuses", async () => {
    const steps = [
      { code: Status.RESOURCE_EXHAUSTED, reason: "BUDGET_EXCEEDED" },
      { code: Status.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED" },
      Status.RESOURCE_EXHAUSTED, // gRPC's own, such as a message too large
      { code: Status.INVALID_ARGUMENT, reason: "INVALID_REQUEST" },
      { code: Status.FAILED_PRECONDITION, reason: "RESERVATION_ENDED" },
      { code: Status.FAILED_PRECONDITION, reason: "IDEMPOTENCY_CONFLICT" },
      { code: Status.NOT_FOUND, reason: "RESERVATION_NOT_FOUND" },
      { code: Status.OUT_OF_RANGE, reason: "ESCALATION_REFUSED" },
      { code: Status.INTERNAL, reason: "INTERNAL" },
      { code: Status.UNAUTHENTICATED, reason: "UNAUTHENTICATED" },
      { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" },
      Status.CANCELLED,
    ];
    for (const step of steps) {
      const [code, reason] = typeof step === "number" ? [step, ""] : [step.code, step.reason];
      fake.reset();
      fake.script.Reserve = [step];
      const error = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 }).catch((e) => e);
      assert.ok(error instanceof TollgateError && error.code === code, String(error));
      assert.equal(error.reason, reason);
      assert.equal(error.attempts, 1);
      assert.equal(fake.attempts("Reserve"), 1, `${error.codeName} ${reason} was retried`);
      assert.equal(error instanceof BudgetExceededError, reason === "BUDGET_EXCEEDED", String(error));
      assert.equal(error instanceof RateLimitedError, reason === "RATE_LIMITED", String(error));
    }
  });

  for (const [code, reason] of [
    [Status.UNAVAILABLE, "STORE_UNAVAILABLE"],
    [Status.DEADLINE_EXCEEDED, "CALLER_GONE"],
  ]) {
    it(`retries the sidecar's ${reason} like any other ${code === Status.UNAVAILABLE ? "UNAVAILABLE" : "DEADLINE_EXCEEDED"}`, async () => {
      fake.script.Reserve = [{ code, reason }];
      await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 });
      oneKey(fake.keys("Reserve"), 2);
      fake.reset();
      fake.script.Reserve = Array(4).fill({ code, reason });
      const error = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 }).catch((e) => e);
      assert.ok(error instanceof UnavailableError, String(error));
      assert.deepEqual([error.code, error.reason, error.attempts], [code, reason, 4]);
    });
  }

  it("retries commit, release and extend as they are", async () => {
    const first = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 });
    const second = await client.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 });
    Object.assign(fake.script, { Extend: ["down", "lost"], Commit: ["lost"], Release: ["down", "lost"] });
    await client.extend(first.reservation.reservationId, 60_000);
    const committed = await client.commit(first.reservation.reservationId, { inputTokens: 100 });
    const released = await client.release(second.reservation.reservationId);
    assert.equal(committed.replayed, true); // the lost attempt's work was done once
    assert.equal(released.replayed, true);
    assert.deepEqual(["Extend", "Commit", "Release"].map((m) => fake.attempts(m)), [3, 2, 3]);
    assert.deepEqual(Object.fromEntries(fake.ended), {
      [first.reservation.reservationId]: "commit",
      [second.reservation.reservationId]: "release",
    });
  });

  it("retries reads only when unavailable", async () => {
    Object.assign(fake.script, { GetBudget: ["down", "down"], Route: ["down"] });
    await client.getBudget(SCOPE);
    const decision = await client.route(SCOPE, { inputTokens: 100 });
    assert.equal(decision.reservation, null);
    assert.deepEqual([fake.attempts("GetBudget"), fake.attempts("Route")], [3, 2]);
    assert.deepEqual(fake.keys("Route"), ["", ""]); // nothing held, so no key

    Object.assign(fake.script, { GetBudget: ["lost"], Route: ["lost"] });
    for (const call of [() => client.getBudget(SCOPE), () => client.route(SCOPE, { inputTokens: 100 })]) {
      const error = await call().catch((e) => e);
      assert.ok(error instanceof UnavailableError && error.code === Status.DEADLINE_EXCEEDED, String(error));
      assert.equal(error.attempts, 1);
    }
  });

  it("bounds the attempts and their deadlines by the budget", async () => {
    const bounded = new TollgateClient(fake.target, { timeoutMs: 400, retry: { attempts: 10, budgetMs: 600, backoffMs: 0, maxBackoffMs: 0 } });
    try {
      fake.script.Reserve = Array(10).fill("lost");
      const started = Date.now();
      const error = await bounded.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 }).catch((e) => e);
      const elapsed = Date.now() - started;
      // 400 ms for the first attempt, then what is left of the 600 ms budget: never the 10 attempts' 4 s.
      assert.ok(elapsed >= 550 && elapsed < 1200, `gave up after ${elapsed} ms`);
      assert.ok(error instanceof UnavailableError && error.code === Status.DEADLINE_EXCEEDED, String(error));
      assert.ok(error.attempts >= 2 && error.attempts <= 3, `${error.attempts} attempts`);
      assert.equal(fake.attempts("Reserve"), error.attempts);
      assert.equal(fake.held.size, 1);
    } finally {
      bounded.close();
    }
  });

  it("makes one attempt and invents no key with retries off", async () => {
    const single = new TollgateClient(fake.target, { retry: null });
    try {
      fake.script.Reserve = ["down"];
      const error = await single.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 }).catch((e) => e);
      assert.ok(error instanceof UnavailableError);
      assert.equal(error.attempts, 1);
      assert.equal(error.idempotencyKey, "");
      const { reservation } = await single.reserve(SCOPE, "gpt-4o-mini", { inputTokens: 100 });
      assert.equal(reservation.idempotencyKey, "");
      assert.deepEqual(fake.keys("Reserve"), ["", ""]);
    } finally {
      single.close();
    }
  });
});
