package tollgate

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "github.com/tollgate/tollgate/clients/go/tollgatev1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// BudgetExceededTrailer is the trailing-metadata key under which the sidecar
// also sends a serialized tollgate.v1.BudgetExceeded with a refusal.
const BudgetExceededTrailer = "tollgate-budget-exceeded-bin"

// ErrorDomain is the google.rpc.ErrorInfo domain of the sidecar's errors. An
// ErrorInfo of another domain is not read.
const ErrorDomain = "tollgate.dev"

// The reasons the sidecar sends, in a google.rpc.ErrorInfo of domain
// ErrorDomain in the status details, with every error answer. Reason gives
// the reason of an error; the Is helpers classify by it.
const (
	ReasonInvalidRequest      = "INVALID_REQUEST"       // INVALID_ARGUMENT
	ReasonBudgetExceeded      = "BUDGET_EXCEEDED"       // RESOURCE_EXHAUSTED
	ReasonRateLimited         = "RATE_LIMITED"          // RESOURCE_EXHAUSTED
	ReasonReservationNotFound = "RESERVATION_NOT_FOUND" // NOT_FOUND
	ReasonReservationEnded    = "RESERVATION_ENDED"     // FAILED_PRECONDITION
	ReasonIdempotencyConflict = "IDEMPOTENCY_CONFLICT"  // FAILED_PRECONDITION
	ReasonEscalationRefused   = "ESCALATION_REFUSED"    // OUT_OF_RANGE
	ReasonStoreUnavailable    = "STORE_UNAVAILABLE"     // UNAVAILABLE
	ReasonCallerGone          = "CALLER_GONE"           // DEADLINE_EXCEEDED
	ReasonUnauthenticated     = "UNAUTHENTICATED"       // UNAUTHENTICATED
	ReasonPermissionDenied    = "PERMISSION_DENIED"     // PERMISSION_DENIED
	ReasonInternal            = "INTERNAL"              // INTERNAL
)

var knownReasons = map[string]bool{
	ReasonInvalidRequest: true, ReasonBudgetExceeded: true, ReasonRateLimited: true,
	ReasonReservationNotFound: true, ReasonReservationEnded: true, ReasonIdempotencyConflict: true,
	ReasonEscalationRefused: true, ReasonStoreUnavailable: true, ReasonCallerGone: true,
	ReasonUnauthenticated: true, ReasonPermissionDenied: true, ReasonInternal: true,
}

// BudgetExceededError is a budget refusal (BUDGET_EXCEEDED, RESOURCE_EXHAUSTED):
// a pool in the scope cannot admit the call. The fields say which pool refused
// and by how much; they are zero when the status came without the sidecar's
// BudgetExceeded detail. Match it with errors.As or IsBudgetExceeded;
// status.Code and Code see RESOURCE_EXHAUSTED.
type BudgetExceededError struct {
	// PoolID is the first pool that refused, e.g. "org:acme" or "user:acme/alice".
	PoolID string
	// Level and Policy are the pool's.
	Level  PoolLevel
	Policy Policy
	// Limit is the limit that refused: "cost", "calls", "tokens" or "open".
	Limit string
	// RequestedNanos is what the call needed and RemainingNanos what the pool
	// had left for the request's priority, in the unit of Limit: nano-dollars
	// for "cost", else calls or tokens.
	RequestedNanos int64
	RemainingNanos int64
	// ResetsAt is when the pool's window resets; zero if it never does.
	ResetsAt time.Time
	// Reason is ReasonBudgetExceeded, or "" from a sidecar that sends no reasons.
	Reason string

	status *status.Status
}

func (e *BudgetExceededError) Error() string {
	switch {
	case e.status.Message() != "": // the sidecar's message names the pool and the figures
		return "tollgate: budget exceeded: " + e.status.Message()
	case e.PoolID != "":
		return fmt.Sprintf("tollgate: budget exceeded: pool %s (%s limit) needs %d, has %d left",
			e.PoolID, e.Limit, e.RequestedNanos, e.RemainingNanos)
	}
	return "tollgate: budget exceeded"
}

// GRPCStatus is the RESOURCE_EXHAUSTED status the sidecar answered with.
func (e *BudgetExceededError) GRPCStatus() *status.Status {
	return e.status
}

func (e *BudgetExceededError) reason() string { return e.Reason }

// RateLimitedError is the refusal of a caller over the request rate
// configured for it (RATE_LIMITED, RESOURCE_EXHAUSTED). Nothing was held or
// counted against a budget, and the client does not retry it; the sidecar's
// message says when to try again. It is not a *BudgetExceededError, although
// status.Code and Code see RESOURCE_EXHAUSTED for both.
type RateLimitedError struct {
	// Reason is ReasonRateLimited.
	Reason string

	status *status.Status
}

func (e *RateLimitedError) Error() string {
	if msg := e.status.Message(); msg != "" {
		return "tollgate: rate limited: " + msg
	}
	return "tollgate: rate limited"
}

// GRPCStatus is the RESOURCE_EXHAUSTED status the sidecar answered with.
func (e *RateLimitedError) GRPCStatus() *status.Status { return e.status }

func (e *RateLimitedError) reason() string { return e.Reason }

// Error is any other failed call that has a gRPC status: a refusal of the
// sidecar (an invalid request, an unknown or ended reservation, an
// idempotency conflict, a refused escalation, missing credentials, ...) or an
// error of gRPC itself (a message over the size limit, a cancelled call).
// Error() is the status error's text; status.Code, status.FromError and Code
// see the status through it, and the Is helpers classify it by Reason.
type Error struct {
	// Reason is the sidecar's ErrorInfo reason, one of the Reason constants
	// (or a newer sidecar's); "" when the status carried none.
	Reason string

	err    error
	status *status.Status
}

func (e *Error) Error() string { return e.err.Error() }

// Unwrap is the gRPC status error.
func (e *Error) Unwrap() error { return e.err }

// GRPCStatus is the status the call failed with.
func (e *Error) GRPCStatus() *status.Status { return e.status }

func (e *Error) reason() string { return e.Reason }

// ErrNoReservation is returned by WithReservation for a nil reservation, such
// as the one of a Route without Reserve.
var ErrNoReservation = errors.New("tollgate: no reservation: set Reserve in the RouteRequest to get one")

// Code is the gRPC status code of err, looking through wrapped errors: OK for
// nil, DeadlineExceeded and Canceled for the context errors, Unknown for an
// error without a status.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var withStatus interface{ GRPCStatus() *status.Status }
	if errors.As(err, &withStatus) {
		return withStatus.GRPCStatus().Code()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Unknown
}

// Reason is the sidecar's ErrorInfo reason of err (one of the Reason
// constants), looking through wrapped errors: read from the client's error
// types, or from the status details of a gRPC status error (such as one from
// the raw Stub). It is "" for nil, for an error without a status, and for a
// status without the sidecar's ErrorInfo (from an older sidecar, or made by
// gRPC itself).
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var withReason interface{ reason() string }
	if errors.As(err, &withReason) {
		return withReason.reason()
	}
	if st, ok := statusOf(err); ok {
		return reasonOf(st)
	}
	return ""
}

// IsBudgetExceeded reports whether a budget pool refused the call (reason
// BUDGET_EXCEEDED; without a reason, a RESOURCE_EXHAUSTED that carries the
// sidecar's BudgetExceeded detail); errors.As with a *BudgetExceededError gives
// the details. A caller over its rate (IsRateLimited) and a message over
// gRPC's size limit are RESOURCE_EXHAUSTED too, and are not budget refusals.
func IsBudgetExceeded(err error) bool { return kind(err) == ReasonBudgetExceeded }

// IsRateLimited reports whether the caller is over its configured request
// rate (reason RATE_LIMITED); nothing was held.
func IsRateLimited(err error) bool { return kind(err) == ReasonRateLimited }

// IsUnavailable reports whether the sidecar could not be reached or did not
// answer in time (UNAVAILABLE or DEADLINE_EXCEEDED, among them the sidecar's
// STORE_UNAVAILABLE and CALLER_GONE), after the client's retries (see
// RetryPolicy); errors.As with an *UnavailableError gives the attempts made
// and the idempotency key a Reserve was sent with.
func IsUnavailable(err error) bool {
	switch kind(err) {
	case ReasonStoreUnavailable, ReasonCallerGone:
		return true
	case "":
		c := Code(err)
		return c == codes.Unavailable || c == codes.DeadlineExceeded
	}
	return false
}

// IsNotFound reports whether no reservation has the id (reason
// RESERVATION_NOT_FOUND; without a reason, NOT_FOUND).
func IsNotFound(err error) bool { return kind(err) == ReasonReservationNotFound }

// IsInvalidArgument reports whether the sidecar rejected the request as
// malformed or out of range (reason INVALID_REQUEST; without a reason,
// INVALID_ARGUMENT).
func IsInvalidArgument(err error) bool { return kind(err) == ReasonInvalidRequest }

// IsReservationEnded reports whether the reservation was already committed,
// released or expired (reason RESERVATION_ENDED; without a reason,
// FAILED_PRECONDITION), or a repeat carried other figures
// (IsIdempotencyConflict), as a sidecar without reasons reported both.
func IsReservationEnded(err error) bool {
	k := kind(err)
	return k == ReasonReservationEnded || k == ReasonIdempotencyConflict
}

// IsIdempotencyConflict reports whether a repeat carried different figures
// than the first (reason IDEMPOTENCY_CONFLICT): a commit of a committed
// reservation with other usage, or a reserve reusing an idempotency key for
// another request.
func IsIdempotencyConflict(err error) bool { return kind(err) == ReasonIdempotencyConflict }

// IsEscalationRefused reports whether the call cannot be escalated further:
// its depth limit or the top tier is reached (reason ESCALATION_REFUSED;
// without a reason, OUT_OF_RANGE).
func IsEscalationRefused(err error) bool { return kind(err) == ReasonEscalationRefused }

// kind is what err is, as a reason: its reason when the client knows it; else,
// from the status code, the reason the code stands for without ambiguity
// (RESOURCE_EXHAUSTED only with the refusal's detail), or "".
func kind(err error) string {
	var refused *BudgetExceededError
	if errors.As(err, &refused) {
		return ReasonBudgetExceeded
	}
	var limited *RateLimitedError
	if errors.As(err, &limited) {
		return ReasonRateLimited
	}
	if reason := Reason(err); knownReasons[reason] {
		return reason
	}
	st, ok := statusOf(err)
	if !ok {
		return ""
	}
	return kindOfStatus(st, nil)
}

func kindOfStatus(st *status.Status, trailer metadata.MD) string {
	if reason := reasonOf(st); knownReasons[reason] {
		return reason
	}
	switch st.Code() {
	case codes.InvalidArgument:
		return ReasonInvalidRequest
	case codes.NotFound:
		return ReasonReservationNotFound
	case codes.FailedPrecondition:
		return ReasonReservationEnded
	case codes.OutOfRange:
		return ReasonEscalationRefused
	case codes.ResourceExhausted:
		if carriesRefusal(st, trailer) {
			return ReasonBudgetExceeded
		}
	}
	return ""
}

// statusOf is the status of err, looking through wrapped errors.
func statusOf(err error) (*status.Status, bool) {
	var withStatus interface{ GRPCStatus() *status.Status }
	if errors.As(err, &withStatus) {
		return withStatus.GRPCStatus(), true
	}
	return nil, false
}

// reasonOf is the reason of the status's first ErrorInfo of ErrorDomain, or "".
func reasonOf(st *status.Status) string {
	for _, packed := range st.Proto().GetDetails() {
		info := &errdetails.ErrorInfo{}
		if packed.MessageIs(info) && packed.UnmarshalTo(info) == nil && info.GetDomain() == ErrorDomain && info.GetReason() != "" {
			return info.GetReason()
		}
	}
	return ""
}

// fromRPCError is the client's error for a failed call: by the sidecar's
// reason when it has one the client knows, else by the status code. An
// error without a status is returned as it is.
func fromRPCError(err error, trailer metadata.MD, attempts int, key string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	reason := reasonOf(st)
	k := kindOfStatus(st, trailer)
	switch {
	case k == ReasonBudgetExceeded:
		return budgetExceeded(st, trailer, reason)
	case k == ReasonRateLimited:
		return &RateLimitedError{Reason: reason, status: st}
	case k == ReasonStoreUnavailable || k == ReasonCallerGone ||
		k == "" && (st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded):
		return &UnavailableError{Err: err, Attempts: attempts, IdempotencyKey: key, Reason: reason}
	}
	return &Error{Reason: reason, err: err, status: st}
}

// budgetExceeded is a *BudgetExceededError with the BudgetExceeded detail read
// from the status details or, failing that, from the trailer.
func budgetExceeded(st *status.Status, trailer metadata.MD, reason string) *BudgetExceededError {
	e := &BudgetExceededError{Reason: reason, status: st}
	if detail := refusalDetail(st, trailer); detail != nil {
		e.PoolID = detail.GetPoolId()
		e.Level = detail.GetLevel()
		e.Policy = detail.GetPolicy()
		e.Limit = detail.GetLimit()
		e.RequestedNanos = detail.GetRequestedNanos()
		e.RemainingNanos = detail.GetRemainingNanos()
		if detail.GetResetsAt() != nil {
			e.ResetsAt = detail.GetResetsAt().AsTime()
		}
	}
	return e
}

// carriesRefusal reports whether the status came with the sidecar's
// BudgetExceeded detail, readable or not.
func carriesRefusal(st *status.Status, trailer metadata.MD) bool {
	for _, packed := range st.Proto().GetDetails() {
		if packed.MessageIs(&pb.BudgetExceeded{}) {
			return true
		}
	}
	return len(trailer.Get(BudgetExceededTrailer)) > 0
}

func refusalDetail(st *status.Status, trailer metadata.MD) *pb.BudgetExceeded {
	for _, packed := range st.Proto().GetDetails() {
		detail := &pb.BudgetExceeded{}
		// The status itself is what matters; a damaged detail only loses the figures.
		if packed.MessageIs(detail) && packed.UnmarshalTo(detail) == nil {
			return detail
		}
	}
	for _, raw := range trailer.Get(BudgetExceededTrailer) {
		detail := &pb.BudgetExceeded{}
		if proto.Unmarshal([]byte(raw), detail) == nil {
			return detail
		}
	}
	return nil
}
