// Between the client's JavaScript values and the tollgate.v1 messages. Every
// RPC's request is built and checked here, and every response converted here,
// so the client itself only sends.

const INT64_MAX = (1n << 63n) - 1n;

const PRIORITIES = Object.freeze({ normal: "PRIORITY_NORMAL", high: "PRIORITY_HIGH" });

const SCOPE_KEYS = new Set(["org", "team", "user", "session", "tags", "priority"]);
const USAGE_KEYS = new Set(["inputTokens", "cachedInputTokens", "outputTokens", "reasoningTokens"]);
const ROUTE_KEYS = new Set([
  "messages",
  "inputTokens",
  "taskType",
  "agentMode",
  "minTier",
  "needsTools",
  "needsVision",
  "needsJson",
  "maxOutputTokens",
  "reserve",
  "idempotencyKey",
  "ttlMs",
  "acceptShadow",
  "latency",
]);
const ESCALATE_KEYS = new Set([
  "messages",
  "inputTokens",
  "model",
  "reason",
  "usage",
  "needsTools",
  "needsVision",
  "needsJson",
  "latency",
  "maxOutputTokens",
  "ttlMs",
]);
const LATENCY = Object.freeze({
  "": "LATENCY_CLASS_UNSPECIFIED",
  fast: "LATENCY_CLASS_FAST",
  standard: "LATENCY_CLASS_STANDARD",
  slow: "LATENCY_CLASS_SLOW",
});
const FEEDBACK_SOURCES = Object.freeze({
  user: "FEEDBACK_SOURCE_USER",
  automated_eval: "FEEDBACK_SOURCE_AUTOMATED_EVAL",
  shadow_comparison: "FEEDBACK_SOURCE_SHADOW_COMPARISON",
  human_review: "FEEDBACK_SOURCE_HUMAN_REVIEW",
});
const RESERVE_KEYS = new Set(["messages", "inputTokens", "taskType", "maxOutputTokens", "idempotencyKey", "ttlMs"]);

// --- requests ---------------------------------------------------------------

/**
 * @param {import("../index.js").Scope} scope
 * @param {any} [options] RouteOptions, checked here
 */
export function routeRequest(scope, options = {}) {
  checkKeys("route() options", options, ROUTE_KEYS);
  const reserve = flag("reserve", options.reserve);
  const request = {
    scope: scopeMessage(scope),
    prompt: prompt(options),
    signals: {
      taskType: text("taskType", options.taskType),
      agentMode: text("agentMode", options.agentMode),
      minTier: text("minTier", options.minTier),
      needsTools: flag("needsTools", options.needsTools),
      needsVision: flag("needsVision", options.needsVision),
      needsJson: flag("needsJson", options.needsJson),
      latency: latency(options.latency),
    },
    maxOutputTokens: count("maxOutputTokens", options.maxOutputTokens ?? 0),
    reserve,
    acceptShadow: flag("acceptShadow", options.acceptShadow),
  };
  if (reserve) {
    return { ...request, reservation: reservationOptions(options) };
  }
  if (options.idempotencyKey || options.ttlMs) {
    // Dropping them silently would leave the caller believing a retry is idempotent.
    throw new TypeError("idempotencyKey and ttlMs apply to a reservation: pass reserve: true with them");
  }
  return request;
}

/**
 * @param {import("../index.js").Scope} scope
 * @param {string} model
 * @param {any} [options] ReserveOptions, checked here
 */
export function reserveRequest(scope, model, options = {}) {
  checkKeys("reserve() options", options, RESERVE_KEYS);
  if (typeof model !== "string" || model === "") {
    throw new TypeError("reserve() needs the model to reserve for, e.g. \"gpt-5.4-mini\"");
  }
  return {
    scope: scopeMessage(scope),
    model,
    prompt: prompt(options),
    taskType: text("taskType", options.taskType),
    maxOutputTokens: count("maxOutputTokens", options.maxOutputTokens ?? 0),
    reservation: reservationOptions(options),
  };
}

/**
 * @param {string} reservationId
 * @param {import("../index.js").Usage} usage
 */
export function commitRequest(reservationId, usage) {
  return { reservationId: reservationIdOf(reservationId), usage: usageMessage(usage) };
}

/** @param {string} reservationId */
export function releaseRequest(reservationId) {
  return { reservationId: reservationIdOf(reservationId) };
}

/**
 * @param {string} reservationId
 * @param {number | bigint} ttlMs
 */
export function extendRequest(reservationId, ttlMs = 0) {
  return { reservationId: reservationIdOf(reservationId), ttlMs: count("ttlMs", ttlMs) };
}

/** @param {import("../index.js").Scope} scope */
export function getBudgetRequest(scope) {
  return { scope: scopeMessage(scope) };
}

/**
 * @param {string} reservationId the failed attempt's reservation
 * @param {import("../index.js").Scope} scope
 * @param {any} [options] EscalateOptions, checked here
 */
export function escalateRequest(reservationId, scope, options = {}) {
  checkKeys("escalate() options", options, ESCALATE_KEYS);
  const request = {
    reservationId: reservationIdOf(reservationId),
    scope: scopeMessage(scope),
    prompt: prompt(options),
    signals: {
      needsTools: flag("needsTools", options.needsTools),
      needsVision: flag("needsVision", options.needsVision),
      needsJson: flag("needsJson", options.needsJson),
      latency: latency(options.latency),
    },
    maxOutputTokens: count("maxOutputTokens", options.maxOutputTokens ?? 0),
    model: text("model", options.model),
    reason: text("reason", options.reason),
    reservation: { idempotencyKey: "", ttlMs: count("ttlMs", options.ttlMs ?? 0) },
  };
  if (options.usage === undefined || options.usage === null) return request;
  return { ...request, usage: usageMessage(options.usage) };
}

/**
 * @param {string} reservationId
 * @param {number | boolean} score in [0, 1], or a thumbs up (true) / down (false)
 * @param {string} [source]
 */
export function feedbackRequest(reservationId, score, source = "user") {
  const value = typeof score === "boolean" ? Number(score) : score;
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new RangeError(`score must be a number between 0 and 1 (or a boolean), got ${describe(score)}`);
  }
  if (typeof source !== "string" || !Object.hasOwn(FEEDBACK_SOURCES, source)) {
    throw new TypeError(`source must be one of ${Object.keys(FEEDBACK_SOURCES).join(", ")}, got ${describe(source)}`);
  }
  return { reservationId: reservationIdOf(reservationId), score: value, source: FEEDBACK_SOURCES[source] };
}

/** @param {unknown} value */
function latency(value) {
  const name = value ?? "";
  if (typeof name !== "string" || !Object.hasOwn(LATENCY, name)) {
    throw new TypeError(`latency must be "fast", "standard", "slow" or "" (any), got ${describe(value)}`);
  }
  return LATENCY[/** @type {keyof typeof LATENCY} */ (name)];
}

/** @param {import("../index.js").Scope} scope */
function scopeMessage(scope) {
  if (scope === null || typeof scope !== "object" || Array.isArray(scope)) {
    throw new TypeError(`scope must be an object like { org: "acme", user: "alice" }, got ${describe(scope)}`);
  }
  checkKeys("scope", scope, SCOPE_KEYS);
  if (typeof scope.org !== "string" || scope.org === "") {
    throw new TypeError("scope.org is required: name the organisation that pays");
  }
  const priority = scope.priority ?? "normal";
  if (!Object.hasOwn(PRIORITIES, priority)) {
    throw new TypeError(`scope.priority must be "normal" or "high", not ${describe(priority)}`);
  }
  return {
    orgId: scope.org,
    teamId: text("scope.team", scope.team),
    userId: text("scope.user", scope.user),
    sessionId: text("scope.session", scope.session),
    tags: tags(scope.tags),
    priority: PRIORITIES[/** @type {"normal" | "high"} */ (priority)],
  };
}

/** @param {unknown} value */
function tags(value) {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`scope.tags must be an object of string values, got ${describe(value)}`);
  }
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
  /** @type {Record<string, string>} */
  const out = {};
  for (const [key, tag] of entries) {
    if (typeof key !== "string" || typeof tag !== "string") {
      throw new TypeError(`scope.tags must map strings to strings, got ${describe(key)}: ${describe(tag)}`);
    }
    out[key] = tag;
  }
  return out;
}

/** @param {{ messages?: any, inputTokens?: unknown }} options */
function prompt(options) {
  const { messages, inputTokens } = options;
  const hasMessages = messages !== undefined && messages !== null;
  const hasTokens = inputTokens !== undefined && inputTokens !== null;
  if (hasMessages && !hasTokens) {
    if (typeof messages === "string" || typeof messages[Symbol.iterator] !== "function") {
      throw new TypeError("messages takes an array of messages, not a single message or string");
    }
    return { messages: { items: Array.from(messages, message) } };
  }
  if (hasTokens && !hasMessages) {
    return { inputTokens: count("inputTokens", inputTokens) };
  }
  throw new TypeError("give exactly one of messages (the prompt) or inputTokens (its counted size)");
}

/** @param {unknown} value */
function message(value) {
  let role;
  let content;
  if (Array.isArray(value) && value.length === 2) {
    [role, content] = value;
  } else if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    ({ role, content } = /** @type {{ role?: unknown, content?: unknown }} */ (value));
  } else {
    throw new TypeError(`a message is a { role, content } object or a [role, content] pair, got ${describe(value)}`);
  }
  if (typeof role !== "string" || role === "") {
    throw new TypeError(`message role must be a non-empty string, got ${describe(role)}`);
  }
  return { role, content: contentText(content) };
}

/**
 * The text of a message's content, as the sidecar counts it. Provider SDKs
 * also take content as a list of parts; only text parts carry tokens the
 * sidecar can count, so the others (images, audio) are left out.
 * @param {unknown} content
 */
function contentText(content) {
  if (content === undefined || content === null) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    const texts = [];
    for (const part of content) {
      if (typeof part === "string") texts.push(part);
      else if (part !== null && typeof part === "object" && typeof part.text === "string") texts.push(part.text);
    }
    return texts.join("\n");
  }
  throw new TypeError(`message content must be a string or an array of content parts, got ${describe(content)}`);
}

/** @param {{ idempotencyKey?: string, ttlMs?: number | bigint }} options */
function reservationOptions(options) {
  return {
    idempotencyKey: text("idempotencyKey", options.idempotencyKey),
    ttlMs: count("ttlMs", options.ttlMs ?? 0),
  };
}

/** @param {import("../index.js").Usage} usage */
function usageMessage(usage) {
  if (usage === null || typeof usage !== "object" || Array.isArray(usage)) {
    throw new TypeError(
      `commit() takes a usage object like { inputTokens, outputTokens }, got ${describe(usage)}; ` +
        "see usageFromOpenAI() and usageFromAnthropic()",
    );
  }
  checkKeys("usage", usage, USAGE_KEYS);
  if (usage.inputTokens === undefined) {
    throw new TypeError("usage.inputTokens is required");
  }
  const input = BigInt(count("usage.inputTokens", usage.inputTokens));
  const cached = BigInt(count("usage.cachedInputTokens", usage.cachedInputTokens ?? 0));
  if (cached > input) {
    throw new RangeError(
      `usage.cachedInputTokens (${cached}) cannot exceed usage.inputTokens (${input}): ` +
        "inputTokens includes the cached ones",
    );
  }
  return {
    inputTokens: input.toString(),
    cachedInputTokens: cached.toString(),
    outputTokens: count("usage.outputTokens", usage.outputTokens ?? 0),
    reasoningTokens: count("usage.reasoningTokens", usage.reasoningTokens ?? 0),
  };
}

/** @param {unknown} reservationId */
function reservationIdOf(reservationId) {
  if (typeof reservationId !== "string" || reservationId === "") {
    throw new TypeError(`expected a reservation id string, got ${describe(reservationId)}`);
  }
  return reservationId;
}

/**
 * A non-negative int64, as the decimal string protobufjs takes for 64-bit fields.
 * @param {string} name
 * @param {unknown} value
 */
function count(name, value) {
  if (typeof value === "bigint") {
    if (value < 0n || value > INT64_MAX) {
      throw new RangeError(`${name} must be between 0 and 2^63-1, got ${value}`);
    }
    return value.toString();
  }
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer (number or bigint), got ${describe(value)}`);
  }
  if (value < 0 || !Number.isSafeInteger(value)) {
    throw new RangeError(`${name} must be a non-negative safe integer, got ${value}`);
  }
  return String(value);
}

/**
 * @param {string} name
 * @param {unknown} value
 */
function text(name, value) {
  if (value === undefined || value === null) return "";
  if (typeof value !== "string") throw new TypeError(`${name} must be a string, got ${describe(value)}`);
  return value;
}

/**
 * @param {string} name
 * @param {unknown} value
 */
function flag(name, value) {
  if (value === undefined || value === null) return false;
  if (typeof value !== "boolean") throw new TypeError(`${name} must be a boolean, got ${describe(value)}`);
  return value;
}

/**
 * Refuses keys the client does not know, such as `input_tokens` for
 * `inputTokens`: a misspelt scope or option would otherwise be ignored and
 * the money held against the wrong pools.
 * @param {string} what
 * @param {object} value
 * @param {Set<string>} known
 */
function checkKeys(what, value, known) {
  if (value === null || typeof value !== "object") {
    throw new TypeError(`${what} must be an object, got ${describe(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (!known.has(key)) {
      throw new TypeError(`unknown ${what} key ${JSON.stringify(key)}; expected one of ${[...known].join(", ")}`);
    }
  }
}

/** @param {unknown} value */
function describe(value) {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (Array.isArray(value)) return "an array";
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ? `a ${value.constructor.name}` : "an object";
  return String(value);
}

// --- responses --------------------------------------------------------------

/**
 * A decimal int64 from proto-loader as a BigInt (money).
 * @param {string | number | null | undefined} value
 */
export function nanos(value) {
  return value === null || value === undefined ? 0n : BigInt(value);
}

/**
 * A decimal int64 from proto-loader as a number (token and call counts).
 * @param {string | number | null | undefined} value
 */
function int(value) {
  return value === null || value === undefined ? 0 : Number(value);
}

/**
 * A google.protobuf.Timestamp as a Date (millisecond precision), or null when unset.
 * @param {{ seconds: string | number, nanos: number } | null | undefined} ts
 */
export function date(ts) {
  if (ts === null || ts === undefined) return null;
  return new Date(Number(ts.seconds) * 1000 + Math.trunc((ts.nanos ?? 0) / 1e6));
}

/**
 * A proto enum name without its prefix, lower-case: POOL_LEVEL_USER → "user";
 * the unspecified value → "". A number a newer sidecar sent that this proto
 * does not name yet comes back as its decimal string.
 * @param {string} prefix
 * @param {string | number | null | undefined} value
 */
export function enumName(prefix, value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return value === 0 ? "" : String(value);
  const name = value.startsWith(prefix) ? value.slice(prefix.length).toLowerCase() : value.toLowerCase();
  return name === "unspecified" ? "" : name;
}

/** @param {any} p */
function pool(p) {
  return Object.freeze({
    poolId: p.poolId,
    level: enumName("POOL_LEVEL_", p.level),
    policy: enumName("POLICY_", p.policy),
    capNanos: nanos(p.capNanos),
    usableCapNanos: nanos(p.usableCapNanos),
    spentNanos: nanos(p.spentNanos),
    heldNanos: nanos(p.heldNanos),
    remainingNanos: nanos(p.remainingNanos),
    resetsAt: date(p.resetsAt),
    calls: int(p.calls),
    maxCalls: int(p.maxCalls),
    tokens: int(p.tokens),
    maxTokens: int(p.maxTokens),
    warning: Boolean(p.warning),
  });
}

/** @param {any[] | null | undefined} pools */
function poolList(pools) {
  return Object.freeze((pools ?? []).map(pool));
}

/**
 * @param {any} r
 * @param {string} [idempotencyKey] the key the request carried
 */
function reservation(r, idempotencyKey = "") {
  return Object.freeze({
    reservationId: r.reservationId,
    model: r.model,
    heldNanos: nanos(r.heldNanos),
    expiresAt: /** @type {Date} */ (date(r.expiresAt)),
    pools: poolList(r.pools),
    replayed: Boolean(r.replayed),
    idempotencyKey,
  });
}

/** @param {any} c */
function candidate(c) {
  return Object.freeze({
    model: c.model,
    provider: c.provider,
    tier: c.tier,
    estimatedCostNanos: nanos(c.estimatedCostNanos),
    latency: enumName("LATENCY_CLASS_", c.latency),
  });
}

/** @param {any} s */
function shadow(s) {
  return Object.freeze({
    model: s.model,
    tier: s.tier,
    purpose: s.purpose,
    reservation: s.reservation ? reservation(s.reservation) : null,
  });
}

/**
 * @param {any} response
 * @param {string} [idempotencyKey] the key a reserving route carried
 */
export function decision(response, idempotencyKey = "") {
  const d = response.decision ?? {};
  const chosen = d.chosen ?? {};
  return Object.freeze({
    model: chosen.model ?? "",
    provider: chosen.provider ?? "",
    tier: chosen.tier ?? "",
    reason: d.reason ?? "",
    source: enumName("DECISION_SOURCE_", d.source),
    requiredTier: d.requiredTier ?? "",
    difficulty: d.difficulty ?? 0,
    estimatedInputTokens: int(d.estimatedInputTokens),
    estimatedOutputTokens: int(d.estimatedOutputTokens),
    estimatedCostNanos: nanos(chosen.estimatedCostNanos),
    latency: enumName("LATENCY_CLASS_", chosen.latency),
    outcome: enumName("POLICY_OUTCOME_", d.outcome),
    fallbacks: Object.freeze((d.fallbacks ?? []).map(candidate)),
    reservation: response.reservation ? reservation(response.reservation, idempotencyKey) : null,
    shadow: response.shadow ? shadow(response.shadow) : null,
  });
}

/** @param {any} response */
export function escalation(response) {
  return Object.freeze({
    decision: decision(response),
    attempt: response.attempt ?? 0,
    previousReservationId: response.previousReservationId ?? "",
    previousCommit: response.previousCommit ? commitResult(response.previousCommit) : null,
  });
}

/** @param {any} response */
export function feedbackResult(response) {
  return Object.freeze({ taskType: response.taskType ?? "", tier: response.tier ?? "" });
}

/** @param {any} response */
export function quality(response) {
  return Object.freeze(
    (response.taskTypes ?? []).map((/** @type {any} */ t) =>
      Object.freeze({
        taskType: t.taskType,
        tiers: Object.freeze(
          (t.tiers ?? []).map((/** @type {any} */ q) =>
            Object.freeze({
              tier: q.tier,
              samples: int(q.samples),
              quality: q.quality ?? 0,
              qualityLow: q.qualityLow ?? 0,
              qualityHigh: q.qualityHigh ?? 0,
            }),
          ),
        ),
        shadowSamples: int(t.shadowSamples),
        shadowMatch: t.shadowMatch ?? 0,
        shadowMatchLow: t.shadowMatchLow ?? 0,
        shadowMatchHigh: t.shadowMatchHigh ?? 0,
        guardMinTier: t.guardMinTier ?? "",
        guardSince: date(t.guardSince),
        escalationCostNanos: nanos(t.escalationCostNanos),
      }),
    ),
  );
}

/**
 * @param {any} response
 * @param {string} [idempotencyKey] the key the request carried
 */
export function reserveResult(response, idempotencyKey = "") {
  return Object.freeze({
    reservation: reservation(response.reservation, idempotencyKey),
    estimatedInputTokens: int(response.estimatedInputTokens),
    estimatedOutputTokens: int(response.estimatedOutputTokens),
    estimatedCostNanos: nanos(response.estimatedCostNanos),
  });
}

/** @param {any} response */
export function commitResult(response) {
  return Object.freeze({
    reservationId: response.reservationId,
    chargedNanos: nanos(response.chargedNanos),
    overshootNanos: nanos(response.overshootNanos),
    releasedNanos: nanos(response.releasedNanos),
    pools: poolList(response.pools),
    replayed: Boolean(response.replayed),
  });
}

/** @param {any} response */
export function releaseResult(response) {
  return Object.freeze({
    reservationId: response.reservationId,
    releasedNanos: nanos(response.releasedNanos),
    pools: poolList(response.pools),
    replayed: Boolean(response.replayed),
  });
}

/** @param {any} response */
export function extendResult(response) {
  return Object.freeze({
    reservationId: response.reservationId,
    expiresAt: /** @type {Date} */ (date(response.expiresAt)),
  });
}

/** @param {any} response */
export function budget(response) {
  return poolList(response.pools);
}
