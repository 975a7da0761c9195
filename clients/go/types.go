package tollgate

import (
	pb "github.com/tollgate/tollgate/clients/go/tollgatev1"
)

// The tollgate.v1 messages, under their proto names. Every field is documented
// in proto/tollgate/v1/tollgate.proto.
type (
	Scope              = pb.Scope
	Prompt             = pb.Prompt
	Message            = pb.Message
	TaskSignals        = pb.TaskSignals
	ReservationOptions = pb.ReservationOptions
	RouteRequest       = pb.RouteRequest
	RouteResponse      = pb.RouteResponse
	Decision           = pb.Decision
	Candidate          = pb.Candidate
	Shadow             = pb.Shadow
	Reservation        = pb.Reservation
	ReserveRequest     = pb.ReserveRequest
	ReserveResponse    = pb.ReserveResponse
	Usage              = pb.Usage
	CommitResponse     = pb.CommitResponse
	ReleaseResponse    = pb.ReleaseResponse
	ExtendResponse     = pb.ExtendResponse
	PoolState          = pb.PoolState
	FeedbackResponse   = pb.FeedbackResponse
	TaskQuality        = pb.TaskQuality
	TierQuality        = pb.TierQuality
	BudgetExceeded     = pb.BudgetExceeded
	EscalateRequest    = pb.EscalateRequest
	EscalateResponse   = pb.EscalateResponse
)

// The tollgate.v1 enums.
type (
	Priority       = pb.Priority
	PoolLevel      = pb.PoolLevel
	Policy         = pb.Policy
	PolicyOutcome  = pb.PolicyOutcome
	DecisionSource = pb.DecisionSource
	FeedbackSource = pb.FeedbackSource
	LatencyClass   = pb.LatencyClass
)

// Enum values used most often; the rest are in the tollgatev1 package.
const (
	PriorityNormal = pb.Priority_PRIORITY_NORMAL
	PriorityHigh   = pb.Priority_PRIORITY_HIGH

	PoolLevelRequest = pb.PoolLevel_POOL_LEVEL_REQUEST
	PoolLevelSession = pb.PoolLevel_POOL_LEVEL_SESSION
	PoolLevelUser    = pb.PoolLevel_POOL_LEVEL_USER
	PoolLevelTeam    = pb.PoolLevel_POOL_LEVEL_TEAM
	PoolLevelOrg     = pb.PoolLevel_POOL_LEVEL_ORG

	PolicyHard = pb.Policy_POLICY_HARD
	PolicySoft = pb.Policy_POLICY_SOFT
	PolicyWarn = pb.Policy_POLICY_WARN

	// The slowest latency class a call accepts (TaskSignals.Latency; unset: any), and a model's
	// (Candidate.Latency).
	LatencyFast     = pb.LatencyClass_LATENCY_CLASS_FAST
	LatencyStandard = pb.LatencyClass_LATENCY_CLASS_STANDARD
	LatencySlow     = pb.LatencyClass_LATENCY_CLASS_SLOW

	FeedbackUser             = pb.FeedbackSource_FEEDBACK_SOURCE_USER
	FeedbackAutomatedEval    = pb.FeedbackSource_FEEDBACK_SOURCE_AUTOMATED_EVAL
	FeedbackShadowComparison = pb.FeedbackSource_FEEDBACK_SOURCE_SHADOW_COMPARISON
	FeedbackHumanReview      = pb.FeedbackSource_FEEDBACK_SOURCE_HUMAN_REVIEW
)

// InputTokens is a Prompt given as a token count the application already has,
// for applications that do not send prompt text to the sidecar.
func InputTokens(n int64) *Prompt {
	return &pb.Prompt{Input: &pb.Prompt_InputTokens{InputTokens: n}}
}

// Messages is a Prompt given as the chat messages the application will send;
// the sidecar counts their tokens and never stores or logs the text.
func Messages(msgs ...*Message) *Prompt {
	return &pb.Prompt{Input: &pb.Prompt_Messages{Messages: &pb.Messages{Items: msgs}}}
}

// NewMessage is one chat message: role is "system", "user", "assistant" or "tool".
func NewMessage(role, content string) *Message {
	return &pb.Message{Role: role, Content: content}
}
