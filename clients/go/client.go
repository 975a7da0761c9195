package tollgate

import (
	"context"
	"errors"
	"time"

	pb "github.com/tollgate/tollgate/clients/go/tollgatev1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// DefaultTarget is where the sidecar listens unless configured otherwise.
const DefaultTarget = "127.0.0.1:50551"

// DefaultTimeout is the deadline given to each attempt of a call whose context has none.
const DefaultTimeout = 2 * time.Second

// Client calls the Tollgate sidecar. It is safe for concurrent use.
type Client struct {
	stub    pb.TollgateServiceClient
	conn    *grpc.ClientConn // nil when the caller owns the connection (New)
	timeout time.Duration
	retry   RetryPolicy
}

type settings struct {
	dialOptions []grpc.DialOption
	timeout     time.Duration
	retry       RetryPolicy
}

// An Option configures a Client.
type Option func(*settings)

// WithTimeout sets the deadline of each attempt of a call whose context has
// none (default DefaultTimeout; 0 or less leaves such calls without a
// deadline, their retries bounded by the RetryPolicy's Budget alone).
func WithTimeout(d time.Duration) Option {
	return func(s *settings) { s.timeout = d }
}

// WithDialOptions adds gRPC dial options, after the defaults (plaintext, no
// HTTP proxy), so that they take precedence: TLS credentials, interceptors
// that add metadata, grpc.WithBlock, and so on. Dial only.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) { s.dialOptions = append(s.dialOptions, opts...) }
}

func configure(opts []Option) settings {
	s := settings{timeout: DefaultTimeout, retry: DefaultRetryPolicy()}
	for _, opt := range opts {
		opt(&s)
	}
	return s
}

// Dial connects to the sidecar at target: "host:port" or "unix:///path/to.sock".
// The connection is plaintext and bypasses any HTTP proxy from the
// environment, since the sidecar runs next to the application. Like
// grpc.DialContext, Dial does not wait for the connection unless
// WithDialOptions(grpc.WithBlock()) is given; ctx bounds only that wait.
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	if target == "" {
		return nil, errors.New(`tollgate: target must be "host:port" or "unix:///path/to.sock"`)
	}
	s := configure(opts)
	dialOptions := append([]grpc.DialOption{grpc.WithInsecure(), grpc.WithNoProxy()}, s.dialOptions...)
	conn, err := grpc.DialContext(ctx, target, dialOptions...)
	if err != nil {
		return nil, err
	}
	return &Client{stub: pb.NewTollgateServiceClient(conn), conn: conn, timeout: s.timeout, retry: s.retry}, nil
}

// New is a Client over a connection the caller opened and will close;
// WithDialOptions is ignored.
func New(conn grpc.ClientConnInterface, opts ...Option) *Client {
	s := configure(opts)
	return &Client{stub: pb.NewTollgateServiceClient(conn), timeout: s.timeout, retry: s.retry}
}

// Close closes the connection Dial opened; calls in flight are cancelled.
// It does nothing for a Client from New.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Stub is the generated client, for calls and call options this package does not wrap.
func (c *Client) Stub() pb.TollgateServiceClient {
	return c.stub
}

// Route picks the cheapest capable model for a call and, with req.Reserve
// set, holds its estimated cost in the same round trip (resp.Reservation).
// req.Scope.OrgId and req.Prompt are required. With Reserve set and retries
// on, a request without an idempotency key is sent as a copy carrying a
// generated one (see RetryPolicy).
func (c *Client) Route(ctx context.Context, req *RouteRequest) (*RouteResponse, error) {
	if !req.GetReserve() {
		return call(ctx, c, retryRead, "", req, c.stub.Route)
	}
	req, key := keyed(c, req, func(r *RouteRequest) **ReservationOptions { return &r.Reservation })
	return call(ctx, c, retryMoney, key, req, c.stub.Route)
}

// Reserve holds the estimated cost of a call to req.Model against every pool
// in req.Scope, all or none. A refusal is a *BudgetExceededError. With
// retries on, a request without an idempotency key is sent as a copy
// carrying a generated one (see RetryPolicy).
func (c *Client) Reserve(ctx context.Context, req *ReserveRequest) (*ReserveResponse, error) {
	req, key := keyed(c, req, func(r *ReserveRequest) **ReservationOptions { return &r.Reservation })
	return call(ctx, c, retryMoney, key, req, c.stub.Reserve)
}

// Escalate routes and reserves the next attempt of a call whose output failed
// the application's check: one tier up, or req.Model. With req.Usage set, the
// failed attempt is committed in the same step. The new reservation's id
// derives from the failed one's, so a repeat returns the same attempt; past
// the depth limit or the top tier the status is OUT_OF_RANGE.
func (c *Client) Escalate(ctx context.Context, req *EscalateRequest) (*EscalateResponse, error) {
	return call(ctx, c, retryMoney, "", req, c.stub.Escalate)
}

// Commit reports what the provider call used; the hold is reconciled and the
// rest released. Repeating a commit with the same usage returns the first
// result with Replayed set, so a commit that timed out may be retried.
func (c *Client) Commit(ctx context.Context, reservationID string, usage *Usage) (*CommitResponse, error) {
	return call(ctx, c, retryMoney, "", &pb.CommitRequest{ReservationId: reservationID, Usage: usage}, c.stub.Commit)
}

// Release ends a reservation without charging, when no billable call happened.
func (c *Client) Release(ctx context.Context, reservationID string) (*ReleaseResponse, error) {
	return call(ctx, c, retryMoney, "", &pb.ReleaseRequest{ReservationId: reservationID}, c.stub.Release)
}

// Extend pushes a reservation's expiry out to ttl from now (0 = the
// sidecar's default), for long streaming calls. ttl is sent in whole
// milliseconds, rounded up.
func (c *Client) Extend(ctx context.Context, reservationID string, ttl time.Duration) (*ExtendResponse, error) {
	req := &pb.ExtendRequest{ReservationId: reservationID, TtlMs: millis(ttl)}
	return call(ctx, c, retryMoney, "", req, c.stub.Extend)
}

// GetBudget is the current state of every pool in scope, broadest level last.
func (c *Client) GetBudget(ctx context.Context, scope *Scope) ([]*PoolState, error) {
	resp, err := call(ctx, c, retryRead, "", &pb.GetBudgetRequest{Scope: scope}, c.stub.GetBudget)
	return resp.GetPools(), err
}

// Feedback reports how good the answer of a reserved call was, as a score in
// [0, 1]; the response says under which task type and tier it was counted.
// It is never retried: each call counts one more sample.
func (c *Client) Feedback(ctx context.Context, reservationID string, score float64, source FeedbackSource) (*FeedbackResponse, error) {
	req := &pb.FeedbackRequest{ReservationId: reservationID, Score: score, Source: source}
	return call(ctx, c, retryNever, "", req, c.stub.Feedback)
}

// GetQuality is the quality guard's report: per task type, quality by tier,
// shadow match and the minimum tier the guard imposes.
func (c *Client) GetQuality(ctx context.Context) ([]*TaskQuality, error) {
	resp, err := call(ctx, c, retryRead, "", &pb.GetQualityRequest{}, c.stub.GetQuality)
	return resp.GetTaskTypes(), err
}

// keyed is req, or, when retries are on and req has no idempotency key, a
// copy of it carrying a fresh one; and the key. options is where a request
// keeps its ReservationOptions. The caller's request is never modified: it
// may be a template sent again for another call.
func keyed[R proto.Message](c *Client, req R, options func(R) **ReservationOptions) (R, string) {
	if !req.ProtoReflect().IsValid() { // a nil request: the sidecar will say what is missing
		return req, ""
	}
	if key := (*options(req)).GetIdempotencyKey(); key != "" || !c.retry.enabled() {
		return req, key
	}
	key := NewIdempotencyKey()
	cp := proto.Clone(req).(R)
	opts := options(cp)
	if *opts == nil {
		*opts = &ReservationOptions{}
	}
	(*opts).IdempotencyKey = key
	return cp, key
}

// call runs one unary RPC under the client's deadline and retry policy: it is
// sent again after a failure its class covers, while attempts and budget
// last. The last failure becomes the client's error by its reason
// (fromRPCError): a *BudgetExceededError, a *RateLimitedError, an
// *UnavailableError carrying key, or an *Error.
func call[Req, Resp any](ctx context.Context, c *Client, class retryClass, key string, req Req,
	rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	start := time.Now()
	for n := 1; ; n++ {
		attemptCtx, cancel := c.attempt(ctx, n, start)
		var trailer metadata.MD
		resp, err := rpc(attemptCtx, req, grpc.Trailer(&trailer))
		cancel()
		if err == nil {
			return resp, nil
		}
		code := status.Code(err)
		if c.retry.enabled() && class.covers(code) && n < c.retry.Attempts && ctx.Err() == nil {
			// A retry that would start at or past the budget's end has no time left to answer in.
			wait := c.retry.backoff(n)
			if time.Now().Add(wait).Before(start.Add(c.retry.Budget)) && pause(ctx, wait) {
				continue
			}
		}
		var zero Resp
		return zero, fromRPCError(err, trailer, n, key)
	}
}

func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
