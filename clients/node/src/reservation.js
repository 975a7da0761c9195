// A reservation held for the length of a callback: withReservation() gives it
// back unless the callback committed (or released) it.

/**
 * The reservation inside what route(..., { reserve: true }), reserve() or a
 * Reservation itself gives.
 * @param {unknown} source
 * @returns {import("../index.js").Reservation}
 */
export function reservationOf(source) {
  if (source !== null && typeof source === "object") {
    const candidate = /** @type {any} */ (source);
    if (typeof candidate.reservationId === "string") return candidate;
    if ("reservation" in candidate) {
      if (candidate.reservation === null || candidate.reservation === undefined) {
        throw new TypeError(
          "this decision holds no reservation: call route(scope, { reserve: true, ... }) to get one",
        );
      }
      return reservationOf(candidate.reservation);
    }
  }
  throw new TypeError("expected a Decision (from route with reserve: true), a ReserveResult or a Reservation");
}

/**
 * A reservation being held; passed to the callback of withReservation().
 *
 * It counts as settled as soon as `commit` or `release` is called, even if
 * that call fails. A failed commit is deliberately not followed by a release:
 * the provider call has happened, so giving the hold back would record it as
 * free. Commit is idempotent and may be retried; otherwise the sidecar's
 * expiry policy settles the hold.
 */
export class HeldReservation {
  #client;
  #reservation;
  #expiresAt;
  #settled = false;
  /** @type {import("../index.js").CommitResult | import("../index.js").ReleaseResult | null} */
  #result = null;

  /**
   * @param {import("./client.js").TollgateClient} client
   * @param {import("../index.js").ReservationSource} source
   */
  constructor(client, source) {
    this.#client = client;
    this.#reservation = reservationOf(source);
    this.#expiresAt = this.#reservation.expiresAt;
  }

  /** The reservation as it was made. */
  get reservation() {
    return this.#reservation;
  }

  /** The reservation's id. */
  get reservationId() {
    return this.#reservation.reservationId;
  }

  /** The model the reservation was made for. */
  get model() {
    return this.#reservation.model;
  }

  /** When the reservation expires, updated by extend(). */
  get expiresAt() {
    return this.#expiresAt;
  }

  /** Whether commit() or release() has been called, so nothing is released on the way out. */
  get settled() {
    return this.#settled;
  }

  /** The answer to the commit or release that settled the reservation, once it succeeded. */
  get result() {
    return this.#result;
  }

  /**
   * Report what the provider call used; the hold is reconciled and the rest released.
   * @param {import("../index.js").Usage} usage
   */
  async commit(usage) {
    this.#settled = true;
    const result = await this.#client.commit(this.reservationId, usage);
    this.#result = result;
    return result;
  }

  /** End the reservation without charging, when no billable call happened. */
  async release() {
    this.#settled = true;
    const result = await this.#client.release(this.reservationId);
    this.#result = result;
    return result;
  }

  /**
   * Push the expiry out to `ttlMs` from now (0 = the sidecar's default), for long calls.
   * @param {number | bigint} [ttlMs]
   */
  async extend(ttlMs = 0) {
    const result = await this.#client.extend(this.reservationId, ttlMs);
    this.#expiresAt = result.expiresAt;
    return result;
  }
}

/**
 * Run `fn` with the reservation held; release it unless `fn` settled it.
 * @template T
 * @param {import("./client.js").TollgateClient} client
 * @param {import("../index.js").ReservationSource} source
 * @param {(held: HeldReservation) => T | Promise<T>} fn
 * @returns {Promise<T>}
 */
export async function withReservation(client, source, fn) {
  if (typeof fn !== "function") {
    throw new TypeError("withReservation(source, fn) needs a callback: async (held) => { ...; await held.commit(usage) }");
  }
  const held = new HeldReservation(client, source);
  let value;
  try {
    value = await fn(held);
  } catch (error) {
    if (!held.settled) {
      try {
        await held.release();
      } catch (releaseError) {
        // The callback's error is what the caller needs; the failed release rides along.
        if (error !== null && typeof error === "object" && Object.isExtensible(error)) {
          Object.defineProperty(error, "releaseError", {
            value: releaseError,
            writable: true,
            configurable: true,
            enumerable: true,
          });
        }
      }
    }
    throw error;
  }
  if (!held.settled) await held.release();
  return value;
}
