// The errors the client raises for a failed RPC.
//
//   TollgateError                any other status (INTERNAL, UNAUTHENTICATED, CANCELLED, ...)
//   ├── BudgetExceededError      RESOURCE_EXHAUSTED: a budget pool refused the hold
//   ├── InvalidRequestError      INVALID_ARGUMENT: fix the request
//   ├── ReservationNotFoundError NOT_FOUND: no reservation with that id
//   ├── ReservationEndedError    FAILED_PRECONDITION: already committed, released or expired,
//   │                            or a repeated commit carried different figures
//   └── UnavailableError         UNAVAILABLE or DEADLINE_EXCEEDED: the sidecar did not answer
//
// Arguments the client can check itself are refused with a TypeError or
// RangeError before anything is sent.

import { status as Status } from "@grpc/grpc-js";
import protobuf from "protobufjs";

import { loadProtos, CONVERSION } from "./proto.js";
import { date, enumName, nanos } from "./wire.js";

/** Trailing-metadata key under which the sidecar sends a serialized `tollgate.v1.BudgetExceeded`. */
export const BUDGET_EXCEEDED_TRAILER = "tollgate-budget-exceeded-bin";

/** The standard trailer that carries a serialized `google.rpc.Status` with its details. */
export const STATUS_DETAILS_TRAILER = "grpc-status-details-bin";

const BUDGET_EXCEEDED_TYPE_URL_SUFFIX = "/tollgate.v1.BudgetExceeded";

/** @type {Record<number, string>} */
const CODE_NAMES = Object.fromEntries(Object.entries(Status).map(([name, code]) => [code, name]));

/**
 * Root of the errors raised for an RPC the sidecar refused or could not answer.
 *
 * `code` is the numeric gRPC status (compare with `Status.RESOURCE_EXHAUSTED`),
 * `codeName` its name, `details` the sidecar's message and `metadata` the
 * trailing metadata of the call (a grpc-js `Metadata`, or null), all of the
 * last attempt. `attempts` is how many attempts the client made (see its
 * `retry` option); `idempotencyKey` is the key a reserve or a reserving route
 * was sent with, the caller's or the generated one ("" for other calls): a
 * later retry of the same call with that key cannot hold twice.
 */
export class TollgateError extends Error {
  /**
   * @param {number} code
   * @param {string} [details]
   * @param {{ metadata?: import("@grpc/grpc-js").Metadata | null, cause?: unknown }} [options]
   */
  constructor(code, details = "", options = {}) {
    const codeName = CODE_NAMES[code] ?? `STATUS_${code}`;
    super(details ? `${codeName}: ${details}` : codeName, "cause" in options ? { cause: options.cause } : undefined);
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.codeName = codeName;
    /** @type {string} */
    this.details = details;
    /** @type {import("@grpc/grpc-js").Metadata | null} */
    this.metadata = options.metadata ?? null;
    /** @type {number} */
    this.attempts = 1;
    /** @type {string} */
    this.idempotencyKey = "";
  }
}

/**
 * A budget pool in the scope cannot admit the call (RESOURCE_EXHAUSTED).
 *
 * `poolId` (e.g. "user:acme/alice"), `level`, `policy` and `limit` ("cost",
 * "calls" or "tokens") say which pool refused; `requestedNanos` and
 * `remainingNanos` (BigInt, in the unit of the limit: nano-dollars for cost,
 * else calls or tokens) by how much; `resetsAt` when the pool's window resets
 * (null if it never does). They are empty ("", 0n, null) when the status came
 * without the sidecar's BudgetExceeded detail.
 */
export class BudgetExceededError extends TollgateError {
  /**
   * @param {number} code
   * @param {string} [details]
   * @param {Partial<import("../index.js").BudgetRefusal>} [refusal]
   * @param {{ metadata?: import("@grpc/grpc-js").Metadata | null, cause?: unknown }} [options]
   */
  constructor(code, details = "", refusal = {}, options = {}) {
    super(code, details, options);
    /** @type {string} */
    this.poolId = refusal.poolId ?? "";
    /** @type {string} */
    this.level = refusal.level ?? "";
    /** @type {string} */
    this.policy = refusal.policy ?? "";
    /** @type {string} */
    this.limit = refusal.limit ?? "";
    /** @type {bigint} */
    this.requestedNanos = refusal.requestedNanos ?? 0n;
    /** @type {bigint} */
    this.remainingNanos = refusal.remainingNanos ?? 0n;
    /** @type {Date | null} */
    this.resetsAt = refusal.resetsAt ?? null;
  }
}

/** The sidecar rejected the request as malformed or out of range (INVALID_ARGUMENT). */
export class InvalidRequestError extends TollgateError {}

/** No reservation has this id (NOT_FOUND). */
export class ReservationNotFoundError extends TollgateError {}

/**
 * The reservation was already committed, released or expired (FAILED_PRECONDITION).
 * Also raised when a repeated commit carries different figures than the first.
 */
export class ReservationEndedError extends TollgateError {}

/**
 * The sidecar could not be reached or did not answer in time (UNAVAILABLE,
 * DEADLINE_EXCEEDED), after the client's retries. Every call that moves money
 * is idempotent by reservation id or idempotency key, so it may be sent again
 * later (a reserve with `idempotencyKey`).
 */
export class UnavailableError extends TollgateError {}

for (const cls of [
  TollgateError,
  BudgetExceededError,
  InvalidRequestError,
  ReservationNotFoundError,
  ReservationEndedError,
  UnavailableError,
]) {
  Object.defineProperty(cls.prototype, "name", { value: cls.name, writable: true, configurable: true });
}

/** The class of each status but RESOURCE_EXHAUSTED, which is a BudgetExceededError. */
/** @type {Map<number, typeof TollgateError>} */
const BY_CODE = new Map([
  [Status.INVALID_ARGUMENT, InvalidRequestError],
  [Status.NOT_FOUND, ReservationNotFoundError],
  [Status.FAILED_PRECONDITION, ReservationEndedError],
  [Status.UNAVAILABLE, UnavailableError],
  [Status.DEADLINE_EXCEEDED, UnavailableError],
]);

/**
 * The client error for a failed grpc-js call (a `ServiceError`: `code`,
 * `details`, `metadata`). The original error becomes the `cause`.
 * @param {any} error
 * @param {{ protoPath?: string }} [options] the proto to decode a refusal with
 * @returns {TollgateError}
 */
export function fromGrpcError(error, options = {}) {
  const code = typeof error?.code === "number" ? error.code : Status.UNKNOWN;
  const details = typeof error?.details === "string" ? error.details : String(error?.message ?? "");
  const metadata = typeof error?.metadata?.get === "function" ? error.metadata : null;
  if (code === Status.RESOURCE_EXHAUSTED) {
    const refusal = metadata === null ? {} : decodeRefusal(metadata, options.protoPath);
    return new BudgetExceededError(code, details, refusal, { metadata, cause: error });
  }
  const cls = BY_CODE.get(code) ?? TollgateError;
  return new cls(code, details, { metadata, cause: error });
}

/**
 * A serialized `tollgate.v1.BudgetExceeded` (the value of the
 * `tollgate-budget-exceeded-bin` trailer) as the fields of a BudgetExceededError.
 * @param {Uint8Array} bytes
 * @param {{ protoPath?: string }} [options]
 * @returns {import("../index.js").BudgetRefusal}
 */
export function decodeBudgetExceeded(bytes, options = {}) {
  const { BudgetExceeded } = loadProtos(options.protoPath);
  const refusal = /** @type {any} */ (BudgetExceeded.toObject(BudgetExceeded.decode(bytes), CONVERSION));
  return Object.freeze({
    poolId: refusal.poolId,
    level: enumName("POOL_LEVEL_", refusal.level),
    policy: enumName("POLICY_", refusal.policy),
    limit: refusal.limit,
    requestedNanos: nanos(refusal.requestedNanos),
    remainingNanos: nanos(refusal.remainingNanos),
    resetsAt: date(refusal.resetsAt),
  });
}

// google.rpc.Status and google.protobuf.Any, the envelope of grpc-status-details-bin.
const Envelope = protobuf.Root.fromJSON({
  nested: {
    Any: { fields: { typeUrl: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } },
    Status: {
      fields: {
        code: { type: "int32", id: 1 },
        message: { type: "string", id: 2 },
        details: { rule: "repeated", type: "Any", id: 3 },
      },
    },
  },
}).lookupType("Status");

/**
 * The refusal from the sidecar's own trailer, else from the standard status
 * details; empty if neither is there or readable. The status itself is what
 * matters, so a damaged trailer only loses the detail.
 * @param {import("@grpc/grpc-js").Metadata} metadata
 * @param {string | undefined} protoPath
 */
function decodeRefusal(metadata, protoPath) {
  for (const value of metadata.get(BUDGET_EXCEEDED_TRAILER)) {
    if (typeof value !== "string") {
      try {
        return decodeBudgetExceeded(value, { protoPath });
      } catch {
        break;
      }
    }
  }
  for (const value of metadata.get(STATUS_DETAILS_TRAILER)) {
    if (typeof value === "string") continue;
    try {
      const status = /** @type {any} */ (Envelope.decode(value));
      const detail = status.details.find((/** @type {any} */ any) =>
        any.typeUrl.endsWith(BUDGET_EXCEEDED_TYPE_URL_SUFFIX),
      );
      if (detail) return decodeBudgetExceeded(detail.value, { protoPath });
    } catch {
      // As above: keep the status, lose the detail.
    }
  }
  return {};
}
