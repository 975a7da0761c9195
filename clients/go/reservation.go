package tollgate

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Held is a reservation held for the length of a WithReservation function.
// It counts as settled as soon as Commit or Release is called, even if that
// call fails: a failed commit is never followed by a release, since the
// provider call happened and giving the hold back would record it as free.
// Commit is idempotent and may be retried; otherwise the sidecar's expiry
// policy settles the hold. A Held is safe for concurrent use.
type Held struct {
	client      *Client
	reservation *Reservation

	mu        sync.Mutex
	settled   bool
	expiresAt time.Time
}

// Reservation is the reservation as it was made.
func (h *Held) Reservation() *Reservation { return h.reservation }

// ID is the reservation id.
func (h *Held) ID() string { return h.reservation.GetReservationId() }

// Model is the model the reservation was made for.
func (h *Held) Model() string { return h.reservation.GetModel() }

// ExpiresAt is when the reservation expires, updated by Extend.
func (h *Held) ExpiresAt() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.expiresAt
}

// Settled reports whether Commit or Release has been called, so that
// WithReservation releases nothing on the way out.
func (h *Held) Settled() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.settled
}

func (h *Held) settle() {
	h.mu.Lock()
	h.settled = true
	h.mu.Unlock()
}

// Commit reports what the provider call used; the hold is reconciled and the rest released.
func (h *Held) Commit(ctx context.Context, usage *Usage) (*CommitResponse, error) {
	h.settle()
	return h.client.Commit(ctx, h.ID(), usage)
}

// Release ends the reservation without charging, when no billable call happened.
func (h *Held) Release(ctx context.Context) (*ReleaseResponse, error) {
	h.settle()
	return h.client.Release(ctx, h.ID())
}

// Extend pushes the expiry out to ttl from now (0 = the sidecar's default), for long calls.
func (h *Held) Extend(ctx context.Context, ttl time.Duration) (*ExtendResponse, error) {
	resp, err := h.client.Extend(ctx, h.ID(), ttl)
	if err == nil && resp.GetExpiresAt() != nil {
		h.mu.Lock()
		h.expiresAt = resp.GetExpiresAt().AsTime()
		h.mu.Unlock()
	}
	return resp, err
}

// WithReservation runs fn with reservation held, typically around the
// provider call, and releases the reservation afterwards unless fn called
// Commit or Release. reservation is RouteResponse.Reservation (from a Route
// with Reserve set) or ReserveResponse.Reservation; nil is ErrNoReservation.
//
// It returns fn's error. The release on the way out runs even when ctx is
// cancelled (with the client's timeout) and even when fn panics, in which
// case the panic continues afterwards. If that release fails, the release
// error is returned when fn succeeded; when fn failed, its error is returned
// wrapped (errors.Is and errors.As still find it) with the release failure
// added to the message.
func (c *Client) WithReservation(ctx context.Context, reservation *Reservation,
	fn func(ctx context.Context, held *Held) error) (err error) {
	if reservation.GetReservationId() == "" {
		return ErrNoReservation
	}
	held := &Held{client: c, reservation: reservation}
	if reservation.GetExpiresAt() != nil {
		held.expiresAt = reservation.GetExpiresAt().AsTime()
	}
	returned := false
	defer func() {
		if held.Settled() {
			return
		}
		releaseCtx := detach(ctx)
		if c.timeout <= 0 { // the client sets no deadline of its own: never hang on the way out
			var cancel context.CancelFunc
			releaseCtx, cancel = context.WithTimeout(releaseCtx, DefaultTimeout)
			defer cancel()
		}
		_, releaseErr := held.Release(releaseCtx)
		if !returned || releaseErr == nil {
			return // a panic goes on unchanged
		}
		if err == nil {
			err = releaseErr
		} else {
			err = &releaseFailedError{err: err, release: releaseErr, id: held.ID()}
		}
	}()
	err = fn(ctx, held)
	returned = true
	return err
}

// releaseFailedError is fn's error, when releasing on the way out also failed.
type releaseFailedError struct {
	err     error
	release error
	id      string
}

func (e *releaseFailedError) Error() string {
	return fmt.Sprintf("%v (releasing Tollgate reservation %s on the way out also failed: %v)", e.err, e.id, e.release)
}

func (e *releaseFailedError) Unwrap() error { return e.err }

// detach keeps ctx's values but not its cancellation or deadline, so that a
// reservation is still released after the caller's context ended.
func detach(ctx context.Context) context.Context {
	return detached{ctx}
}

type detached struct{ parent context.Context }

func (detached) Deadline() (time.Time, bool)         { return time.Time{}, false }
func (detached) Done() <-chan struct{}               { return nil }
func (detached) Err() error                          { return nil }
func (d detached) Value(key interface{}) interface{} { return d.parent.Value(key) }
