// The promise client of the Tollgate sidecar.

import * as grpc from "@grpc/grpc-js";

import { fromGrpcError } from "./errors.js";
import { loadProtos } from "./proto.js";
import { withReservation } from "./reservation.js";
import { MONEY, NEVER, READ, backoffMs, newIdempotencyKey, retryPolicy, sleep } from "./retry.js";
import * as wire from "./wire.js";

/** Where the sidecar listens unless configured otherwise. */
export const DEFAULT_TARGET = "127.0.0.1:50551";

/** The deadline of each attempt of a call unless configured otherwise, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 2000;

const CHANNEL_OPTIONS = Object.freeze({
  // The sidecar runs next to the application; a proxy taken from http_proxy in
  // the environment would at best add a hop and at worst not reach loopback at all.
  "grpc.enable_http_proxy": 0,
});

/**
 * Client of the Tollgate sidecar.
 *
 * `target` is "host:port" or "unix:///path/to.sock". Options: `timeoutMs`, the
 * deadline of each attempt of a call; `retry`, how a call the sidecar did not
 * answer is tried again (see DEFAULT_RETRY; null or false: never); `metadata`,
 * headers sent with every call (for example an authorization header a proxy in
 * front of the sidecar checks); `protoPath`, the tollgate.proto to load instead
 * of the package's own copy; `channelOptions`, extra grpc-js channel
 * options. The connection is opened on the first call. Close the client with
 * close().
 *
 * Money is a BigInt of nano-dollars in every result; token and call counts are
 * numbers. Failed calls reject with a TollgateError subclass.
 */
export class TollgateClient {
  #target;
  #timeoutMs;
  /** @type {Readonly<Required<import("../index.js").RetryOptions>> | null} */
  #retry;
  #metadata;
  #protoPath;
  /** @type {import("@grpc/grpc-js").Client & Record<string, Function>} */
  #stub;
  #closed = false;

  /**
   * @param {string} [target]
   * @param {import("../index.js").ClientOptions} [options]
   */
  constructor(target = DEFAULT_TARGET, options = {}) {
    if (typeof target !== "string" || target === "") {
      throw new TypeError('target must be "host:port" or "unix:///path/to.sock"');
    }
    const { timeoutMs = DEFAULT_TIMEOUT_MS, retry, metadata = {}, protoPath, channelOptions = {} } = options;
    if (typeof timeoutMs !== "number" || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
      throw new RangeError(`timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`);
    }
    this.#target = target;
    this.#timeoutMs = timeoutMs;
    this.#retry = retryPolicy(retry);
    this.#metadata = toMetadata(metadata);
    const protos = loadProtos(protoPath);
    this.#protoPath = protos.protoPath;
    this.#stub = /** @type {any} */ (
      new protos.TollgateService(target, grpc.credentials.createInsecure(), { ...CHANNEL_OPTIONS, ...channelOptions })
    );
  }

  /** The sidecar's address: "host:port" or "unix:///path/to.sock". */
  get target() {
    return this.#target;
  }

  /** The deadline of every attempt of a call, in milliseconds. */
  get timeoutMs() {
    return this.#timeoutMs;
  }

  /** How calls the sidecar did not answer are retried; null when they are not. */
  get retry() {
    return this.#retry;
  }

  /**
   * Pick the cheapest capable model for a call and, with `reserve: true`, hold its cost.
   * Exactly one of `messages` and `inputTokens` is required.
   * @param {import("../index.js").Scope} scope
   * @param {import("../index.js").RouteOptions} options
   */
  async route(scope, options) {
    const request = wire.routeRequest(scope, options);
    if (!request.reserve) return this.#call("Route", request, wire.decision, READ);
    return this.#call("Route", request, (r) => wire.decision(r, request.reservation.idempotencyKey), MONEY, true);
  }

  /**
   * Hold the estimated cost of a call to `model` against every pool in `scope`, all or none.
   * Exactly one of `messages` and `inputTokens` is required.
   * @param {import("../index.js").Scope} scope
   * @param {string} model
   * @param {import("../index.js").ReserveOptions} options
   */
  async reserve(scope, model, options) {
    const request = wire.reserveRequest(scope, model, options);
    return this.#call("Reserve", request, (r) => wire.reserveResult(r, request.reservation.idempotencyKey), MONEY, true);
  }

  /**
   * Report what the provider call used; the hold is reconciled and the rest released.
   * @param {string} reservationId
   * @param {import("../index.js").Usage} usage
   */
  async commit(reservationId, usage) {
    return this.#call("Commit", wire.commitRequest(reservationId, usage), wire.commitResult);
  }

  /**
   * End a reservation without charging, when no billable call happened.
   * @param {string} reservationId
   */
  async release(reservationId) {
    return this.#call("Release", wire.releaseRequest(reservationId), wire.releaseResult);
  }

  /**
   * Push a reservation's expiry out to `ttlMs` from now (0 = the sidecar's default).
   * @param {string} reservationId
   * @param {number | bigint} [ttlMs]
   */
  async extend(reservationId, ttlMs = 0) {
    return this.#call("Extend", wire.extendRequest(reservationId, ttlMs), wire.extendResult);
  }

  /**
   * The current state of every budget pool in `scope`, broadest level last.
   * @param {import("../index.js").Scope} scope
   */
  async getBudget(scope) {
    return this.#call("GetBudget", wire.getBudgetRequest(scope), wire.budget, READ);
  }

  /**
   * Route and reserve the next attempt of a call whose output failed your check: one tier up, or
   * `options.model`. With `options.usage`, the failed attempt is committed in the same step; otherwise end it
   * yourself. A repeat returns the same attempt (it is idempotent by the failed reservation's id); past the depth
   * limit or the top tier it rejects with `EscalationRefusedError`. Exactly one of `messages` and `inputTokens`
   * (the next attempt's input) is required.
   * @param {string} reservationId the failed attempt's reservation
   * @param {import("../index.js").Scope} scope
   * @param {import("../index.js").EscalateOptions} options
   */
  async escalate(reservationId, scope, options) {
    return this.#call("Escalate", wire.escalateRequest(reservationId, scope, options), wire.escalation);
  }

  /**
   * Report how good a call's answer was: a score in [0, 1], or a thumbs up (true) / down (false). Resolves to the
   * task type and tier it was counted under. Never retried: each call counts one more sample.
   * @param {string} reservationId
   * @param {number | boolean} score
   * @param {import("../index.js").FeedbackSource} [source]
   */
  async feedback(reservationId, score, source = "user") {
    return this.#call("Feedback", wire.feedbackRequest(reservationId, score, source), wire.feedbackResult, NEVER);
  }

  /** The quality guard's report: per task type, quality by tier, shadow match and the minimum tier it imposes. */
  async getQuality() {
    return this.#call("GetQuality", {}, wire.quality, READ);
  }

  /**
   * Run `fn` with a reservation held and release it unless `fn` committed or
   * released it. If `fn` throws, the reservation is released and the original
   * error rethrown (a failed release is attached to it as `releaseError`).
   * Once commit has been called nothing is released, even if the commit failed.
   * Resolves to what `fn` returned.
   * @template T
   * @param {import("../index.js").ReservationSource} source
   * @param {(held: import("./reservation.js").HeldReservation) => T | Promise<T>} fn
   * @returns {Promise<T>}
   */
  async withReservation(source, fn) {
    return withReservation(this, source, fn);
  }

  /** Close the channel; calls in flight are cancelled. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#stub.close();
  }

  /**
   * One call under the client's deadline and retry policy: sent again after a
   * status in `retryOn` while attempts and budget last. A keyed call's
   * `request.reservation.idempotencyKey` is filled in before the first attempt
   * when empty, so that every attempt carries the same one.
   * @template R
   * @param {string} method
   * @param {any} request
   * @param {(response: any) => R} convert
   * @param {ReadonlySet<number>} [retryOn]
   * @param {boolean} [keyed]
   * @returns {Promise<R>}
   */
  async #call(method, request, convert, retryOn = MONEY, keyed = false) {
    if (this.#closed) throw new Error("this TollgateClient is closed");
    const policy = this.#retry;
    if (policy !== null && keyed && !request.reservation.idempotencyKey) {
      request.reservation.idempotencyKey = newIdempotencyKey();
    }
    const start = Date.now();
    for (let attempt = 1; ; attempt++) {
      // A retry's deadline never runs past the budget; the first attempt has the full timeout.
      const deadline =
        attempt === 1 || policy === null
          ? start + this.#timeoutMs
          : Math.min(Date.now() + this.#timeoutMs, start + policy.budgetMs);
      let response;
      try {
        response = await this.#attempt(method, request, deadline);
      } catch (grpcError) {
        const error = fromGrpcError(grpcError, { protoPath: this.#protoPath });
        if (policy !== null && retryOn.has(error.code) && attempt < policy.attempts) {
          const wait = backoffMs(policy, attempt);
          // A retry that would start at or past the budget's end has no time left to answer in.
          if (Date.now() + wait < start + policy.budgetMs) {
            await sleep(wait);
            if (!this.#closed) continue;
          }
        }
        error.attempts = attempt;
        if (keyed) error.idempotencyKey = request.reservation.idempotencyKey;
        throw error;
      }
      return convert(response);
    }
  }

  /**
   * @param {string} method
   * @param {object} request
   * @param {number} deadline
   * @returns {Promise<any>}
   */
  #attempt(method, request, deadline) {
    return new Promise((resolve, reject) => {
      this.#stub[method](request, this.#metadata.clone(), { deadline }, (/** @type {any} */ error, /** @type {any} */ response) => {
        if (error) reject(error);
        else resolve(response);
      });
    });
  }
}

/** @param {import("@grpc/grpc-js").Metadata | Record<string, string | Buffer | Array<string | Buffer>>} value */
function toMetadata(value) {
  if (value instanceof grpc.Metadata) return value.clone();
  if (value === null || typeof value !== "object") {
    throw new TypeError("metadata must be an object of header names to values, or a grpc-js Metadata");
  }
  const metadata = new grpc.Metadata();
  for (const [key, entry] of Object.entries(value)) {
    for (const item of Array.isArray(entry) ? entry : [entry]) metadata.add(key, item);
  }
  return metadata;
}
