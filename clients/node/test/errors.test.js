// Errors from failed calls, decoded from handcrafted trailers: the bytes are
// written by hand with the protobuf wire format (protowire.js), not by the
// client's own code. The class comes from the sidecar's ErrorInfo reason, else
// from the status code.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Metadata } from "@grpc/grpc-js";

import {
  BUDGET_EXCEEDED_TRAILER,
  BudgetExceededError,
  decodeBudgetExceeded,
  EscalationRefusedError,
  fromGrpcError,
  IdempotencyConflictError,
  InvalidRequestError,
  RateLimitedError,
  ReservationEndedError,
  ReservationNotFoundError,
  Status,
  STATUS_DETAILS_TRAILER,
  TollgateError,
  UnavailableError,
} from "../src/index.js";

import { bytesField, errorInfo, errorInfoAny, intField, statusDetails, stringField } from "./protowire.js";

const RESETS_AT_MS = Date.UTC(2026, 11, 1); // 2026-12-01T00:00:00Z

/** tollgate.v1.BudgetExceeded: pool_id=1, level=2, policy=3, requested=4, remaining=5, resets_at=6, limit=7. */
function budgetExceeded({
  poolId = "org:tiny",
  level = 5, // POOL_LEVEL_ORG
  policy = 1, // POLICY_HARD
  requested = 162_045_000n,
  remaining = 800_000n,
  resetsAt = { seconds: RESETS_AT_MS / 1000, nanos: 250_000_000 },
  limit = "cost",
} = {}) {
  return Buffer.from([
    ...stringField(1, poolId),
    ...(level ? intField(2, level) : []),
    ...(policy ? intField(3, policy) : []),
    ...intField(4, requested),
    ...intField(5, remaining),
    ...(resetsAt ? bytesField(6, [...intField(1, resetsAt.seconds), ...intField(2, resetsAt.nanos)]) : []),
    ...stringField(7, limit),
  ]);
}

/** What grpc-js hands a callback for a failed call. */
function serviceError(code, details, trailers = {}) {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(trailers)) metadata.set(key, value);
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata });
}

const REFUSAL = "budget pool org:tiny (hard) refused: needs 162045000 nano-USD but 800000 remain";

// --- tests --------------------------------------------------------------------

describe("a RESOURCE_EXHAUSTED status", () => {
  it("becomes a BudgetExceededError with the sidecar's trailer decoded", () => {
    const cause = serviceError(Status.RESOURCE_EXHAUSTED, REFUSAL, { [BUDGET_EXCEEDED_TRAILER]: budgetExceeded() });
    const error = fromGrpcError(cause);
    assert.ok(error instanceof BudgetExceededError && error instanceof TollgateError && error instanceof Error);
    assert.equal(error.name, "BudgetExceededError");
    assert.equal(error.code, Status.RESOURCE_EXHAUSTED);
    assert.equal(error.codeName, "RESOURCE_EXHAUSTED");
    assert.equal(error.details, REFUSAL);
    assert.equal(error.message, `RESOURCE_EXHAUSTED: ${REFUSAL}`);
    assert.equal(error.cause, cause);
    assert.equal(error.metadata, cause.metadata);
    assert.equal(error.poolId, "org:tiny");
    assert.equal(error.level, "org");
    assert.equal(error.policy, "hard");
    assert.equal(error.limit, "cost");
    assert.equal(error.requestedNanos, 162_045_000n);
    assert.equal(error.remainingNanos, 800_000n);
    assert.ok(error.resetsAt instanceof Date);
    assert.equal(error.resetsAt.getTime(), RESETS_AT_MS + 250);
  });

  it("keeps every digit of a 64-bit amount", () => {
    const trailer = budgetExceeded({ requested: (1n << 63n) - 1n, remaining: (1n << 53n) + 1n });
    const error = fromGrpcError(serviceError(Status.RESOURCE_EXHAUSTED, REFUSAL, { [BUDGET_EXCEEDED_TRAILER]: trailer }));
    assert.equal(error.requestedNanos, 9_223_372_036_854_775_807n);
    assert.equal(error.remainingNanos, 9_007_199_254_740_993n);
  });

  it("reads a pool without a window, a user pool and a calls limit", () => {
    const trailer = budgetExceeded({ poolId: "user:acme/alice", level: 3, policy: 2, limit: "calls", resetsAt: null });
    const error = fromGrpcError(serviceError(Status.RESOURCE_EXHAUSTED, "", { [BUDGET_EXCEEDED_TRAILER]: trailer }));
    assert.deepEqual(
      [error.poolId, error.level, error.policy, error.limit, error.resetsAt, error.message],
      ["user:acme/alice", "user", "soft", "calls", null, "RESOURCE_EXHAUSTED"],
    );
  });

  it("names unset enums as empty and enums it does not know by number", () => {
    const unset = decodeBudgetExceeded(budgetExceeded({ level: 0, policy: 0 }));
    assert.deepEqual([unset.level, unset.policy], ["", ""]);
    const newer = decodeBudgetExceeded(budgetExceeded({ level: 9, policy: 7 }));
    assert.deepEqual([newer.level, newer.policy], ["9", "7"]);
  });

  it("falls back to the BudgetExceeded inside grpc-status-details-bin", () => {
    const status = statusDetails(Status.RESOURCE_EXHAUSTED, REFUSAL, [
      ["type.googleapis.com/google.rpc.DebugInfo", Buffer.from([0x0a, 0x01, 0x78])],
      ["type.googleapis.com/tollgate.v1.BudgetExceeded", budgetExceeded({ poolId: "team:acme/search" })],
    ]);
    const error = fromGrpcError(serviceError(Status.RESOURCE_EXHAUSTED, REFUSAL, { [STATUS_DETAILS_TRAILER]: status }));
    assert.equal(error.poolId, "team:acme/search");
    assert.equal(error.requestedNanos, 162_045_000n);
  });

  it("falls back to the status details when the sidecar's trailer is damaged", () => {
    const status = statusDetails(Status.RESOURCE_EXHAUSTED, REFUSAL, [
      ["type.googleapis.com/tollgate.v1.BudgetExceeded", budgetExceeded({ poolId: "org:backup" })],
    ]);
    const error = fromGrpcError(
      serviceError(Status.RESOURCE_EXHAUSTED, REFUSAL, {
        [BUDGET_EXCEEDED_TRAILER]: Buffer.from([0x20, 0xff]), // a varint cut short
        [STATUS_DETAILS_TRAILER]: status,
      }),
    );
    assert.equal(error.poolId, "org:backup");
  });

  for (const [what, trailers] of [
    ["a damaged trailer of its own", { [BUDGET_EXCEEDED_TRAILER]: Buffer.from([0xff]), [STATUS_DETAILS_TRAILER]: Buffer.from([0x1a, 0x09]) }],
    ["the reason alone", { [STATUS_DETAILS_TRAILER]: statusDetails(8, "quota", [errorInfoAny("BUDGET_EXCEEDED")]) }],
  ]) {
    it(`with ${what} is still a BudgetExceededError, with empty fields`, () => {
      const error = fromGrpcError(serviceError(Status.RESOURCE_EXHAUSTED, "quota", trailers));
      assert.ok(error instanceof BudgetExceededError);
      assert.equal(error.details, "quota");
      assert.deepEqual(
        [error.poolId, error.level, error.policy, error.limit, error.requestedNanos, error.remainingNanos, error.resetsAt],
        ["", "", "", "", 0n, 0n, null],
      );
    });
  }

  for (const [what, trailers] of [
    ["no trailer (gRPC's own refusal of a message too large)", {}],
    ["status details without a BudgetExceeded or a reason", { [STATUS_DETAILS_TRAILER]: statusDetails(8, "quota", []) }],
    ["a damaged status trailer", { [STATUS_DETAILS_TRAILER]: Buffer.from([0x1a, 0x09]) }],
  ]) {
    it(`with ${what} is a plain TollgateError, not a budget refusal`, () => {
      const error = fromGrpcError(serviceError(Status.RESOURCE_EXHAUSTED, "quota", trailers));
      assert.equal(error.constructor, TollgateError);
      assert.equal(error.code, Status.RESOURCE_EXHAUSTED);
      assert.equal(error.reason, "");
    });
  }
});

describe("a status with the sidecar's reason", () => {
  // Every reason the sidecar sends, with its status code and the class it becomes.
  const table = [
    ["INVALID_REQUEST", Status.INVALID_ARGUMENT, InvalidRequestError],
    ["BUDGET_EXCEEDED", Status.RESOURCE_EXHAUSTED, BudgetExceededError],
    ["RATE_LIMITED", Status.RESOURCE_EXHAUSTED, RateLimitedError],
    ["RESERVATION_NOT_FOUND", Status.NOT_FOUND, ReservationNotFoundError],
    ["RESERVATION_ENDED", Status.FAILED_PRECONDITION, ReservationEndedError],
    ["IDEMPOTENCY_CONFLICT", Status.FAILED_PRECONDITION, IdempotencyConflictError],
    ["ESCALATION_REFUSED", Status.OUT_OF_RANGE, EscalationRefusedError],
    ["STORE_UNAVAILABLE", Status.UNAVAILABLE, UnavailableError],
    ["CALLER_GONE", Status.DEADLINE_EXCEEDED, UnavailableError],
    ["UNAUTHENTICATED", Status.UNAUTHENTICATED, TollgateError],
    ["PERMISSION_DENIED", Status.PERMISSION_DENIED, TollgateError],
    ["INTERNAL", Status.INTERNAL, TollgateError],
  ];
  for (const [reason, code, cls] of table) {
    it(`maps ${reason} to ${cls.name}`, () => {
      const status = statusDetails(code, "refused", [errorInfoAny(reason)]);
      const error = fromGrpcError(serviceError(code, "refused", { [STATUS_DETAILS_TRAILER]: status }));
      assert.equal(error.constructor, cls);
      assert.equal(error.name, cls.name);
      assert.ok(error instanceof TollgateError);
      assert.deepEqual([error.code, error.reason, error.details], [code, reason, "refused"]);
    });
  }

  it("tells a rate-limited caller from a budget refusal", () => {
    const details = "caller app is over its rate of 1 calls/s; retry in 830 ms";
    const status = statusDetails(Status.RESOURCE_EXHAUSTED, details, [errorInfoAny("RATE_LIMITED")]);
    const error = fromGrpcError(serviceError(Status.RESOURCE_EXHAUSTED, details, { [STATUS_DETAILS_TRAILER]: status }));
    assert.ok(error instanceof RateLimitedError && !(error instanceof BudgetExceededError));
    assert.equal(error.message, `RESOURCE_EXHAUSTED: ${details}`);
  });

  it("decodes a budget refusal as the sidecar sends it: its detail first, then the reason", () => {
    const status = statusDetails(Status.RESOURCE_EXHAUSTED, REFUSAL, [
      ["type.googleapis.com/tollgate.v1.BudgetExceeded", budgetExceeded({ poolId: "user:acme/alice", level: 3 })],
      errorInfoAny("BUDGET_EXCEEDED"),
    ]);
    const error = fromGrpcError(serviceError(Status.RESOURCE_EXHAUSTED, REFUSAL, { [STATUS_DETAILS_TRAILER]: status }));
    assert.ok(error instanceof BudgetExceededError);
    assert.deepEqual([error.reason, error.poolId, error.level, error.limit], ["BUDGET_EXCEEDED", "user:acme/alice", "user", "cost"]);
    assert.equal(error.requestedNanos, 162_045_000n);
  });

  it("keeps an idempotency conflict a ReservationEndedError", () => {
    const status = statusDetails(Status.FAILED_PRECONDITION, "other usage", [errorInfoAny("IDEMPOTENCY_CONFLICT")]);
    const error = fromGrpcError(serviceError(Status.FAILED_PRECONDITION, "other usage", { [STATUS_DETAILS_TRAILER]: status }));
    assert.ok(error instanceof IdempotencyConflictError && error instanceof ReservationEndedError);
  });

  it("reads the reason past other details, and with ErrorInfo metadata", () => {
    const info = ["type.googleapis.com/google.rpc.ErrorInfo", errorInfo("RATE_LIMITED", "tollgate.dev", { caller: "app" })];
    const status = statusDetails(Status.RESOURCE_EXHAUSTED, "", [
      ["type.googleapis.com/google.rpc.DebugInfo", Buffer.from([0x0a, 0x01, 0x78])],
      info,
    ]);
    const error = fromGrpcError(serviceError(Status.RESOURCE_EXHAUSTED, "", { [STATUS_DETAILS_TRAILER]: status }));
    assert.equal(error.constructor, RateLimitedError);
  });

  for (const [what, anys, code, cls, reason] of [
    ["an ErrorInfo of another domain", [errorInfoAny("RATE_LIMITED", "example.com")], Status.RESOURCE_EXHAUSTED, TollgateError, ""],
    ["a damaged ErrorInfo", [["type.googleapis.com/google.rpc.ErrorInfo", Buffer.from([0x0a, 0x0c, 0x52])]], Status.RESOURCE_EXHAUSTED, TollgateError, ""],
    ["a reason this client does not know", [errorInfoAny("SOMETHING_NEW")], Status.NOT_FOUND, ReservationNotFoundError, "SOMETHING_NEW"],
    ["a reason this client does not know, on RESOURCE_EXHAUSTED", [errorInfoAny("SOMETHING_NEW")], Status.RESOURCE_EXHAUSTED, TollgateError, "SOMETHING_NEW"],
  ]) {
    it(`falls back to the code with ${what}`, () => {
      const status = statusDetails(code, "no", anys);
      const error = fromGrpcError(serviceError(code, "no", { [STATUS_DETAILS_TRAILER]: status }));
      assert.equal(error.constructor, cls);
      assert.equal(error.reason, reason);
    });
  }
});

describe("other statuses", () => {
  const table = [
    [Status.INVALID_ARGUMENT, InvalidRequestError],
    [Status.NOT_FOUND, ReservationNotFoundError],
    [Status.FAILED_PRECONDITION, ReservationEndedError],
    [Status.UNAVAILABLE, UnavailableError],
    [Status.DEADLINE_EXCEEDED, UnavailableError],
    [Status.OUT_OF_RANGE, EscalationRefusedError],
    [Status.INTERNAL, TollgateError],
    [Status.UNAUTHENTICATED, TollgateError],
    [Status.CANCELLED, TollgateError],
    [Status.RESOURCE_EXHAUSTED, TollgateError],
  ];
  for (const [code, cls] of table) {
    it(`map status ${code} to ${cls.name}`, () => {
      const error = fromGrpcError(serviceError(code, "what happened"));
      assert.equal(error.constructor, cls);
      assert.ok(error instanceof TollgateError);
      assert.equal(error.name, cls.name);
      assert.equal(error.code, code);
      assert.equal(error.details, "what happened");
      assert.match(error.message, /^[A-Z_]+: what happened$/);
      assert.equal(error.reason, "");
    });
  }

  it("an error without a status becomes an UNKNOWN TollgateError", () => {
    const error = fromGrpcError(new Error("socket hang up"));
    assert.equal(error.constructor, TollgateError);
    assert.equal(error.code, Status.UNKNOWN);
    assert.equal(error.details, "socket hang up");
    assert.equal(error.metadata, null);
  });
});
