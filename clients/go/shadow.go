package tollgate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// ShadowOptions says how CallWithShadow reads and compares responses of type R.
type ShadowOptions[R any] struct {
	// Usage is the usage a response reported, committed for each call. Required.
	Usage func(R) *Usage
	// Answer is what of a response is compared; nil compares the responses themselves.
	Answer func(R) any
	// Judge scores two answers in [0, 1]; nil is DefaultJudge.
	Judge func(primary, shadow any) float64
}

// ShadowResult is the outcome of a shadow comparison: the score reported, or why there is none.
type ShadowResult struct {
	Score float64
	// Err is set when the shadow call, the judge or the report failed; the shadow's hold was released.
	Err error
}

// CallWithShadow runs call with the routed model under route's reservation
// and commits its usage; if the sidecar sampled the request (route.Shadow
// set: a Route with AcceptShadow), it then calls the shadow model in the
// background under the shadow's own reservation (held against the quality
// pool, never the product's), judges the two answers and reports the score as
// feedback from FeedbackShadowComparison.
//
// It returns the primary response as soon as it is committed, and a channel
// that delivers the comparison's one ShadowResult and is then closed; nil
// when the request was not sampled. The comparison runs on a context that
// keeps ctx's values but not its cancellation, each call under the client's
// timeout. An error of the primary call (its reservation released) or of its
// commit is returned as it is.
func CallWithShadow[R any](ctx context.Context, c *Client, route *RouteResponse,
	call func(ctx context.Context, model string) (R, error), opts ShadowOptions[R]) (R, <-chan ShadowResult, error) {
	var primary R
	if opts.Usage == nil {
		return primary, nil, errors.New("tollgate: CallWithShadow needs ShadowOptions.Usage")
	}
	answer, judge := opts.Answer, opts.Judge
	if answer == nil {
		answer = func(r R) any { return r }
	}
	if judge == nil {
		judge = DefaultJudge
	}
	err := c.WithReservation(ctx, route.GetReservation(), func(ctx context.Context, held *Held) error {
		var err error
		if primary, err = call(ctx, held.Model()); err != nil {
			return err
		}
		_, err = held.Commit(ctx, opts.Usage(primary))
		return err
	})
	shadow := route.GetShadow()
	if err != nil || shadow == nil {
		return primary, nil, err
	}
	primaryID := route.GetReservation().GetReservationId()
	done := make(chan ShadowResult, 1)
	go func() {
		defer close(done)
		background := detach(ctx)
		var other R
		run := func(ctx context.Context) error {
			var err error
			other, err = call(ctx, shadow.GetModel())
			return err
		}
		var err error
		if shadow.GetReservation() != nil {
			err = c.WithReservation(background, shadow.GetReservation(), func(ctx context.Context, held *Held) error {
				if err := run(ctx); err != nil {
					return err
				}
				_, err := held.Commit(ctx, opts.Usage(other))
				return err
			})
		} else {
			err = run(background)
		}
		if err != nil {
			done <- ShadowResult{Err: fmt.Errorf("tollgate: shadow call to %s: %w", shadow.GetModel(), err)}
			return
		}
		score := judge(answer(primary), answer(other))
		if _, err := c.Feedback(background, primaryID, score, FeedbackShadowComparison); err != nil {
			done <- ShadowResult{Score: score, Err: err}
			return
		}
		done <- ShadowResult{Score: score}
	}()
	return primary, done, nil
}

// DefaultJudge is 1 when two answers agree and 0 otherwise: equal as JSON when
// both are strings (or byte slices) that parse as JSON, else equal as text
// with runs of whitespace collapsed (other values are compared as fmt.Sprint
// renders them).
func DefaultJudge(primary, shadow any) float64 {
	a, aText := text(primary)
	b, bText := text(shadow)
	if aText && bText {
		var x, y any
		if json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil {
			return score(reflect.DeepEqual(x, y))
		}
	}
	return score(strings.Join(strings.Fields(a), " ") == strings.Join(strings.Fields(b), " "))
}

// text is an answer as text, and whether it was text (a string or bytes) to begin with.
func text(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case []byte:
		return string(t), true
	default:
		return fmt.Sprint(v), false
	}
}

func score(match bool) float64 {
	if match {
		return 1
	}
	return 0
}
