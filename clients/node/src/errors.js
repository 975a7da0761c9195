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

/** The `ErrorInfo.domain` of the sidecar's errors; an ErrorInfo of another domain is not read. */
export const ERROR_DOMAIN = "tollgate.dev";

const BUDGET_EXCEEDED_TYPE = "tollgate.v1.BudgetExceeded";
const ERROR_INFO_TYPE = "google.rpc.ErrorInfo";

/** @type {Record<number, string>} */
const CODE_NAMES = Object.fromEntries(Object.entries(Status).map(([name, code]) => [code, name]));

/**
 * Root of the errors raised for an RPC the sidecar refused or could not answer.
 *
 * `code` is the numeric gRPC status (compare with `Status.RESOURCE_EXHAUSTED`),
 * `codeName` its name, `details` the sidecar's message, `reason` the
 * sidecar's ErrorInfo reason (such as "RATE_LIMITED"; "" when the status
 * carried none: an older sidecar, or an error of gRPC itself) and `metadata`
 * the trailing metadata of the call (a grpc-js `Metadata`, or null), all of
 * the last attempt. `attempts` is how many attempts the client made (see its
 * `retry` option); `idempotencyKey` is the key a reserve or a reserving route
 * was sent with, the caller's or the generated one ("" for other calls): a
 * later retry of the same call with that key cannot hold twice.
 */
export class TollgateError extends Error {
  /**
   * @param {number} code
   * @param {string} [details]
   * @param {import("../index.js").TollgateErrorOptions} [options]
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
    /** @type {string} */
    this.reason = options.reason ?? "";
    /** @type {import("@grpc/grpc-js").Metadata | null} */
    this.metadata = options.metadata ?? null;
    /** @type {number} */
    this.attempts = 1;
    /** @type {string} */
    this.idempotencyKey = "";
  }
}

/**
 * A budget pool in the scope cannot admit the call (BUDGET_EXCEEDED, RESOURCE_EXHAUSTED).
 *
 * `poolId` (e.g. "user:acme/alice"), `level`, `policy` and `limit` ("cost",
 * "calls", "tokens" or "open") say which pool refused; `requestedNanos` and
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
   * @param {import("../index.js").TollgateErrorOptions} [options]
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

/**
 * The caller is over the request rate configured for it (RATE_LIMITED,
 * RESOURCE_EXHAUSTED). Nothing was held or counted against a budget; the
 * sidecar's message says when to try again. Not a BudgetExceededError, and
 * not retried by the client.
 */
export class RateLimitedError extends TollgateError {}

/** The sidecar rejected the request as malformed or out of range (INVALID_REQUEST, INVALID_ARGUMENT). */
export class InvalidRequestError extends TollgateError {}

/** No reservation has this id (RESERVATION_NOT_FOUND, NOT_FOUND). */
export class ReservationNotFoundError extends TollgateError {}

/**
 * The reservation was already committed, released or expired (RESERVATION_ENDED,
 * FAILED_PRECONDITION). From a sidecar that sends no reason, also a repeat that
 * carried other figures (now an IdempotencyConflictError).
 */
export class ReservationEndedError extends TollgateError {}

/**
 * A repeat carried different figures than the first (IDEMPOTENCY_CONFLICT,
 * FAILED_PRECONDITION): a commit of a committed reservation with other usage,
 * or a reserve reusing an idempotency key for another request. A
 * ReservationEndedError, as a sidecar without reasons reported it.
 */
export class IdempotencyConflictError extends ReservationEndedError {}

/** No escalation is left: the depth limit or the top tier is reached (ESCALATION_REFUSED, OUT_OF_RANGE). */
export class EscalationRefusedError extends TollgateError {}

/**
 * The sidecar could not be reached, did not answer in time (UNAVAILABLE,
 * DEADLINE_EXCEEDED), could not reach its budget store (STORE_UNAVAILABLE) or
 * saw the call's deadline pass and undid what it held (CALLER_GONE), after
 * the client's retries. Every call that moves money is idempotent by
 * reservation id or idempotency key, so it may be sent again later (a reserve
 * with `idempotencyKey`).
 */
export class UnavailableError extends TollgateError {}

for (const cls of [
  TollgateError,
  BudgetExceededError,
  RateLimitedError,
  InvalidRequestError,
  ReservationNotFoundError,
  ReservationEndedError,
  IdempotencyConflictError,
  EscalationRefusedError,
  UnavailableError,
]) {
  Object.defineProperty(cls.prototype, "name", { value: cls.name, writable: true, configurable: true });
}

/** The reason of a budget refusal, a BudgetExceededError. */
const BUDGET_EXCEEDED = "BUDGET_EXCEEDED";

/**
 * The class of each other reason the sidecar sends.
 * @type {Map<string, typeof TollgateError>}
 */
const BY_REASON = new Map([
  ["INVALID_REQUEST", InvalidRequestError],
  ["RATE_LIMITED", RateLimitedError],
  ["RESERVATION_NOT_FOUND", ReservationNotFoundError],
  ["RESERVATION_ENDED", ReservationEndedError],
  ["IDEMPOTENCY_CONFLICT", IdempotencyConflictError],
  ["ESCALATION_REFUSED", EscalationRefusedError],
  ["STORE_UNAVAILABLE", UnavailableError],
  ["CALLER_GONE", UnavailableError],
  ["UNAUTHENTICATED", TollgateError],
  ["PERMISSION_DENIED", TollgateError],
  ["INTERNAL", TollgateError],
]);

/**
 * The class of a status without a reason. RESOURCE_EXHAUSTED is not here: it
 * is a budget refusal only with the refusal's detail.
 * @type {Map<number, typeof TollgateError>}
 */
const BY_CODE = new Map([
  [Status.INVALID_ARGUMENT, InvalidRequestError],
  [Status.NOT_FOUND, ReservationNotFoundError],
  [Status.FAILED_PRECONDITION, ReservationEndedError],
  [Status.OUT_OF_RANGE, EscalationRefusedError],
  [Status.UNAVAILABLE, UnavailableError],
  [Status.DEADLINE_EXCEEDED, UnavailableError],
]);

/**
 * The client error for a failed grpc-js call (a `ServiceError`: `code`,
 * `details`, `metadata`). The class comes from the ErrorInfo reason of domain
 * "tollgate.dev" when the status carries one the client knows, else from the
 * status code. The original error becomes the `cause`.
 * @param {any} error
 * @param {{ protoPath?: string }} [options] the proto to decode a refusal with
 * @returns {TollgateError}
 */
export function fromGrpcError(error, options = {}) {
  const code = typeof error?.code === "number" ? error.code : Status.UNKNOWN;
  const details = typeof error?.details === "string" ? error.details : String(error?.message ?? "");
  const metadata = typeof error?.metadata?.get === "function" ? error.metadata : null;
  const anys = metadata === null ? [] : statusDetails(metadata);
  const reason = reasonOf(anys);
  const known = reason === BUDGET_EXCEEDED || BY_REASON.has(reason);
  const budget = known
    ? reason === BUDGET_EXCEEDED
    : code === Status.RESOURCE_EXHAUSTED && metadata !== null && carriesRefusal(metadata, anys);
  if (budget) {
    const refusal = metadata === null ? {} : decodeRefusal(metadata, anys, options.protoPath);
    return new BudgetExceededError(code, details, refusal, { metadata, cause: error, reason });
  }
  const cls = (known ? BY_REASON.get(reason) : BY_CODE.get(code)) ?? TollgateError;
  return new cls(code, details, { metadata, cause: error, reason });
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

// google.rpc.Status, google.protobuf.Any and google.rpc.ErrorInfo, as far as
// the client reads them: the envelope of grpc-status-details-bin.
const envelope = protobuf.Root.fromJSON({
  nested: {
    Any: { fields: { typeUrl: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } },
    Status: {
      fields: {
        code: { type: "int32", id: 1 },
        message: { type: "string", id: 2 },
        details: { rule: "repeated", type: "Any", id: 3 },
      },
    },
    ErrorInfo: { fields: { reason: { type: "string", id: 1 }, domain: { type: "string", id: 2 } } },
  },
});
const StatusType = envelope.lookupType("Status");
const ErrorInfoType = envelope.lookupType("ErrorInfo");

/**
 * The details of the status trailer as [type name, value] pairs; none if it is
 * missing or damaged.
 * @param {import("@grpc/grpc-js").Metadata} metadata
 * @returns {Array<[string, Uint8Array]>}
 */
function statusDetails(metadata) {
  for (const value of metadata.get(STATUS_DETAILS_TRAILER)) {
    if (typeof value === "string") continue;
    try {
      const status = /** @type {any} */ (StatusType.decode(value));
      return status.details.map((/** @type {any} */ any) => [
        any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1),
        any.value,
      ]);
    } catch {
      return [];
    }
  }
  return [];
}

/**
 * The reason of the first ErrorInfo of the sidecar's domain, or "".
 * @param {Array<[string, Uint8Array]>} anys
 */
function reasonOf(anys) {
  for (const [typeName, value] of anys) {
    if (typeName !== ERROR_INFO_TYPE) continue;
    try {
      const info = /** @type {any} */ (ErrorInfoType.decode(value));
      if (info.domain === ERROR_DOMAIN && info.reason) return String(info.reason);
    } catch {
      // A damaged ErrorInfo says nothing; the code decides.
    }
  }
  return "";
}

/**
 * Whether the status came with the sidecar's BudgetExceeded detail, readable or not.
 * @param {import("@grpc/grpc-js").Metadata} metadata
 * @param {Array<[string, Uint8Array]>} anys
 */
function carriesRefusal(metadata, anys) {
  return (
    metadata.get(BUDGET_EXCEEDED_TRAILER).length > 0 || anys.some(([typeName]) => typeName === BUDGET_EXCEEDED_TYPE)
  );
}

/**
 * The refusal from the sidecar's own trailer, else from the standard status
 * details; empty if neither is there or readable. The status itself is what
 * matters, so a damaged detail only loses the figures.
 * @param {import("@grpc/grpc-js").Metadata} metadata
 * @param {Array<[string, Uint8Array]>} anys
 * @param {string | undefined} protoPath
 */
function decodeRefusal(metadata, anys, protoPath) {
  const candidates = [
    ...metadata.get(BUDGET_EXCEEDED_TRAILER).filter((value) => typeof value !== "string"),
    ...anys.filter(([typeName]) => typeName === BUDGET_EXCEEDED_TYPE).map(([, value]) => value),
  ];
  for (const value of candidates) {
    try {
      return decodeBudgetExceeded(/** @type {Uint8Array} */ (value), { protoPath });
    } catch {
      // Try the next one.
    }
  }
  return {};
}
