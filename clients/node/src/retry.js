// Retrying a call the sidecar did not answer, without ever holding money twice.
//
// A call that fails with UNAVAILABLE (the sidecar could not be reached, or the
// connection dropped) or DEADLINE_EXCEEDED (it did not answer in time) may or
// may not have taken effect. Every call that moves money is idempotent on the
// sidecar (commit, release and extend by reservation id; reserve and route with
// `reserve: true` by the idempotency key the client fills in before the first
// attempt), so it is simply sent again.

import { randomBytes } from "node:crypto";

import { status as Status } from "@grpc/grpc-js";

/** The policy of a client without a `retry` option. */
export const DEFAULT_RETRY = Object.freeze({ attempts: 4, budgetMs: 5000, backoffMs: 50, maxBackoffMs: 1000 });

/** What a call that moves money is retried on: whether it took effect is unknown, and a repeat is harmless. */
export const MONEY = Object.freeze(new Set([Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED]));

/** What a read (getBudget, getQuality, route without a reservation) is retried on: a slow sidecar is not piled on. */
export const READ = Object.freeze(new Set([Status.UNAVAILABLE]));

/** What feedback is retried on: nothing, since each call counts one more sample. */
export const NEVER = Object.freeze(new Set());

const RETRY_KEYS = new Set(["attempts", "budgetMs", "backoffMs", "maxBackoffMs"]);

/**
 * The policy `value` asks for, the defaults filling what it leaves out; null
 * (no retries) for `null`, `false` or one attempt.
 * @param {import("../index.js").RetryOptions | null | false | undefined} value
 * @returns {Readonly<Required<import("../index.js").RetryOptions>> | null}
 */
export function retryPolicy(value) {
  if (value === undefined) return DEFAULT_RETRY;
  if (value === null || value === false) return null;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`retry must be an object like { attempts: 4, budgetMs: 5000 }, null or false, got ${value}`);
  }
  for (const key of Object.keys(value)) {
    if (!RETRY_KEYS.has(key)) throw new TypeError(`unknown retry option ${JSON.stringify(key)}`);
  }
  const policy = { ...DEFAULT_RETRY, ...value };
  if (!Number.isSafeInteger(policy.attempts) || policy.attempts < 1) {
    throw new RangeError(`retry.attempts must be an integer of at least 1, got ${policy.attempts}`);
  }
  for (const key of ["budgetMs", "backoffMs", "maxBackoffMs"]) {
    const ms = policy[key];
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`retry.${key} must be a finite number of milliseconds, not negative, got ${ms}`);
    }
  }
  if (policy.maxBackoffMs < policy.backoffMs) {
    throw new RangeError(`retry.maxBackoffMs (${policy.maxBackoffMs}) is below retry.backoffMs (${policy.backoffMs})`);
  }
  return policy.attempts > 1 ? Object.freeze(policy) : null;
}

/**
 * The wait before retry number `n` (1 for the first), in milliseconds: drawn
 * uniformly from [0, min(maxBackoffMs, backoffMs * 2^(n-1))) ("full jitter").
 * @param {Readonly<Required<import("../index.js").RetryOptions>>} policy
 * @param {number} n
 * @param {() => number} [draw]
 */
export function backoffMs(policy, n, draw = Math.random) {
  return Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** (n - 1)) * draw();
}

/** A fresh random idempotency key: 32 hex characters. */
export function newIdempotencyKey() {
  return randomBytes(16).toString("hex");
}

/** @param {number} ms */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
