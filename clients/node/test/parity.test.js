// escalate, feedback, getQuality, the latency class and shadow sampling, and the two helpers built on them
// (callWithShadow, callWithEscalation), against an in-process fake of the service.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import * as grpc from "@grpc/grpc-js";

import {
  EscalationRefusedError,
  Status,
  TollgateClient,
  callWithEscalation,
  callWithShadow,
  defaultJudge,
} from "../src/index.js";
import { loadProtos } from "../src/proto.js";

const SCOPE = { org: "acme", user: "alice" };
const EXPIRES = { seconds: "1796083200", nanos: 0 };
const TIERS = ["cheap", "medium", "frontier"];
const MODELS = { cheap: "gpt-4o-mini", medium: "gpt-4o", frontier: "o3" };

const reservation = (id, model) => ({ reservationId: id, model, heldNanos: "1000", expiresAt: EXPIRES, pools: [] });
const decision = (tier, extra = {}) => ({
  chosen: { model: MODELS[tier], provider: "openai", tier, estimatedCostNanos: "500", latency: "LATENCY_CLASS_FAST" },
  fallbacks: [{ model: "o3", provider: "openai", tier: "frontier", estimatedCostNanos: "9000", latency: "LATENCY_CLASS_SLOW" }],
  reason: `tier ${tier}`,
  source: "DECISION_SOURCE_RULE",
  outcome: "POLICY_OUTCOME_ADMITTED",
  ...extra,
});

/** An in-process TollgateService: Route (sampling org "sampled"), Commit, Release, Escalate, Feedback, GetQuality. */
class FakeSidecar {
  requests = [];

  async start() {
    const { TollgateService } = loadProtos();
    this.server = new grpc.Server();
    const handler = (name, answer) => (call, callback) => {
      this.requests.push([name, call.request]);
      answer(call, callback);
    };
    this.server.addService(TollgateService.service, {
      Route: handler("Route", (call, callback) => {
        const sampled = call.request.acceptShadow && call.request.scope.orgId === "sampled";
        callback(null, {
          decision: decision("cheap"),
          reservation: reservation("r1.acme", MODELS.cheap),
          shadow: sampled ? { model: "o3", tier: "frontier", purpose: "reference", reservation: reservation("s1.acme", "o3") } : null,
        });
      }),
      Commit: handler("Commit", (call, callback) =>
        callback(null, { reservationId: call.request.reservationId, chargedNanos: "700", pools: [] }),
      ),
      Release: handler("Release", (call, callback) =>
        callback(null, { reservationId: call.request.reservationId, releasedNanos: "1000", pools: [] }),
      ),
      Escalate: handler("Escalate", (call, callback) => {
        const attempt = Number(call.request.reservationId.match(/^r(\d)/)[1]) + 1;
        if (attempt > 3) {
          callback({ code: Status.OUT_OF_RANGE, details: "escalation 4 is past routing.max_escalations (2)" });
          return;
        }
        const tier = TIERS[attempt - 1];
        callback(null, {
          decision: decision(tier, { source: "DECISION_SOURCE_ESCALATION" }),
          reservation: reservation(`r${attempt}.acme`, MODELS[tier]),
          previousReservationId: call.request.reservationId,
          previousCommit: call.request.usage
            ? { reservationId: call.request.reservationId, chargedNanos: "700", pools: [] }
            : null,
          attempt,
        });
      }),
      Feedback: handler("Feedback", (call, callback) => callback(null, { taskType: "extract", tier: "cheap" })),
      GetQuality: handler("GetQuality", (call, callback) =>
        callback(null, {
          taskTypes: [
            {
              taskType: "extract",
              tiers: [{ tier: "cheap", samples: "12", quality: 0.75, qualityLow: 0.5, qualityHigh: 0.9 }],
              shadowSamples: "30",
              shadowMatch: 0.9,
              shadowMatchLow: 0.8,
              shadowMatchHigh: 0.95,
              guardMinTier: "medium",
              guardSince: EXPIRES,
              escalationCostNanos: "123456789012",
            },
          ],
        }),
      ),
    });
    const port = await new Promise((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    this.target = `127.0.0.1:${port}`;
    return this;
  }

  calls(name) {
    return this.requests.filter(([method]) => method === name).map(([, request]) => request);
  }

  stop() {
    this.server.forceShutdown();
  }
}

describe("the capabilities every client has", () => {
  let fake;
  let client;
  before(async () => {
    fake = await new FakeSidecar().start();
    client = new TollgateClient(fake.target, { timeoutMs: 5000 });
  });
  after(() => {
    client.close();
    fake.stop();
  });

  it("sends the latency class and acceptShadow, and reads latency and the shadow back", async () => {
    const decided = await client.route({ org: "sampled" }, { inputTokens: 10, latency: "fast", acceptShadow: true, reserve: true });
    const sent = fake.calls("Route").at(-1);
    assert.equal(sent.signals.latency, "LATENCY_CLASS_FAST");
    assert.equal(sent.acceptShadow, true);
    assert.equal(decided.latency, "fast");
    assert.equal(decided.fallbacks[0].latency, "slow");
    assert.equal(decided.shadow.model, "o3");
    assert.equal(decided.shadow.purpose, "reference");
    assert.equal(decided.shadow.reservation.reservationId, "s1.acme");
    const plain = await client.route(SCOPE, { inputTokens: 10 });
    assert.equal(plain.shadow, null);
    assert.equal(fake.calls("Route").at(-1).signals.latency, "LATENCY_CLASS_UNSPECIFIED");
    await assert.rejects(client.route(SCOPE, { inputTokens: 10, latency: "instant" }), TypeError);
  });

  it("escalates with the failed attempt's usage and reads the next attempt", async () => {
    const next = await client.escalate("r1.acme", SCOPE, {
      messages: [{ role: "user", content: "again, as JSON" }],
      reason: "invalid_json",
      usage: { inputTokens: 10, outputTokens: 5 },
      needsJson: true,
      latency: "standard",
    });
    const sent = fake.calls("Escalate").at(-1);
    assert.equal(sent.reason, "invalid_json");
    assert.equal(sent.usage.inputTokens, "10");
    assert.equal(sent.signals.needsJson, true);
    assert.equal(sent.signals.latency, "LATENCY_CLASS_STANDARD");
    assert.equal(next.attempt, 2);
    assert.equal(next.previousReservationId, "r1.acme");
    assert.equal(next.previousCommit.chargedNanos, 700n);
    assert.equal(next.decision.tier, "medium");
    assert.equal(next.decision.source, "escalation");
    assert.equal(next.decision.reservation.reservationId, "r2.acme");
    await assert.rejects(client.escalate("r3.acme", SCOPE, { inputTokens: 5 }), EscalationRefusedError);
    await assert.rejects(client.escalate("r1.acme", SCOPE, { inputTokens: 5, usage_: {} }), TypeError);
  });

  it("sends feedback once, checks its score, and reads the quality report", async () => {
    assert.deepEqual({ ...(await client.feedback("r1.acme", 0.5)) }, { taskType: "extract", tier: "cheap" });
    await client.feedback("r1.acme", false, "human_review");
    const [first, second] = fake.calls("Feedback").slice(-2);
    assert.equal(first.source, "FEEDBACK_SOURCE_USER");
    assert.equal(second.score, 0);
    assert.equal(second.source, "FEEDBACK_SOURCE_HUMAN_REVIEW");
    await assert.rejects(client.feedback("r1.acme", 1.5), RangeError);
    await assert.rejects(client.feedback("r1.acme", 1, "robot"), TypeError);
    const [extract] = await client.getQuality();
    assert.equal(extract.taskType, "extract");
    assert.equal(extract.tiers[0].samples, 12);
    assert.equal(extract.shadowSamples, 30);
    assert.equal(extract.guardMinTier, "medium");
    assert.ok(extract.guardSince instanceof Date);
    assert.equal(extract.escalationCostNanos, 123456789012n);
  });

  it("callWithShadow commits both calls and reports the comparison as shadow feedback", async () => {
    const before = fake.requests.length;
    const decided = await client.route({ org: "sampled" }, { inputTokens: 10, acceptShadow: true, reserve: true });
    const models = [];
    const { response, comparison } = await callWithShadow(
      client,
      decided,
      async (model) => {
        models.push(model);
        return { text: model === "o3" ? '{"b": 1, "a": [1, 2]}' : '{"a": [1, 2], "b": 1}', usage: { inputTokens: 10 } };
      },
      { usage: (r) => r.usage, answer: (r) => r.text },
    );
    assert.equal(response.text, '{"a": [1, 2], "b": 1}');
    assert.equal(await comparison, 1);
    assert.deepEqual(models, ["gpt-4o-mini", "o3"]);
    const sent = fake.requests.slice(before).map(([method, request]) => [method, request.reservationId ?? ""]);
    assert.deepEqual(sent, [["Route", ""], ["Commit", "r1.acme"], ["Commit", "s1.acme"], ["Feedback", "r1.acme"]]);
    assert.equal(fake.calls("Feedback").at(-1).source, "FEEDBACK_SOURCE_SHADOW_COMPARISON");
  });

  it("callWithShadow skips an unsampled request and releases a failed shadow call", async () => {
    const plain = await client.route(SCOPE, { inputTokens: 10, reserve: true });
    const unsampled = await callWithShadow(client, plain, async () => "ok", { usage: () => ({ inputTokens: 1 }) });
    assert.deepEqual(unsampled, { response: "ok", comparison: null });
    const sampled = await client.route({ org: "sampled" }, { inputTokens: 10, acceptShadow: true, reserve: true });
    const failing = await callWithShadow(
      client,
      sampled,
      async (model) => {
        if (model === "o3") throw new Error("provider down");
        return "ok";
      },
      { usage: () => ({ inputTokens: 1 }) },
    );
    assert.equal(await failing.comparison, null);
    assert.equal(fake.calls("Release").at(-1).reservationId, "s1.acme");
  });

  it("callWithEscalation escalates while the check fails and stops where the sidecar refuses", async () => {
    const seen = [];
    const cascade = await callWithEscalation(
      client,
      SCOPE,
      async (decided) => {
        seen.push(decided.tier);
        return { ok: decided.tier === "medium", usage: { inputTokens: 10, outputTokens: 2 } };
      },
      { messages: [{ role: "user", content: "JSON please" }], taskType: "extract", check: (r) => (r.ok ? "" : "invalid_json"), usage: (r) => r.usage },
    );
    assert.deepEqual(seen, ["cheap", "medium"]);
    assert.equal(cascade.passed, true);
    assert.deepEqual(cascade.attempts.map((a) => [a.tier, a.reservationId, a.problem]), [
      ["cheap", "r1.acme", "invalid_json"],
      ["medium", "r2.acme", ""],
    ]);
    assert.equal(cascade.chargedNanos, 1400n);
    assert.equal(fake.calls("Escalate").at(-1).reason, "invalid_json");

    const never = await callWithEscalation(client, SCOPE, async () => ({ usage: { inputTokens: 1 } }), {
      inputTokens: 10,
      check: () => "wrong",
      usage: (r) => r.usage,
    });
    assert.equal(never.passed, false);
    assert.deepEqual(never.attempts.map((a) => a.tier), ["cheap", "medium", "frontier"]);
    assert.equal(fake.calls("Commit").at(-1).reservationId, "r3.acme");
  });

  it("callWithEscalation releases the reservation of a call that throws", async () => {
    const boom = new Error("provider down");
    await assert.rejects(
      callWithEscalation(client, SCOPE, async () => { throw boom; }, { inputTokens: 1, check: () => "", usage: () => ({ inputTokens: 1 }) }),
      (error) => error === boom,
    );
    assert.equal(fake.calls("Release").at(-1).reservationId, "r1.acme");
    await assert.rejects(callWithEscalation(client, SCOPE, async () => 1, { inputTokens: 1 }), TypeError);
  });
});

describe("defaultJudge", () => {
  it("compares JSON by value, else text by words", () => {
    assert.equal(defaultJudge('{"a": 1, "b": [1, {"c": 2}]}', '{"b":[1,{"c":2}],"a":1}'), 1);
    assert.equal(defaultJudge('{"a": 1}', '{"a": 2}'), 0);
    assert.equal(defaultJudge("  the  answer\n", "the answer"), 1);
    assert.equal(defaultJudge("yes", "no"), 0);
    assert.equal(defaultJudge(42, "42"), 1);
  });
});
