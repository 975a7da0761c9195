package tollgate_test

import (
	"context"
	"errors"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	tollgate "github.com/tollgate/tollgate/clients/go"
	pb "github.com/tollgate/tollgate/clients/go/tollgatev1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// outcome is how the scripted sidecar treats one call: refused with code
// before anything happens (with the sidecar's ErrorInfo when reason is set),
// or lost (it takes effect, but its answer never arrives), or answered when
// zero.
type outcome struct {
	code   codes.Code
	reason string
	lost   bool
}

var (
	down = outcome{code: codes.Unavailable}
	lost = outcome{lost: true}
	hex  = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// scripted answers like the sidecar, each method's next calls following its
// script, and records the idempotency key every attempt carried. Like the
// sidecar, a repeated reserve under one key returns the first reservation
// with Replayed set, and a repeated commit or release answers again with
// Replayed set.
type scripted struct {
	pb.UnimplementedTollgateServiceServer

	mu     sync.Mutex
	script map[string][]outcome
	keys   map[string][]string
	held   map[string]bool   // reservation id -> open
	ended  map[string]string // reservation id -> "commit" or "release"
	next   int
}

func (s *scripted) take(method, key string) outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[method] = append(s.keys[method], key)
	steps := s.script[method]
	if len(steps) == 0 {
		return outcome{}
	}
	s.script[method] = steps[1:]
	return steps[0]
}

func (s *scripted) attempts(method string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys[method]...)
}

func (s *scripted) hold(key string) *pb.Reservation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == "" {
		s.next++
		key = string(rune('a' + s.next))
	}
	id := "res-" + key
	_, open := s.held[id]
	_, ended := s.ended[id]
	if !open && !ended {
		s.held[id] = true
	}
	return &pb.Reservation{ReservationId: id, Model: "gpt-4o-mini", HeldNanos: 1000,
		ExpiresAt: timestamppb.New(resetsAt), Replayed: open || ended}
}

func (s *scripted) end(id, how string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prior, ok := s.ended[id]; ok {
		if prior == how {
			return true, nil
		}
		return false, status.Error(codes.FailedPrecondition, "reservation already ended")
	}
	if !s.held[id] {
		return false, status.Error(codes.NotFound, "no reservation "+id)
	}
	delete(s.held, id)
	s.ended[id] = how
	return false, nil
}

func (s *scripted) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// answer is resp, or the outcome's failure: a refusal, or, for a lost
// answer, the wait until the client gives up.
func answer[T any](ctx context.Context, o outcome, resp T, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	if o.lost {
		<-ctx.Done()
		return zero, status.FromContextError(ctx.Err()).Err()
	}
	return resp, nil
}

func refused(o outcome) error {
	switch {
	case o.code == codes.OK:
		return nil
	case o.reason != "":
		return withReason(o.code, "scripted "+o.reason, o.reason)
	}
	return status.Error(o.code, "scripted "+o.code.String())
}

func (s *scripted) Route(ctx context.Context, req *pb.RouteRequest) (*pb.RouteResponse, error) {
	o := s.take("Route", req.GetReservation().GetIdempotencyKey())
	if err := refused(o); err != nil {
		return nil, err
	}
	resp := &pb.RouteResponse{Decision: &pb.Decision{Chosen: &pb.Candidate{Model: "gpt-4o-mini", Tier: "cheap"}}}
	if req.GetReserve() {
		resp.Reservation = s.hold(req.GetReservation().GetIdempotencyKey())
	}
	return answer(ctx, o, resp, nil)
}

func (s *scripted) Reserve(ctx context.Context, req *pb.ReserveRequest) (*pb.ReserveResponse, error) {
	o := s.take("Reserve", req.GetReservation().GetIdempotencyKey())
	if err := refused(o); err != nil {
		return nil, err
	}
	return answer(ctx, o, &pb.ReserveResponse{Reservation: s.hold(req.GetReservation().GetIdempotencyKey())}, nil)
}

func (s *scripted) Commit(ctx context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	o := s.take("Commit", "")
	if err := refused(o); err != nil {
		return nil, err
	}
	replayed, err := s.end(req.GetReservationId(), "commit")
	return answer(ctx, o, &pb.CommitResponse{ReservationId: req.GetReservationId(), Replayed: replayed}, err)
}

func (s *scripted) Release(ctx context.Context, req *pb.ReleaseRequest) (*pb.ReleaseResponse, error) {
	o := s.take("Release", "")
	if err := refused(o); err != nil {
		return nil, err
	}
	replayed, err := s.end(req.GetReservationId(), "release")
	return answer(ctx, o, &pb.ReleaseResponse{ReservationId: req.GetReservationId(), Replayed: replayed}, err)
}

func (s *scripted) Extend(ctx context.Context, req *pb.ExtendRequest) (*pb.ExtendResponse, error) {
	o := s.take("Extend", "")
	if err := refused(o); err != nil {
		return nil, err
	}
	return answer(ctx, o, &pb.ExtendResponse{ReservationId: req.GetReservationId()}, nil)
}

func (s *scripted) Escalate(ctx context.Context, req *pb.EscalateRequest) (*pb.EscalateResponse, error) {
	o := s.take("Escalate", req.GetReservation().GetIdempotencyKey())
	if err := refused(o); err != nil {
		return nil, err
	}
	// As the sidecar does: the next attempt's id derives from the failed one's.
	return answer(ctx, o, &pb.EscalateResponse{Reservation: s.hold("escalated-" + req.GetReservationId()),
		PreviousReservationId: req.GetReservationId(), Attempt: 2}, nil)
}

func (s *scripted) GetBudget(ctx context.Context, _ *pb.GetBudgetRequest) (*pb.GetBudgetResponse, error) {
	o := s.take("GetBudget", "")
	if err := refused(o); err != nil {
		return nil, err
	}
	return answer(ctx, o, &pb.GetBudgetResponse{Pools: []*pb.PoolState{{PoolId: "org:acme"}}}, nil)
}

func (s *scripted) GetQuality(ctx context.Context, _ *pb.GetQualityRequest) (*pb.GetQualityResponse, error) {
	o := s.take("GetQuality", "")
	if err := refused(o); err != nil {
		return nil, err
	}
	return answer(ctx, o, &pb.GetQualityResponse{}, nil)
}

func (s *scripted) Feedback(ctx context.Context, _ *pb.FeedbackRequest) (*pb.FeedbackResponse, error) {
	o := s.take("Feedback", "")
	if err := refused(o); err != nil {
		return nil, err
	}
	return answer(ctx, o, &pb.FeedbackResponse{TaskType: "extract", Tier: "cheap"}, nil)
}

// quick retries fast, with the default number of attempts; a lost answer
// overruns its 300 ms deadline.
var quick = []tollgate.Option{
	tollgate.WithTimeout(300 * time.Millisecond),
	tollgate.WithRetry(tollgate.RetryPolicy{Attempts: 4, Budget: 5 * time.Second, Backoff: 10 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond}),
}

// scriptedClient starts a scripted sidecar in memory and a Client of it.
func scriptedClient(t *testing.T, script map[string][]outcome, opts ...tollgate.Option) (*tollgate.Client, *scripted) {
	t.Helper()
	if script == nil {
		script = map[string][]outcome{}
	}
	fake := &scripted{script: script, keys: map[string][]string{}, held: map[string]bool{}, ended: map[string]string{}}
	lis := bufconn.Listen(1 << 20)
	server := grpc.NewServer()
	pb.RegisterTollgateServiceServer(server, fake)
	go func() { _ = server.Serve(lis) }()
	t.Cleanup(server.Stop)
	dialer := grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() })
	client, err := tollgate.Dial(context.Background(), "bufnet", append([]tollgate.Option{tollgate.WithDialOptions(dialer)}, opts...)...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client, fake
}

func oneKey(t *testing.T, keys []string, attempts int) string {
	t.Helper()
	if len(keys) != attempts {
		t.Fatalf("%d attempts, want %d: %q", len(keys), attempts, keys)
	}
	for _, key := range keys {
		if key != keys[0] {
			t.Fatalf("the attempts carried different keys: %q", keys)
		}
	}
	return keys[0]
}

func reserveRequest() *tollgate.ReserveRequest {
	return &tollgate.ReserveRequest{Scope: &tollgate.Scope{OrgId: "acme"}, Model: "gpt-4o-mini",
		Prompt: tollgate.InputTokens(100)}
}

func TestDefaultRetryPolicy(t *testing.T) {
	want := tollgate.RetryPolicy{Attempts: 4, Budget: 5 * time.Second, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second}
	if got := tollgate.DefaultRetryPolicy(); got != want {
		t.Fatalf("DefaultRetryPolicy() = %+v", got)
	}
	if key := tollgate.NewIdempotencyKey(); !hex.MatchString(key) || key == tollgate.NewIdempotencyKey() {
		t.Fatalf("NewIdempotencyKey() = %q", key)
	}
}

func TestRetryReserveWithTheKeyItGenerated(t *testing.T) {
	client, fake := scriptedClient(t, map[string][]outcome{"Reserve": {down, down}}, quick...)
	req := reserveRequest()
	template := proto.Clone(req)
	resp, err := client.Reserve(context.Background(), req)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	key := oneKey(t, fake.attempts("Reserve"), 3)
	if !hex.MatchString(key) || resp.GetReservation().GetReservationId() != "res-"+key || resp.GetReservation().GetReplayed() {
		t.Fatalf("key %q, answer %v", key, resp)
	}
	if !proto.Equal(req, template) {
		t.Fatalf("the caller's request was modified: %v", req)
	}
	if _, err := client.Reserve(context.Background(), req); err != nil || fake.open() != 2 {
		t.Fatalf("a second Reserve of the same request: %v, %d open", err, fake.open())
	}
	if keys := fake.attempts("Reserve"); keys[3] == key {
		t.Fatalf("the second call reused the first one's key %q", key)
	}
}

func TestRetryALostAnswerIsReplayed(t *testing.T) {
	client, fake := scriptedClient(t, map[string][]outcome{"Reserve": {lost}}, quick...)
	start := time.Now()
	resp, err := client.Reserve(context.Background(), reserveRequest())
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	oneKey(t, fake.attempts("Reserve"), 2)
	if !resp.GetReservation().GetReplayed() || fake.open() != 1 || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("answer %v, %d open, after %v", resp, fake.open(), time.Since(start))
	}
}

func TestRetryRouteWithReserveKeepsOneKey(t *testing.T) {
	client, fake := scriptedClient(t, map[string][]outcome{"Route": {down, lost}}, quick...)
	req := &tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "acme"}, Prompt: tollgate.InputTokens(100), Reserve: true,
		Reservation: &tollgate.ReservationOptions{TtlMs: 9000}}
	resp, err := client.Route(context.Background(), req)
	if err != nil {
		t.Fatalf("Route: %v", err)
	}
	key := oneKey(t, fake.attempts("Route"), 3)
	if !hex.MatchString(key) || !resp.GetReservation().GetReplayed() || fake.open() != 1 {
		t.Fatalf("key %q, answer %v, %d open", key, resp, fake.open())
	}
	if req.GetReservation().GetIdempotencyKey() != "" || req.GetReservation().GetTtlMs() != 9000 {
		t.Fatalf("the caller's request was modified: %v", req)
	}
}

func TestRetryKeepsTheCallersKey(t *testing.T) {
	client, fake := scriptedClient(t, map[string][]outcome{"Reserve": {down, lost}}, quick...)
	req := reserveRequest()
	req.Reservation = &tollgate.ReservationOptions{IdempotencyKey: "order-17:summary"}
	resp, err := client.Reserve(context.Background(), req)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if key := oneKey(t, fake.attempts("Reserve"), 3); key != "order-17:summary" || !resp.GetReservation().GetReplayed() {
		t.Fatalf("key %q, answer %v", key, resp)
	}
}

func TestRetryAttemptsAreBounded(t *testing.T) {
	client, fake := scriptedClient(t, map[string][]outcome{"Reserve": {down, down, down, down, down, down}}, quick...)
	_, err := client.Reserve(context.Background(), reserveRequest())
	key := oneKey(t, fake.attempts("Reserve"), 4)
	var unavailable *tollgate.UnavailableError
	if !errors.As(err, &unavailable) || unavailable.Attempts != 4 || unavailable.IdempotencyKey != key {
		t.Fatalf("got %T %v", err, err)
	}
	if !tollgate.IsUnavailable(err) || status.Code(err) != codes.Unavailable || tollgate.Code(err) != codes.Unavailable {
		t.Fatalf("the status is not seen through %v", err)
	}
}

func TestRetryBudgetBoundsTheAttemptsAndTheirDeadlines(t *testing.T) {
	script := map[string][]outcome{"Reserve": {lost, lost, lost, lost, lost, lost, lost, lost, lost, lost}}
	client, fake := scriptedClient(t, script, tollgate.WithTimeout(400*time.Millisecond),
		tollgate.WithRetry(tollgate.RetryPolicy{Attempts: 10, Budget: 600 * time.Millisecond}))
	start := time.Now()
	_, err := client.Reserve(context.Background(), reserveRequest())
	elapsed := time.Since(start)
	// 400 ms for the first attempt, then what is left of the 600 ms budget: never the 10 attempts' 4 s.
	if elapsed < 550*time.Millisecond || elapsed > 1200*time.Millisecond {
		t.Fatalf("gave up after %v", elapsed)
	}
	var unavailable *tollgate.UnavailableError
	if !errors.As(err, &unavailable) || status.Code(err) != codes.DeadlineExceeded ||
		unavailable.Attempts < 2 || unavailable.Attempts > 3 || len(fake.attempts("Reserve")) != unavailable.Attempts {
		t.Fatalf("got %v", err)
	}
	if fake.open() != 1 {
		t.Fatalf("%d reservations held", fake.open())
	}
}

func TestRetryStopsWithTheCallersContext(t *testing.T) {
	client, fake := scriptedClient(t, map[string][]outcome{"Reserve": {lost, lost, lost}}, quick...)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := client.Reserve(ctx, reserveRequest())
	if status.Code(err) != codes.DeadlineExceeded || len(fake.attempts("Reserve")) != 1 || time.Since(start) > time.Second {
		t.Fatalf("got %v after %d attempts in %v", err, len(fake.attempts("Reserve")), time.Since(start))
	}
}

func TestRetryNeverAfterOtherStatuses(t *testing.T) {
	for _, o := range []outcome{
		{code: codes.ResourceExhausted, reason: tollgate.ReasonBudgetExceeded},
		{code: codes.ResourceExhausted, reason: tollgate.ReasonRateLimited},
		{code: codes.ResourceExhausted}, // gRPC's own, such as a message too large
		{code: codes.InvalidArgument, reason: tollgate.ReasonInvalidRequest},
		{code: codes.FailedPrecondition, reason: tollgate.ReasonReservationEnded},
		{code: codes.FailedPrecondition, reason: tollgate.ReasonIdempotencyConflict},
		{code: codes.NotFound, reason: tollgate.ReasonReservationNotFound},
		{code: codes.OutOfRange, reason: tollgate.ReasonEscalationRefused},
		{code: codes.Internal, reason: tollgate.ReasonInternal},
		{code: codes.Unauthenticated, reason: tollgate.ReasonUnauthenticated},
		{code: codes.PermissionDenied, reason: tollgate.ReasonPermissionDenied},
		{code: codes.Canceled},
	} {
		client, fake := scriptedClient(t, map[string][]outcome{"Reserve": {o}}, quick...)
		_, err := client.Reserve(context.Background(), reserveRequest())
		if tollgate.Code(err) != o.code || tollgate.Reason(err) != o.reason || len(fake.attempts("Reserve")) != 1 {
			t.Errorf("%v %s: got %v after %d attempts", o.code, o.reason, err, len(fake.attempts("Reserve")))
		}
		var unavailable *tollgate.UnavailableError
		if errors.As(err, &unavailable) {
			t.Errorf("%v %s became an UnavailableError", o.code, o.reason)
		}
		if tollgate.IsBudgetExceeded(err) != (o.reason == tollgate.ReasonBudgetExceeded) ||
			tollgate.IsRateLimited(err) != (o.reason == tollgate.ReasonRateLimited) {
			t.Errorf("%v %s: classified wrongly: %v", o.code, o.reason, err)
		}
	}
}

func TestRetryTheSidecarsUnavailableAnswers(t *testing.T) {
	for _, o := range []outcome{
		{code: codes.Unavailable, reason: tollgate.ReasonStoreUnavailable},
		{code: codes.DeadlineExceeded, reason: tollgate.ReasonCallerGone},
	} {
		client, fake := scriptedClient(t, map[string][]outcome{"Reserve": {o}}, quick...)
		if _, err := client.Reserve(context.Background(), reserveRequest()); err != nil {
			t.Fatalf("%s: %v", o.reason, err)
		}
		oneKey(t, fake.attempts("Reserve"), 2)

		client, fake = scriptedClient(t, map[string][]outcome{"Reserve": {o, o, o, o}}, quick...)
		_, err := client.Reserve(context.Background(), reserveRequest())
		var unavailable *tollgate.UnavailableError
		if !errors.As(err, &unavailable) || unavailable.Attempts != 4 || unavailable.Reason != o.reason ||
			tollgate.Reason(err) != o.reason || !tollgate.IsUnavailable(err) || tollgate.Code(err) != o.code {
			t.Fatalf("%s: got %T %v", o.reason, err, err)
		}
		oneKey(t, fake.attempts("Reserve"), 4)
	}
}

func TestRetryCommitReleaseExtendEscalateAsTheyAre(t *testing.T) {
	client, fake := scriptedClient(t, map[string][]outcome{
		"Commit": {lost}, "Release": {down, lost}, "Extend": {down, lost}, "Escalate": {down, lost}}, quick...)
	ctx := context.Background()
	first, err := client.Reserve(ctx, reserveRequest())
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	second, err := client.Reserve(ctx, reserveRequest())
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	firstID, secondID := first.GetReservation().GetReservationId(), second.GetReservation().GetReservationId()
	if _, err := client.Extend(ctx, firstID, time.Minute); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	escalated, err := client.Escalate(ctx, &tollgate.EscalateRequest{ReservationId: firstID,
		Scope: &tollgate.Scope{OrgId: "acme"}, Prompt: tollgate.InputTokens(100), Reason: "invalid_json"})
	if err != nil || !escalated.GetReservation().GetReplayed() {
		t.Fatalf("Escalate: %v %v", escalated, err)
	}
	committed, err := client.Commit(ctx, firstID, &tollgate.Usage{InputTokens: 100})
	if err != nil || !committed.GetReplayed() {
		t.Fatalf("Commit: %v %v", committed, err)
	}
	released, err := client.Release(ctx, secondID)
	if err != nil || !released.GetReplayed() {
		t.Fatalf("Release: %v %v", released, err)
	}
	for method, want := range map[string]int{"Extend": 3, "Escalate": 3, "Commit": 2, "Release": 3} {
		if got := len(fake.attempts(method)); got != want {
			t.Errorf("%s: %d attempts, want %d", method, got, want)
		}
	}
	for _, key := range fake.attempts("Escalate") {
		if key != "" {
			t.Errorf("Escalate was sent a key %q: its reservation's derives from the failed one", key)
		}
	}
}

func TestRetryReadsOnlyWhenUnavailable(t *testing.T) {
	client, fake := scriptedClient(t, map[string][]outcome{
		"GetBudget": {down, down, {}, lost}, "GetQuality": {down}, "Route": {down, {}, lost}}, quick...)
	ctx := context.Background()
	route := &tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "acme"}, Prompt: tollgate.InputTokens(100)}
	if pools, err := client.GetBudget(ctx, &tollgate.Scope{OrgId: "acme"}); err != nil || len(pools) != 1 {
		t.Fatalf("GetBudget: %v %v", pools, err)
	}
	if _, err := client.GetQuality(ctx); err != nil {
		t.Fatalf("GetQuality: %v", err)
	}
	if resp, err := client.Route(ctx, route); err != nil || resp.GetReservation() != nil {
		t.Fatalf("Route: %v %v", resp, err)
	}
	for method, want := range map[string]int{"GetBudget": 3, "GetQuality": 2, "Route": 2} {
		if got := len(fake.attempts(method)); got != want {
			t.Errorf("%s: %d attempts, want %d", method, got, want)
		}
	}
	if keys := fake.attempts("Route"); keys[0] != "" || keys[1] != "" {
		t.Errorf("a Route without Reserve was sent keys %q", keys)
	}
	_, budgetErr := client.GetBudget(ctx, &tollgate.Scope{OrgId: "acme"})
	_, routeErr := client.Route(ctx, route)
	for _, err := range []error{budgetErr, routeErr} {
		var unavailable *tollgate.UnavailableError
		if status.Code(err) != codes.DeadlineExceeded || !errors.As(err, &unavailable) || unavailable.Attempts != 1 {
			t.Errorf("a read past its deadline: %v", err)
		}
	}
}

func TestRetryNeverForFeedback(t *testing.T) {
	client, fake := scriptedClient(t, map[string][]outcome{"Feedback": {down}}, quick...)
	_, err := client.Feedback(context.Background(), "res-a", 0.9, tollgate.FeedbackUser)
	if !tollgate.IsUnavailable(err) || len(fake.attempts("Feedback")) != 1 {
		t.Fatalf("got %v after %d attempts", err, len(fake.attempts("Feedback")))
	}
}

func TestRetryOff(t *testing.T) {
	for name, opt := range map[string]tollgate.Option{
		"WithoutRetry":  tollgate.WithoutRetry(),
		"one attempt":   tollgate.WithRetry(tollgate.RetryPolicy{Attempts: 1, Budget: time.Second}),
		"a zero policy": tollgate.WithRetry(tollgate.RetryPolicy{}),
	} {
		client, fake := scriptedClient(t, map[string][]outcome{"Reserve": {down}}, opt)
		_, err := client.Reserve(context.Background(), reserveRequest())
		var unavailable *tollgate.UnavailableError
		if !errors.As(err, &unavailable) || unavailable.Attempts != 1 || unavailable.IdempotencyKey != "" {
			t.Errorf("%s: got %v", name, err)
		}
		if _, err := client.Reserve(context.Background(), reserveRequest()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if keys := fake.attempts("Reserve"); len(keys) != 2 || keys[0] != "" || keys[1] != "" {
			t.Errorf("%s: keys %q were invented for calls that are never retried", name, keys)
		}
	}
}
