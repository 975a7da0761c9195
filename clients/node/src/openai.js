// The official `openai` npm client, gated by Tollgate: Chat Completions and the Responses API.
//
//   const openai = gateOpenAI(new OpenAI(), { tollgate: new TollgateClient(), scope: { org: "acme", user: "alice" } });
//   const answer = await openai.chat.completions.create({ messages, max_tokens: 512, tollgate: { taskType: "extract" } });
//
// Leave `model` out and the sidecar routes the call; pass it and that model is reserved. Each call is routed (or
// reserved), sent to the SDK client of the provider the decision names, committed with the usage the provider
// reported (a stream's last chunk, asked for with `stream_options.include_usage`), released when no billable call
// happened, extended while it runs past half its reservation's lifetime, and escalated one tier up when the
// application's `check` rejects the answer. This module imports nothing from `openai`: it calls the clients given.

import { EscalationRefusedError, TollgateError } from "./errors.js";
import { usageFromOpenAI } from "./usage.js";

const MIN_EXTEND_INTERVAL_MS = 1_000;
const REASON = /[^A-Za-z0-9 ._:/-]/g;

/** A provider with no client in the wrapper: the decision (and its fallbacks) named only such providers. */
export class MissingProviderClientError extends Error {
  /** @param {string[]} wanted @param {string[]} have */
  constructor(wanted, have) {
    super(
      `the sidecar chose provider ${wanted.map((p) => JSON.stringify(p)).join(", ")}, but the wrapper has clients ` +
        `only for ${have.map((p) => JSON.stringify(p)).join(", ")}: give it a client for each provider of the catalog`,
    );
    this.name = "MissingProviderClientError";
    this.wanted = wanted;
    this.have = have;
  }
}

/** The application's check failed and no further attempt could be made; `response` is the last answer, paid for. */
export class CheckFailedError extends Error {
  /** @param {unknown} response @param {string} problem @param {CallOutcome} outcome */
  constructor(response, problem, outcome) {
    super(`the answer failed the check (${problem}) and no further attempt was possible`);
    this.name = "CheckFailedError";
    this.response = response;
    this.problem = problem;
    this.outcome = outcome;
  }
}

/**
 * @typedef {{model: string, provider: string, tier: string, reservationId: string, expiresAt: Date,
 *   estimatedInputTokens: number}} Hold
 * @typedef {{model: string, provider: string, tier: string, reservationId: string,
 *   settlement: "committed" | "estimated" | "partial" | "released" | "unsettled", usage: any,
 *   chargedNanos: bigint, problem: string, extensions: number}} AttemptOutcome
 * @typedef {{attempts: AttemptOutcome[], stream: boolean, chargedNanos: bigint}} CallOutcome
 */

/** Output tokens of text nobody counted: one token per 4 characters, and at least one per delta. */
function estimatedOutput(/** @type {number} */ deltas, /** @type {number} */ chars) {
  return Math.max(deltas, Math.ceil(chars / 4));
}

/** The check's complaint as an escalation reason the sidecar accepts. */
function reasonOf(/** @type {string} */ problem) {
  const reason = problem.trim().replace(REASON, "_").slice(0, 64).replace(/^[ ._:/-]+|[ ._:/-]+$/g, "");
  return reason || "check_failed";
}

/** @param {any} value */
const plain = (value) => (value && typeof value === "object" ? value : {});

/** The text of a message's content (a string or a list of parts), and whether it has images. */
function contentText(/** @type {any} */ content) {
  if (typeof content === "string") return [content, false];
  if (!Array.isArray(content)) return ["", false];
  let images = false;
  const texts = [];
  for (const part of content) {
    if (typeof part === "string") texts.push(part);
    else if (["image_url", "input_image", "image"].includes(plain(part).type)) images = true;
    else {
      const text = part?.text ?? part?.refusal ?? part?.output ?? "";
      if (typeof text === "string") texts.push(text);
    }
  }
  return [texts.join("\n"), images];
}

const ROLES = new Set(["system", "user", "assistant", "tool"]);
const roleOf = (/** @type {any} */ role) => (role === "developer" ? "system" : ROLES.has(role) ? role : "user");

/** Whether a `response_format` (or the Responses API's `text.format`) asks for JSON, and its schema's text. */
function jsonFormat(/** @type {any} */ format) {
  const kind = plain(format).type;
  if (kind === "json_schema") return [true, JSON.stringify(format.json_schema ?? format.schema ?? {})];
  return [kind === "json_object", ""];
}

/** @typedef {{messages: {role: string, content: string}[], maxOutputTokens: number, needsTools: boolean,
 *   needsVision: boolean, needsJson: boolean}} Request */

/** @returns {Request} */
function describeChat(/** @type {any} */ params) {
  const messages = [];
  const tools = params.tools ?? params.functions;
  if (tools?.length) messages.push({ role: "system", content: JSON.stringify(tools) });
  const [needsJson, schema] = jsonFormat(params.response_format);
  if (schema) messages.push({ role: "system", content: schema });
  let vision = false;
  for (const message of params.messages ?? []) {
    const [text, images] = contentText(message.content);
    vision ||= images;
    const calls = (message.tool_calls ?? []).map((/** @type {any} */ c) => JSON.stringify(c.function ?? c));
    messages.push({ role: roleOf(message.role), content: [text, ...calls].filter(Boolean).join("\n") });
  }
  return {
    messages,
    maxOutputTokens: Number(params.max_completion_tokens ?? params.max_tokens ?? 0),
    needsTools: Boolean(tools?.length),
    needsVision: vision,
    needsJson,
  };
}

/** @returns {Request} */
function describeResponses(/** @type {any} */ params) {
  const messages = [];
  if (typeof params.instructions === "string" && params.instructions) {
    messages.push({ role: "system", content: params.instructions });
  }
  if (params.tools?.length) messages.push({ role: "system", content: JSON.stringify(params.tools) });
  const [needsJson, schema] = jsonFormat(params.text?.format);
  if (schema) messages.push({ role: "system", content: schema });
  let vision = false;
  const items = typeof params.input === "string" ? [{ role: "user", content: params.input }] : params.input ?? [];
  for (const item of items) {
    const kind = item.type ?? "message";
    if (kind === "message" || item.role) {
      const [text, images] = contentText(item.content);
      vision ||= images;
      messages.push({ role: roleOf(item.role), content: text });
    } else if (kind.endsWith("_call_output")) {
      messages.push({ role: "tool", content: contentText(item.output)[0] });
    } else if (kind.endsWith("_call")) {
      messages.push({ role: "assistant", content: `${item.name ?? ""} ${item.arguments ?? item.input ?? ""}` });
    }
  }
  return {
    messages,
    maxOutputTokens: Number(params.max_output_tokens ?? 0),
    needsTools: Boolean(params.tools?.length),
    needsVision: vision,
    needsJson,
  };
}

function chatText(/** @type {any} */ response) {
  return (response?.choices ?? [])
    .map((/** @type {any} */ c) => (c.message?.content ?? "") + (c.message?.tool_calls ?? []).map(JSON.stringify).join(""))
    .join("");
}

function responsesText(/** @type {any} */ response) {
  if (typeof response?.output_text === "string") return response.output_text;
  return (response?.output ?? [])
    .map((/** @type {any} */ item) => contentText(item.content)[0] + (item.arguments ?? ""))
    .join("");
}

/** Chat Completions chunks: usage comes in the last chunk (no choices), with `include_usage`. */
class ChatMeter {
  final = false;
  deltas = 0;
  chars = 0;
  /** @type {any} */ usage = null;

  observe(/** @type {any} */ chunk) {
    const choices = chunk?.choices ?? [];
    if (chunk?.usage) {
      this.usage = usageFromOpenAI(chunk);
      // Providers that report usage on every chunk report it cumulatively; the last one is final.
      this.final = choices.length === 0 || choices.some((/** @type {any} */ c) => c.finish_reason);
    }
    for (const choice of choices) {
      const delta = choice.delta ?? {};
      let chars = (delta.content ?? "").length + (delta.refusal ?? "").length;
      for (const call of delta.tool_calls ?? []) chars += (call.function?.arguments ?? "").length;
      if (chars) {
        this.deltas += 1;
        this.chars += chars;
      }
    }
  }
}

const FINAL_EVENTS = new Set(["response.completed", "response.incomplete", "response.failed"]);

/** Responses API events: usage comes with the response of the last event. */
class ResponsesMeter {
  final = false;
  deltas = 0;
  chars = 0;
  /** @type {any} */ usage = null;

  observe(/** @type {any} */ event) {
    const kind = String(event?.type ?? "");
    if (FINAL_EVENTS.has(kind)) {
      if (event.response?.usage) {
        this.usage = usageFromOpenAI(event.response);
        this.final = true;
      }
    } else if (kind.endsWith(".delta") && typeof event.delta === "string" && event.delta) {
      this.deltas += 1;
      this.chars += event.delta.length;
    }
  }
}

const CHAT = {
  name: "chat.completions.create",
  path: ["chat", "completions", "create"],
  describe: describeChat,
  text: chatText,
  Meter: ChatMeter,
  /** A streaming call that ends with a chunk carrying the whole call's usage. */
  prepareStream: (/** @type {any} */ params) => ({
    ...params,
    stream_options: { ...plain(params.stream_options), include_usage: true },
  }),
};

const RESPONSES = {
  name: "responses.create",
  path: ["responses", "create"],
  describe: describeResponses,
  text: responsesText,
  Meter: ResponsesMeter,
  prepareStream: (/** @type {any} */ params) => params,
};

/** Extends a reservation every half lifetime while its call runs. */
class Keeper {
  extensions = 0;
  /** @type {ReturnType<typeof setInterval> | null} */ #timer;

  /** @param {import("./client.js").TollgateClient} tollgate @param {Hold} hold @param {number} ttlMs */
  constructor(tollgate, hold, ttlMs) {
    const lifetime = ttlMs || hold.expiresAt.getTime() - Date.now();
    this.#timer = setInterval(() => {
      tollgate.extend(hold.reservationId, ttlMs).then(
        () => (this.extensions += 1),
        () => {}, // a failed extension leaves the expiry as it was; the commit still settles the call
      );
    }, Math.max(lifetime / 2, MIN_EXTEND_INTERVAL_MS));
    this.#timer.unref?.();
  }

  stop() {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}

/**
 * Wrap an `openai` client (or one per provider of the catalog) so that Tollgate routes, reserves and commits each
 * call. `options.tollgate` is a `TollgateClient`; `options.scope` who pays unless a call passes its own;
 * `options.check(response)` returns "" for an acceptable answer or a short reason, which escalates the call one
 * tier up; `options.ttlMs` each reservation's time to live (0: the sidecar's default); `options.onOutcome` sees
 * every call's outcome; `options.defaultProvider` takes pinned models (the first client's provider otherwise).
 *
 * A call takes the SDK's parameters, and `tollgate: {taskType, agentMode, minTier, latency, needsTools,
 * needsVision, needsJson, scope, check, provider}`, which the wrapper removes before calling the SDK.
 * @param {any} openai an `OpenAI` client, or `{provider: OpenAI}`
 * @param {{tollgate: import("./client.js").TollgateClient, scope: import("../index.js").Scope,
 *   check?: (response: any) => string | null | undefined, ttlMs?: number,
 *   onOutcome?: (outcome: CallOutcome) => void, defaultProvider?: string}} options
 */
export function gateOpenAI(openai, options) {
  return new GatedOpenAI(openai, options);
}

export class GatedOpenAI {
  #gate;

  /** @param {any} openai @param {any} options */
  constructor(openai, options) {
    this.#gate = new Gate(openai, options);
    const gate = this.#gate;
    this.chat = {
      completions: {
        /** @param {any} params @param {any} [requestOptions] */
        create: (params, requestOptions) => gate.call(CHAT, params, requestOptions),
      },
    };
    this.responses = {
      /** @param {any} params @param {any} [requestOptions] */
      create: (params, requestOptions) => gate.call(RESPONSES, params, requestOptions),
    };
  }

  /** The SDK client given for `provider` (the default provider's when omitted), ungated. */
  sdk(/** @type {string} */ provider) {
    return this.#gate.sdk(provider);
  }
}

class Gate {
  /** @param {any} openai @param {any} options */
  constructor(openai, options) {
    const { tollgate, scope, check, ttlMs = 0, onOutcome, defaultProvider } = options ?? {};
    if (!tollgate || typeof tollgate.route !== "function") {
      throw new TypeError("gateOpenAI() needs options.tollgate, a TollgateClient");
    }
    if (!scope || typeof scope.org !== "string" || !scope.org) {
      throw new TypeError("gateOpenAI() needs options.scope with an org");
    }
    const isClient = openai && typeof openai.chat === "object";
    /** @type {Map<string, any>} */
    this.clients = new Map(isClient ? [["openai", openai]] : Object.entries(openai ?? {}));
    if (this.clients.size === 0) throw new TypeError("give at least one openai client");
    this.defaultProvider = defaultProvider ?? this.clients.keys().next().value;
    if (!this.clients.has(this.defaultProvider)) {
      throw new TypeError(`defaultProvider ${JSON.stringify(this.defaultProvider)} has no client`);
    }
    this.tollgate = tollgate;
    this.scope = scope;
    this.check = check;
    this.ttlMs = ttlMs;
    this.onOutcome = onOutcome;
  }

  sdk(/** @type {string | undefined} */ provider) {
    return this.clients.get(provider ?? this.defaultProvider);
  }

  /** @param {typeof CHAT} endpoint @param {any} params @param {any} requestOptions */
  async call(endpoint, params, requestOptions) {
    const { tollgate: own = {}, model = "", ...body } = params ?? {};
    const opts = { ...own, scope: own.scope ?? this.scope, check: own.check ?? this.check, model };
    const request = endpoint.describe(body);
    const stream = Boolean(body.stream);
    const sent = stream ? endpoint.prepareStream(body) : body;
    let hold = await this.#acquire(request, opts);
    /** @type {AttemptOutcome[]} */
    const attempts = [];
    for (;;) {
      const keeper = new Keeper(this.tollgate, hold, this.ttlMs);
      let response;
      try {
        response = await this.#method(hold.provider, endpoint.path)({ ...sent, model: hold.model }, requestOptions);
      } catch (error) {
        keeper.stop();
        attempts.push(await this.#release(hold, keeper.extensions, error));
        this.#emit(attempts, stream);
        throw error;
      }
      if (stream) return this.#gatedStream(response, new endpoint.Meter(), hold, keeper, attempts);
      keeper.stop();
      const [usage, settlement] = this.#usageOf(endpoint, response, hold);
      let problem = "";
      try {
        problem = opts.check ? (await opts.check(response)) || "" : "";
      } catch (error) {
        attempts.push(await this.#commit(hold, usage, settlement, "", keeper.extensions));
        this.#emit(attempts, stream);
        throw error;
      }
      if (!problem) {
        attempts.push(await this.#commit(hold, usage, settlement, "", keeper.extensions));
        this.#emit(attempts, stream);
        return response;
      }
      let escalation;
      try {
        escalation = await this.tollgate.escalate(hold.reservationId, opts.scope, {
          ...this.#prompt(request),
          ...this.#needs(request, opts),
          reason: reasonOf(problem),
          usage,
          latency: opts.latency,
          maxOutputTokens: request.maxOutputTokens,
          ttlMs: this.ttlMs,
        });
      } catch (error) {
        attempts.push(await this.#commit(hold, usage, settlement, problem, keeper.extensions));
        const failed = new CheckFailedError(response, problem, this.#emit(attempts, stream));
        if (!(error instanceof EscalationRefusedError)) failed.cause = error;
        throw failed;
      }
      const charged = escalation.previousCommit ? escalation.previousCommit.chargedNanos : 0n;
      attempts.push(this.#attempt(hold, settlement, usage, charged, problem, keeper.extensions));
      try {
        hold = await this.#serve(escalation.decision, request, opts);
      } catch (error) {
        if (error instanceof TollgateError || error instanceof MissingProviderClientError) {
          // No next attempt this wrapper can make: the caller still gets the answer it paid for.
          const failed = new CheckFailedError(response, problem, this.#emit(attempts, stream));
          failed.cause = error;
          throw failed;
        }
        this.#emit(attempts, stream);
        throw error;
      }
    }
  }

  #method(/** @type {string} */ provider, /** @type {string[]} */ path) {
    let owner = this.clients.get(provider);
    for (const name of path.slice(0, -1)) owner = owner[name];
    const method = owner[path[path.length - 1]];
    return method.bind(owner);
  }

  #prompt(/** @type {Request} */ request) {
    return request.messages.length ? { messages: request.messages } : { inputTokens: 0 };
  }

  #needs(/** @type {Request} */ request, /** @type {any} */ opts) {
    return {
      needsTools: Boolean(opts.needsTools ?? request.needsTools),
      needsVision: Boolean(opts.needsVision ?? request.needsVision),
      needsJson: Boolean(opts.needsJson ?? request.needsJson),
    };
  }

  /** @returns {Promise<Hold>} */
  async #acquire(/** @type {Request} */ request, /** @type {any} */ opts) {
    if (opts.model) {
      const provider = opts.provider || this.defaultProvider;
      if (!this.clients.has(provider)) throw new MissingProviderClientError([provider], [...this.clients.keys()]);
      const result = await this.tollgate.reserve(opts.scope, opts.model, this.#reserveOptions(request, opts));
      return holdOfReserve({ model: opts.model, provider, tier: "" }, result);
    }
    const decision = await this.tollgate.route(opts.scope, {
      ...this.#prompt(request),
      ...this.#needs(request, opts),
      taskType: opts.taskType ?? "",
      agentMode: opts.agentMode ?? "",
      minTier: opts.minTier ?? "",
      latency: opts.latency,
      maxOutputTokens: request.maxOutputTokens,
      reserve: true,
      ttlMs: this.ttlMs,
    });
    return this.#serve(decision, request, opts);
  }

  #reserveOptions(/** @type {Request} */ request, /** @type {any} */ opts) {
    return {
      ...this.#prompt(request),
      taskType: opts.taskType ?? "",
      maxOutputTokens: request.maxOutputTokens,
      ttlMs: this.ttlMs,
    };
  }

  /** The decision's hold if its provider has a client; else the first fallback's, reserved instead. */
  async #serve(/** @type {any} */ decision, /** @type {Request} */ request, /** @type {any} */ opts) {
    const hold = holdOfDecision(decision);
    if (this.clients.has(hold.provider)) return hold;
    await this.tollgate.release(hold.reservationId);
    const candidate = decision.fallbacks.find((/** @type {any} */ c) => this.clients.has(c.provider));
    if (!candidate) {
      const wanted = [...new Set([decision.provider, ...decision.fallbacks.map((/** @type {any} */ c) => c.provider)])];
      throw new MissingProviderClientError(wanted, [...this.clients.keys()]);
    }
    const result = await this.tollgate.reserve(opts.scope, candidate.model, this.#reserveOptions(request, opts));
    return holdOfReserve(candidate, result);
  }

  /** @returns {[any, AttemptOutcome["settlement"]]} */
  #usageOf(/** @type {typeof CHAT} */ endpoint, /** @type {any} */ response, /** @type {Hold} */ hold) {
    try {
      return [usageFromOpenAI(response), "committed"];
    } catch {
      const output = estimatedOutput(0, endpoint.text(response).length);
      console.warn(
        `tollgate: the ${endpoint.name} answer of ${hold.model} carries no usage: committing an estimate ` +
          `(${hold.estimatedInputTokens} input, ${output} output tokens)`,
      );
      return [{ inputTokens: hold.estimatedInputTokens, outputTokens: output }, "estimated"];
    }
  }

  /** What to commit for a stream that ended: null to release. */
  #streamUsage(/** @type {ChatMeter} */ meter, /** @type {Hold} */ hold) {
    if (meter.usage && meter.final) return [meter.usage, "committed"];
    const seen = estimatedOutput(meter.deltas, meter.chars);
    if (meter.usage) return [{ ...meter.usage, outputTokens: Math.max(meter.usage.outputTokens, seen) }, "partial"];
    if (meter.deltas) return [{ inputTokens: hold.estimatedInputTokens, outputTokens: seen }, "estimated"];
    return [null, "released"];
  }

  /** The SDK's stream, observed: its end (done, failed, or abandoned by a `break`) commits or releases. */
  #gatedStream(
    /** @type {any} */ inner,
    /** @type {ChatMeter} */ meter,
    /** @type {Hold} */ hold,
    /** @type {Keeper} */ keeper,
    /** @type {AttemptOutcome[]} */ attempts,
  ) {
    /** @type {(outcome: CallOutcome) => void} */
    let settle = () => {};
    const outcome = new Promise((resolve) => (settle = resolve));
    const end = async (/** @type {unknown} */ error) => {
      keeper.stop();
      const [usage, settlement] = this.#streamUsage(meter, hold);
      const attempt =
        usage === null
          ? await this.#release(hold, keeper.extensions, error)
          : await this.#commit(hold, usage, /** @type {any} */ (settlement), "", keeper.extensions);
      settle(this.#emit([...attempts, attempt], true));
    };
    return {
      /** The call's outcome, once the stream has ended and its reservation with it. */
      outcome,
      /** The SDK's own stream object (its `controller` aborts the request). */
      sdkStream: inner,
      async *[Symbol.asyncIterator]() {
        let failure;
        try {
          for await (const item of inner) {
            meter.observe(item);
            yield item;
          }
        } catch (error) {
          failure = error;
          throw error;
        } finally {
          await end(failure);
        }
      },
    };
  }

  async #commit(
    /** @type {Hold} */ hold,
    /** @type {any} */ usage,
    /** @type {AttemptOutcome["settlement"]} */ settlement,
    /** @type {string} */ problem,
    /** @type {number} */ extensions,
  ) {
    try {
      const done = await this.tollgate.commit(hold.reservationId, usage);
      return this.#attempt(hold, settlement, usage, done.chargedNanos, problem, extensions);
    } catch (error) {
      console.warn(`tollgate: the commit of ${hold.reservationId} failed; the sidecar's expiry policy will end it`, error);
      return this.#attempt(hold, "unsettled", usage, 0n, problem, extensions);
    }
  }

  async #release(/** @type {Hold} */ hold, /** @type {number} */ extensions, /** @type {any} */ error) {
    try {
      await this.tollgate.release(hold.reservationId);
      return this.#attempt(hold, "released", null, 0n, "", extensions);
    } catch (releaseError) {
      if (error && typeof error === "object") /** @type {any} */ (error).releaseError = releaseError;
      return this.#attempt(hold, "unsettled", null, 0n, "", extensions);
    }
  }

  /** @returns {AttemptOutcome} */
  #attempt(
    /** @type {Hold} */ hold,
    /** @type {AttemptOutcome["settlement"]} */ settlement,
    /** @type {any} */ usage,
    /** @type {bigint} */ chargedNanos,
    /** @type {string} */ problem,
    /** @type {number} */ extensions,
  ) {
    return Object.freeze({
      model: hold.model,
      provider: hold.provider,
      tier: hold.tier,
      reservationId: hold.reservationId,
      settlement,
      usage,
      chargedNanos,
      problem,
      extensions,
    });
  }

  /** @returns {CallOutcome} */
  #emit(/** @type {AttemptOutcome[]} */ attempts, /** @type {boolean} */ stream) {
    const outcome = Object.freeze({
      attempts: Object.freeze([...attempts]),
      stream,
      chargedNanos: attempts.reduce((sum, a) => sum + a.chargedNanos, 0n),
    });
    if (this.onOutcome) {
      try {
        this.onOutcome(outcome);
      } catch (error) {
        console.warn("tollgate: the onOutcome hook threw", error);
      }
    }
    return outcome;
  }
}

/** @returns {Hold} */
function holdOfDecision(/** @type {any} */ decision) {
  const r = decision.reservation;
  return {
    model: decision.model,
    provider: decision.provider,
    tier: decision.tier,
    reservationId: r.reservationId,
    expiresAt: r.expiresAt,
    estimatedInputTokens: decision.estimatedInputTokens,
  };
}

/** @returns {Hold} */
function holdOfReserve(/** @type {any} */ candidate, /** @type {any} */ result) {
  return {
    model: candidate.model,
    provider: candidate.provider,
    tier: candidate.tier ?? "",
    reservationId: result.reservation.reservationId,
    expiresAt: result.reservation.expiresAt,
    estimatedInputTokens: result.estimatedInputTokens,
  };
}
