package tollgate

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RetryPolicy says how a call that failed with UNAVAILABLE (the sidecar could
// not be reached, or the connection dropped) or DEADLINE_EXCEEDED (it did not
// answer in time) is tried again. Such a call may or may not have taken
// effect; every call that moves money is idempotent on the sidecar, so it is
// simply sent again:
//
//   - Reserve, and Route with Reserve set, carry one idempotency key on every
//     attempt: the caller's, or one the client generates before the first
//     attempt (the caller's request is never modified). A repeat returns the
//     first reservation, with Replayed set, instead of holding twice.
//   - Commit, Release and Extend are idempotent by reservation id, Escalate by
//     the failed reservation's id: they are sent again as they are.
//
// Reads (GetBudget, GetQuality, Route without Reserve) are retried on
// UNAVAILABLE only, so that a sidecar too slow to answer is not piled on.
// Feedback is never retried: each call counts one more sample. No other
// status is ever retried (a budget refusal, an invalid request, an ended
// reservation, a cancelled context).
type RetryPolicy struct {
	// Attempts is the number of attempts in all, the first included; 1 or
	// less never retries.
	Attempts int
	// Budget bounds the retries: none starts later than Budget after the call
	// began, and a retry's deadline never runs past that. The first attempt
	// has the call's own deadline (the context's, else WithTimeout's).
	Budget time.Duration
	// Backoff: the wait before the first retry is drawn uniformly from
	// [0, Backoff) ("full jitter"), and that bound doubles with each retry,
	// up to MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// DefaultRetryPolicy is the policy of a client without WithRetry: 4 attempts
// within 5 s, backing off from 50 ms up to 1 s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Attempts: 4, Budget: 5 * time.Second, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second}
}

// WithRetry sets how calls the sidecar did not answer are retried (default
// DefaultRetryPolicy()).
func WithRetry(policy RetryPolicy) Option {
	return func(s *settings) { s.retry = policy }
}

// WithoutRetry makes every call a single attempt, and leaves the idempotency
// key of a Reserve or Route to the caller.
func WithoutRetry() Option {
	return WithRetry(RetryPolicy{Attempts: 1})
}

func (p RetryPolicy) enabled() bool { return p.Attempts > 1 }

// backoff is the wait before retry number n (1 for the first).
func (p RetryPolicy) backoff(n int) time.Duration {
	ceiling := p.Backoff
	for i := 1; i < n && ceiling < p.MaxBackoff; i++ {
		ceiling *= 2
	}
	if ceiling > p.MaxBackoff {
		ceiling = p.MaxBackoff
	}
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rand.Int63n(int64(ceiling)))
}

// retryClass is which failures a call may be sent again after.
type retryClass int

const (
	retryNever retryClass = iota // Feedback
	retryRead                    // UNAVAILABLE only
	retryMoney                   // UNAVAILABLE and DEADLINE_EXCEEDED
)

func (r retryClass) covers(code codes.Code) bool {
	switch r {
	case retryMoney:
		return code == codes.Unavailable || code == codes.DeadlineExceeded
	case retryRead:
		return code == codes.Unavailable
	}
	return false
}

// NewIdempotencyKey is a fresh random idempotency key, 32 hex characters: the
// kind the client generates for a Reserve or Route that has none.
func NewIdempotencyKey() string {
	var b [16]byte
	if _, err := crand.Read(b[:]); err != nil {
		panic("tollgate: no randomness for an idempotency key: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// UnavailableError is how a call ends when the sidecar could not be reached
// or did not answer in time (UNAVAILABLE or DEADLINE_EXCEEDED), could not
// reach its budget store (STORE_UNAVAILABLE) or saw the call's deadline pass
// and undid what it held (CALLER_GONE), after the client's retries. Code,
// IsUnavailable, status.Code and status.FromError see the last attempt's
// status through it.
type UnavailableError struct {
	// Err is the last attempt's gRPC status error.
	Err error
	// Attempts is how many attempts were made.
	Attempts int
	// IdempotencyKey is the key a Reserve, or a Route with Reserve, was sent
	// with: the caller's or the generated one ("" for other calls). The
	// reservation may exist; sending the same request again later with this
	// key cannot hold twice.
	IdempotencyKey string
	// Reason is the sidecar's reason of the last attempt's status,
	// ReasonStoreUnavailable or ReasonCallerGone; "" when the status carried
	// none (no answer from the sidecar at all).
	Reason string
}

func (e *UnavailableError) Error() string {
	if e.Attempts > 1 {
		return fmt.Sprintf("%v (after %d attempts)", e.Err, e.Attempts)
	}
	return e.Err.Error()
}

// Unwrap is the last attempt's status error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// GRPCStatus is the last attempt's status.
func (e *UnavailableError) GRPCStatus() *status.Status {
	st, _ := status.FromError(e.Err)
	return st
}

func (e *UnavailableError) reason() string { return e.Reason }

// attempt is the context of attempt number n (1 for the first) of a call
// that began at start: the caller's, with the client's timeout when it has no
// deadline, and for a retry never past the end of the budget.
func (c *Client) attempt(ctx context.Context, n int, start time.Time) (context.Context, context.CancelFunc) {
	_, hasDeadline := ctx.Deadline()
	if n == 1 {
		if c.timeout > 0 && !hasDeadline {
			return context.WithTimeout(ctx, c.timeout)
		}
		return ctx, func() {}
	}
	deadline := start.Add(c.retry.Budget)
	if c.timeout > 0 && !hasDeadline {
		if own := time.Now().Add(c.timeout); own.Before(deadline) {
			deadline = own
		}
	}
	return context.WithDeadline(ctx, deadline)
}

// pause waits d, or until ctx ends; false if it ended.
func pause(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
