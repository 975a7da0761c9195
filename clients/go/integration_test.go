package tollgate_test

// Against a real sidecar: run only when TOLLGATE_TARGET ("host:port") is set,
// and the Unix-socket variants when TOLLGATE_UNIX_TARGET ("unix:///path") is
// too. The refusal test needs the sidecar configured with
//
//	budgets: {overrides: {"org:tiny": {cap: "0.001", policy: hard}}}
//
// as tests/clients/go/test_go_client.py does. The retry test runs when
// TOLLGATE_LOSSY_TARGET is set too: a proxy in front of the sidecar's TCP
// port that loses the answer to the first call of every other connection
// (tests/clients/lossy_proxy.py). The errors-by-reason test runs when
// TOLLGATE_AUTH_TARGET is set: a sidecar with callers configured
// (tests/clients/auth_sidecar.py), TOLLGATE_LIMITED_TOKEN's allowed one call
// a second in org "acme", TOLLGATE_SPENDER_TOKEN's free to spend in "acme"
// and "tiny" (capped at $0.001, hard).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	tollgate "github.com/tollgate/tollgate/clients/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

func sidecar(t *testing.T, env string) *tollgate.Client {
	t.Helper()
	target := os.Getenv(env)
	if target == "" {
		t.Skipf("%s is not set: no sidecar to test against", env)
	}
	client, err := tollgate.Dial(context.Background(), target, tollgate.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("Dial(%q): %v", target, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// org is a fresh organisation per test, so that tests never share a pool.
func org(t *testing.T) *tollgate.Scope {
	name := strings.ReplaceAll(t.Name(), "/", "-")
	return &tollgate.Scope{OrgId: fmt.Sprintf("go-%s-%d", name, time.Now().UnixNano()), UserId: "alice"}
}

func pool(t *testing.T, pools []*tollgate.PoolState, id string) *tollgate.PoolState {
	t.Helper()
	for _, p := range pools {
		if p.GetPoolId() == id {
			return p
		}
	}
	t.Fatalf("no pool %s in %v", id, pools)
	return nil
}

// each runs test over TCP and, when TOLLGATE_UNIX_TARGET is set, over the Unix socket.
func each(t *testing.T, test func(t *testing.T, client *tollgate.Client)) {
	if os.Getenv("TOLLGATE_TARGET") == "" {
		t.Skip("TOLLGATE_TARGET is not set: no sidecar to test against")
	}
	t.Run("tcp", func(t *testing.T) { test(t, sidecar(t, "TOLLGATE_TARGET")) })
	t.Run("unix", func(t *testing.T) { test(t, sidecar(t, "TOLLGATE_UNIX_TARGET")) })
}

func TestIntegrationRouteReserveCommitReplay(t *testing.T) {
	each(t, func(t *testing.T, client *tollgate.Client) {
		ctx := context.Background()
		scope := org(t)
		route, err := client.Route(ctx, &tollgate.RouteRequest{
			Scope:   scope,
			Prompt:  tollgate.Messages(tollgate.NewMessage("user", "Extract every date from: signed 2024-03-01.")),
			Signals: &tollgate.TaskSignals{TaskType: "extract"},
			Reserve: true,
		})
		if err != nil {
			t.Fatalf("Route: %v", err)
		}
		chosen, held := route.GetDecision().GetChosen(), route.GetReservation()
		if chosen.GetTier() != "cheap" || held.GetReservationId() == "" || held.GetModel() != chosen.GetModel() ||
			held.GetHeldNanos() <= 0 || held.GetExpiresAt() == nil {
			t.Fatalf("Route answered %v", route)
		}
		org := pool(t, held.GetPools(), "org:"+scope.GetOrgId())
		if org.GetHeldNanos() != held.GetHeldNanos() || org.GetLevel() != tollgate.PoolLevelOrg {
			t.Fatalf("org pool after the hold: %v", org)
		}

		usage := &tollgate.Usage{InputTokens: 20, OutputTokens: 12}
		first, err := client.Commit(ctx, held.GetReservationId(), usage)
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if first.GetReplayed() || first.GetChargedNanos() <= 0 || first.GetReservationId() != held.GetReservationId() {
			t.Fatalf("Commit answered %v", first)
		}
		again, err := client.Commit(ctx, held.GetReservationId(), usage)
		if err != nil {
			t.Fatalf("replayed Commit: %v", err)
		}
		if !again.GetReplayed() || again.GetChargedNanos() != first.GetChargedNanos() {
			t.Fatalf("replayed Commit answered %v after %v", again, first)
		}
		_, err = client.Commit(ctx, held.GetReservationId(), &tollgate.Usage{InputTokens: 21, OutputTokens: 12})
		if !tollgate.IsReservationEnded(err) {
			t.Fatalf("a repeated commit with other figures: want FAILED_PRECONDITION, got %v", err)
		}

		pools, err := client.GetBudget(ctx, scope)
		if err != nil {
			t.Fatalf("GetBudget: %v", err)
		}
		if p := pool(t, pools, "org:"+scope.GetOrgId()); p.GetSpentNanos() != first.GetChargedNanos() || p.GetHeldNanos() != 0 {
			t.Fatalf("org pool after the commit: %v", p)
		}
	})
}

func TestIntegrationBudgetRefusal(t *testing.T) {
	each(t, func(t *testing.T, client *tollgate.Client) {
		_, err := client.Reserve(context.Background(), &tollgate.ReserveRequest{
			Scope:  &tollgate.Scope{OrgId: "tiny"},
			Model:  "claude-opus-4-1",
			Prompt: tollgate.InputTokens(5000),
		})
		var refused *tollgate.BudgetExceededError
		if !errors.As(err, &refused) {
			t.Fatalf("want a *BudgetExceededError, got %T: %v", err, err)
		}
		if refused.PoolID != "org:tiny" || refused.Level != tollgate.PoolLevelOrg || refused.Policy != tollgate.PolicyHard ||
			refused.Limit != "cost" || refused.RequestedNanos <= refused.RemainingNanos || refused.RemainingNanos > 1_000_000 {
			t.Fatalf("refusal %+v", *refused)
		}
		if refused.ResetsAt.IsZero() || !refused.ResetsAt.After(time.Now()) {
			t.Fatalf("an org pool resets monthly, got ResetsAt %v", refused.ResetsAt)
		}
		if !tollgate.IsBudgetExceeded(err) || tollgate.IsUnavailable(err) || tollgate.IsRateLimited(err) ||
			refused.Reason != tollgate.ReasonBudgetExceeded || tollgate.Reason(err) != tollgate.ReasonBudgetExceeded {
			t.Fatalf("classified wrongly: %v (reason %q)", err, tollgate.Reason(err))
		}
	})
}

func TestIntegrationWithReservationReleasesOnError(t *testing.T) {
	each(t, func(t *testing.T, client *tollgate.Client) {
		ctx := context.Background()
		scope := org(t)
		res, err := client.Reserve(ctx, &tollgate.ReserveRequest{Scope: scope, Model: "gpt-4o", Prompt: tollgate.InputTokens(800)})
		if err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		id := res.GetReservation().GetReservationId()
		providerDown := errors.New("provider answered 503")
		err = client.WithReservation(ctx, res.GetReservation(), func(ctx context.Context, held *tollgate.Held) error {
			if _, err := held.Extend(ctx, 10*time.Minute); err != nil {
				return err
			}
			return providerDown
		})
		if err != providerDown {
			t.Fatalf("want the function's error back, got %v", err)
		}
		again, err := client.Release(ctx, id)
		if err != nil || !again.GetReplayed() {
			t.Fatalf("the reservation was not released on the way out: %v %v", again, err)
		}
		pools, err := client.GetBudget(ctx, scope)
		if err != nil {
			t.Fatalf("GetBudget: %v", err)
		}
		if p := pool(t, pools, "org:"+scope.GetOrgId()); p.GetHeldNanos() != 0 || p.GetSpentNanos() != 0 {
			t.Fatalf("org pool after the release: %v", p)
		}
		if _, err := client.Commit(ctx, id, &tollgate.Usage{InputTokens: 800}); !tollgate.IsReservationEnded(err) {
			t.Fatalf("commit after release: want FAILED_PRECONDITION, got %v", err)
		}
	})
}

func TestIntegrationWithReservationCommits(t *testing.T) {
	each(t, func(t *testing.T, client *tollgate.Client) {
		ctx := context.Background()
		scope := org(t)
		route, err := client.Route(ctx, &tollgate.RouteRequest{
			Scope: scope, Prompt: tollgate.InputTokens(300), Signals: &tollgate.TaskSignals{TaskType: "classify"}, Reserve: true,
		})
		if err != nil {
			t.Fatalf("Route: %v", err)
		}
		var charged int64
		err = client.WithReservation(ctx, route.GetReservation(), func(ctx context.Context, held *tollgate.Held) error {
			// ... the provider call with held.Model() goes here ...
			resp, err := held.Commit(ctx, &tollgate.Usage{InputTokens: 300, OutputTokens: 5})
			charged = resp.GetChargedNanos()
			return err
		})
		if err != nil || charged <= 0 {
			t.Fatalf("WithReservation: %v (charged %d)", err, charged)
		}
		pools, err := client.GetBudget(ctx, scope)
		if err != nil {
			t.Fatalf("GetBudget: %v", err)
		}
		if p := pool(t, pools, "org:"+scope.GetOrgId()); p.GetSpentNanos() != charged || p.GetHeldNanos() != 0 {
			t.Fatalf("org pool after the commit: %v", p)
		}
	})
}

func TestIntegrationErrors(t *testing.T) {
	each(t, func(t *testing.T, client *tollgate.Client) {
		ctx := context.Background()
		unknown := "000000000000000000000000." + org(t).GetOrgId()
		_, err := client.Commit(ctx, unknown, &tollgate.Usage{InputTokens: 1})
		if !tollgate.IsNotFound(err) || tollgate.Reason(err) != tollgate.ReasonReservationNotFound {
			t.Fatalf("Commit of an unknown id: want NOT_FOUND, got %v", err)
		}
		_, err = client.Release(ctx, "not an id")
		if !tollgate.IsInvalidArgument(err) || tollgate.Reason(err) != tollgate.ReasonInvalidRequest {
			t.Fatalf("Release of a malformed id: want INVALID_ARGUMENT, got %v", err)
		}
		_, err = client.Reserve(ctx, &tollgate.ReserveRequest{Scope: &tollgate.Scope{}, Model: "gpt-4o", Prompt: tollgate.InputTokens(1)})
		if !tollgate.IsInvalidArgument(err) {
			t.Fatalf("Reserve without org: want INVALID_ARGUMENT, got %v", err)
		}
		if _, err := client.GetQuality(ctx); err != nil {
			t.Fatalf("GetQuality: %v", err)
		}
	})
}

func TestIntegrationReserveIdempotencyKey(t *testing.T) {
	each(t, func(t *testing.T, client *tollgate.Client) {
		ctx := context.Background()
		req := &tollgate.ReserveRequest{
			Scope: org(t), Model: "gpt-4o-mini", Prompt: tollgate.InputTokens(100),
			Reservation: &tollgate.ReservationOptions{IdempotencyKey: "job-42-step-1", TtlMs: 60_000},
		}
		first, err := client.Reserve(ctx, req)
		if err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		again, err := client.Reserve(ctx, req)
		if err != nil {
			t.Fatalf("retried Reserve: %v", err)
		}
		if first.GetReservation().GetReplayed() || !again.GetReservation().GetReplayed() ||
			again.GetReservation().GetReservationId() != first.GetReservation().GetReservationId() {
			t.Fatalf("a retried Reserve held again: %v then %v", first.GetReservation(), again.GetReservation())
		}
		if _, err := client.Release(ctx, first.GetReservation().GetReservationId()); err != nil {
			t.Fatalf("Release: %v", err)
		}
	})
}

// lossy is a fresh client through the proxy that loses answers: its first call
// reaches the sidecar and takes effect, but the answer never comes back.
func lossy(t *testing.T) *tollgate.Client {
	t.Helper()
	target := os.Getenv("TOLLGATE_LOSSY_TARGET")
	if target == "" {
		t.Skip("TOLLGATE_LOSSY_TARGET is not set: no proxy that loses answers")
	}
	client, err := tollgate.Dial(context.Background(), target, tollgate.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("Dial(%q): %v", target, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func TestIntegrationRetryAfterALostAnswer(t *testing.T) {
	through := lossy(t)
	direct := sidecar(t, "TOLLGATE_TARGET")
	ctx := context.Background()
	scope := org(t)
	reserved, err := through.Reserve(ctx, &tollgate.ReserveRequest{
		Scope: scope, Model: "gpt-4o-mini", Prompt: tollgate.InputTokens(1000),
	})
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	held := reserved.GetReservation()
	if !held.GetReplayed() { // the retry found what the lost attempt had held
		t.Fatalf("the retried Reserve was not a replay: %v", held)
	}
	pools, err := direct.GetBudget(ctx, scope)
	if err != nil {
		t.Fatalf("GetBudget: %v", err)
	}
	if p := pool(t, pools, "org:"+scope.GetOrgId()); p.GetCalls() != 1 || p.GetHeldNanos() != held.GetHeldNanos() {
		t.Fatalf("org pool after a Reserve whose answer was lost: %v, reservation %v", p, held)
	}

	committed, err := lossy(t).Commit(ctx, held.GetReservationId(), &tollgate.Usage{InputTokens: 1000, OutputTokens: 100})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if !committed.GetReplayed() {
		t.Fatalf("the retried Commit was not a replay: %v", committed)
	}
	pools, err = direct.GetBudget(ctx, scope)
	if err != nil {
		t.Fatalf("GetBudget: %v", err)
	}
	if p := pool(t, pools, "org:"+scope.GetOrgId()); p.GetCalls() != 1 || p.GetHeldNanos() != 0 ||
		p.GetSpentNanos() != committed.GetChargedNanos() {
		t.Fatalf("org pool after a Commit whose answer was lost: %v, commit %v", p, committed)
	}
}

// TestIntegrationErrorsByReason runs against a sidecar with callers: a
// budget refusal, a caller over its rate and a message over the size limit
// are all RESOURCE_EXHAUSTED, and only the first is a budget refusal.
func TestIntegrationErrorsByReason(t *testing.T) {
	target := os.Getenv("TOLLGATE_AUTH_TARGET")
	if target == "" {
		t.Skip("TOLLGATE_AUTH_TARGET is not set: no sidecar with callers to test against")
	}
	client, err := tollgate.Dial(context.Background(), target, tollgate.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("Dial(%q): %v", target, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	as := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	}
	limited, spender := as(os.Getenv("TOLLGATE_LIMITED_TOKEN")), as(os.Getenv("TOLLGATE_SPENDER_TOKEN"))

	t.Run("rate limited", func(t *testing.T) {
		// A burst of one call; the rest of five sent at once are over the rate of one a second.
		errs := make([]error, 5)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, errs[i] = client.GetBudget(limited, &tollgate.Scope{OrgId: "acme"})
			}(i)
		}
		wg.Wait()
		refused := 0
		for _, err := range errs {
			if err == nil {
				continue
			}
			refused++
			var rateLimited *tollgate.RateLimitedError
			var budget *tollgate.BudgetExceededError
			if !errors.As(err, &rateLimited) || errors.As(err, &budget) || !tollgate.IsRateLimited(err) ||
				tollgate.IsBudgetExceeded(err) || rateLimited.Reason != tollgate.ReasonRateLimited ||
				tollgate.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "over its rate of 1 calls/s") {
				t.Errorf("want a *RateLimitedError, got %T: %v", err, err)
			}
		}
		if refused < 3 || refused > 4 {
			t.Fatalf("%d of 5 calls refused: %v", refused, errs)
		}
	})

	t.Run("budget exceeded", func(t *testing.T) {
		_, err := client.Reserve(spender, &tollgate.ReserveRequest{
			Scope: &tollgate.Scope{OrgId: "tiny"}, Model: "claude-opus-4-1", Prompt: tollgate.InputTokens(5000),
		})
		var refused *tollgate.BudgetExceededError
		if !errors.As(err, &refused) || refused.Reason != tollgate.ReasonBudgetExceeded || tollgate.IsRateLimited(err) {
			t.Fatalf("want a *BudgetExceededError, got %T: %v", err, err)
		}
		if refused.PoolID != "org:tiny" || refused.Level != tollgate.PoolLevelOrg || refused.Policy != tollgate.PolicyHard ||
			refused.Limit != "cost" || refused.RequestedNanos <= refused.RemainingNanos || refused.ResetsAt.IsZero() {
			t.Fatalf("refusal %+v", *refused)
		}
	})

	t.Run("message too large", func(t *testing.T) {
		huge := tollgate.Messages(tollgate.NewMessage("user", strings.Repeat("z", 5<<20)))
		_, err := client.Route(spender, &tollgate.RouteRequest{Scope: &tollgate.Scope{OrgId: "acme"}, Prompt: huge})
		var plain *tollgate.Error
		if !errors.As(err, &plain) || plain.Reason != "" || tollgate.Code(err) != codes.ResourceExhausted ||
			tollgate.IsBudgetExceeded(err) || tollgate.IsRateLimited(err) {
			t.Fatalf("want a plain *Error of RESOURCE_EXHAUSTED, got %T: %v", err, err)
		}
	})

	t.Run("credentials and grants", func(t *testing.T) {
		_, err := client.GetBudget(context.Background(), &tollgate.Scope{OrgId: "acme"})
		if tollgate.Code(err) != codes.Unauthenticated || tollgate.Reason(err) != tollgate.ReasonUnauthenticated {
			t.Fatalf("without a token: %v (reason %q)", err, tollgate.Reason(err))
		}
		_, err = client.GetBudget(spender, &tollgate.Scope{OrgId: "bravo"})
		if tollgate.Code(err) != codes.PermissionDenied || tollgate.Reason(err) != tollgate.ReasonPermissionDenied {
			t.Fatalf("outside the grants: %v (reason %q)", err, tollgate.Reason(err))
		}
	})
}

// The escalation and shadow tests need the config's default routing.max_escalations (2) and a quality section that
// samples every cheap decision accepting shadow calls without the guard changing tiers:
//
//	quality: {enabled: true, guard: false, shadow_share: 1.0, warmup_share: 1.0}
func TestIntegrationEscalateFeedbackQuality(t *testing.T) {
	each(t, func(t *testing.T, client *tollgate.Client) {
		ctx := context.Background()
		scope := org(t)
		prompt := tollgate.Messages(tollgate.NewMessage("user", "Classify this ticket: 'I was charged twice'"))
		first, err := client.Route(ctx, &tollgate.RouteRequest{Scope: scope, Prompt: prompt, Reserve: true,
			Signals: &tollgate.TaskSignals{TaskType: "classify", Latency: tollgate.LatencySlow}})
		if err != nil || first.GetDecision().GetChosen().GetTier() != "cheap" {
			t.Fatalf("Route: %v %v", first, err)
		}
		failed := &tollgate.Usage{InputTokens: 20, OutputTokens: 8}
		second, err := client.Escalate(ctx, &tollgate.EscalateRequest{ReservationId: first.GetReservation().GetReservationId(),
			Scope: scope, Prompt: prompt, Reason: "invalid_json", Usage: failed})
		if err != nil || second.GetAttempt() != 2 || second.GetPreviousCommit().GetChargedNanos() <= 0 ||
			second.GetDecision().GetChosen().GetTier() == "cheap" {
			t.Fatalf("Escalate: %v %v", second, err)
		}
		third, err := client.Escalate(ctx, &tollgate.EscalateRequest{ReservationId: second.GetReservation().GetReservationId(),
			Scope: scope, Prompt: prompt, Usage: failed})
		if err != nil {
			t.Fatalf("second Escalate: %v", err)
		}
		_, err = client.Escalate(ctx, &tollgate.EscalateRequest{ReservationId: third.GetReservation().GetReservationId(),
			Scope: scope, Prompt: prompt, Usage: failed})
		if !tollgate.IsEscalationRefused(err) {
			t.Fatalf("an escalation past the limit: want ESCALATION_REFUSED, got %v", err)
		}
		last, err := client.Commit(ctx, third.GetReservation().GetReservationId(), failed)
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		counted, err := client.Feedback(ctx, third.GetReservation().GetReservationId(), 1, tollgate.FeedbackUser)
		if err != nil || counted.GetTaskType() != "classify" || counted.GetTier() != third.GetDecision().GetChosen().GetTier() {
			t.Fatalf("Feedback: %v %v", counted, err)
		}
		report, err := client.GetQuality(ctx)
		if err != nil {
			t.Fatalf("GetQuality: %v", err)
		}
		found := false
		for _, q := range report {
			for _, tier := range q.GetTiers() {
				found = found || (q.GetTaskType() == "classify" && tier.GetTier() == counted.GetTier() && tier.GetSamples() >= 1)
			}
		}
		if !found {
			t.Fatalf("the feedback is not in the quality report %v", report)
		}
		pools, err := client.GetBudget(ctx, scope)
		if err != nil {
			t.Fatalf("GetBudget: %v", err)
		}
		spent := second.GetPreviousCommit().GetChargedNanos() + third.GetPreviousCommit().GetChargedNanos() + last.GetChargedNanos()
		if p := pool(t, pools, "org:"+scope.GetOrgId()); p.GetHeldNanos() != 0 || p.GetSpentNanos() != spent {
			t.Fatalf("org pool after the cascade: %v, want %d spent", p, spent)
		}
	})
}

type completion struct {
	answer string
	usage  *tollgate.Usage
}

func TestIntegrationCallWithEscalation(t *testing.T) {
	each(t, func(t *testing.T, client *tollgate.Client) {
		ctx := context.Background()
		scope := org(t)
		cascade, err := tollgate.CallWithEscalation(ctx, client, &tollgate.RouteRequest{Scope: scope,
			Prompt:  tollgate.Messages(tollgate.NewMessage("user", "Classify this ticket: 'I was charged twice'")),
			Signals: &tollgate.TaskSignals{TaskType: "classify"}},
			func(_ context.Context, d *tollgate.Decision) (completion, error) {
				return completion{answer: d.GetChosen().GetTier(), usage: &tollgate.Usage{InputTokens: 20, OutputTokens: 8}}, nil
			},
			tollgate.CascadeOptions[completion]{
				Check: func(c completion) string {
					if c.answer == "cheap" {
						return "too_vague"
					}
					return ""
				},
				Usage: func(c completion) *tollgate.Usage { return c.usage },
			})
		if err != nil || !cascade.Passed || len(cascade.Attempts) != 2 || cascade.Attempts[0].Tier != "cheap" {
			t.Fatalf("CallWithEscalation: %+v %v", cascade, err)
		}
		pools, err := client.GetBudget(ctx, scope)
		if err != nil {
			t.Fatalf("GetBudget: %v", err)
		}
		if p := pool(t, pools, "org:"+scope.GetOrgId()); p.GetHeldNanos() != 0 || p.GetSpentNanos() != cascade.ChargedNanos() {
			t.Fatalf("org pool after the cascade: %v, want %d spent", p, cascade.ChargedNanos())
		}
	})
}

func TestIntegrationCallWithShadow(t *testing.T) {
	each(t, func(t *testing.T, client *tollgate.Client) {
		ctx := context.Background()
		scope := org(t)
		route, err := client.Route(ctx, &tollgate.RouteRequest{Scope: scope, Reserve: true, AcceptShadow: true,
			Prompt:  tollgate.Messages(tollgate.NewMessage("user", "Extract every date from: signed 2024-03-01.")),
			Signals: &tollgate.TaskSignals{TaskType: "extract"}})
		if err != nil || route.GetShadow() == nil || route.GetShadow().GetReservation() == nil {
			t.Fatalf("a cheap decision accepting shadow calls is sampled, with a hold on the quality pool: %v %v", route, err)
		}
		var models []string
		var mu sync.Mutex
		primary, comparison, err := tollgate.CallWithShadow(ctx, client, route,
			func(_ context.Context, model string) (completion, error) {
				mu.Lock()
				models = append(models, model)
				mu.Unlock()
				return completion{answer: "2024-03-01", usage: &tollgate.Usage{InputTokens: 20, OutputTokens: 4}}, nil
			},
			tollgate.ShadowOptions[completion]{Usage: func(c completion) *tollgate.Usage { return c.usage },
				Answer: func(c completion) any { return c.answer }})
		if err != nil || primary.answer != "2024-03-01" || comparison == nil {
			t.Fatalf("CallWithShadow: %v %v", primary, err)
		}
		if result := <-comparison; result.Err != nil || result.Score != 1 {
			t.Fatalf("comparison %+v", result)
		}
		if len(models) != 2 || models[1] != route.GetShadow().GetModel() {
			t.Fatalf("models called %v", models)
		}
		pools, err := client.GetBudget(ctx, scope)
		if err != nil {
			t.Fatalf("GetBudget: %v", err)
		}
		if p := pool(t, pools, "org:"+scope.GetOrgId()); p.GetHeldNanos() != 0 || p.GetCalls() != 1 {
			t.Fatalf("the shadow call is not the product's: %v", p)
		}
	})
}
