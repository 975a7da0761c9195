// Package openaigate gates the official openai-go client with Tollgate: each Chat Completions call is routed (or
// its pinned model reserved), sent to the client of the provider the sidecar chose, committed with the usage the
// provider reported, released when nothing billable happened, extended while it runs, and escalated one tier up
// when the application's check rejects the answer.
//
//	gate, err := openaigate.New(openai.NewClient(), tg, openaigate.Options{Scope: &tollgate.Scope{OrgId: "acme"}})
//	answer, err := gate.Chat(ctx, openai.ChatCompletionNewParams{Messages: msgs}, openaigate.Call{TaskType: "extract"})
//
// It is a module of its own because openai-go needs a newer Go than the Tollgate client does.
package openaigate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/openai/openai-go/v3/packages/ssestream"

	tollgate "github.com/tollgate/tollgate/clients/go"
)

// Check returns "" for an acceptable answer, else a short reason such as "invalid_json": the call is then
// escalated one tier up.
type Check func(*openai.ChatCompletion) string

// Options configure a Gate.
type Options struct {
	// Scope pays for every call that does not name its own. Required.
	Scope *tollgate.Scope
	// Check, when set, escalates calls whose answer it rejects.
	Check Check
	// TTL is each reservation's time to live (0: the sidecar's default); a call running past half of it extends it.
	TTL time.Duration
	// OnOutcome sees every call's outcome once each of its reservations has ended.
	OnOutcome func(Outcome)
	// DefaultProvider calls pinned models (default: "openai" for a single client, else required).
	DefaultProvider string
}

// Call is what a call tells Tollgate besides the SDK's parameters.
type Call struct {
	TaskType  string
	AgentMode string
	MinTier   string
	Latency   tollgate.LatencyClass
	// NeedsTools, NeedsVision and NeedsJSON are inferred from tools, images and the response format when nil.
	NeedsTools, NeedsVision, NeedsJSON *bool
	// Scope pays for this call instead of the gate's.
	Scope *tollgate.Scope
	// Check replaces the gate's check for this call.
	Check Check
	// Provider calls a pinned model (params.Model set) instead of the default provider.
	Provider string
}

// Attempt is how one reservation of a call ended.
type Attempt struct {
	Model, Provider, Tier, ReservationID string
	// Settlement is "committed" (the provider's usage), "estimated" (none reported: an estimate), "partial" (a
	// stream cut after some usage), "released" (nothing billable) or "unsettled" (the commit or release failed:
	// the sidecar's expiry policy ends it).
	Settlement   string
	Usage        *tollgate.Usage
	ChargedNanos int64
	// Problem is the check's complaint that escalated past this attempt ("" if none).
	Problem    string
	Extensions int
}

// Outcome is every reservation one call made.
type Outcome struct {
	Attempts     []Attempt
	Stream       bool
	ChargedNanos int64
}

// MissingProviderError: the sidecar chose only providers the gate has no client for.
type MissingProviderError struct{ Wanted, Have []string }

func (e *MissingProviderError) Error() string {
	return fmt.Sprintf("the sidecar chose provider %q, but the gate has clients only for %q: give it a client for "+
		"each provider of the catalog", e.Wanted, e.Have)
}

// CheckFailedError: the answer failed the check and no further attempt was possible; Response is the last
// answer, paid for.
type CheckFailedError struct {
	Response *openai.ChatCompletion
	Problem  string
	Outcome  Outcome
	cause    error
}

func (e *CheckFailedError) Error() string {
	return fmt.Sprintf("the answer failed the check (%s) and no further attempt was possible", e.Problem)
}

func (e *CheckFailedError) Unwrap() error { return e.cause }

// Gate wraps one openai-go client per provider.
type Gate struct {
	clients  map[string]openai.Client
	tollgate *tollgate.Client
	opts     Options
}

// New gates one client (for the provider "openai").
func New(client openai.Client, tg *tollgate.Client, opts Options) (*Gate, error) {
	return NewMulti(map[string]openai.Client{"openai": client}, tg, opts)
}

// NewMulti gates one client per provider of the catalog, e.g. {"openai": ..., "google": <a client whose base URL
// is Gemini's OpenAI-compatible endpoint>}: each call goes to the client of the provider the sidecar chose.
func NewMulti(clients map[string]openai.Client, tg *tollgate.Client, opts Options) (*Gate, error) {
	if len(clients) == 0 {
		return nil, errors.New("openaigate: give at least one openai client")
	}
	if tg == nil {
		return nil, errors.New("openaigate: a *tollgate.Client is required")
	}
	if opts.Scope == nil || opts.Scope.GetOrgId() == "" {
		return nil, errors.New("openaigate: Options.Scope with an OrgId is required")
	}
	if opts.DefaultProvider == "" {
		if _, ok := clients["openai"]; ok || len(clients) == 1 {
			for p := range clients {
				opts.DefaultProvider = p
			}
			if _, ok := clients["openai"]; ok {
				opts.DefaultProvider = "openai"
			}
		} else {
			return nil, errors.New("openaigate: Options.DefaultProvider is required with several clients")
		}
	}
	if _, ok := clients[opts.DefaultProvider]; !ok {
		return nil, fmt.Errorf("openaigate: DefaultProvider %q has no client", opts.DefaultProvider)
	}
	return &Gate{clients: clients, tollgate: tg, opts: opts}, nil
}

// SDK is the client given for provider ("" for the default provider's), ungated.
func (g *Gate) SDK(provider string) openai.Client {
	if provider == "" {
		provider = g.opts.DefaultProvider
	}
	return g.clients[provider]
}

type hold struct {
	model, provider, tier, reservationID string
	expiresAt                            time.Time
	estimatedInputTokens                 int64
}

type request struct {
	messages        []*tollgate.Message
	maxOutputTokens int64
	tools, vision   bool
	json            bool
}

// Chat is Chat.Completions.New, gated. With params.Model empty the sidecar routes the call.
func (g *Gate) Chat(ctx context.Context, params openai.ChatCompletionNewParams, call Call,
	opts ...option.RequestOption) (*openai.ChatCompletion, error) {
	req, err := describe(params)
	if err != nil {
		return nil, err
	}
	check := call.Check
	if check == nil {
		check = g.opts.Check
	}
	h, err := g.acquire(ctx, req, params, call)
	if err != nil {
		return nil, err
	}
	var attempts []Attempt
	for {
		keeper := g.keep(h)
		params.Model = openai.ChatModel(h.model)
		client := g.clients[h.provider]
		response, callErr := client.Chat.Completions.New(ctx, params, opts...)
		keeper.stop()
		if callErr != nil {
			attempts = append(attempts, g.release(h, keeper.count()))
			g.emit(attempts, false)
			return nil, callErr
		}
		usage, settlement := usageOf(response, h)
		problem := ""
		if check != nil {
			problem = check(response)
		}
		if problem == "" {
			attempts = append(attempts, g.commit(h, usage, settlement, "", keeper.count()))
			g.emit(attempts, false)
			return response, nil
		}
		escalation, escErr := g.tollgate.Escalate(ctx, &tollgate.EscalateRequest{
			ReservationId: h.reservationID, Scope: g.scope(call), Prompt: tollgate.Messages(req.messages...),
			Signals: g.signals(req, call), MaxOutputTokens: req.maxOutputTokens, Reason: reasonOf(problem),
			Usage: usage, Reservation: g.reservationOptions(),
		})
		if escErr != nil {
			attempts = append(attempts, g.commit(h, usage, settlement, problem, keeper.count()))
			failed := &CheckFailedError{Response: response, Problem: problem, Outcome: g.emit(attempts, false)}
			if !tollgate.IsEscalationRefused(escErr) {
				failed.cause = escErr
			}
			return response, failed
		}
		attempts = append(attempts, Attempt{Model: h.model, Provider: h.provider, Tier: h.tier,
			ReservationID: h.reservationID, Settlement: settlement, Usage: usage,
			ChargedNanos: escalation.GetPreviousCommit().GetChargedNanos(), Problem: problem,
			Extensions: keeper.count()})
		next, serveErr := g.serve(ctx, escalation.GetDecision(), escalation.GetReservation(), req, call)
		if serveErr != nil {
			// No next attempt this gate can make: the caller still gets the answer it paid for.
			return response, &CheckFailedError{Response: response, Problem: problem, Outcome: g.emit(attempts, false),
				cause: serveErr}
		}
		h = next
	}
}

// Stream is a gated Chat Completions stream: iterate it as the SDK's (Next, Current, Err, Close). When it
// ends (done, failed, cut, or closed early) its reservation is committed or released, and Outcome returns.
type Stream struct {
	inner   *ssestream.Stream[openai.ChatCompletionChunk]
	gate    *Gate
	hold    hold
	keeper  *keeper
	meter   meter
	once    sync.Once
	outcome Outcome
}

// ChatStream is Chat.Completions.NewStreaming, gated; it asks for the stream's usage (include_usage). An error
// before the stream starts (a refused budget) comes back as the error; one of the provider's, from Err.
func (g *Gate) ChatStream(ctx context.Context, params openai.ChatCompletionNewParams, call Call,
	opts ...option.RequestOption) (*Stream, error) {
	req, err := describe(params)
	if err != nil {
		return nil, err
	}
	h, err := g.acquire(ctx, req, params, call)
	if err != nil {
		return nil, err
	}
	params.Model = openai.ChatModel(h.model)
	params.StreamOptions.IncludeUsage = param.NewOpt(true)
	client := g.clients[h.provider]
	inner := client.Chat.Completions.NewStreaming(ctx, params, opts...)
	return &Stream{inner: inner, gate: g, hold: h, keeper: g.keep(h)}, nil
}

// Next advances the stream; false at its end (then Err says why, and the reservation is settled).
func (s *Stream) Next() bool {
	if s.inner.Next() {
		s.meter.observe(s.inner.Current())
		return true
	}
	s.settle()
	return false
}

// Current is the chunk Next moved to.
func (s *Stream) Current() openai.ChatCompletionChunk { return s.inner.Current() }

// Err is the error that ended the stream, if any.
func (s *Stream) Err() error { return s.inner.Err() }

// Close ends the stream early; what it produced so far is committed (an estimate without usage).
func (s *Stream) Close() error {
	err := s.inner.Close()
	s.settle()
	return err
}

// Outcome is the stream's outcome, once it has ended (after Next returned false or Close).
func (s *Stream) Outcome() Outcome { return s.outcome }

func (s *Stream) settle() {
	s.once.Do(func() {
		s.keeper.stop()
		usage, settlement := s.meter.usage(s.hold)
		var attempt Attempt
		if usage == nil {
			attempt = s.gate.release(s.hold, s.keeper.count())
		} else {
			attempt = s.gate.commit(s.hold, usage, settlement, "", s.keeper.count())
		}
		s.outcome = s.gate.emit([]Attempt{attempt}, true)
	})
}

// ---- routing and reserving ----

func (g *Gate) scope(call Call) *tollgate.Scope {
	if call.Scope != nil {
		return call.Scope
	}
	return g.opts.Scope
}

func (g *Gate) reservationOptions() *tollgate.ReservationOptions {
	return &tollgate.ReservationOptions{TtlMs: g.opts.TTL.Milliseconds()}
}

func pick(given *bool, inferred bool) bool {
	if given != nil {
		return *given
	}
	return inferred
}

func (g *Gate) signals(req request, call Call) *tollgate.TaskSignals {
	return &tollgate.TaskSignals{TaskType: call.TaskType, AgentMode: call.AgentMode, MinTier: call.MinTier,
		Latency: call.Latency, NeedsTools: pick(call.NeedsTools, req.tools),
		NeedsVision: pick(call.NeedsVision, req.vision), NeedsJson: pick(call.NeedsJSON, req.json)}
}

func (g *Gate) acquire(ctx context.Context, req request, params openai.ChatCompletionNewParams,
	call Call) (hold, error) {
	if params.Model != "" {
		provider := call.Provider
		if provider == "" {
			provider = g.opts.DefaultProvider
		}
		if _, ok := g.clients[provider]; !ok {
			return hold{}, &MissingProviderError{Wanted: []string{provider}, Have: g.providers()}
		}
		return g.reserve(ctx, string(params.Model), provider, "", req, call)
	}
	routed, err := g.tollgate.Route(ctx, &tollgate.RouteRequest{
		Scope: g.scope(call), Prompt: tollgate.Messages(req.messages...), Signals: g.signals(req, call),
		MaxOutputTokens: req.maxOutputTokens, Reserve: true, Reservation: g.reservationOptions(),
	})
	if err != nil {
		return hold{}, err
	}
	return g.serve(ctx, routed.GetDecision(), routed.GetReservation(), req, call)
}

func (g *Gate) reserve(ctx context.Context, model, provider, tier string, req request, call Call) (hold, error) {
	r, err := g.tollgate.Reserve(ctx, &tollgate.ReserveRequest{
		Scope: g.scope(call), Model: model, Prompt: tollgate.Messages(req.messages...), TaskType: call.TaskType,
		MaxOutputTokens: req.maxOutputTokens, Reservation: g.reservationOptions(),
	})
	if err != nil {
		return hold{}, err
	}
	return hold{model: model, provider: provider, tier: tier, reservationID: r.GetReservation().GetReservationId(),
		expiresAt: r.GetReservation().GetExpiresAt().AsTime(), estimatedInputTokens: r.GetEstimatedInputTokens()}, nil
}

// serve is the decision's hold if its provider has a client; else the first fallback's, reserved instead.
func (g *Gate) serve(ctx context.Context, d *tollgate.Decision, r *tollgate.Reservation, req request,
	call Call) (hold, error) {
	chosen := d.GetChosen()
	if _, ok := g.clients[chosen.GetProvider()]; ok {
		return hold{model: chosen.GetModel(), provider: chosen.GetProvider(), tier: chosen.GetTier(),
			reservationID: r.GetReservationId(), expiresAt: r.GetExpiresAt().AsTime(),
			estimatedInputTokens: d.GetEstimatedInputTokens()}, nil
	}
	if _, err := g.tollgate.Release(ctx, r.GetReservationId()); err != nil {
		log.Printf("openaigate: releasing %s failed; the sidecar's expiry policy will end it: %v",
			r.GetReservationId(), err)
	}
	wanted := []string{chosen.GetProvider()}
	for _, c := range d.GetFallbacks() {
		if _, ok := g.clients[c.GetProvider()]; ok {
			return g.reserve(ctx, c.GetModel(), c.GetProvider(), c.GetTier(), req, call)
		}
		wanted = append(wanted, c.GetProvider())
	}
	return hold{}, &MissingProviderError{Wanted: wanted, Have: g.providers()}
}

func (g *Gate) providers() []string {
	out := make([]string, 0, len(g.clients))
	for p := range g.clients {
		out = append(out, p)
	}
	return out
}

// ---- settling ----

func (g *Gate) commit(h hold, usage *tollgate.Usage, settlement, problem string, extensions int) Attempt {
	a := Attempt{Model: h.model, Provider: h.provider, Tier: h.tier, ReservationID: h.reservationID,
		Settlement: settlement, Usage: usage, Problem: problem, Extensions: extensions}
	// The call's own context may be done (a deadline, a cancel): the commit must still reach the ledger.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done, err := g.tollgate.Commit(ctx, h.reservationID, usage)
	if err != nil {
		log.Printf("openaigate: the commit of %s failed; the sidecar's expiry policy will end it: %v",
			h.reservationID, err)
		a.Settlement = "unsettled"
		return a
	}
	a.ChargedNanos = done.GetChargedNanos()
	return a
}

func (g *Gate) release(h hold, extensions int) Attempt {
	a := Attempt{Model: h.model, Provider: h.provider, Tier: h.tier, ReservationID: h.reservationID,
		Settlement: "released", Extensions: extensions}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.tollgate.Release(ctx, h.reservationID); err != nil {
		log.Printf("openaigate: the release of %s failed; the sidecar's expiry policy will end it: %v",
			h.reservationID, err)
		a.Settlement = "unsettled"
	}
	return a
}

func (g *Gate) emit(attempts []Attempt, stream bool) Outcome {
	o := Outcome{Attempts: attempts, Stream: stream}
	for _, a := range attempts {
		o.ChargedNanos += a.ChargedNanos
	}
	if g.opts.OnOutcome != nil {
		g.opts.OnOutcome(o)
	}
	return o
}

// keeper extends a reservation every half lifetime while its call runs.
type keeper struct {
	stopOnce sync.Once
	done     chan struct{}
	mu       sync.Mutex
	n        int
}

func (g *Gate) keep(h hold) *keeper {
	k := &keeper{done: make(chan struct{})}
	lifetime := g.opts.TTL
	if lifetime == 0 {
		lifetime = time.Until(h.expiresAt)
	}
	interval := max(lifetime/2, time.Second)
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-k.done:
				return
			case <-ticker.C:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := g.tollgate.Extend(ctx, h.reservationID, g.opts.TTL); err == nil {
					k.mu.Lock()
					k.n++
					k.mu.Unlock()
				}
				cancel()
			}
		}
	}()
	return k
}

func (k *keeper) stop() { k.stopOnce.Do(func() { close(k.done) }) }

func (k *keeper) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n
}

// ---- reading requests and answers ----

var reasonChars = regexp.MustCompile(`[^A-Za-z0-9 ._:/-]`)

// reasonOf is the check's complaint as an escalation reason the sidecar accepts.
func reasonOf(problem string) string {
	r := reasonChars.ReplaceAllString(strings.TrimSpace(problem), "_")
	if len(r) > 64 {
		r = r[:64]
	}
	r = strings.Trim(r, " ._:/-")
	if r == "" {
		return "check_failed"
	}
	return r
}

// estimatedOutput is the output tokens of text nobody counted: a token per 4 characters, at least one per delta.
func estimatedOutput(deltas, chars int) int64 {
	return int64(max(deltas, int(math.Ceil(float64(chars)/4))))
}

var roles = map[string]string{"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
	"tool": "tool", "function": "tool"}

// describe reads the parameters as JSON, the wire form every SDK union marshals to.
func describe(params openai.ChatCompletionNewParams) (request, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return request{}, fmt.Errorf("openaigate: the parameters do not marshal: %w", err)
	}
	var body struct {
		Messages []struct {
			Role      string          `json:"role"`
			Content   json.RawMessage `json:"content"`
			ToolCalls json.RawMessage `json:"tool_calls"`
		} `json:"messages"`
		Tools               json.RawMessage `json:"tools"`
		ResponseFormat      map[string]any  `json:"response_format"`
		MaxTokens           int64           `json:"max_tokens"`
		MaxCompletionTokens int64           `json:"max_completion_tokens"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return request{}, fmt.Errorf("openaigate: the parameters do not read back: %w", err)
	}
	var req request
	req.tools = len(body.Tools) > 0 && string(body.Tools) != "null" && string(body.Tools) != "[]"
	if req.tools {
		req.messages = append(req.messages, tollgate.NewMessage("system", string(body.Tools)))
	}
	switch body.ResponseFormat["type"] {
	case "json_schema":
		req.json = true
		schema, _ := json.Marshal(body.ResponseFormat["json_schema"])
		req.messages = append(req.messages, tollgate.NewMessage("system", string(schema)))
	case "json_object":
		req.json = true
	}
	for _, m := range body.Messages {
		text, images := contentText(m.Content)
		req.vision = req.vision || images
		if len(m.ToolCalls) > 0 && string(m.ToolCalls) != "null" {
			text = strings.TrimSpace(text + "\n" + string(m.ToolCalls))
		}
		role := roles[m.Role]
		if role == "" {
			role = "user"
		}
		req.messages = append(req.messages, tollgate.NewMessage(role, text))
	}
	req.maxOutputTokens = body.MaxCompletionTokens
	if req.maxOutputTokens == 0 {
		req.maxOutputTokens = body.MaxTokens
	}
	return req, nil
}

func contentText(raw json.RawMessage) (string, bool) {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return text, false
	}
	var parts []map[string]any
	if json.Unmarshal(raw, &parts) != nil {
		return "", false
	}
	var texts []string
	images := false
	for _, p := range parts {
		switch p["type"] {
		case "image_url", "input_image", "image":
			images = true
		default:
			if t, ok := p["text"].(string); ok {
				texts = append(texts, t)
			}
		}
	}
	return strings.Join(texts, "\n"), images
}

func usageFrom(u openai.CompletionUsage) *tollgate.Usage {
	reasoning := u.CompletionTokensDetails.ReasoningTokens
	return &tollgate.Usage{
		InputTokens:       u.PromptTokens,
		CachedInputTokens: min(u.PromptTokensDetails.CachedTokens, u.PromptTokens),
		OutputTokens:      max(u.CompletionTokens-reasoning, 0),
		ReasoningTokens:   reasoning,
	}
}

func usageOf(response *openai.ChatCompletion, h hold) (*tollgate.Usage, string) {
	if response.JSON.Usage.Valid() {
		return usageFrom(response.Usage), "committed"
	}
	chars := 0
	for _, c := range response.Choices {
		chars += len(c.Message.Content)
	}
	log.Printf("openaigate: the answer of %s carries no usage: committing an estimate", h.model)
	return &tollgate.Usage{InputTokens: h.estimatedInputTokens, OutputTokens: estimatedOutput(0, chars)}, "estimated"
}

// meter follows a stream: usage comes in the last chunk (no choices), with include_usage.
type meter struct {
	final         bool
	deltas, chars int
	reported      *tollgate.Usage
}

func (m *meter) observe(chunk openai.ChatCompletionChunk) {
	if chunk.JSON.Usage.Valid() && chunk.Usage.PromptTokens+chunk.Usage.CompletionTokens > 0 {
		m.reported = usageFrom(chunk.Usage)
		finished := len(chunk.Choices) == 0
		for _, c := range chunk.Choices {
			finished = finished || c.FinishReason != ""
		}
		m.final = finished
	}
	for _, c := range chunk.Choices {
		n := len(c.Delta.Content) + len(c.Delta.Refusal)
		for _, t := range c.Delta.ToolCalls {
			n += len(t.Function.Arguments)
		}
		if n > 0 {
			m.deltas++
			m.chars += n
		}
	}
}

// usage is what to commit for a stream that ended: nil to release.
func (m *meter) usage(h hold) (*tollgate.Usage, string) {
	seen := estimatedOutput(m.deltas, m.chars)
	switch {
	case m.reported != nil && m.final:
		return m.reported, "committed"
	case m.reported != nil:
		r := m.reported
		return &tollgate.Usage{InputTokens: r.InputTokens, CachedInputTokens: r.CachedInputTokens,
			OutputTokens: max(r.OutputTokens, seen), ReasoningTokens: r.ReasoningTokens}, "partial"
	case m.deltas > 0:
		return &tollgate.Usage{InputTokens: h.estimatedInputTokens, OutputTokens: seen}, "estimated"
	}
	return nil, "released"
}
