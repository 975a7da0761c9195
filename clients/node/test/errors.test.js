// Errors from failed calls, decoded from handcrafted trailers: the bytes below
// are written by hand with the protobuf wire format, not by the client's own code.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Metadata } from "@grpc/grpc-js";

import {
  BUDGET_EXCEEDED_TRAILER,
  BudgetExceededError,
  decodeBudgetExceeded,
  fromGrpcError,
  InvalidRequestError,
  ReservationEndedError,
  ReservationNotFoundError,
  Status,
  STATUS_DETAILS_TRAILER,
  TollgateError,
  UnavailableError,
} from "../src/index.js";

// --- a minimal protobuf writer ------------------------------------------------

function varint(value) {
  let n = BigInt(value);
  const out = [];
  do {
    let byte = Number(n & 0x7fn);
    n >>= 7n;
    if (n > 0n) byte |= 0x80;
    out.push(byte);
  } while (n > 0n);
  return out;
}
const intField = (number, value) => [...varint(number * 8), ...varint(value)];
const bytesField = (number, bytes) => [...varint(number * 8 + 2), ...varint(bytes.length), ...bytes];
const stringField = (number, text) => bytesField(number, [...Buffer.from(text, "utf8")]);

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

/** google.rpc.Status: code=1, message=2, details=3 (google.protobuf.Any: type_url=1, value=2). */
function statusDetails(code, message, anys) {
  return Buffer.from([
    ...intField(1, code),
    ...stringField(2, message),
    ...anys.flatMap(([typeUrl, value]) => bytesField(3, [...stringField(1, typeUrl), ...bytesField(2, [...value])])),
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
    ["no trailer", {}],
    ["damaged trailers", { [BUDGET_EXCEEDED_TRAILER]: Buffer.from([0xff]), [STATUS_DETAILS_TRAILER]: Buffer.from([0x1a, 0x09]) }],
    ["status details without a BudgetExceeded", { [STATUS_DETAILS_TRAILER]: statusDetails(8, "quota", []) }],
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
});

describe("other statuses", () => {
  const table = [
    [Status.INVALID_ARGUMENT, InvalidRequestError],
    [Status.NOT_FOUND, ReservationNotFoundError],
    [Status.FAILED_PRECONDITION, ReservationEndedError],
    [Status.UNAVAILABLE, UnavailableError],
    [Status.DEADLINE_EXCEEDED, UnavailableError],
    [Status.INTERNAL, TollgateError],
    [Status.UNAUTHENTICATED, TollgateError],
    [Status.CANCELLED, TollgateError],
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
