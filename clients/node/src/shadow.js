// Shadow comparisons: the quality guard's eyes on the cheap tier.
//
// When the sidecar samples a request (`decision.shadow` is set; route with
// `acceptShadow: true`), the application also calls the shadow model in the
// background, compares the two answers and reports the comparison as feedback.
// The shadow call is held against the quality pool, so it can never eat the
// product's budget.

/**
 * 1 when the answers agree: equal as JSON if both are strings that parse, else equal as text with runs of
 * whitespace collapsed; 0 otherwise.
 * @param {unknown} primary
 * @param {unknown} shadow
 * @returns {number}
 */
export function defaultJudge(primary, shadow) {
  if (typeof primary === "string" && typeof shadow === "string") {
    try {
      return canonical(JSON.parse(primary)) === canonical(JSON.parse(shadow)) ? 1 : 0;
    } catch {
      // Not JSON: compared as text below.
    }
  }
  const words = (/** @type {unknown} */ value) => String(value).split(/\s+/).filter(Boolean).join(" ");
  return words(primary) === words(shadow) ? 1 : 0;
}

/**
 * A parsed JSON value as text with object keys sorted, so that key order does not make two answers differ.
 * @param {unknown} value
 * @returns {string}
 */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonical(item)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * Run `call(decision.model)` under the decision's reservation and commit its usage; if the request was sampled,
 * also call the shadow model in the background, judge the two answers and report the score as feedback.
 *
 * Resolves at once with the primary response, and `comparison`: null when the request was not sampled, else a
 * promise of the score reported, or of null when the shadow call, the judge or the report failed (the shadow's
 * hold is released; the comparison never rejects, so leaving it unawaited is safe).
 * @template R
 * @param {import("./client.js").TollgateClient} client
 * @param {import("../index.js").Decision} decision a `route(..., { reserve: true, acceptShadow: true })` decision
 * @param {(model: string) => Promise<R>} call the provider call, for a model
 * @param {{ usage: (response: R) => import("../index.js").Usage, answer?: (response: R) => unknown,
 *   judge?: (primary: unknown, shadow: unknown) => number | boolean }} options
 * @returns {Promise<{ response: R, comparison: Promise<number | null> | null }>}
 */
export async function callWithShadow(client, decision, call, options) {
  const { usage, answer = (/** @type {R} */ response) => response, judge = defaultJudge } = options ?? {};
  if (typeof usage !== "function") {
    throw new TypeError("callWithShadow() needs options.usage, a function from a response to its Usage");
  }
  const response = await client.withReservation(decision, async (held) => {
    const primary = await call(decision.model);
    await held.commit(usage(primary));
    return primary;
  });
  const shadow = decision.shadow;
  if (!shadow || !decision.reservation) return { response, comparison: null };
  const primaryId = decision.reservation.reservationId;
  const compare = async () => {
    try {
      const other = shadow.reservation
        ? await client.withReservation(shadow.reservation, async (held) => {
            const result = await call(shadow.model);
            await held.commit(usage(result));
            return result;
          })
        : await call(shadow.model);
      const score = Number(judge(answer(response), answer(other)));
      await client.feedback(primaryId, score, "shadow_comparison");
      return score;
    } catch {
      return null;
    }
  };
  return { response, comparison: compare() };
}
