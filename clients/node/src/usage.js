// Usage from provider responses, without importing any provider SDK.
//
// Each function takes the SDK's response object or the same response as plain
// parsed JSON, and also a final streaming chunk or event that carries `usage`.
// Fields that are missing, null or undefined count as 0.

/**
 * The token usage of an OpenAI Chat Completions or Responses API response.
 *
 * Chat Completions reports `prompt_tokens` (cached included) and
 * `completion_tokens` (reasoning included), with
 * `prompt_tokens_details.cached_tokens` and
 * `completion_tokens_details.reasoning_tokens`. The Responses API reports
 * `input_tokens` and `output_tokens` with `input_tokens_details` and
 * `output_tokens_details` of the same meaning. Reasoning tokens are moved out
 * of the output count, since `Usage.outputTokens` excludes them.
 *
 * Throws a TypeError if the response carries no usage.
 * @param {unknown} response
 * @returns {import("../index.js").Usage}
 */
export function usageFromOpenAI(response) {
  const usage = usageOf(response, "OpenAI");
  const chat = get(usage, "prompt_tokens") != null || get(usage, "completion_tokens") != null;
  const [inputKey, outputKey, inputDetails, outputDetails] = chat
    ? ["prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"]
    : ["input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"];
  const inputTokens = int(usage, inputKey);
  const outputWithReasoning = int(usage, outputKey);
  const reasoningTokens = int(get(usage, outputDetails), "reasoning_tokens");
  return {
    inputTokens,
    // Bounded so a provider that reports inconsistent details cannot make the usage invalid.
    cachedInputTokens: Math.min(int(get(usage, inputDetails), "cached_tokens"), inputTokens),
    outputTokens: Math.max(outputWithReasoning - reasoningTokens, 0),
    reasoningTokens,
  };
}

/**
 * The token usage of an Anthropic Messages API response.
 *
 * Anthropic's `input_tokens` excludes both cache reads and cache writes, which
 * come as `cache_read_input_tokens` and `cache_creation_input_tokens`;
 * `Usage.inputTokens` includes every input token, so all three are added, and
 * the cache reads become `cachedInputTokens`. Anthropic does not report
 * thinking tokens apart from `output_tokens`, so they stay in `outputTokens`
 * (both are billed as output) and `reasoningTokens` is 0.
 *
 * Throws a TypeError if the response carries no usage.
 * @param {unknown} response
 * @returns {import("../index.js").Usage}
 */
export function usageFromAnthropic(response) {
  const usage = usageOf(response, "Anthropic");
  const cacheRead = int(usage, "cache_read_input_tokens");
  return {
    inputTokens: int(usage, "input_tokens") + cacheRead + int(usage, "cache_creation_input_tokens"),
    cachedInputTokens: cacheRead,
    outputTokens: int(usage, "output_tokens"),
    reasoningTokens: 0,
  };
}

/**
 * @param {unknown} response
 * @param {string} provider
 */
function usageOf(response, provider) {
  const usage = get(response, "usage");
  if (usage == null) {
    throw new TypeError(
      `the ${provider} response has no usage; for a stream, read usage from its final chunk or event ` +
        "(OpenAI Chat Completions sends it only with stream_options: { include_usage: true })",
    );
  }
  return usage;
}

/**
 * @param {unknown} obj
 * @param {string} name
 * @returns {unknown}
 */
function get(obj, name) {
  if (obj === null || obj === undefined || (typeof obj !== "object" && typeof obj !== "function")) return undefined;
  if (obj instanceof Map) return obj.get(name);
  return /** @type {Record<string, unknown>} */ (obj)[name];
}

/**
 * @param {unknown} obj
 * @param {string} name
 */
function int(obj, name) {
  const value = get(obj, name);
  if (value === null || value === undefined) return 0;
  if (typeof value === "bigint" && Number.isSafeInteger(Number(value))) return Number(value);
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new TypeError(`usage field ${name} should be an integer token count, got ${JSON.stringify(String(value))}`);
  }
  return value;
}
