// The client without a sidecar: argument checks, the requests it sends to an
// in-process fake of the service, unreachable targets, and withReservation.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";

import * as grpc from "@grpc/grpc-js";

import {
  BUDGET_EXCEEDED_TRAILER,
  BudgetExceededError,
  DEFAULT_TARGET,
  ReservationEndedError,
  Status,
  TollgateClient,
  UnavailableError,
} from "../src/index.js";
import { loadProtos } from "../src/proto.js";

const SCOPE = { org: "acme", user: "alice" };
const EXPIRES = { seconds: "1796083200", nanos: 0 };

/** A free loopback port nothing listens on. */
async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function pool(overrides = {}) {
  return {
    poolId: "org:acme",
    level: "POOL_LEVEL_ORG",
    policy: "POLICY_HARD",
    capNanos: "1000000000000",
    usableCapNanos: "800000000000",
    spentNanos: "9007199254740993",
    heldNanos: "0",
    remainingNanos: "-5",
    resetsAt: null,
    calls: "3",
    maxCalls: "0",
    tokens: "120",
    maxTokens: "0",
    warning: true,
    ...overrides,
  };
}

function reservation(id = "0123456789abcdef01234567.acme") {
  return { reservationId: id, model: "gpt-4o-mini", heldNanos: "418860", expiresAt: EXPIRES, pools: [pool()] };
}

/** An in-process TollgateService that records each request and answers from a script. */
class FakeSidecar {
  requests = [];

  async start() {
    const { TollgateService } = loadProtos();
    this.server = new grpc.Server();
    const handler = (name, answer) => (call, callback) => {
      this.requests.push([name, call.request, call.metadata]);
      answer(call, callback);
    };
    this.server.addService(TollgateService.service, {
      Route: handler("Route", (call, callback) =>
        callback(null, {
          decision: {
            chosen: { model: "gpt-4o-mini", provider: "openai", tier: "cheap", estimatedCostNanos: "322200" },
            fallbacks: [{ model: "gpt-4o", provider: "openai", tier: "medium", estimatedCostNanos: "5147500" }],
            reason: "rule task_type=extract -> cheap",
            source: "DECISION_SOURCE_RULE",
            requiredTier: "cheap",
            estimatedInputTokens: "100",
            estimatedOutputTokens: "512",
            outcome: "POLICY_OUTCOME_ADMITTED",
          },
          reservation: call.request.reserve ? reservation() : null,
        }),
      ),
      Reserve: handler("Reserve", (call, callback) => {
        if (call.request.scope.orgId === "tiny") {
          const trailers = new grpc.Metadata();
          trailers.set(BUDGET_EXCEEDED_TRAILER, Buffer.from([0x0a, 0x08, ...Buffer.from("org:tiny"), 0x10, 0x05]));
          callback({ code: Status.RESOURCE_EXHAUSTED, details: "budget pool org:tiny (hard) refused", metadata: trailers });
          return;
        }
        callback(null, {
          reservation: reservation(),
          estimatedInputTokens: "100",
          estimatedOutputTokens: "512",
          estimatedCostNanos: "322200",
        });
      }),
      Commit: handler("Commit", (call, callback) =>
        callback(null, {
          reservationId: call.request.reservationId,
          chargedNanos: "5200",
          releasedNanos: "413660",
          pools: [pool()],
        }),
      ),
      Release: handler("Release", (call, callback) =>
        callback({ code: Status.FAILED_PRECONDITION, details: `reservation ${call.request.reservationId} was committed` }),
      ),
      Extend: handler("Extend", (call, callback) =>
        callback(null, { reservationId: call.request.reservationId, expiresAt: { seconds: "1796083260", nanos: 7_000_000 } }),
      ),
      GetBudget: handler("GetBudget", (call, callback) => callback(null, { pools: [pool({ resetsAt: EXPIRES })] })),
    });
    const port = await new Promise((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    this.target = `127.0.0.1:${port}`;
    return this;
  }

  last(name) {
    return this.requests.findLast(([method]) => method === name)?.[1];
  }

  lastMetadata(name) {
    return this.requests.findLast(([method]) => method === name)?.[2];
  }

  stop() {
    this.server.forceShutdown();
  }
}

describe("new TollgateClient()", () => {
  it("defaults to the sidecar's usual address and a 2 s deadline", () => {
    const client = new TollgateClient();
    assert.equal(client.target, DEFAULT_TARGET);
    assert.equal(client.timeoutMs, 2000);
    client.close();
    client.close(); // closing twice is harmless
  });

  it("refuses an empty target, a non-positive timeout and a missing proto", () => {
    assert.throws(() => new TollgateClient(""), TypeError);
    assert.throws(() => new TollgateClient(DEFAULT_TARGET, { timeoutMs: 0 }), RangeError);
    assert.throws(() => new TollgateClient(DEFAULT_TARGET, { timeoutMs: Number.NaN }), RangeError);
    assert.throws(() => new TollgateClient(DEFAULT_TARGET, { protoPath: "/nonexistent/tollgate.proto" }), /ENOENT|no such file/);
  });

  it("loads a proto given by path", () => {
    const client = new TollgateClient(DEFAULT_TARGET, { protoPath: loadProtos().protoPath });
    client.close();
  });
});

describe("arguments the client checks itself", () => {
  const client = new TollgateClient("127.0.0.1:1");
  after(() => client.close());

  const refused = [
    ["a scope without org", () => client.getBudget({ user: "alice" }), TypeError, /scope.org is required/],
    ["a misspelt scope key", () => client.getBudget({ org: "acme", users: "alice" }), TypeError, /unknown scope key "users"/],
    ["an unknown priority", () => client.getBudget({ org: "acme", priority: "urgent" }), TypeError, /priority/],
    ["non-string tags", () => client.getBudget({ org: "acme", tags: { n: 1 } }), TypeError, /tags/],
    ["no prompt", () => client.route(SCOPE, {}), TypeError, /exactly one of messages/],
    ["both prompts", () => client.route(SCOPE, { messages: [], inputTokens: 3 }), TypeError, /exactly one of messages/],
    ["a single message", () => client.route(SCOPE, { messages: { role: "user", content: "hi" } }), TypeError, /array of messages/],
    ["a message without role", () => client.route(SCOPE, { messages: [{ content: "hi" }] }), TypeError, /role/],
    ["snake_case options", () => client.route(SCOPE, { input_tokens: 3 }), TypeError, /unknown route\(\) options key "input_tokens"/],
    ["negative tokens", () => client.route(SCOPE, { inputTokens: -1 }), RangeError, /inputTokens/],
    ["fractional tokens", () => client.route(SCOPE, { inputTokens: 1.5 }), TypeError, /inputTokens/],
    ["tokens past int64", () => client.route(SCOPE, { inputTokens: 1n << 63n }), RangeError, /inputTokens/],
    ["a key without reserve", () => client.route(SCOPE, { inputTokens: 3, idempotencyKey: "k" }), TypeError, /reserve: true/],
    ["reserve without a model", () => client.reserve(SCOPE, "", { inputTokens: 3 }), TypeError, /model/],
    ["commit without an id", () => client.commit("", { inputTokens: 1 }), TypeError, /reservation id/],
    ["commit without usage", () => client.commit("r.acme", null), TypeError, /usageFromOpenAI/],
    ["snake_case usage", () => client.commit("r.acme", { input_tokens: 1 }), TypeError, /unknown usage key/],
    ["cached above input", () => client.commit("r.acme", { inputTokens: 1, cachedInputTokens: 2 }), RangeError, /cannot exceed/],
    ["a negative ttl", () => client.extend("r.acme", -5), RangeError, /ttlMs/],
  ];
  for (const [what, call, type, message] of refused) {
    it(`refuse ${what} before sending`, async () => {
      await assert.rejects(call, (error) => error instanceof type && message.test(error.message));
    });
  }
});

describe("against an in-process fake of the service", () => {
  const fake = new FakeSidecar();
  let client;
  before(async () => {
    await fake.start();
    client = new TollgateClient(fake.target, { metadata: { "x-api-key": "k-1" } });
  });
  after(() => {
    client.close();
    fake.stop();
  });

  it("sends route's scope, prompt and signals in the proto's fields", async () => {
    const messages = [
      { role: "system", content: "Be brief." },
      ["user", [{ type: "text", text: "Extract the total" }, { type: "image_url", image_url: {} }, "from this"]],
      { role: "assistant", content: null },
    ];
    const decision = await client.route(
      { org: "acme", team: "search", user: "alice", session: "s-1", tags: { app: "web" }, priority: "high" },
      { messages, taskType: "extract", needsJson: true, maxOutputTokens: 256, reserve: true, idempotencyKey: "k", ttlMs: 30_000n },
    );
    const request = fake.last("Route");
    assert.deepEqual(request.scope, {
      orgId: "acme",
      teamId: "search",
      userId: "alice",
      sessionId: "s-1",
      tags: { app: "web" },
      priority: "PRIORITY_HIGH",
    });
    assert.deepEqual(request.prompt.messages.items, [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Extract the total\nfrom this" },
      { role: "assistant", content: "" },
    ]);
    assert.equal(request.signals.taskType, "extract");
    assert.equal(request.signals.needsJson, true);
    assert.equal(request.maxOutputTokens, "256");
    assert.deepEqual(request.reservation, { idempotencyKey: "k", ttlMs: "30000" });

    assert.equal(decision.model, "gpt-4o-mini");
    assert.equal(decision.source, "rule");
    assert.equal(decision.outcome, "admitted");
    assert.equal(decision.estimatedCostNanos, 322_200n);
    assert.equal(decision.estimatedInputTokens, 100);
    assert.deepEqual(decision.fallbacks, [
      { model: "gpt-4o", provider: "openai", tier: "medium", estimatedCostNanos: 5_147_500n, latency: "" },
    ]);
    assert.equal(decision.reservation.heldNanos, 418_860n);
    assert.equal(decision.reservation.expiresAt.getTime(), 1_796_083_200_000);
    const [orgPool] = decision.reservation.pools;
    assert.equal(orgPool.spentNanos, 9_007_199_254_740_993n, "money keeps every digit past 2^53");
    assert.equal(orgPool.remainingNanos, -5n);
    assert.equal(orgPool.level, "org");
    assert.equal(orgPool.policy, "hard");
    assert.equal(orgPool.calls, 3);
    assert.equal(orgPool.resetsAt, null);
    assert.ok(Object.isFrozen(decision) && Object.isFrozen(decision.reservation.pools));
  });

  it("sends a counted prompt, defaults and no reservation when not reserving", async () => {
    const decision = await client.route({ org: "acme" }, { inputTokens: 0 });
    const request = fake.last("Route");
    assert.equal(request.prompt.input, "inputTokens", "0 still selects the inputTokens branch");
    assert.equal(request.prompt.inputTokens, "0");
    assert.equal(request.scope.priority, "PRIORITY_NORMAL");
    assert.equal(request.reserve, false);
    assert.equal(request.reservation, null);
    assert.equal(decision.reservation, null);
  });

  it("sends commit usage as 64-bit counts and the configured metadata", async () => {
    const result = await client.commit("r-1.acme", { inputTokens: 20n, cachedInputTokens: 4, outputTokens: 8 });
    assert.deepEqual(fake.last("Commit"), {
      reservationId: "r-1.acme",
      usage: { inputTokens: "20", cachedInputTokens: "4", outputTokens: "8", reasoningTokens: "0" },
    });
    assert.deepEqual(fake.lastMetadata("Commit").get("x-api-key"), ["k-1"]);
    assert.equal(result.chargedNanos, 5200n);
    assert.equal(result.overshootNanos, 0n);
    assert.equal(result.replayed, false);
  });

  it("converts reserve, extend and getBudget answers", async () => {
    const reserved = await client.reserve(SCOPE, "gpt-4o-mini", { messages: [["user", "hi"]], taskType: "chat" });
    assert.equal(fake.last("Reserve").model, "gpt-4o-mini");
    assert.equal(reserved.estimatedCostNanos, 322_200n);
    assert.equal(reserved.estimatedOutputTokens, 512);
    const extended = await client.extend("r-1.acme", 60_000);
    assert.equal(fake.last("Extend").ttlMs, "60000");
    assert.equal(extended.expiresAt.getTime(), 1_796_083_260_007);
    const [orgPool] = await client.getBudget(SCOPE);
    assert.equal(orgPool.resetsAt.getTime(), 1_796_083_200_000);
  });

  it("decodes a refusal's trailer sent over gRPC", async () => {
    const error = await client.reserve({ org: "tiny" }, "claude-opus-4-1", { inputTokens: 5000 }).catch((e) => e);
    assert.ok(error instanceof BudgetExceededError);
    assert.equal(error.poolId, "org:tiny");
    assert.equal(error.level, "org");
    assert.equal(error.details, "budget pool org:tiny (hard) refused");
  });

  it("maps a failed release to ReservationEndedError", async () => {
    await assert.rejects(client.release("r-9.acme"), ReservationEndedError);
  });
});

describe("an unreachable sidecar", () => {
  it("rejects with UnavailableError over TCP", async () => {
    const client = new TollgateClient(`127.0.0.1:${await freePort()}`, { timeoutMs: 1500 });
    try {
      const error = await client.getBudget(SCOPE).catch((e) => e);
      assert.ok(error instanceof UnavailableError, String(error));
      assert.ok([Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED].includes(error.code));
    } finally {
      client.close();
    }
  });

  it("rejects with UnavailableError over a Unix socket that does not exist", async () => {
    const client = new TollgateClient("unix:///nonexistent/tollgate.sock", { timeoutMs: 1500 });
    try {
      await assert.rejects(client.getBudget(SCOPE), UnavailableError);
    } finally {
      client.close();
    }
  });

  it("a closed client refuses calls", async () => {
    const client = new TollgateClient("127.0.0.1:1");
    client.close();
    await assert.rejects(client.getBudget(SCOPE), /closed/);
  });
});

/** A client whose commit, release and extend are scripted and recorded. */
class ScriptedClient extends TollgateClient {
  calls = [];

  constructor({ commitFails = false, releaseFails = false } = {}) {
    super("127.0.0.1:1");
    this.commitFails = commitFails;
    this.releaseFails = releaseFails;
  }

  async commit(id, usage) {
    this.calls.push(["commit", id]);
    if (this.commitFails) throw new UnavailableError(Status.UNAVAILABLE, "commit lost");
    return { reservationId: id, chargedNanos: 10n, overshootNanos: 0n, releasedNanos: 5n, pools: [], replayed: false };
  }

  async release(id) {
    this.calls.push(["release", id]);
    if (this.releaseFails) throw new UnavailableError(Status.UNAVAILABLE, "release lost");
    return { reservationId: id, releasedNanos: 15n, pools: [], replayed: false };
  }

  async extend(id, ttlMs) {
    this.calls.push(["extend", id, ttlMs]);
    return { reservationId: id, expiresAt: new Date(1_800_000_000_000) };
  }
}

describe("withReservation", () => {
  const held = Object.freeze({
    reservationId: "r-1.acme",
    model: "gpt-4o-mini",
    heldNanos: 15n,
    expiresAt: new Date(1_700_000_000_000),
    pools: [],
    replayed: false,
  });
  const decision = { model: "gpt-4o-mini", reason: "rule", reservation: held };
  const usage = { inputTokens: 10, outputTokens: 2 };

  it("commits and resolves to what the callback returned, releasing nothing", async () => {
    const client = new ScriptedClient();
    const value = await client.withReservation(decision, async (h) => {
      assert.equal(h.reservationId, "r-1.acme");
      assert.equal(h.model, "gpt-4o-mini");
      assert.equal(h.settled, false);
      await h.commit(usage);
      assert.equal(h.settled, true);
      assert.equal(h.result.chargedNanos, 10n);
      return "answer";
    });
    assert.equal(value, "answer");
    assert.deepEqual(client.calls, [["commit", "r-1.acme"]]);
  });

  it("releases when the callback throws, and rethrows the same error", async () => {
    const client = new ScriptedClient();
    const failure = new Error("provider down");
    await assert.rejects(
      client.withReservation(decision, async () => {
        throw failure;
      }),
      (error) => error === failure && error.releaseError === undefined,
    );
    assert.deepEqual(client.calls, [["release", "r-1.acme"]]);
  });

  it("attaches a failed release to the callback's error", async () => {
    const client = new ScriptedClient({ releaseFails: true });
    const failure = new Error("provider down");
    await assert.rejects(
      client.withReservation(held, () => {
        throw failure;
      }),
      (error) => error === failure && error.releaseError instanceof UnavailableError,
    );
  });

  it("rethrows a thrown non-object untouched", async () => {
    const client = new ScriptedClient({ releaseFails: true });
    await assert.rejects(
      client.withReservation(held, () => Promise.reject("plain string")),
      (error) => error === "plain string",
    );
  });

  it("releases when the callback returns without committing", async () => {
    const client = new ScriptedClient();
    assert.equal(await client.withReservation({ reservation: held, estimatedCostNanos: 1n }, () => 42), 42);
    assert.deepEqual(client.calls, [["release", "r-1.acme"]]);
  });

  it("surfaces a failed release after a callback that returned", async () => {
    const client = new ScriptedClient({ releaseFails: true });
    await assert.rejects(client.withReservation(held, () => 42), UnavailableError);
  });

  it("never releases after a commit, even a failed one", async () => {
    const client = new ScriptedClient({ commitFails: true });
    await assert.rejects(
      client.withReservation(held, (h) => h.commit(usage)),
      (error) => error instanceof UnavailableError && error.details === "commit lost",
    );
    assert.deepEqual(client.calls, [["commit", "r-1.acme"]]);
  });

  it("does not release twice after an explicit release", async () => {
    const client = new ScriptedClient();
    await client.withReservation(held, async (h) => {
      const result = await h.release();
      assert.equal(result.releasedNanos, 15n);
    });
    assert.deepEqual(client.calls, [["release", "r-1.acme"]]);
  });

  it("extend moves expiresAt", async () => {
    const client = new ScriptedClient();
    await client.withReservation(held, async (h) => {
      assert.equal(h.expiresAt.getTime(), 1_700_000_000_000);
      await h.extend(90_000);
      assert.equal(h.expiresAt.getTime(), 1_800_000_000_000);
      await h.commit(usage);
    });
    assert.deepEqual(client.calls, [["extend", "r-1.acme", 90_000], ["commit", "r-1.acme"]]);
  });

  it("refuses a decision without a reservation, other values and a missing callback", async () => {
    const client = new ScriptedClient();
    await assert.rejects(client.withReservation({ model: "m", reservation: null }, () => {}), /reserve: true/);
    await assert.rejects(client.withReservation({ model: "m" }, () => {}), TypeError);
    await assert.rejects(client.withReservation("r-1.acme", () => {}), TypeError);
    await assert.rejects(client.withReservation(held), /callback/);
    assert.deepEqual(client.calls, []);
  });
});
