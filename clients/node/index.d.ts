// Type declarations of @tollgate/client.
//
// Money is always a `bigint` of nano-dollars (1e-9 USD) in fields whose names
// end in `Nanos`; token and call counts are `number`s; times are `Date`s;
// proto enums are lower-case names without their prefix ("user", "hard"), ""
// when unset.

import type { Metadata, ChannelOptions, status } from "@grpc/grpc-js";

/** The gRPC status codes (grpc-js `status`), to compare with `TollgateError.code`. */
export declare const Status: typeof status;

/** Where the sidecar listens unless configured otherwise: "127.0.0.1:50551". */
export declare const DEFAULT_TARGET: string;
/** The deadline of each attempt of a call unless configured otherwise: 2000 ms. */
export declare const DEFAULT_TIMEOUT_MS: number;
/** The retry policy of a client without a `retry` option: `{ attempts: 4, budgetMs: 5000, backoffMs: 50, maxBackoffMs: 1000 }`. */
export declare const DEFAULT_RETRY: Readonly<Required<RetryOptions>>;
/** Nano-dollars in one US dollar. */
export declare const NANOS_PER_USD: bigint;
/** Trailing-metadata key of the serialized `tollgate.v1.BudgetExceeded`: "tollgate-budget-exceeded-bin". */
export declare const BUDGET_EXCEEDED_TRAILER: string;
/** The standard trailer with a serialized `google.rpc.Status`: "grpc-status-details-bin". */
export declare const STATUS_DETAILS_TRAILER: string;
/** The `google.rpc.ErrorInfo` domain of the sidecar's errors: "tollgate.dev". */
export declare const ERROR_DOMAIN: string;

/**
 * The `ErrorInfo` reasons the sidecar sends with its error answers; `TollgateError.reason` is one of them, or ""
 * when the status carried none (an older sidecar, or an error of gRPC itself), or a reason of a newer sidecar.
 */
export type ErrorReason =
  | "INVALID_REQUEST"
  | "BUDGET_EXCEEDED"
  | "RATE_LIMITED"
  | "RESERVATION_NOT_FOUND"
  | "RESERVATION_ENDED"
  | "IDEMPOTENCY_CONFLICT"
  | "ESCALATION_REFUSED"
  | "STORE_UNAVAILABLE"
  | "CALLER_GONE"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "INTERNAL";

/** Request priority: only "high" may use a pool's priority reserve. */
export type Priority = "normal" | "high";

/** Who is spending. Each level with an id may have a budget pool in the sidecar. Unknown keys are refused. */
export interface Scope {
  /** Organisation id (the tenant). Required. */
  org: string;
  /** Team id within the organisation. */
  team?: string;
  /** End-user id. */
  user?: string;
  /** Session or agent-run id. */
  session?: string;
  /** Free-form labels carried into the decision log; they never select pools. */
  tags?: Record<string, string> | Map<string, string>;
  /** "normal" (the default) or "high". */
  priority?: Priority;
}

/** A chat message's content: a string, or provider-style parts of which the text ones are counted. */
export type MessageContent = string | null | undefined | ReadonlyArray<string | { text?: string; [key: string]: unknown }>;

/** One chat message: `{ role, content }` (extra keys such as `name` are ignored) or a `[role, content]` pair. */
export type MessageLike = { role: string; content?: MessageContent; [key: string]: unknown } | readonly [string, MessageContent];

/** A non-negative integer: a number (a safe integer) or a bigint (at most 2^63-1). */
export type Count = number | bigint;

/** The prompt: exactly one of `messages` and `inputTokens`. */
export type PromptOptions =
  | { /** The messages to be sent; the sidecar counts their tokens. */ messages: Iterable<MessageLike>; inputTokens?: null }
  | { messages?: null; /** Input tokens already counted by the application. */ inputTokens: Count };

/** The slowest latency class a call accepts ("" for any), and a model's latency class. */
export type LatencyClass = "fast" | "standard" | "slow" | "";

/** Options of `route()`. Unknown keys are refused. */
export type RouteOptions = PromptOptions & {
  /** Application-defined task type such as "extract" or "planning". */
  taskType?: string;
  /** Agent mode such as "code" or "architect". */
  agentMode?: string;
  /** Explicit minimum tier name from the sidecar's tier order, e.g. "medium". */
  minTier?: string;
  needsTools?: boolean;
  needsVision?: boolean;
  needsJson?: boolean;
  /** The output-token limit passed to the provider; 0 (the default) for none. */
  maxOutputTokens?: Count;
  /** Also reserve for the chosen model, in the same round trip. */
  reserve?: boolean;
  /**
   * With `reserve`: a retry with the same key returns the same reservation. When empty and retries are on,
   * the client generates one before the first attempt, used by every attempt of this call.
   */
  idempotencyKey?: string;
  /** With `reserve`: the reservation's time to live in ms; 0 (the default) for the sidecar's. */
  ttlMs?: Count;
  /** The caller makes shadow calls when sampled (see `callWithShadow()`); `decision.shadow` is then set. */
  acceptShadow?: boolean;
  /** The slowest latency class acceptable: "fast", "standard" or "slow"; "" (the default) for any. */
  latency?: LatencyClass;
};

/**
 * Options of `escalate()`. Unknown keys are refused. The prompt is the next attempt's input: it may include the
 * failed answer and what was wrong with it.
 */
export type EscalateOptions = PromptOptions & {
  /** Escalate to this model by name instead of one tier up. */
  model?: string;
  /** Why the output failed, e.g. "invalid_json"; recorded in logs and traces. */
  reason?: string;
  /** The failed attempt's usage, committed in the same step; without it, end that reservation yourself. */
  usage?: Usage | null;
  needsTools?: boolean;
  needsVision?: boolean;
  needsJson?: boolean;
  /** As for `route()`. */
  latency?: LatencyClass;
  /** The output-token limit of the next attempt; 0 (the default) for none. */
  maxOutputTokens?: Count;
  /** The new reservation's time to live in ms; 0 (the default) for the sidecar's. */
  ttlMs?: Count;
};

/** Options of `reserve()`. Unknown keys are refused. */
export type ReserveOptions = PromptOptions & {
  /** Task type, used to estimate output tokens from history. */
  taskType?: string;
  /** The output-token limit passed to the provider; 0 (the default) for none. */
  maxOutputTokens?: Count;
  /**
   * A retry with the same key returns the same reservation. When empty and retries are on, the client
   * generates one before the first attempt, used by every attempt of this call.
   */
  idempotencyKey?: string;
  /** The reservation's time to live in ms; 0 (the default) for the sidecar's. */
  ttlMs?: Count;
};

/**
 * Token usage of one provider call, as reported to `commit()`. `inputTokens`
 * includes the cached ones; `outputTokens` excludes reasoning tokens.
 */
export interface Usage {
  inputTokens: Count;
  /** The part of `inputTokens` served from the provider's prompt cache. */
  cachedInputTokens?: Count;
  outputTokens?: Count;
  /** Reasoning tokens; billed as output. */
  reasoningTokens?: Count;
}

/** What the usage helpers return. */
export interface ProviderUsage extends Usage {
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  reasoningTokens: number;
}

/** The state of one budget pool. */
export interface PoolState {
  /** "org:ORG", "team:ORG/TEAM", "user:ORG/USER" or "session:ORG/SESSION". */
  readonly poolId: string;
  /** "request", "session", "user", "team" or "org". */
  readonly level: string;
  /** "hard", "soft" or "warn". */
  readonly policy: string;
  readonly capNanos: bigint;
  /** The part of the cap normal-priority requests may use. */
  readonly usableCapNanos: bigint;
  readonly spentNanos: bigint;
  readonly heldNanos: bigint;
  /** usableCap - spent - held; may be negative after an overshoot. */
  readonly remainingNanos: bigint;
  /** When the current window ends; null for pools without a window. */
  readonly resetsAt: Date | null;
  readonly calls: number;
  /** 0 when not capped. */
  readonly maxCalls: number;
  readonly tokens: number;
  /** 0 when not capped. */
  readonly maxTokens: number;
  readonly warning: boolean;
}

/** Money held against every pool in a scope until committed, released or expired. */
export interface Reservation {
  readonly reservationId: string;
  readonly model: string;
  /** The estimated cost times the sidecar's margin. */
  readonly heldNanos: bigint;
  readonly expiresAt: Date;
  readonly pools: readonly PoolState[];
  /** True when this answer repeats an earlier request with the same idempotency key. */
  readonly replayed: boolean;
  /**
   * The key the reservation was made under: the caller's, or the one the client generated so that its
   * retries could not hold twice; "" when there was none (retries off).
   */
  readonly idempotencyKey: string;
}

/** A model that could serve the request, with its estimated cost before the margin. */
export interface Candidate {
  readonly model: string;
  readonly provider: string;
  readonly tier: string;
  readonly estimatedCostNanos: bigint;
  /** The model's latency class: "fast", "standard" or "slow" ("" when the catalog does not say). */
  readonly latency: string;
}

/**
 * A sampled request: call `model` too, compare the answers, report through `feedback()` (`callWithShadow()` does
 * all three). `purpose` is "reference" (the model the request would have had without cost routing) or "probe"
 * (the cheap model, checked while its task type is escalated). `reservation` holds the shadow call against the
 * quality pool, not the product's.
 */
export interface Shadow {
  readonly model: string;
  readonly tier: string;
  readonly purpose: string;
  readonly reservation: Reservation | null;
}

/** The answer to `route()`: which model to call, why, and what it should cost. */
export interface Decision {
  readonly model: string;
  readonly provider: string;
  readonly tier: string;
  /** Human-readable, e.g. "rule task_type=extract -> cheap". */
  readonly reason: string;
  /** "rule" or "difficulty". */
  readonly source: string;
  readonly requiredTier: string;
  /** Heuristic difficulty in [0, 1] (when `source` is "difficulty"). */
  readonly difficulty: number;
  readonly estimatedInputTokens: number;
  readonly estimatedOutputTokens: number;
  readonly estimatedCostNanos: bigint;
  /** The chosen model's latency class: "fast", "standard" or "slow" ("" when the catalog does not say). */
  readonly latency: string;
  /** "admitted", "downgraded" or "warned". */
  readonly outcome: string;
  /** Alternatives to try on provider errors, best first. */
  readonly fallbacks: readonly Candidate[];
  /** Set when the route asked to reserve. */
  readonly reservation: Reservation | null;
  /** Set when the route accepted shadow calls and the request was sampled for a quality comparison. */
  readonly shadow: Shadow | null;
}

/**
 * The answer to `escalate()`: the next attempt, reserved. `decision` is its routing decision, with its
 * reservation; `attempt` is 2 for a first escalation; `previousCommit` is the failed attempt's commit when its
 * usage was sent along.
 */
export interface Escalation {
  readonly decision: Decision;
  readonly attempt: number;
  readonly previousReservationId: string;
  readonly previousCommit: CommitResult | null;
}

/** Who judged an answer, for `feedback()`. */
export type FeedbackSource = "user" | "automated_eval" | "shadow_comparison" | "human_review";

/** The answer to `feedback()`: the task type and tier the score was counted under. */
export interface FeedbackResult {
  readonly taskType: string;
  readonly tier: string;
}

/** Direct feedback on one tier of one task type. */
export interface TierQuality {
  readonly tier: string;
  readonly samples: number;
  readonly quality: number;
  readonly qualityLow: number;
  readonly qualityHigh: number;
}

/** The quality guard's view of one task type. */
export interface TaskQuality {
  readonly taskType: string;
  readonly tiers: readonly TierQuality[];
  readonly shadowSamples: number;
  readonly shadowMatch: number;
  readonly shadowMatchLow: number;
  readonly shadowMatchHigh: number;
  /** The minimum tier the guard imposes on the task type; "" when none. */
  readonly guardMinTier: string;
  readonly guardSince: Date | null;
  readonly escalationCostNanos: bigint;
}

/** The answer to `reserve()`: the reservation and the estimate it was sized from. */
export interface ReserveResult {
  readonly reservation: Reservation;
  readonly estimatedInputTokens: number;
  readonly estimatedOutputTokens: number;
  readonly estimatedCostNanos: bigint;
}

/** The answer to `commit()`. */
export interface CommitResult {
  readonly reservationId: string;
  /** The actual cost, charged in full to every pool. */
  readonly chargedNanos: bigint;
  /** The part of the charge above the hold. */
  readonly overshootNanos: bigint;
  /** The part of the hold given back. */
  readonly releasedNanos: bigint;
  readonly pools: readonly PoolState[];
  /** True when this answer repeats an earlier identical commit. */
  readonly replayed: boolean;
}

/** The answer to `release()`. */
export interface ReleaseResult {
  readonly reservationId: string;
  readonly releasedNanos: bigint;
  readonly pools: readonly PoolState[];
  readonly replayed: boolean;
}

/** The answer to `extend()`. */
export interface ExtendResult {
  readonly reservationId: string;
  readonly expiresAt: Date;
}

/** What `withReservation()` accepts: a `route(..., { reserve: true })` decision, a reserve result or a reservation. */
export type ReservationSource = Decision | ReserveResult | Reservation;

/**
 * How a call that failed with UNAVAILABLE or DEADLINE_EXCEEDED is tried again; what is left out takes
 * `DEFAULT_RETRY`'s value. Calls that move money (reserve, route with `reserve`, commit, release, extend,
 * escalate) are retried on both statuses, reads (getBudget, getQuality, route without `reserve`) on UNAVAILABLE
 * only, feedback never; no other status is ever retried.
 */
export interface RetryOptions {
  /** Attempts in all, the first included; 1 never retries (default 4). */
  attempts?: number;
  /**
   * No retry starts later than this many ms after the call began, and a retry's deadline never runs past it;
   * the first attempt always has the full `timeoutMs` (default 5000).
   */
  budgetMs?: number;
  /** The wait before the first retry is drawn uniformly from [0, backoffMs); it doubles each retry (default 50). */
  backoffMs?: number;
  /** The cap of that doubling (default 1000). */
  maxBackoffMs?: number;
}

/** Options of `new TollgateClient()`. */
export interface ClientOptions {
  /** The deadline of each attempt of a call in milliseconds (default 2000). */
  timeoutMs?: number;
  /** How calls the sidecar did not answer are retried (default `DEFAULT_RETRY`); null or false: never. */
  retry?: RetryOptions | null | false;
  /** Headers sent with every call, e.g. an authorization header a proxy checks. */
  metadata?: Metadata | Record<string, string | Buffer | Array<string | Buffer>>;
  /** The tollgate/v1/tollgate.proto to load instead of the package's own copy. */
  protoPath?: string;
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
}

/**
 * Client of the Tollgate sidecar. Every method returns a promise; a failed RPC
 * rejects with a `TollgateError` subclass, and arguments the client can check
 * itself reject with a `TypeError` or `RangeError` before anything is sent.
 */
export declare class TollgateClient {
  /** @param target "host:port" (default "127.0.0.1:50551") or "unix:///path/to.sock" */
  constructor(target?: string, options?: ClientOptions);
  readonly target: string;
  readonly timeoutMs: number;
  /** The retry policy in force; null when calls are not retried. */
  readonly retry: Readonly<Required<RetryOptions>> | null;
  /** Pick the cheapest capable model for a call and, with `reserve: true`, hold its cost. */
  route(scope: Scope, options: RouteOptions): Promise<Decision>;
  /** Hold the estimated cost of a call to `model` against every pool in `scope`, all or none. */
  reserve(scope: Scope, model: string, options: ReserveOptions): Promise<ReserveResult>;
  /** Report what the provider call used; the hold is reconciled and the rest released. Idempotent. */
  commit(reservationId: string, usage: Usage): Promise<CommitResult>;
  /** End a reservation without charging, when no billable call happened. Idempotent. */
  release(reservationId: string): Promise<ReleaseResult>;
  /** Push a reservation's expiry out to `ttlMs` from now (0, the default, for the sidecar's default). */
  extend(reservationId: string, ttlMs?: Count): Promise<ExtendResult>;
  /** The current state of every budget pool in `scope`, broadest level last. */
  getBudget(scope: Scope): Promise<readonly PoolState[]>;
  /**
   * Route and reserve the next attempt of a call whose output failed your check: one tier up, or `options.model`.
   * Idempotent by the failed reservation's id; past the depth limit or the top tier, `EscalationRefusedError`.
   */
  escalate(reservationId: string, scope: Scope, options: EscalateOptions): Promise<Escalation>;
  /** Report how good a call's answer was: a score in [0, 1], or true / false. Never retried. */
  feedback(reservationId: string, score: number | boolean, source?: FeedbackSource): Promise<FeedbackResult>;
  /** The quality guard's report, per task type. */
  getQuality(): Promise<readonly TaskQuality[]>;
  /**
   * Run `fn` with the reservation held and release it unless `fn` committed or
   * released it. If `fn` throws, the reservation is released and the original
   * error rethrown (a failed release is attached to it as `releaseError`).
   * Once `held.commit()` has been called nothing is released, even if the
   * commit failed. Resolves to what `fn` returned.
   */
  withReservation<T>(source: ReservationSource, fn: (held: HeldReservation) => T | Promise<T>): Promise<T>;
  /** Close the channel; calls in flight are cancelled and later calls reject. */
  close(): void;
}

/** A reservation being held inside `withReservation()`. */
export declare class HeldReservation {
  private constructor();
  /** The reservation as it was made. */
  readonly reservation: Reservation;
  readonly reservationId: string;
  readonly model: string;
  /** When the reservation expires, updated by `extend()`. */
  readonly expiresAt: Date;
  /** Whether `commit()` or `release()` has been called, so nothing is released on the way out. */
  readonly settled: boolean;
  /** The answer to the commit or release that settled the reservation, once it succeeded. */
  readonly result: CommitResult | ReleaseResult | null;
  commit(usage: Usage): Promise<CommitResult>;
  release(): Promise<ReleaseResult>;
  extend(ttlMs?: Count): Promise<ExtendResult>;
}

/** Options of the error constructors. */
export interface TollgateErrorOptions {
  metadata?: Metadata | null;
  cause?: unknown;
  /** The sidecar's ErrorInfo reason ("" for none). */
  reason?: string;
}

/**
 * Root of the errors raised for an RPC the sidecar refused or could not answer. The class of an error is chosen by
 * the sidecar's ErrorInfo reason (domain "tollgate.dev", in grpc-status-details-bin); a status without one, or with
 * a reason this client does not know, by its code. RESOURCE_EXHAUSTED without a reason is a `BudgetExceededError`
 * only with the sidecar's BudgetExceeded detail; otherwise (a message over gRPC's size limit) a plain `TollgateError`.
 */
export declare class TollgateError extends Error {
  constructor(code: number, details?: string, options?: TollgateErrorOptions);
  /** The numeric gRPC status; compare with `Status.*`. */
  readonly code: number;
  /** Its name, e.g. "RESOURCE_EXHAUSTED". */
  readonly codeName: string;
  /** The sidecar's message. */
  readonly details: string;
  /** The sidecar's ErrorInfo reason, e.g. "RATE_LIMITED"; "" when the status carried none. */
  readonly reason: ErrorReason | (string & {});
  /** The call's trailing metadata, when there was a call. */
  readonly metadata: Metadata | null;
  /** How many attempts were made. */
  attempts: number;
  /**
   * The key a reserve or a reserving route was sent with, the caller's or the generated one ("" for other
   * calls): a later retry of the same call with that key cannot hold twice.
   */
  idempotencyKey: string;
}

/** Which pool refused a call, and by how much. */
export interface BudgetRefusal {
  /** e.g. "org:acme" or "user:acme/alice". */
  readonly poolId: string;
  /** "request", "session", "user", "team" or "org". */
  readonly level: string;
  /** "hard", "soft" or "warn". */
  readonly policy: string;
  /** "cost", "calls" or "tokens". */
  readonly limit: string;
  /** What the call needed, in the unit of the limit (nano-dollars for cost). */
  readonly requestedNanos: bigint;
  /** What the pool had left for this request's priority, in the unit of the limit. */
  readonly remainingNanos: bigint;
  /** When the pool's window resets; null if it never does. */
  readonly resetsAt: Date | null;
}

/**
 * A budget pool in the scope cannot admit the call (BUDGET_EXCEEDED, RESOURCE_EXHAUSTED). The
 * refusal fields are "", 0n and null when the status came without the
 * sidecar's BudgetExceeded detail.
 */
export declare class BudgetExceededError extends TollgateError implements BudgetRefusal {
  constructor(code: number, details?: string, refusal?: Partial<BudgetRefusal>, options?: TollgateErrorOptions);
  readonly poolId: string;
  readonly level: string;
  readonly policy: string;
  readonly limit: string;
  readonly requestedNanos: bigint;
  readonly remainingNanos: bigint;
  readonly resetsAt: Date | null;
}

/**
 * The caller is over the request rate configured for it (RATE_LIMITED, RESOURCE_EXHAUSTED). Nothing was held; not a
 * `BudgetExceededError`, and not retried by the client.
 */
export declare class RateLimitedError extends TollgateError {}
/** The sidecar rejected the request as malformed or out of range (INVALID_REQUEST, INVALID_ARGUMENT). */
export declare class InvalidRequestError extends TollgateError {}
/** No reservation has this id (RESERVATION_NOT_FOUND, NOT_FOUND). */
export declare class ReservationNotFoundError extends TollgateError {}
/**
 * Already committed, released or expired (RESERVATION_ENDED, FAILED_PRECONDITION); from a sidecar without reasons,
 * also a repeat with other figures.
 */
export declare class ReservationEndedError extends TollgateError {}
/**
 * A repeat carried other figures than the first: a second commit with other usage, or an idempotency key reused for
 * another request (IDEMPOTENCY_CONFLICT, FAILED_PRECONDITION). A `ReservationEndedError`, as it was before reasons.
 */
export declare class IdempotencyConflictError extends ReservationEndedError {}
/** No escalation is left: the depth limit or the top tier is reached (ESCALATION_REFUSED, OUT_OF_RANGE). */
export declare class EscalationRefusedError extends TollgateError {}
/**
 * The sidecar did not answer (UNAVAILABLE, DEADLINE_EXCEEDED), could not reach its budget store (STORE_UNAVAILABLE)
 * or saw the call's deadline pass and undid what it held (CALLER_GONE), after the client's retries.
 */
export declare class UnavailableError extends TollgateError {}

/** The client error for a failed grpc-js call (`code`, `details`, `metadata`); the original becomes `cause`. */
export declare function fromGrpcError(error: unknown, options?: { protoPath?: string }): TollgateError;
/** A serialized `tollgate.v1.BudgetExceeded` (the `tollgate-budget-exceeded-bin` trailer) decoded. */
export declare function decodeBudgetExceeded(bytes: Uint8Array, options?: { protoPath?: string }): BudgetRefusal;

/** Usage of an OpenAI Chat Completions or Responses API response (or final stream chunk). */
export declare function usageFromOpenAI(response: unknown): ProviderUsage;
/** Usage of an Anthropic Messages API response (or final stream event). */
export declare function usageFromAnthropic(response: unknown): ProviderUsage;

/** Options of `callWithShadow()`. */
export interface ShadowOptions<R> {
  /** The usage a response reported, e.g. `usageFromOpenAI`. */
  usage: (response: R) => Usage;
  /** What of a response is compared (default: the response itself). */
  answer?: (response: R) => unknown;
  /** A score in [0, 1] for two answers (default `defaultJudge`). */
  judge?: (primary: unknown, shadow: unknown) => number | boolean;
}

/**
 * What `callWithShadow()` resolves to: the primary response, and the comparison running in the background (null
 * when the request was not sampled), which resolves to the score reported, or null when the shadow call, the judge
 * or the report failed. It never rejects.
 */
export interface ShadowOutcome<R> {
  readonly response: R;
  readonly comparison: Promise<number | null> | null;
}

/**
 * Run `call(decision.model)` under the decision's reservation and commit its usage; if the request was sampled
 * (`decision.shadow`), also call the shadow model in the background, judge the answers and report the score.
 */
export declare function callWithShadow<R>(
  client: TollgateClient,
  decision: Decision,
  call: (model: string) => Promise<R>,
  options: ShadowOptions<R>,
): Promise<ShadowOutcome<R>>;

/** 1 when two answers agree: equal as JSON if both parse, else equal as whitespace-normalized text; else 0. */
export declare function defaultJudge(primary: unknown, shadow: unknown): number;

/** One call of a cascade: where it ran and what the check said ("" = passed). */
export interface Attempt {
  readonly model: string;
  readonly tier: string;
  readonly reservationId: string;
  readonly problem: string;
  readonly chargedNanos: bigint;
}

/** What `callWithEscalation()` resolves to. */
export interface Cascade<R> {
  /** The last response. */
  readonly response: R;
  /** Whether it passed the check. */
  readonly passed: boolean;
  /** Every attempt, in order. */
  readonly attempts: readonly Attempt[];
  /** What the whole cascade cost. */
  readonly chargedNanos: bigint;
}

/** Options of `callWithEscalation()`: `route()`'s, less `reserve` (always on), and the cascade's own. */
export type CascadeOptions<R> = Omit<RouteOptions, "reserve"> & {
  /** "" (or null / undefined) for an acceptable output, else a short reason such as "invalid_json". */
  check: (response: R) => string | null | undefined;
  /** The usage a response reported, e.g. `usageFromOpenAI`. */
  usage: (response: R) => Usage;
  /** The next attempt's messages, given the failed response and the problem (default: the same messages). */
  nextMessages?: (response: R, problem: string) => Iterable<MessageLike>;
};

/**
 * Route and reserve, `call(decision)`, `check` the output, and escalate while it fails; when the sidecar refuses a
 * further escalation, the last response comes back with `passed: false`.
 */
export declare function callWithEscalation<R>(
  client: TollgateClient,
  scope: Scope,
  call: (decision: Decision) => Promise<R>,
  options: CascadeOptions<R>,
): Promise<Cascade<R>>;

/** An amount of nano-dollars as dollars, e.g. 1_234_567_000n → "$1.234567". */
export declare function formatUsd(nanos: bigint | number): string;

/** A fresh random idempotency key: 32 hex characters, the kind the client generates. */
export declare function newIdempotencyKey(): string;

/** The tollgate.proto loaded when no `protoPath` is given. */
export declare function defaultProtoPath(): string;

/** What the provider wrapper takes from a call besides the SDK's own parameters (under `tollgate:`). */
export interface GatedCallOptions {
  taskType?: string;
  agentMode?: string;
  minTier?: string;
  latency?: LatencyClass;
  /** Inferred from `tools`, images and `response_format` when not given. */
  needsTools?: boolean;
  needsVision?: boolean;
  needsJson?: boolean;
  /** Who pays for this call, instead of the wrapper's scope. */
  scope?: Scope;
  /** This call's check, instead of the wrapper's. */
  check?: (response: any) => string | null | undefined | Promise<string | null | undefined>;
  /** For a pinned `model`: the provider whose client calls it (default: the wrapper's default provider). */
  provider?: string;
}

/** How one reservation of a gated call ended. */
export interface AttemptOutcome {
  readonly model: string;
  readonly provider: string;
  readonly tier: string;
  readonly reservationId: string;
  /** committed: the provider's usage; estimated: no usage reported, an estimate; partial: a stream cut after some
   * usage; released: nothing billable happened; unsettled: the commit or release failed (the expiry ends it). */
  readonly settlement: "committed" | "estimated" | "partial" | "released" | "unsettled";
  readonly usage: Usage | null;
  readonly chargedNanos: bigint;
  /** The check's complaint that escalated past this attempt ("" if none). */
  readonly problem: string;
  readonly extensions: number;
}

/** Every reservation one gated call made, once all have ended. */
export interface CallOutcome {
  readonly attempts: readonly AttemptOutcome[];
  readonly stream: boolean;
  readonly chargedNanos: bigint;
}

export interface GateOpenAIOptions {
  tollgate: TollgateClient;
  scope: Scope;
  /** "" (or null / undefined) for an acceptable answer, else a short reason: the call escalates one tier up. */
  check?: (response: any) => string | null | undefined | Promise<string | null | undefined>;
  /** Each reservation's time to live (0: the sidecar's default); a call running past half of it extends it. */
  ttlMs?: number;
  onOutcome?: (outcome: CallOutcome) => void;
  /** The provider of pinned models (default: the first client's). */
  defaultProvider?: string;
}

/** A gated stream: iterate it as the SDK's; `outcome` settles once it has ended and its reservation with it. */
export interface GatedStream<T> extends AsyncIterable<T> {
  readonly outcome: Promise<CallOutcome>;
  /** The SDK's own stream object. */
  readonly sdkStream: unknown;
}

type GatedParams<P> = Omit<P, "model"> & { model?: string; tollgate?: GatedCallOptions };

/** An `openai` client whose Chat Completions and Responses calls Tollgate routes, reserves and commits. */
export declare class GatedOpenAI {
  readonly chat: {
    readonly completions: {
      create(params: GatedParams<Record<string, any>> & { stream: true }, requestOptions?: unknown):
        Promise<GatedStream<any>>;
      create(params: GatedParams<Record<string, any>>, requestOptions?: unknown): Promise<any>;
    };
  };
  readonly responses: {
    create(params: GatedParams<Record<string, any>> & { stream: true }, requestOptions?: unknown):
      Promise<GatedStream<any>>;
    create(params: GatedParams<Record<string, any>>, requestOptions?: unknown): Promise<any>;
  };
  /** The SDK client given for `provider` (the default provider's when omitted), ungated. */
  sdk(provider?: string): any;
}

/**
 * Gate an `openai` client, or one per provider of the catalog (`{openai: new OpenAI(), google: new OpenAI({baseURL:
 * <Gemini's OpenAI-compatible endpoint>})}`): each call goes to the client of the provider the sidecar chose.
 */
export declare function gateOpenAI(openai: unknown, options: GateOpenAIOptions): GatedOpenAI;

/** The sidecar chose providers the wrapper has no client for. */
export declare class MissingProviderClientError extends Error {
  readonly wanted: string[];
  readonly have: string[];
}

/** The answer failed the check and no further attempt was possible; `response` is the last answer, paid for. */
export declare class CheckFailedError extends Error {
  readonly response: unknown;
  readonly problem: string;
  readonly outcome: CallOutcome;
}
