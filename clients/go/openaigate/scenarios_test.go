package openaigate

// TestScenarios runs gated calls as tests/clients/test_openai_wrappers.py lists them, against a live sidecar
// (TOLLGATE_TARGET) and the fake provider (FAKE_PROVIDER_URL), and writes what each call returned or raised and
// its outcome to OPENAIGATE_RESULTS; that side compares them with the provider's reports and the ledger. Skipped
// unless OPENAIGATE_SCENARIOS holds the cases.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	tollgate "github.com/tollgate/tollgate/clients/go"
)

type scenario struct {
	Name       string   `json:"name"`
	Org        string   `json:"org"`
	Providers  []string `json:"providers"`
	API        string   `json:"api"`
	Stream     bool     `json:"stream"`
	Scenario   string   `json:"scenario"`
	Model      string   `json:"model"`
	Check      bool     `json:"check"`
	TaskType   string   `json:"taskType"`
	BreakAfter int      `json:"breakAfter"`
}

type attemptJSON struct {
	Model         string `json:"model"`
	Provider      string `json:"provider"`
	Tier          string `json:"tier"`
	ReservationID string `json:"reservationId"`
	Settlement    string `json:"settlement"`
	ChargedNanos  string `json:"chargedNanos"`
	Problem       string `json:"problem"`
}

type outcomeJSON struct {
	Stream       bool          `json:"stream"`
	ChargedNanos string        `json:"chargedNanos"`
	Attempts     []attemptJSON `json:"attempts"`
}

func outcomeOf(o Outcome) outcomeJSON {
	out := outcomeJSON{Stream: o.Stream, ChargedNanos: itoa(o.ChargedNanos), Attempts: []attemptJSON{}}
	for _, a := range o.Attempts {
		out.Attempts = append(out.Attempts, attemptJSON{a.Model, a.Provider, a.Tier, a.ReservationID, a.Settlement,
			itoa(a.ChargedNanos), a.Problem})
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func errorName(err error) string {
	var budget *tollgate.BudgetExceededError
	var missing *MissingProviderError
	var failed *CheckFailedError
	var api *openai.Error
	switch {
	case errors.As(err, &budget):
		return "BudgetExceededError"
	case errors.As(err, &missing):
		return "MissingProviderError"
	case errors.As(err, &failed):
		return "CheckFailedError"
	case errors.As(err, &api):
		return "APIError"
	}
	return "Error"
}

var messages = []openai.ChatCompletionMessageParamUnion{
	openai.SystemMessage("Extract the invoice total as JSON."),
	openai.UserMessage("Invoice 17 from ACME GmbH: total 42.50 EUR, due in 30 days."),
}

func TestScenarios(t *testing.T) {
	cases := os.Getenv("OPENAIGATE_SCENARIOS")
	if cases == "" {
		t.Skip("OPENAIGATE_SCENARIOS is not set")
	}
	var scenarios []scenario
	if err := json.Unmarshal([]byte(cases), &scenarios); err != nil {
		t.Fatal(err)
	}
	tg, err := tollgate.Dial(context.Background(), os.Getenv("TOLLGATE_TARGET"), tollgate.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	var results []map[string]any
	for _, c := range scenarios {
		results = append(results, run(t, tg, c))
	}
	out, _ := json.Marshal(results)
	if err := os.WriteFile(os.Getenv("OPENAIGATE_RESULTS"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, tg *tollgate.Client, c scenario) map[string]any {
	clients := map[string]openai.Client{}
	for _, p := range c.Providers {
		clients[p] = openai.NewClient(option.WithAPIKey("sk-test"), option.WithMaxRetries(0),
			option.WithBaseURL(os.Getenv("FAKE_PROVIDER_URL")+"/"+p+"/v1/"))
	}
	var outcomes []outcomeJSON
	opts := Options{
		Scope:     &tollgate.Scope{OrgId: c.Org, TeamId: "search", UserId: "alice"},
		OnOutcome: func(o Outcome) { outcomes = append(outcomes, outcomeOf(o)) },
	}
	if c.Check {
		opts.Check = func(r *openai.ChatCompletion) string {
			if len(r.Choices) == 0 || !json.Valid([]byte(r.Choices[0].Message.Content)) {
				return "invalid json"
			}
			return ""
		}
	}
	if len(c.Providers) > 1 {
		opts.DefaultProvider = "openai"
	}
	gate, err := NewMulti(clients, tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	taskType := c.TaskType
	if taskType == "" {
		taskType = "extract"
	}
	scenarioName := c.Scenario
	if scenarioName == "" {
		scenarioName = "ok"
	}
	params := openai.ChatCompletionNewParams{Messages: messages, MaxTokens: openai.Int(256)}
	if c.Model != "" {
		params.Model = openai.ChatModel(c.Model)
	}
	header := option.WithHeader("x-fake-scenario", scenarioName)
	result := map[string]any{"name": c.Name, "org": c.Org}
	ctx := context.Background()
	if c.Stream {
		stream, err := gate.ChatStream(ctx, params, Call{TaskType: taskType}, header)
		if err != nil {
			result["error"], result["message"] = errorName(err), err.Error()
		} else {
			var text strings.Builder
			pieces := 0
			for stream.Next() {
				for _, choice := range stream.Current().Choices {
					if choice.Delta.Content != "" {
						text.WriteString(choice.Delta.Content)
						pieces++
					}
				}
				if c.BreakAfter > 0 && pieces >= c.BreakAfter {
					_ = stream.Close()
					break
				}
			}
			if err := stream.Err(); err != nil && c.BreakAfter == 0 {
				result["streamError"] = errorName(err)
			}
			result["text"] = text.String()
			result["outcome"] = outcomeOf(stream.Outcome())
		}
	} else {
		answer, err := gate.Chat(ctx, params, Call{TaskType: taskType}, header)
		if err != nil {
			result["error"], result["message"] = errorName(err), err.Error()
		} else if len(answer.Choices) > 0 {
			result["text"] = answer.Choices[0].Message.Content
		}
	}
	if outcomes == nil {
		outcomes = []outcomeJSON{}
	}
	result["outcomes"] = outcomes
	return result
}

func TestReasonOfKeepsWhatTheSidecarAccepts(t *testing.T) {
	for problem, want := range map[string]string{
		"invalid json":          "invalid json",
		"  bad {answer}!  ":     "bad _answer",
		"":                      "check_failed",
		strings.Repeat("x", 80): strings.Repeat("x", 64),
	} {
		if got := reasonOf(problem); got != want {
			t.Errorf("reasonOf(%q) = %q, want %q", problem, got, want)
		}
	}
}

func TestDescribeInfersToolsImagesAndJSON(t *testing.T) {
	params := openai.ChatCompletionNewParams{
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("what is on it?"),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "https://x/y.png"}),
			}),
		},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(
			openai.FunctionDefinitionParam{Name: "lookup"})},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{
			OfJSONObject: &openai.ResponseFormatJSONObjectParam{}},
		MaxCompletionTokens: openai.Int(99),
	}
	req, err := describe(params)
	if err != nil {
		t.Fatal(err)
	}
	if !req.tools || !req.vision || !req.json || req.maxOutputTokens != 99 {
		t.Errorf("describe = %+v", req)
	}
	last := req.messages[len(req.messages)-1]
	if last.GetRole() != "user" || last.GetContent() != "what is on it?" {
		t.Errorf("last message = %v", last)
	}
}
