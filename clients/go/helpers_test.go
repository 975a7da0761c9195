package tollgate_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	tollgate "github.com/tollgate/tollgate/clients/go"
	pb "github.com/tollgate/tollgate/clients/go/tollgatev1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/test/bufconn"
)

var tierModels = []struct{ tier, model string }{{"cheap", "gpt-4o-mini"}, {"medium", "gpt-4o"}, {"frontier", "o3"}}

// helperSidecar answers the calls of the cascade and shadow helpers: Route (sampling org "sampled"), Commit,
// Release, Escalate (attempt n is tier n, refused past the top tier) and Feedback, and records them.
type helperSidecar struct {
	pb.UnimplementedTollgateServiceServer

	mu    sync.Mutex
	calls []string // "Method id"
	sent  []any
}

func (f *helperSidecar) note(call string, req any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	f.sent = append(f.sent, req)
}

func (f *helperSidecar) record() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func attempt(n int) (*pb.Decision, *pb.Reservation) {
	chosen := tierModels[n-1]
	return &pb.Decision{Chosen: &pb.Candidate{Model: chosen.model, Tier: chosen.tier, Latency: tollgate.LatencyFast}},
		&pb.Reservation{ReservationId: "r" + strconv.Itoa(n) + ".acme", Model: chosen.model, HeldNanos: 1000}
}

func (f *helperSidecar) Route(_ context.Context, req *pb.RouteRequest) (*pb.RouteResponse, error) {
	f.note("Route", req)
	decision, held := attempt(1)
	resp := &pb.RouteResponse{Decision: decision, Reservation: held}
	if req.GetAcceptShadow() && req.GetScope().GetOrgId() == "sampled" {
		resp.Shadow = &pb.Shadow{Model: "o3", Tier: "frontier", Purpose: "reference",
			Reservation: &pb.Reservation{ReservationId: "s1.acme", Model: "o3", HeldNanos: 9000}}
	}
	return resp, nil
}

func (f *helperSidecar) Commit(_ context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	f.note("Commit "+req.GetReservationId(), req)
	return &pb.CommitResponse{ReservationId: req.GetReservationId(), ChargedNanos: 700}, nil
}

func (f *helperSidecar) Release(_ context.Context, req *pb.ReleaseRequest) (*pb.ReleaseResponse, error) {
	f.note("Release "+req.GetReservationId(), req)
	return &pb.ReleaseResponse{ReservationId: req.GetReservationId()}, nil
}

func (f *helperSidecar) Escalate(_ context.Context, req *pb.EscalateRequest) (*pb.EscalateResponse, error) {
	f.note("Escalate "+req.GetReservationId(), req)
	n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(req.GetReservationId(), "r"), ".acme"))
	if n+1 > len(tierModels) {
		return nil, withReason(codes.OutOfRange, "no tier above frontier", tollgate.ReasonEscalationRefused)
	}
	decision, held := attempt(n + 1)
	return &pb.EscalateResponse{Decision: decision, Reservation: held, PreviousReservationId: req.GetReservationId(),
		PreviousCommit: &pb.CommitResponse{ReservationId: req.GetReservationId(), ChargedNanos: 700}, Attempt: int32(n + 1)}, nil
}

func (f *helperSidecar) Feedback(_ context.Context, req *pb.FeedbackRequest) (*pb.FeedbackResponse, error) {
	f.note("Feedback "+req.GetReservationId(), req)
	return &pb.FeedbackResponse{TaskType: "extract", Tier: "cheap"}, nil
}

func connectHelpers(t *testing.T) (*tollgate.Client, *helperSidecar) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	fake := &helperSidecar{}
	server := grpc.NewServer()
	pb.RegisterTollgateServiceServer(server, fake)
	go func() { _ = server.Serve(lis) }()
	t.Cleanup(server.Stop)
	dialer := grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() })
	client, err := tollgate.Dial(context.Background(), "bufnet", tollgate.WithDialOptions(dialer))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client, fake
}

type reply struct {
	text  string
	usage *tollgate.Usage
}

func usageOf(a reply) *tollgate.Usage { return a.usage }

func TestCallWithEscalationEscalatesUntilTheCheckPasses(t *testing.T) {
	client, fake := connectHelpers(t)
	req := &tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "acme"}, Prompt: tollgate.InputTokens(10),
		Signals: &tollgate.TaskSignals{TaskType: "extract", NeedsJson: true, Latency: tollgate.LatencyStandard}}
	var tiers []string
	cascade, err := tollgate.CallWithEscalation(context.Background(), client, req,
		func(_ context.Context, d *tollgate.Decision) (reply, error) {
			tiers = append(tiers, d.GetChosen().GetTier())
			return reply{text: d.GetChosen().GetTier(), usage: &tollgate.Usage{InputTokens: 10, OutputTokens: 2}}, nil
		},
		tollgate.CascadeOptions[reply]{
			Check: func(a reply) string {
				if a.text == "cheap" {
					return "invalid_json"
				}
				return ""
			},
			Usage: usageOf,
		})
	if err != nil {
		t.Fatalf("CallWithEscalation: %v", err)
	}
	if req.GetReserve() {
		t.Fatal("the caller's request was modified")
	}
	if !cascade.Passed || cascade.Response.text != "medium" || strings.Join(tiers, ",") != "cheap,medium" ||
		cascade.ChargedNanos() != 1400 || len(cascade.Attempts) != 2 || cascade.Attempts[0].Problem != "invalid_json" ||
		cascade.Attempts[1].ReservationID != "r2.acme" {
		t.Fatalf("cascade %+v", cascade)
	}
	if got := strings.Join(fake.record(), ","); got != "Route,Escalate r1.acme,Commit r2.acme" {
		t.Fatalf("calls %s", got)
	}
	sent := fake.sent[1].(*pb.EscalateRequest)
	if sent.GetReason() != "invalid_json" || sent.GetUsage().GetInputTokens() != 10 || !sent.GetSignals().GetNeedsJson() ||
		sent.GetSignals().GetLatency() != tollgate.LatencyStandard || sent.GetPrompt().GetInputTokens() != 10 {
		t.Fatalf("escalation sent %v", sent)
	}
}

func TestCallWithEscalationStopsWhereTheSidecarRefuses(t *testing.T) {
	client, fake := connectHelpers(t)
	req := &tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "acme"}, Prompt: tollgate.InputTokens(10)}
	cascade, err := tollgate.CallWithEscalation(context.Background(), client, req,
		func(context.Context, *tollgate.Decision) (reply, error) {
			return reply{usage: &tollgate.Usage{InputTokens: 1}}, nil
		},
		tollgate.CascadeOptions[reply]{Check: func(reply) string { return "wrong" }, Usage: usageOf,
			NextPrompt: func(reply, string) *tollgate.Prompt { return tollgate.InputTokens(20) }})
	if err != nil {
		t.Fatalf("CallWithEscalation: %v", err)
	}
	if cascade.Passed || len(cascade.Attempts) != 3 || cascade.Attempts[2].Tier != "frontier" {
		t.Fatalf("cascade %+v", cascade)
	}
	want := "Route,Escalate r1.acme,Escalate r2.acme,Escalate r3.acme,Commit r3.acme"
	if got := strings.Join(fake.record(), ","); got != want {
		t.Fatalf("calls %s, want %s", got, want)
	}
	if fake.sent[2].(*pb.EscalateRequest).GetPrompt().GetInputTokens() != 20 {
		t.Fatal("NextPrompt was not sent")
	}
}

func TestCallWithEscalationReleasesAFailedCall(t *testing.T) {
	client, fake := connectHelpers(t)
	boom := errors.New("provider down")
	_, err := tollgate.CallWithEscalation(context.Background(), client,
		&tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "acme"}, Prompt: tollgate.InputTokens(10)},
		func(context.Context, *tollgate.Decision) (reply, error) { return reply{}, boom },
		tollgate.CascadeOptions[reply]{Check: func(reply) string { return "" }, Usage: usageOf})
	if !errors.Is(err, boom) {
		t.Fatalf("want the call's error, got %v", err)
	}
	if got := strings.Join(fake.record(), ","); got != "Route,Release r1.acme" {
		t.Fatalf("calls %s", got)
	}
}

func TestCallWithShadowComparesASampledRequest(t *testing.T) {
	client, fake := connectHelpers(t)
	ctx := context.Background()
	route, err := client.Route(ctx, &tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "sampled"},
		Prompt: tollgate.InputTokens(10), Reserve: true, AcceptShadow: true})
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]string{"gpt-4o-mini": `{"a": [1, 2], "b": 1}`, "o3": `{"b": 1, "a": [1, 2]}`}
	primary, comparison, err := tollgate.CallWithShadow(ctx, client, route,
		func(_ context.Context, model string) (reply, error) {
			return reply{text: answers[model], usage: &tollgate.Usage{InputTokens: 10}}, nil
		},
		tollgate.ShadowOptions[reply]{Usage: usageOf, Answer: func(a reply) any { return a.text }})
	if err != nil || comparison == nil {
		t.Fatalf("CallWithShadow: %v, %v", err, comparison)
	}
	if primary.text != answers["gpt-4o-mini"] {
		t.Fatalf("primary %v", primary)
	}
	if result := <-comparison; result.Err != nil || result.Score != 1 {
		t.Fatalf("comparison %+v", result)
	}
	if got := strings.Join(fake.record(), ","); got != "Route,Commit r1.acme,Commit s1.acme,Feedback r1.acme" {
		t.Fatalf("calls %s", got)
	}
	if fb := fake.sent[3].(*pb.FeedbackRequest); fb.GetSource() != tollgate.FeedbackShadowComparison || fb.GetScore() != 1 {
		t.Fatalf("feedback %v", fb)
	}
}

func TestCallWithShadowSkipsAnUnsampledRequestAndReleasesAFailedShadow(t *testing.T) {
	client, fake := connectHelpers(t)
	ctx := context.Background()
	plain, _ := client.Route(ctx, &tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "acme"},
		Prompt: tollgate.InputTokens(10), Reserve: true, AcceptShadow: true})
	call := func(_ context.Context, model string) (reply, error) {
		if model == "o3" {
			return reply{}, errors.New("provider down")
		}
		return reply{text: "ok", usage: &tollgate.Usage{InputTokens: 1}}, nil
	}
	opts := tollgate.ShadowOptions[reply]{Usage: usageOf}
	if _, comparison, err := tollgate.CallWithShadow(ctx, client, plain, call, opts); err != nil || comparison != nil {
		t.Fatalf("an unsampled request: %v, %v", err, comparison)
	}
	sampled, _ := client.Route(ctx, &tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "sampled"},
		Prompt: tollgate.InputTokens(10), Reserve: true, AcceptShadow: true})
	_, comparison, err := tollgate.CallWithShadow(ctx, client, sampled, call, opts)
	if err != nil {
		t.Fatal(err)
	}
	if result := <-comparison; result.Err == nil {
		t.Fatalf("a failed shadow call: %+v", result)
	}
	if calls := fake.record(); calls[len(calls)-1] != "Release s1.acme" {
		t.Fatalf("calls %v", calls)
	}
}

func TestDefaultJudge(t *testing.T) {
	for _, c := range []struct {
		a, b any
		want float64
	}{
		{`{"a": 1, "b": [1, {"c": 2}]}`, `{"b":[1,{"c":2}],"a":1}`, 1},
		{`{"a": 1}`, `{"a": 2}`, 0},
		{"  the  answer\n", "the answer", 1},
		{"yes", "no", 0},
		{[]byte(`[1, 2]`), "[1,2]", 1},
		{42, "42", 1},
	} {
		if got := tollgate.DefaultJudge(c.a, c.b); got != c.want {
			t.Errorf("DefaultJudge(%#v, %#v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
