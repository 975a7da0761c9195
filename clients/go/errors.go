package tollgate

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "github.com/tollgate/tollgate/clients/go/tollgatev1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// BudgetExceededTrailer is the trailing-metadata key under which the sidecar
// also sends a serialized tollgate.v1.BudgetExceeded with a refusal.
const BudgetExceededTrailer = "tollgate-budget-exceeded-bin"

// BudgetExceededError is a budget refusal (RESOURCE_EXHAUSTED): a pool in the
// scope cannot admit the call. The fields say which pool refused and by how
// much; they are zero when the status came without the sidecar's
// BudgetExceeded detail. Match it with errors.As; status.Code and Code see
// RESOURCE_EXHAUSTED.
type BudgetExceededError struct {
	// PoolID is the first pool that refused, e.g. "org:acme" or "user:acme/alice".
	PoolID string
	// Level and Policy are the pool's.
	Level  PoolLevel
	Policy Policy
	// Limit is the limit that refused: "cost", "calls" or "tokens".
	Limit string
	// RequestedNanos is what the call needed and RemainingNanos what the pool
	// had left for the request's priority, in the unit of Limit: nano-dollars
	// for "cost", else calls or tokens.
	RequestedNanos int64
	RemainingNanos int64
	// ResetsAt is when the pool's window resets; zero if it never does.
	ResetsAt time.Time

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

// IsBudgetExceeded reports whether a budget pool refused the call
// (RESOURCE_EXHAUSTED); errors.As with a *BudgetExceededError gives the details.
func IsBudgetExceeded(err error) bool { return Code(err) == codes.ResourceExhausted }

// IsUnavailable reports whether the sidecar could not be reached or did not
// answer in time (UNAVAILABLE or DEADLINE_EXCEEDED), after the client's
// retries (see RetryPolicy); errors.As with an *UnavailableError gives the
// attempts made and the idempotency key a Reserve was sent with.
func IsUnavailable(err error) bool {
	c := Code(err)
	return c == codes.Unavailable || c == codes.DeadlineExceeded
}

// IsNotFound reports whether no reservation has the id (NOT_FOUND).
func IsNotFound(err error) bool { return Code(err) == codes.NotFound }

// IsInvalidArgument reports whether the sidecar rejected the request as
// malformed or out of range (INVALID_ARGUMENT).
func IsInvalidArgument(err error) bool { return Code(err) == codes.InvalidArgument }

// IsReservationEnded reports whether the reservation was already committed,
// released or expired, or a repeated commit carried other figures
// (FAILED_PRECONDITION).
func IsReservationEnded(err error) bool { return Code(err) == codes.FailedPrecondition }

// fromRPCError turns a RESOURCE_EXHAUSTED status into a *BudgetExceededError,
// reading the BudgetExceeded detail from the status details or, failing that,
// from the trailer. Any other error is returned as it is.
func fromRPCError(err error, trailer metadata.MD) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return err
	}
	e := &BudgetExceededError{status: st}
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

func refusalDetail(st *status.Status, trailer metadata.MD) *pb.BudgetExceeded {
	for _, d := range st.Details() {
		if detail, ok := d.(*pb.BudgetExceeded); ok {
			return detail
		}
	}
	for _, raw := range trailer.Get(BudgetExceededTrailer) {
		detail := &pb.BudgetExceeded{}
		// The status itself is what matters; a damaged trailer only loses the detail.
		if proto.Unmarshal([]byte(raw), detail) == nil {
			return detail
		}
	}
	return nil
}
