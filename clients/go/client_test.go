package tollgate_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tollgate "github.com/tollgate/tollgate/clients/go"
	pb "github.com/tollgate/tollgate/clients/go/tollgatev1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var resetsAt = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeSidecar answers like the sidecar, with failures chosen by org or reservation id.
type fakeSidecar struct {
	pb.UnimplementedTollgateServiceServer

	mu       sync.Mutex
	routes   []*pb.RouteRequest
	commits  []*pb.CommitRequest
	released []string
	extends  []*pb.ExtendRequest
}

func refusal() *pb.BudgetExceeded {
	return &pb.BudgetExceeded{
		PoolId:         "org:broke",
		Level:          pb.PoolLevel_POOL_LEVEL_ORG,
		Policy:         pb.Policy_POLICY_HARD,
		RequestedNanos: 1_500_000,
		RemainingNanos: 1_000,
		ResetsAt:       timestamppb.New(resetsAt),
		Limit:          "cost",
	}
}

// reasonCodes is every reason the sidecar sends, with its status code.
var reasonCodes = map[string]codes.Code{
	tollgate.ReasonInvalidRequest:      codes.InvalidArgument,
	tollgate.ReasonBudgetExceeded:      codes.ResourceExhausted,
	tollgate.ReasonRateLimited:         codes.ResourceExhausted,
	tollgate.ReasonReservationNotFound: codes.NotFound,
	tollgate.ReasonReservationEnded:    codes.FailedPrecondition,
	tollgate.ReasonIdempotencyConflict: codes.FailedPrecondition,
	tollgate.ReasonEscalationRefused:   codes.OutOfRange,
	tollgate.ReasonStoreUnavailable:    codes.Unavailable,
	tollgate.ReasonCallerGone:          codes.DeadlineExceeded,
	tollgate.ReasonUnauthenticated:     codes.Unauthenticated,
	tollgate.ReasonPermissionDenied:    codes.PermissionDenied,
	tollgate.ReasonInternal:            codes.Internal,
}

// withReason is a status error as the sidecar sends it: details (a
// BudgetExceeded) first, then the ErrorInfo with reason.
func withReason(code codes.Code, msg, reason string, details ...proto.Message) error {
	details = append(details, &errdetails.ErrorInfo{Reason: reason, Domain: tollgate.ErrorDomain})
	return statusWith(code, msg, details...)
}

func statusWith(code codes.Code, msg string, details ...proto.Message) error {
	pbStatus := status.New(code, msg).Proto()
	for _, detail := range details {
		packed, err := anypb.New(detail)
		if err != nil {
			panic(err)
		}
		pbStatus.Details = append(pbStatus.Details, packed)
	}
	return status.FromProto(pbStatus).Err()
}

func reservation(id string) *pb.Reservation {
	return &pb.Reservation{
		ReservationId: id,
		Model:         "gpt-4o-mini",
		HeldNanos:     1234,
		ExpiresAt:     timestamppb.New(resetsAt),
	}
}

func (f *fakeSidecar) Route(ctx context.Context, req *pb.RouteRequest) (*pb.RouteResponse, error) {
	f.mu.Lock()
	f.routes = append(f.routes, req)
	f.mu.Unlock()
	if req.GetScope().GetOrgId() == "slow" {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	resp := &pb.RouteResponse{Decision: &pb.Decision{
		Chosen: &pb.Candidate{Model: "gpt-4o-mini", Provider: "openai", Tier: "cheap", EstimatedCostNanos: 950},
		Reason: "rule task_type=extract -> cheap",
	}}
	if req.GetReserve() {
		resp.Reservation = reservation("route-1")
	}
	return resp, nil
}

func (f *fakeSidecar) Reserve(ctx context.Context, req *pb.ReserveRequest) (*pb.ReserveResponse, error) {
	detail := refusal()
	switch req.GetScope().GetOrgId() {
	case "broke": // as the sidecar does: in the status details and in the trailer
		raw, err := proto.Marshal(detail)
		if err != nil {
			return nil, err
		}
		if err := grpc.SetTrailer(ctx, metadata.Pairs(tollgate.BudgetExceededTrailer, string(raw))); err != nil {
			return nil, err
		}
		st, err := status.New(codes.ResourceExhausted, "org:broke refused").WithDetails(detail)
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	case "trailer-only", "silent":
		raw, err := proto.Marshal(detail)
		if err != nil {
			return nil, err
		}
		if err := grpc.SetTrailer(ctx, metadata.Pairs(tollgate.BudgetExceededTrailer, string(raw))); err != nil {
			return nil, err
		}
		if req.GetScope().GetOrgId() == "silent" {
			return nil, status.Error(codes.ResourceExhausted, "")
		}
		return nil, status.Error(codes.ResourceExhausted, "refused")
	case "bare":
		return nil, status.Error(codes.ResourceExhausted, "refused without detail")
	case "reasoned": // as the sidecar does now: the detail, then the ErrorInfo, and the trailer
		raw, err := proto.Marshal(detail)
		if err != nil {
			return nil, err
		}
		if err := grpc.SetTrailer(ctx, metadata.Pairs(tollgate.BudgetExceededTrailer, string(raw))); err != nil {
			return nil, err
		}
		return nil, withReason(codes.ResourceExhausted, "org:broke refused", tollgate.ReasonBudgetExceeded, detail)
	case "damaged":
		if err := grpc.SetTrailer(ctx, metadata.Pairs(tollgate.BudgetExceededTrailer, "\xff\xff")); err != nil {
			return nil, err
		}
		return nil, status.Error(codes.ResourceExhausted, "refused with a damaged trailer")
	case "":
		return nil, status.Error(codes.InvalidArgument, "scope.org_id is required")
	}
	return &pb.ReserveResponse{Reservation: reservation("reserve-" + req.GetModel()), EstimatedCostNanos: 950}, nil
}

func (f *fakeSidecar) Commit(_ context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	f.mu.Lock()
	f.commits = append(f.commits, req)
	f.mu.Unlock()
	switch req.GetReservationId() {
	case "missing":
		return nil, status.Error(codes.NotFound, "no reservation missing")
	case "commit-fails":
		return nil, status.Error(codes.Unavailable, "store unavailable")
	}
	return &pb.CommitResponse{ReservationId: req.GetReservationId(), ChargedNanos: 1000}, nil
}

func (f *fakeSidecar) Release(_ context.Context, req *pb.ReleaseRequest) (*pb.ReleaseResponse, error) {
	f.mu.Lock()
	f.released = append(f.released, req.GetReservationId())
	f.mu.Unlock()
	if req.GetReservationId() == "release-fails" {
		return nil, status.Error(codes.FailedPrecondition, "reservation expired")
	}
	return &pb.ReleaseResponse{ReservationId: req.GetReservationId(), ReleasedNanos: 1234}, nil
}

func (f *fakeSidecar) Extend(_ context.Context, req *pb.ExtendRequest) (*pb.ExtendResponse, error) {
	f.mu.Lock()
	f.extends = append(f.extends, req)
	f.mu.Unlock()
	return &pb.ExtendResponse{ReservationId: req.GetReservationId(), ExpiresAt: timestamppb.New(resetsAt.Add(time.Hour))}, nil
}

func (f *fakeSidecar) GetBudget(_ context.Context, req *pb.GetBudgetRequest) (*pb.GetBudgetResponse, error) {
	org := req.GetScope().GetOrgId()
	if reason, ok := strings.CutPrefix(org, "refuse-"); ok { // refused with that reason
		return nil, withReason(reasonCodes[reason], "refused: "+reason, reason)
	}
	return &pb.GetBudgetResponse{Pools: []*pb.PoolState{
		{PoolId: "request", Level: pb.PoolLevel_POOL_LEVEL_REQUEST},
		{PoolId: "org:" + org, Level: pb.PoolLevel_POOL_LEVEL_ORG, CapNanos: 1_000_000_000_000},
	}}, nil
}

func (f *fakeSidecar) releasedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.released...)
}

func serve(t *testing.T, lis net.Listener) *fakeSidecar {
	t.Helper()
	fake := &fakeSidecar{}
	server := grpc.NewServer()
	pb.RegisterTollgateServiceServer(server, fake)
	go func() { _ = server.Serve(lis) }()
	t.Cleanup(server.Stop)
	return fake
}

// connect starts a fake sidecar in memory and a Client of it.
func connect(t *testing.T, opts ...tollgate.Option) (*tollgate.Client, *fakeSidecar) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	fake := serve(t, lis)
	dialer := grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() })
	opts = append([]tollgate.Option{tollgate.WithDialOptions(dialer)}, opts...)
	client, err := tollgate.Dial(context.Background(), "bufnet", opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client, fake
}

func sameIDs(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestRouteSendsTheRequestAndReturnsTheDecision(t *testing.T) {
	client, fake := connect(t)
	resp, err := client.Route(context.Background(), &tollgate.RouteRequest{
		Scope:   &tollgate.Scope{OrgId: "acme", UserId: "alice", Priority: tollgate.PriorityHigh},
		Prompt:  tollgate.Messages(tollgate.NewMessage("user", "Extract the dates.")),
		Signals: &tollgate.TaskSignals{TaskType: "extract"},
		Reserve: true,
	})
	if err != nil {
		t.Fatalf("Route: %v", err)
	}
	if resp.GetDecision().GetChosen().GetModel() != "gpt-4o-mini" || resp.GetReservation().GetReservationId() != "route-1" {
		t.Fatalf("unexpected answer %v", resp)
	}
	fake.mu.Lock()
	got := fake.routes[0]
	fake.mu.Unlock()
	if got.GetScope().GetUserId() != "alice" || got.GetScope().GetPriority() != tollgate.PriorityHigh ||
		got.GetPrompt().GetMessages().GetItems()[0].GetContent() != "Extract the dates." ||
		got.GetSignals().GetTaskType() != "extract" || !got.GetReserve() {
		t.Fatalf("the sidecar got %v", got)
	}
}

func TestPromptHelpersFillTheOneof(t *testing.T) {
	if got := tollgate.InputTokens(5000).GetInputTokens(); got != 5000 {
		t.Fatalf("InputTokens: %d", got)
	}
	p := tollgate.Messages(tollgate.NewMessage("system", "be brief"), tollgate.NewMessage("user", "hi"))
	items := p.GetMessages().GetItems()
	if len(items) != 2 || items[0].GetRole() != "system" || items[1].GetContent() != "hi" || p.GetInputTokens() != 0 {
		t.Fatalf("Messages: %v", p)
	}
}

func TestReserveCommitReleaseGetBudget(t *testing.T) {
	client, fake := connect(t)
	ctx := context.Background()
	res, err := client.Reserve(ctx, &tollgate.ReserveRequest{
		Scope: &tollgate.Scope{OrgId: "acme"}, Model: "gpt-4o", Prompt: tollgate.InputTokens(10),
	})
	if err != nil || res.GetReservation().GetReservationId() != "reserve-gpt-4o" {
		t.Fatalf("Reserve: %v %v", res, err)
	}
	usage := &tollgate.Usage{InputTokens: 10, CachedInputTokens: 2, OutputTokens: 20, ReasoningTokens: 3}
	committed, err := client.Commit(ctx, "reserve-gpt-4o", usage)
	if err != nil || committed.GetChargedNanos() != 1000 {
		t.Fatalf("Commit: %v %v", committed, err)
	}
	fake.mu.Lock()
	sent := fake.commits[0].GetUsage()
	fake.mu.Unlock()
	if !proto.Equal(sent, usage) {
		t.Fatalf("the sidecar got usage %v", sent)
	}
	released, err := client.Release(ctx, "other")
	if err != nil || released.GetReleasedNanos() != 1234 {
		t.Fatalf("Release: %v %v", released, err)
	}
	pools, err := client.GetBudget(ctx, &tollgate.Scope{OrgId: "acme"})
	if err != nil || len(pools) != 2 || pools[1].GetPoolId() != "org:acme" {
		t.Fatalf("GetBudget: %v %v", pools, err)
	}
}

func TestExtendSendsWholeMillisecondsRoundedUp(t *testing.T) {
	client, fake := connect(t)
	ctx := context.Background()
	for _, ttl := range []time.Duration{0, time.Microsecond, 1500 * time.Microsecond, 2 * time.Minute} {
		if _, err := client.Extend(ctx, "r", ttl); err != nil {
			t.Fatalf("Extend(%v): %v", ttl, err)
		}
	}
	var got []int64
	fake.mu.Lock()
	for _, e := range fake.extends {
		got = append(got, e.GetTtlMs())
	}
	fake.mu.Unlock()
	if fmt.Sprint(got) != "[0 1 2 120000]" {
		t.Fatalf("ttl_ms sent: %v", got)
	}
}

func TestBudgetExceededIsDecodedFromTheStatusDetails(t *testing.T) {
	client, _ := connect(t)
	_, err := client.Reserve(context.Background(), &tollgate.ReserveRequest{
		Scope: &tollgate.Scope{OrgId: "broke"}, Model: "claude-opus-4-1", Prompt: tollgate.InputTokens(5000),
	})
	var refused *tollgate.BudgetExceededError
	if !errors.As(err, &refused) {
		t.Fatalf("want a *BudgetExceededError, got %T %v", err, err)
	}
	want := tollgate.BudgetExceededError{
		PoolID: "org:broke", Level: tollgate.PoolLevelOrg, Policy: tollgate.PolicyHard, Limit: "cost",
		RequestedNanos: 1_500_000, RemainingNanos: 1_000, ResetsAt: resetsAt,
	}
	if refused.PoolID != want.PoolID || refused.Level != want.Level || refused.Policy != want.Policy ||
		refused.Limit != want.Limit || refused.RequestedNanos != want.RequestedNanos ||
		refused.RemainingNanos != want.RemainingNanos || !refused.ResetsAt.Equal(want.ResetsAt) {
		t.Fatalf("got %+v, want %+v", *refused, want)
	}
	if !tollgate.IsBudgetExceeded(err) || status.Code(err) != codes.ResourceExhausted || tollgate.IsUnavailable(err) {
		t.Fatalf("classified wrongly: %v", err)
	}
	if msg := err.Error(); msg != "tollgate: budget exceeded: org:broke refused" {
		t.Fatalf("message %q", msg)
	}
}

func TestBudgetExceededFromTheTrailerAlone(t *testing.T) {
	client, _ := connect(t)
	_, err := client.Reserve(context.Background(), &tollgate.ReserveRequest{Scope: &tollgate.Scope{OrgId: "trailer-only"}})
	var refused *tollgate.BudgetExceededError
	if !errors.As(err, &refused) || refused.PoolID != "org:broke" || refused.Policy != tollgate.PolicyHard {
		t.Fatalf("got %T %+v", err, err)
	}
}

func TestBudgetExceededMessageWithoutTheSidecarsText(t *testing.T) {
	client, _ := connect(t)
	_, err := client.Reserve(context.Background(), &tollgate.ReserveRequest{Scope: &tollgate.Scope{OrgId: "silent"}})
	want := "tollgate: budget exceeded: pool org:broke (cost limit) needs 1500000, has 1000 left"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestBudgetExceededWithADamagedTrailerKeepsTheStatus(t *testing.T) {
	client, _ := connect(t)
	_, err := client.Reserve(context.Background(), &tollgate.ReserveRequest{Scope: &tollgate.Scope{OrgId: "damaged"}})
	var refused *tollgate.BudgetExceededError
	if !errors.As(err, &refused) {
		t.Fatalf("got %T %v", err, err)
	}
	if refused.PoolID != "" || !refused.ResetsAt.IsZero() || refused.GRPCStatus().Code() != codes.ResourceExhausted {
		t.Fatalf("got %+v", *refused)
	}
}

func TestResourceExhaustedWithoutReasonOrDetailIsNotABudgetRefusal(t *testing.T) {
	client, _ := connect(t)
	_, err := client.Reserve(context.Background(), &tollgate.ReserveRequest{Scope: &tollgate.Scope{OrgId: "bare"}})
	var plain *tollgate.Error
	if !errors.As(err, &plain) || plain.Reason != "" || status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("want an *Error of RESOURCE_EXHAUSTED, got %T %v", err, err)
	}
	var refused *tollgate.BudgetExceededError
	if errors.As(err, &refused) || tollgate.IsBudgetExceeded(err) || tollgate.IsRateLimited(err) {
		t.Fatalf("classified as a refusal: %v", err)
	}
	if err.Error() != "rpc error: code = ResourceExhausted desc = refused without detail" {
		t.Fatalf("message %q", err.Error())
	}
}

func TestBudgetExceededAsTheSidecarSendsIt(t *testing.T) {
	client, _ := connect(t)
	_, err := client.Reserve(context.Background(), &tollgate.ReserveRequest{Scope: &tollgate.Scope{OrgId: "reasoned"}})
	var refused *tollgate.BudgetExceededError
	if !errors.As(err, &refused) || refused.PoolID != "org:broke" || refused.RequestedNanos != 1_500_000 ||
		refused.Reason != tollgate.ReasonBudgetExceeded || tollgate.Reason(err) != tollgate.ReasonBudgetExceeded {
		t.Fatalf("got %T %+v", err, err)
	}
}

func TestReasonsMapToErrors(t *testing.T) {
	client, _ := connect(t)
	for reason, code := range reasonCodes {
		_, err := client.GetBudget(context.Background(), &tollgate.Scope{OrgId: "refuse-" + reason})
		if tollgate.Reason(err) != reason || tollgate.Code(err) != code || status.Code(err) != code {
			t.Errorf("%s: got reason %q, code %v: %v", reason, tollgate.Reason(err), tollgate.Code(err), err)
		}
		var (
			refused     *tollgate.BudgetExceededError
			limited     *tollgate.RateLimitedError
			unavailable *tollgate.UnavailableError
			other       *tollgate.Error
		)
		switch reason {
		case tollgate.ReasonBudgetExceeded:
			if !errors.As(err, &refused) || refused.Reason != reason {
				t.Errorf("%s: got %T", reason, err)
			}
		case tollgate.ReasonRateLimited:
			if !errors.As(err, &limited) || limited.Reason != reason || errors.As(err, &refused) {
				t.Errorf("%s: got %T", reason, err)
			}
			if err.Error() != "tollgate: rate limited: refused: RATE_LIMITED" {
				t.Errorf("%s: message %q", reason, err.Error())
			}
		case tollgate.ReasonStoreUnavailable, tollgate.ReasonCallerGone:
			if !errors.As(err, &unavailable) || unavailable.Reason != reason {
				t.Errorf("%s: got %T", reason, err)
			}
		default:
			if !errors.As(err, &other) || other.Reason != reason {
				t.Errorf("%s: got %T", reason, err)
			}
		}
		helpers := map[string]bool{
			"IsBudgetExceeded":      tollgate.IsBudgetExceeded(err),
			"IsRateLimited":         tollgate.IsRateLimited(err),
			"IsUnavailable":         tollgate.IsUnavailable(err),
			"IsNotFound":            tollgate.IsNotFound(err),
			"IsInvalidArgument":     tollgate.IsInvalidArgument(err),
			"IsReservationEnded":    tollgate.IsReservationEnded(err),
			"IsIdempotencyConflict": tollgate.IsIdempotencyConflict(err),
			"IsEscalationRefused":   tollgate.IsEscalationRefused(err),
		}
		want := map[string]string{
			tollgate.ReasonBudgetExceeded:      "IsBudgetExceeded",
			tollgate.ReasonRateLimited:         "IsRateLimited",
			tollgate.ReasonStoreUnavailable:    "IsUnavailable",
			tollgate.ReasonCallerGone:          "IsUnavailable",
			tollgate.ReasonReservationNotFound: "IsNotFound",
			tollgate.ReasonInvalidRequest:      "IsInvalidArgument",
			tollgate.ReasonReservationEnded:    "IsReservationEnded",
			tollgate.ReasonEscalationRefused:   "IsEscalationRefused",
		}
		for name, got := range helpers {
			expected := want[reason] == name ||
				reason == tollgate.ReasonIdempotencyConflict && (name == "IsIdempotencyConflict" || name == "IsReservationEnded")
			if got != expected {
				t.Errorf("%s: %s = %v", reason, name, got)
			}
		}
	}
}

func TestErrorHelpers(t *testing.T) {
	deadline := status.Error(codes.DeadlineExceeded, "late")
	cases := []struct {
		err                                         error
		code                                        codes.Code
		unavailable, notFound, ended, invalid, over bool
	}{
		{nil, codes.OK, false, false, false, false, false},
		{status.Error(codes.Unavailable, "down"), codes.Unavailable, true, false, false, false, false},
		{deadline, codes.DeadlineExceeded, true, false, false, false, false},
		{fmt.Errorf("route: %w", deadline), codes.DeadlineExceeded, true, false, false, false, false},
		{context.DeadlineExceeded, codes.DeadlineExceeded, true, false, false, false, false},
		{context.Canceled, codes.Canceled, false, false, false, false, false},
		{status.Error(codes.NotFound, "gone"), codes.NotFound, false, true, false, false, false},
		{fmt.Errorf("commit: %w", status.Error(codes.FailedPrecondition, "ended")), codes.FailedPrecondition, false, false, true, false, false},
		{status.Error(codes.InvalidArgument, "bad"), codes.InvalidArgument, false, false, false, true, false},
		// Without a reason or the refusal's detail, RESOURCE_EXHAUSTED is not a budget refusal.
		{status.Error(codes.ResourceExhausted, "over"), codes.ResourceExhausted, false, false, false, false, false},
		{statusWith(codes.ResourceExhausted, "over", refusal()), codes.ResourceExhausted, false, false, false, false, true},
		{errors.New("plain"), codes.Unknown, false, false, false, false, false},
		// A raw status error (from the Stub) is classified by its reason too.
		{withReason(codes.ResourceExhausted, "over", tollgate.ReasonBudgetExceeded), codes.ResourceExhausted, false, false, false, false, true},
		{withReason(codes.ResourceExhausted, "slow down", tollgate.ReasonRateLimited), codes.ResourceExhausted, false, false, false, false, false},
		{fmt.Errorf("commit: %w", withReason(codes.FailedPrecondition, "other usage", tollgate.ReasonIdempotencyConflict)), codes.FailedPrecondition, false, false, true, false, false},
		{withReason(codes.Unavailable, "store", tollgate.ReasonStoreUnavailable), codes.Unavailable, true, false, false, false, false},
		// A reason this client does not know, or of another domain: the code decides.
		{withReason(codes.NotFound, "gone", "SOMETHING_NEW"), codes.NotFound, false, true, false, false, false},
		{statusWith(codes.ResourceExhausted, "over", &errdetails.ErrorInfo{Reason: tollgate.ReasonBudgetExceeded, Domain: "example.com"}), codes.ResourceExhausted, false, false, false, false, false},
	}
	for _, c := range cases {
		if got := tollgate.Code(c.err); got != c.code {
			t.Errorf("Code(%v) = %v, want %v", c.err, got, c.code)
		}
		if tollgate.IsUnavailable(c.err) != c.unavailable || tollgate.IsNotFound(c.err) != c.notFound ||
			tollgate.IsReservationEnded(c.err) != c.ended || tollgate.IsInvalidArgument(c.err) != c.invalid ||
			tollgate.IsBudgetExceeded(c.err) != c.over {
			t.Errorf("helpers misclassify %v", c.err)
		}
	}
	if got := tollgate.Reason(withReason(codes.NotFound, "gone", "SOMETHING_NEW")); got != "SOMETHING_NEW" {
		t.Errorf("Reason of an unknown reason = %q", got)
	}
	other := statusWith(codes.ResourceExhausted, "over", &errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: "example.com"})
	if got := tollgate.Reason(other); got != "" || tollgate.IsRateLimited(other) {
		t.Errorf("an ErrorInfo of another domain was read: %q", got)
	}
	if tollgate.Reason(nil) != "" || tollgate.Reason(errors.New("plain")) != "" {
		t.Error("Reason of an error without a status is not empty")
	}
}

func TestDefaultTimeoutMakesASlowCallUnavailable(t *testing.T) {
	client, _ := connect(t, tollgate.WithTimeout(50*time.Millisecond))
	start := time.Now()
	_, err := client.Route(context.Background(), &tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "slow"}})
	if !tollgate.IsUnavailable(err) || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("want DEADLINE_EXCEEDED, got %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("the default timeout was not applied: %v", elapsed)
	}
}

func TestDialRejectsAnEmptyTarget(t *testing.T) {
	if _, err := tollgate.Dial(context.Background(), ""); err == nil {
		t.Fatal("Dial(\"\") succeeded")
	}
}

func TestDialUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	serve(t, lis)
	client, err := tollgate.Dial(context.Background(), "unix://"+path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer client.Close()
	pools, err := client.GetBudget(context.Background(), &tollgate.Scope{OrgId: "acme"})
	if err != nil || len(pools) != 2 {
		t.Fatalf("GetBudget over %s: %v %v", path, pools, err)
	}
}

func TestNewUsesTheCallersConnection(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	serve(t, lis)
	dialer := grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() })
	conn, err := grpc.Dial("bufnet", dialer, grpc.WithInsecure())
	if err != nil {
		t.Fatalf("grpc.Dial: %v", err)
	}
	defer conn.Close()
	client := tollgate.New(conn)
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := client.Release(context.Background(), "r"); err != nil {
		t.Fatalf("Close of a Client from New closed the caller's connection: %v", err)
	}
}

func TestWithReservationReleasesWhenTheFunctionFails(t *testing.T) {
	client, fake := connect(t)
	boom := errors.New("provider error")
	var seen *tollgate.Held
	err := client.WithReservation(context.Background(), reservation("r-fail"), func(_ context.Context, held *tollgate.Held) error {
		seen = held
		if held.ID() != "r-fail" || held.Model() != "gpt-4o-mini" || !held.ExpiresAt().Equal(resetsAt) || held.Settled() {
			t.Errorf("held: %v %v %v %v", held.ID(), held.Model(), held.ExpiresAt(), held.Settled())
		}
		return boom
	})
	if err != boom {
		t.Fatalf("want the function's own error back, got %v", err)
	}
	if !sameIDs(fake.releasedIDs(), "r-fail") || !seen.Settled() {
		t.Fatalf("released %v", fake.releasedIDs())
	}
}

func TestWithReservationReleasesWhenNothingWasCommitted(t *testing.T) {
	client, fake := connect(t)
	err := client.WithReservation(context.Background(), reservation("r-idle"), func(context.Context, *tollgate.Held) error {
		return nil
	})
	if err != nil || !sameIDs(fake.releasedIDs(), "r-idle") {
		t.Fatalf("err %v, released %v", err, fake.releasedIDs())
	}
}

func TestWithReservationKeepsACommit(t *testing.T) {
	client, fake := connect(t)
	ctx := context.Background()
	var charged int64
	err := client.WithReservation(ctx, reservation("r-ok"), func(ctx context.Context, held *tollgate.Held) error {
		resp, err := held.Commit(ctx, &tollgate.Usage{InputTokens: 100, OutputTokens: 10})
		charged = resp.GetChargedNanos()
		return err
	})
	if err != nil || charged != 1000 || len(fake.releasedIDs()) != 0 {
		t.Fatalf("err %v, charged %d, released %v", err, charged, fake.releasedIDs())
	}
	// A commit that failed is not followed by a release: the provider call happened.
	err = client.WithReservation(ctx, reservation("commit-fails"), func(ctx context.Context, held *tollgate.Held) error {
		_, err := held.Commit(ctx, &tollgate.Usage{InputTokens: 100})
		return err
	})
	if !tollgate.IsUnavailable(err) || len(fake.releasedIDs()) != 0 {
		t.Fatalf("err %v, released %v", err, fake.releasedIDs())
	}
}

func TestWithReservationExplicitReleaseIsNotRepeated(t *testing.T) {
	client, fake := connect(t)
	err := client.WithReservation(context.Background(), reservation("r-rel"), func(ctx context.Context, held *tollgate.Held) error {
		_, err := held.Release(ctx)
		return err
	})
	if err != nil || !sameIDs(fake.releasedIDs(), "r-rel") {
		t.Fatalf("err %v, released %v", err, fake.releasedIDs())
	}
}

func TestWithReservationExtendUpdatesTheExpiry(t *testing.T) {
	client, _ := connect(t)
	err := client.WithReservation(context.Background(), reservation("r-ext"), func(ctx context.Context, held *tollgate.Held) error {
		if _, err := held.Extend(ctx, time.Hour); err != nil {
			return err
		}
		if !held.ExpiresAt().Equal(resetsAt.Add(time.Hour)) {
			return fmt.Errorf("expiry %v", held.ExpiresAt())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWithReservationReleasesOnPanic(t *testing.T) {
	client, fake := connect(t)
	defer func() {
		if r := recover(); r != "kaboom" {
			t.Fatalf("recovered %v", r)
		}
		if !sameIDs(fake.releasedIDs(), "r-panic") {
			t.Fatalf("released %v", fake.releasedIDs())
		}
	}()
	_ = client.WithReservation(context.Background(), reservation("r-panic"), func(context.Context, *tollgate.Held) error {
		panic("kaboom")
	})
	t.Fatal("the panic did not propagate")
}

func TestWithReservationReleasesAfterTheContextEnded(t *testing.T) {
	client, fake := connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	err := client.WithReservation(ctx, reservation("r-cancel"), func(ctx context.Context, _ *tollgate.Held) error {
		cancel()
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) || !sameIDs(fake.releasedIDs(), "r-cancel") {
		t.Fatalf("err %v, released %v", err, fake.releasedIDs())
	}
}

func TestWithReservationReportsAFailedRelease(t *testing.T) {
	client, _ := connect(t)
	ctx := context.Background()
	err := client.WithReservation(ctx, reservation("release-fails"), func(context.Context, *tollgate.Held) error { return nil })
	if !tollgate.IsReservationEnded(err) {
		t.Fatalf("want the release error when the function succeeded, got %v", err)
	}
	boom := errors.New("provider error")
	err = client.WithReservation(ctx, reservation("release-fails"), func(context.Context, *tollgate.Held) error { return boom })
	if !errors.Is(err, boom) || tollgate.IsReservationEnded(err) {
		t.Fatalf("want the function's error first, got %v", err)
	}
	if want := "provider error (releasing Tollgate reservation release-fails on the way out also failed: "; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Fatalf("message %q", err.Error())
	}
}

func TestWithReservationNeedsAReservation(t *testing.T) {
	client, _ := connect(t)
	called := false
	err := client.WithReservation(context.Background(), nil, func(context.Context, *tollgate.Held) error {
		called = true
		return nil
	})
	if !errors.Is(err, tollgate.ErrNoReservation) || called {
		t.Fatalf("err %v, called %v", err, called)
	}
}
