// Node.js client of the Tollgate sidecar. Before each LLM call, ask the sidecar
// which model to use and hold the call's estimated cost against the caller's
// budgets; after it, commit what the provider reported.

export { status as Status } from "@grpc/grpc-js";

export { DEFAULT_TARGET, DEFAULT_TIMEOUT_MS, TollgateClient } from "./client.js";
export {
  BUDGET_EXCEEDED_TRAILER,
  BudgetExceededError,
  ERROR_DOMAIN,
  EscalationRefusedError,
  IdempotencyConflictError,
  InvalidRequestError,
  RateLimitedError,
  ReservationEndedError,
  ReservationNotFoundError,
  STATUS_DETAILS_TRAILER,
  TollgateError,
  UnavailableError,
  decodeBudgetExceeded,
  fromGrpcError,
} from "./errors.js";
export { callWithEscalation } from "./escalate.js";
export { NANOS_PER_USD, formatUsd } from "./money.js";
export { defaultProtoPath } from "./proto.js";
export { HeldReservation } from "./reservation.js";
export { DEFAULT_RETRY, newIdempotencyKey } from "./retry.js";
export { CheckFailedError, GatedOpenAI, MissingProviderClientError, gateOpenAI } from "./openai.js";
export { callWithShadow, defaultJudge } from "./shadow.js";
export { usageFromAnthropic, usageFromOpenAI } from "./usage.js";
