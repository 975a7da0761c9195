package tollgate

import (
	"context"
	"errors"

	"google.golang.org/protobuf/proto"
)

// CascadeOptions says how CallWithEscalation checks and accounts for responses of type R.
type CascadeOptions[R any] struct {
	// Check is "" for an acceptable response, else a short reason such as "invalid_json". Required.
	Check func(R) string
	// Usage is the usage a response reported, committed for each attempt. Required.
	Usage func(R) *Usage
	// NextPrompt, when set, is the next attempt's prompt, given the failed response and the problem
	// (say, the failed answer and the complaint); by default the next attempt gets the same prompt.
	NextPrompt func(response R, problem string) *Prompt
}

// Attempt is one call of a cascade: where it ran and what the check said ("" = passed).
type Attempt struct {
	Model         string
	Tier          string
	ReservationID string
	Problem       string
	ChargedNanos  int64
}

// Cascade is CallWithEscalation's outcome: the last response, whether it passed the check, and every attempt.
type Cascade[R any] struct {
	Response R
	Passed   bool
	Attempts []Attempt
}

// ChargedNanos is what the whole cascade cost.
func (c *Cascade[R]) ChargedNanos() int64 {
	var sum int64
	for _, a := range c.Attempts {
		sum += a.ChargedNanos
	}
	return sum
}

// CallWithEscalation runs a cascade: it routes and reserves req (Reserve is
// set on a copy; req is never modified), calls call with the decision, and
// checks the response. While the check fails it asks the sidecar for the next
// attempt one tier up (Escalate), which commits the failed attempt's usage and
// reserves for the next in one step; the attempts stay linked in the ledger,
// the decision log and the trace. When the sidecar refuses a further
// escalation (routing.max_escalations, or the top tier), the last attempt is
// committed and its response returned with Passed false.
//
// An error of call releases its reservation and is returned, with the
// attempts made so far; so is an error of the sidecar other than the refusal.
func CallWithEscalation[R any](ctx context.Context, c *Client, req *RouteRequest,
	call func(ctx context.Context, decision *Decision) (R, error), opts CascadeOptions[R]) (*Cascade[R], error) {
	if opts.Check == nil || opts.Usage == nil {
		return nil, errors.New("tollgate: CallWithEscalation needs CascadeOptions.Check and CascadeOptions.Usage")
	}
	first := proto.Clone(req).(*RouteRequest)
	first.Reserve = true
	route, err := c.Route(ctx, first)
	if err != nil {
		return nil, err
	}
	decision, reservation, prompt := route.GetDecision(), route.GetReservation(), first.GetPrompt()
	cascade := &Cascade[R]{}
	record := func(problem string, charged int64) {
		cascade.Attempts = append(cascade.Attempts, Attempt{Model: decision.GetChosen().GetModel(),
			Tier: decision.GetChosen().GetTier(), ReservationID: reservation.GetReservationId(), Problem: problem,
			ChargedNanos: charged})
	}
	for {
		var response R
		err := c.WithReservation(ctx, reservation, func(ctx context.Context, held *Held) error {
			var err error
			response, err = call(ctx, decision)
			if err == nil {
				held.settle() // committed below, or by the escalation
			}
			return err
		})
		if err != nil {
			return cascade, err
		}
		problem, spent := opts.Check(response), opts.Usage(response)
		cascade.Response = response
		if problem == "" {
			done, err := c.Commit(ctx, reservation.GetReservationId(), spent)
			if err != nil {
				return cascade, err
			}
			record("", done.GetChargedNanos())
			cascade.Passed = true
			return cascade, nil
		}
		if opts.NextPrompt != nil {
			prompt = opts.NextPrompt(response, problem)
		}
		signals := first.GetSignals()
		next, err := c.Escalate(ctx, &EscalateRequest{
			ReservationId: reservation.GetReservationId(),
			Scope:         first.GetScope(),
			Prompt:        prompt,
			Signals: &TaskSignals{NeedsTools: signals.GetNeedsTools(), NeedsVision: signals.GetNeedsVision(),
				NeedsJson: signals.GetNeedsJson(), Latency: signals.GetLatency()},
			MaxOutputTokens: first.GetMaxOutputTokens(),
			Reason:          problem,
			Usage:           spent,
		})
		if IsEscalationRefused(err) {
			done, err := c.Commit(ctx, reservation.GetReservationId(), spent)
			if err != nil {
				return cascade, err
			}
			record(problem, done.GetChargedNanos())
			return cascade, nil
		}
		if err != nil {
			return cascade, err
		}
		record(problem, next.GetPreviousCommit().GetChargedNanos())
		decision, reservation = next.GetDecision(), next.GetReservation()
	}
}
