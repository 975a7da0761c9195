// Cascades: try the cheap model, check its output, escalate only when the check fails.
//
// Many answers a cheap model gets right; some it gets wrong in a way the
// application can see (JSON that does not parse, code whose tests fail, a low
// self-reported confidence). `callWithEscalation` runs the call on the routed
// model, runs the application's check on the output, and on a failure asks the
// sidecar for the next attempt one tier up (`escalate`), reserving for it and
// committing the failed one in the same round trip. The attempts stay linked in
// the ledger, the decision log and the trace; the sidecar stops the cascade at
// its configured depth.

import { EscalationRefusedError } from "./errors.js";

/**
 * Route and reserve, `call(decision)`, `check` the output; escalate while it fails.
 *
 * `check` returns "" (or null/undefined) for an acceptable output, else a short reason such as "invalid_json".
 * `nextMessages(response, problem)` may give the next attempt a different input (say, the failed answer and the
 * complaint); by default it gets the same messages. When the sidecar refuses a further escalation (depth limit,
 * top tier), the last response is returned with `passed: false`. A call that throws releases its reservation and
 * the error propagates. The other options are `route()`'s (`reserve` is always true).
 * @template R
 * @param {import("./client.js").TollgateClient} client
 * @param {import("../index.js").Scope} scope
 * @param {(decision: import("../index.js").Decision) => Promise<R>} call
 * @param {import("../index.js").CascadeOptions<R>} options
 * @returns {Promise<import("../index.js").Cascade<R>>}
 */
export async function callWithEscalation(client, scope, call, options) {
  const { check, usage, nextMessages, reserve: _reserve, ...route } = /** @type {any} */ (options ?? {});
  if (typeof check !== "function" || typeof usage !== "function") {
    throw new TypeError("callWithEscalation() needs options.check and options.usage, functions of a response");
  }
  let messages = route.messages === undefined || route.messages === null ? undefined : Array.from(route.messages);
  let decision = await client.route(scope, { ...route, messages, reserve: true });
  /** @type {import("../index.js").Attempt[]} */
  const attempts = [];
  const done = (/** @type {R} */ response, /** @type {boolean} */ passed) =>
    Object.freeze({
      response,
      passed,
      attempts: Object.freeze(attempts),
      chargedNanos: attempts.reduce((sum, a) => sum + a.chargedNanos, 0n),
    });
  const record = (/** @type {string} */ problem, /** @type {bigint} */ chargedNanos) =>
    attempts.push(
      Object.freeze({
        model: decision.model,
        tier: decision.tier,
        reservationId: /** @type {import("../index.js").Reservation} */ (decision.reservation).reservationId,
        problem,
        chargedNanos,
      }),
    );
  for (;;) {
    const reservationId = /** @type {import("../index.js").Reservation} */ (decision.reservation).reservationId;
    let response;
    try {
      response = await call(decision);
    } catch (error) {
      try {
        await client.release(reservationId);
      } catch (releaseError) {
        if (error !== null && typeof error === "object") Object.assign(error, { releaseError });
      }
      throw error;
    }
    const problem = check(response) || "";
    const spent = usage(response);
    if (!problem) {
      record("", (await client.commit(reservationId, spent)).chargedNanos);
      return done(response, true);
    }
    if (typeof nextMessages === "function") messages = Array.from(nextMessages(response, problem));
    let escalation;
    try {
      escalation = await client.escalate(reservationId, scope, {
        messages,
        inputTokens: route.inputTokens,
        reason: problem,
        usage: spent,
        needsTools: route.needsTools,
        needsVision: route.needsVision,
        needsJson: route.needsJson,
        latency: route.latency,
        maxOutputTokens: route.maxOutputTokens,
      });
    } catch (error) {
      if (!(error instanceof EscalationRefusedError)) throw error;
      record(problem, (await client.commit(reservationId, spent)).chargedNanos);
      return done(response, false);
    }
    record(problem, escalation.previousCommit?.chargedNanos ?? 0n);
    decision = escalation.decision;
  }
}
