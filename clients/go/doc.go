// Package tollgate is the Go client of the Tollgate sidecar.
//
// Before each LLM call an application asks the sidecar which model to use
// (Route) and holds the call's estimated cost against every budget pool in
// its scope (Route with Reserve set, or Reserve). After the provider call it
// reports what the provider charged (Commit), or gives the hold back when no
// billable call happened (Release). WithReservation wraps that pattern: the
// reservation is released unless the function committed it.
//
// Money is always an int64 number of nano-dollars (1e-9 USD). Requests and
// responses are the generated protobuf types of tollgate.v1, re-exported here
// under the same names (RouteRequest, Reservation, PoolState, ...), so that
// callers import only this package; InputTokens, Messages and NewMessage build
// the Prompt oneof.
//
// A call the sidecar did not answer (UNAVAILABLE, DEADLINE_EXCEEDED) is
// retried under the client's RetryPolicy (WithRetry, WithoutRetry), a Reserve
// or a reserving Route with one idempotency key on every attempt, so that it
// never holds twice; when the retries are spent, the error is an
// *UnavailableError. Errors are mapped by the sidecar's reason (a
// google.rpc.ErrorInfo of domain ErrorDomain in the status details; see
// Reason and the Reason constants), by the status code only without one: a
// budget refusal is a *BudgetExceededError, a caller over its rate a
// *RateLimitedError, and other failures an *Error that keeps its status,
// classified by IsUnavailable, IsNotFound, IsInvalidArgument,
// IsReservationEnded, IsIdempotencyConflict and IsEscalationRefused.
//
// Escalate routes the next attempt of a call whose output failed the
// application's check one tier up; CallWithEscalation runs that cascade.
// Feedback and GetQuality feed and read the quality guard; CallWithShadow
// makes the shadow call of a sampled request (Route with AcceptShadow) and
// reports the comparison. FormatUSD renders nano-dollars.
//
// The tollgatev1 stubs are generated from proto/tollgate/v1/tollgate.proto
// and committed; `go generate` here (or `make proto` at the repository root)
// regenerates them with protoc and the pinned protoc-gen-go and
// protoc-gen-go-grpc, which it installs from the module proxy.
package tollgate

//go:generate python3 ../../scripts/gen_protos.py --go
