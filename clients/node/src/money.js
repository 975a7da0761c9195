// Rendering nano-dollar amounts for people.

/** Nano-dollars in one US dollar; every `...Nanos` figure is in these units. */
export const NANOS_PER_USD = 1_000_000_000n;

/**
 * An amount of nano-dollars as dollars, e.g. `1_234_567_000n` → `"$1.234567"`.
 *
 * Integer arithmetic only, so no digit is lost to float rounding: sub-cent
 * amounts (most single LLM calls) keep every significant digit, and at least
 * two decimals are always shown.
 * @param {bigint | number} nanos a BigInt, or a number that is a safe integer
 * @returns {string}
 */
export function formatUsd(nanos) {
  if (typeof nanos === "number" && Number.isSafeInteger(nanos)) nanos = BigInt(nanos);
  if (typeof nanos !== "bigint") {
    throw new TypeError(`formatUsd() takes an integer number of nano-dollars (a BigInt), got ${String(nanos)}`);
  }
  const sign = nanos < 0n ? "-" : "";
  const abs = nanos < 0n ? -nanos : nanos;
  const whole = (abs / NANOS_PER_USD).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const decimals = (abs % NANOS_PER_USD).toString().padStart(9, "0").replace(/0+$/, "").padEnd(2, "0");
  return `${sign}$${whole}.${decimals}`;
}
