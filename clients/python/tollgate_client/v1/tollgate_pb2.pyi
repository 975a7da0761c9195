from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_NORMAL: _ClassVar[Priority]
    PRIORITY_HIGH: _ClassVar[Priority]

class LatencyClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATENCY_CLASS_UNSPECIFIED: _ClassVar[LatencyClass]
    LATENCY_CLASS_FAST: _ClassVar[LatencyClass]
    LATENCY_CLASS_STANDARD: _ClassVar[LatencyClass]
    LATENCY_CLASS_SLOW: _ClassVar[LatencyClass]

class DecisionSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_SOURCE_UNSPECIFIED: _ClassVar[DecisionSource]
    DECISION_SOURCE_RULE: _ClassVar[DecisionSource]
    DECISION_SOURCE_DIFFICULTY: _ClassVar[DecisionSource]
    DECISION_SOURCE_ESCALATION: _ClassVar[DecisionSource]

class PolicyOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_OUTCOME_UNSPECIFIED: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_ADMITTED: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_DOWNGRADED: _ClassVar[PolicyOutcome]
    POLICY_OUTCOME_WARNED: _ClassVar[PolicyOutcome]

class PoolLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POOL_LEVEL_UNSPECIFIED: _ClassVar[PoolLevel]
    POOL_LEVEL_REQUEST: _ClassVar[PoolLevel]
    POOL_LEVEL_SESSION: _ClassVar[PoolLevel]
    POOL_LEVEL_USER: _ClassVar[PoolLevel]
    POOL_LEVEL_TEAM: _ClassVar[PoolLevel]
    POOL_LEVEL_ORG: _ClassVar[PoolLevel]
    POOL_LEVEL_QUALITY: _ClassVar[PoolLevel]

class Policy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_UNSPECIFIED: _ClassVar[Policy]
    POLICY_HARD: _ClassVar[Policy]
    POLICY_SOFT: _ClassVar[Policy]
    POLICY_WARN: _ClassVar[Policy]

class FeedbackSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_SOURCE_UNSPECIFIED: _ClassVar[FeedbackSource]
    FEEDBACK_SOURCE_USER: _ClassVar[FeedbackSource]
    FEEDBACK_SOURCE_AUTOMATED_EVAL: _ClassVar[FeedbackSource]
    FEEDBACK_SOURCE_SHADOW_COMPARISON: _ClassVar[FeedbackSource]
    FEEDBACK_SOURCE_HUMAN_REVIEW: _ClassVar[FeedbackSource]
PRIORITY_UNSPECIFIED: Priority
PRIORITY_NORMAL: Priority
PRIORITY_HIGH: Priority
LATENCY_CLASS_UNSPECIFIED: LatencyClass
LATENCY_CLASS_FAST: LatencyClass
LATENCY_CLASS_STANDARD: LatencyClass
LATENCY_CLASS_SLOW: LatencyClass
DECISION_SOURCE_UNSPECIFIED: DecisionSource
DECISION_SOURCE_RULE: DecisionSource
DECISION_SOURCE_DIFFICULTY: DecisionSource
DECISION_SOURCE_ESCALATION: DecisionSource
POLICY_OUTCOME_UNSPECIFIED: PolicyOutcome
POLICY_OUTCOME_ADMITTED: PolicyOutcome
POLICY_OUTCOME_DOWNGRADED: PolicyOutcome
POLICY_OUTCOME_WARNED: PolicyOutcome
POOL_LEVEL_UNSPECIFIED: PoolLevel
POOL_LEVEL_REQUEST: PoolLevel
POOL_LEVEL_SESSION: PoolLevel
POOL_LEVEL_USER: PoolLevel
POOL_LEVEL_TEAM: PoolLevel
POOL_LEVEL_ORG: PoolLevel
POOL_LEVEL_QUALITY: PoolLevel
POLICY_UNSPECIFIED: Policy
POLICY_HARD: Policy
POLICY_SOFT: Policy
POLICY_WARN: Policy
FEEDBACK_SOURCE_UNSPECIFIED: FeedbackSource
FEEDBACK_SOURCE_USER: FeedbackSource
FEEDBACK_SOURCE_AUTOMATED_EVAL: FeedbackSource
FEEDBACK_SOURCE_SHADOW_COMPARISON: FeedbackSource
FEEDBACK_SOURCE_HUMAN_REVIEW: FeedbackSource

class Scope(_message.Message):
    __slots__ = ("org_id", "team_id", "user_id", "session_id", "tags", "priority")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    team_id: str
    user_id: str
    session_id: str
    tags: _containers.ScalarMap[str, str]
    priority: Priority
    def __init__(self, org_id: _Optional[str] = ..., team_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., priority: _Optional[_Union[Priority, str]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class TaskSignals(_message.Message):
    __slots__ = ("task_type", "agent_mode", "min_tier", "needs_tools", "needs_vision", "needs_json", "latency")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    AGENT_MODE_FIELD_NUMBER: _ClassVar[int]
    MIN_TIER_FIELD_NUMBER: _ClassVar[int]
    NEEDS_TOOLS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_VISION_FIELD_NUMBER: _ClassVar[int]
    NEEDS_JSON_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    task_type: str
    agent_mode: str
    min_tier: str
    needs_tools: bool
    needs_vision: bool
    needs_json: bool
    latency: LatencyClass
    def __init__(self, task_type: _Optional[str] = ..., agent_mode: _Optional[str] = ..., min_tier: _Optional[str] = ..., needs_tools: bool = ..., needs_vision: bool = ..., needs_json: bool = ..., latency: _Optional[_Union[LatencyClass, str]] = ...) -> None: ...

class Prompt(_message.Message):
    __slots__ = ("messages", "input_tokens")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    messages: Messages
    input_tokens: int
    def __init__(self, messages: _Optional[_Union[Messages, _Mapping]] = ..., input_tokens: _Optional[int] = ...) -> None: ...

class Messages(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Message]
    def __init__(self, items: _Optional[_Iterable[_Union[Message, _Mapping]]] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("scope", "prompt", "signals", "max_output_tokens", "reserve", "reservation", "accept_shadow")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RESERVE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_SHADOW_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    prompt: Prompt
    signals: TaskSignals
    max_output_tokens: int
    reserve: bool
    reservation: ReservationOptions
    accept_shadow: bool
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., prompt: _Optional[_Union[Prompt, _Mapping]] = ..., signals: _Optional[_Union[TaskSignals, _Mapping]] = ..., max_output_tokens: _Optional[int] = ..., reserve: bool = ..., reservation: _Optional[_Union[ReservationOptions, _Mapping]] = ..., accept_shadow: bool = ...) -> None: ...

class ReservationOptions(_message.Message):
    __slots__ = ("idempotency_key", "ttl_ms")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    ttl_ms: int
    def __init__(self, idempotency_key: _Optional[str] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("model", "provider", "tier", "estimated_cost_nanos", "latency")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    tier: str
    estimated_cost_nanos: int
    latency: LatencyClass
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., tier: _Optional[str] = ..., estimated_cost_nanos: _Optional[int] = ..., latency: _Optional[_Union[LatencyClass, str]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("chosen", "fallbacks", "reason", "source", "required_tier", "difficulty", "estimated_input_tokens", "estimated_output_tokens", "outcome")
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_TIER_FIELD_NUMBER: _ClassVar[int]
    DIFFICULTY_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    chosen: Candidate
    fallbacks: _containers.RepeatedCompositeFieldContainer[Candidate]
    reason: str
    source: DecisionSource
    required_tier: str
    difficulty: float
    estimated_input_tokens: int
    estimated_output_tokens: int
    outcome: PolicyOutcome
    def __init__(self, chosen: _Optional[_Union[Candidate, _Mapping]] = ..., fallbacks: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., reason: _Optional[str] = ..., source: _Optional[_Union[DecisionSource, str]] = ..., required_tier: _Optional[str] = ..., difficulty: _Optional[float] = ..., estimated_input_tokens: _Optional[int] = ..., estimated_output_tokens: _Optional[int] = ..., outcome: _Optional[_Union[PolicyOutcome, str]] = ...) -> None: ...

class PoolState(_message.Message):
    __slots__ = ("pool_id", "level", "policy", "cap_nanos", "usable_cap_nanos", "spent_nanos", "held_nanos", "remaining_nanos", "resets_at", "calls", "max_calls", "tokens", "max_tokens", "warning")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CAP_NANOS_FIELD_NUMBER: _ClassVar[int]
    USABLE_CAP_NANOS_FIELD_NUMBER: _ClassVar[int]
    SPENT_NANOS_FIELD_NUMBER: _ClassVar[int]
    HELD_NANOS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOS_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    MAX_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    pool_id: str
    level: PoolLevel
    policy: Policy
    cap_nanos: int
    usable_cap_nanos: int
    spent_nanos: int
    held_nanos: int
    remaining_nanos: int
    resets_at: _timestamp_pb2.Timestamp
    calls: int
    max_calls: int
    tokens: int
    max_tokens: int
    warning: bool
    def __init__(self, pool_id: _Optional[str] = ..., level: _Optional[_Union[PoolLevel, str]] = ..., policy: _Optional[_Union[Policy, str]] = ..., cap_nanos: _Optional[int] = ..., usable_cap_nanos: _Optional[int] = ..., spent_nanos: _Optional[int] = ..., held_nanos: _Optional[int] = ..., remaining_nanos: _Optional[int] = ..., resets_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., calls: _Optional[int] = ..., max_calls: _Optional[int] = ..., tokens: _Optional[int] = ..., max_tokens: _Optional[int] = ..., warning: bool = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("reservation_id", "model", "held_nanos", "expires_at", "pools", "replayed")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HELD_NANOS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    model: str
    held_nanos: int
    expires_at: _timestamp_pb2.Timestamp
    pools: _containers.RepeatedCompositeFieldContainer[PoolState]
    replayed: bool
    def __init__(self, reservation_id: _Optional[str] = ..., model: _Optional[str] = ..., held_nanos: _Optional[int] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., pools: _Optional[_Iterable[_Union[PoolState, _Mapping]]] = ..., replayed: bool = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision", "reservation", "shadow")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    reservation: Reservation
    shadow: Shadow
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., reservation: _Optional[_Union[Reservation, _Mapping]] = ..., shadow: _Optional[_Union[Shadow, _Mapping]] = ...) -> None: ...

class Shadow(_message.Message):
    __slots__ = ("model", "tier", "purpose", "reservation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    tier: str
    purpose: str
    reservation: Reservation
    def __init__(self, model: _Optional[str] = ..., tier: _Optional[str] = ..., purpose: _Optional[str] = ..., reservation: _Optional[_Union[Reservation, _Mapping]] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("scope", "model", "prompt", "task_type", "max_output_tokens", "reservation")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    model: str
    prompt: Prompt
    task_type: str
    max_output_tokens: int
    reservation: ReservationOptions
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., model: _Optional[str] = ..., prompt: _Optional[_Union[Prompt, _Mapping]] = ..., task_type: _Optional[str] = ..., max_output_tokens: _Optional[int] = ..., reservation: _Optional[_Union[ReservationOptions, _Mapping]] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("reservation", "estimated_input_tokens", "estimated_output_tokens", "estimated_cost_nanos")
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    reservation: Reservation
    estimated_input_tokens: int
    estimated_output_tokens: int
    estimated_cost_nanos: int
    def __init__(self, reservation: _Optional[_Union[Reservation, _Mapping]] = ..., estimated_input_tokens: _Optional[int] = ..., estimated_output_tokens: _Optional[int] = ..., estimated_cost_nanos: _Optional[int] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("reservation_id", "usage")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    usage: Usage
    def __init__(self, reservation_id: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("reservation_id", "charged_nanos", "overshoot_nanos", "released_nanos", "pools", "replayed")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGED_NANOS_FIELD_NUMBER: _ClassVar[int]
    OVERSHOOT_NANOS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_NANOS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    charged_nanos: int
    overshoot_nanos: int
    released_nanos: int
    pools: _containers.RepeatedCompositeFieldContainer[PoolState]
    replayed: bool
    def __init__(self, reservation_id: _Optional[str] = ..., charged_nanos: _Optional[int] = ..., overshoot_nanos: _Optional[int] = ..., released_nanos: _Optional[int] = ..., pools: _Optional[_Iterable[_Union[PoolState, _Mapping]]] = ..., replayed: bool = ...) -> None: ...

class CommitBatchRequest(_message.Message):
    __slots__ = ("commits",)
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[CommitRequest]
    def __init__(self, commits: _Optional[_Iterable[_Union[CommitRequest, _Mapping]]] = ...) -> None: ...

class CommitBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CommitBatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CommitBatchResult, _Mapping]]] = ...) -> None: ...

class CommitBatchResult(_message.Message):
    __slots__ = ("response", "code", "message", "reason")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    response: CommitResponse
    code: int
    message: str
    reason: str
    def __init__(self, response: _Optional[_Union[CommitResponse, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("reservation_id", "released_nanos", "pools", "replayed")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASED_NANOS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    released_nanos: int
    pools: _containers.RepeatedCompositeFieldContainer[PoolState]
    replayed: bool
    def __init__(self, reservation_id: _Optional[str] = ..., released_nanos: _Optional[int] = ..., pools: _Optional[_Iterable[_Union[PoolState, _Mapping]]] = ..., replayed: bool = ...) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ("reservation_id", "ttl_ms")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    ttl_ms: int
    def __init__(self, reservation_id: _Optional[str] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class ExtendResponse(_message.Message):
    __slots__ = ("reservation_id", "expires_at")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, reservation_id: _Optional[str] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ...) -> None: ...

class GetBudgetResponse(_message.Message):
    __slots__ = ("pools",)
    POOLS_FIELD_NUMBER: _ClassVar[int]
    pools: _containers.RepeatedCompositeFieldContainer[PoolState]
    def __init__(self, pools: _Optional[_Iterable[_Union[PoolState, _Mapping]]] = ...) -> None: ...

class BudgetExceeded(_message.Message):
    __slots__ = ("pool_id", "level", "policy", "requested_nanos", "remaining_nanos", "resets_at", "limit")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_NANOS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_NANOS_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    pool_id: str
    level: PoolLevel
    policy: Policy
    requested_nanos: int
    remaining_nanos: int
    resets_at: _timestamp_pb2.Timestamp
    limit: str
    def __init__(self, pool_id: _Optional[str] = ..., level: _Optional[_Union[PoolLevel, str]] = ..., policy: _Optional[_Union[Policy, str]] = ..., requested_nanos: _Optional[int] = ..., remaining_nanos: _Optional[int] = ..., resets_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[str] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("reservation_id", "score", "source")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    score: float
    source: FeedbackSource
    def __init__(self, reservation_id: _Optional[str] = ..., score: _Optional[float] = ..., source: _Optional[_Union[FeedbackSource, str]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("task_type", "tier")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    task_type: str
    tier: str
    def __init__(self, task_type: _Optional[str] = ..., tier: _Optional[str] = ...) -> None: ...

class GetQualityRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TierQuality(_message.Message):
    __slots__ = ("tier", "samples", "quality", "quality_low", "quality_high")
    TIER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    QUALITY_LOW_FIELD_NUMBER: _ClassVar[int]
    QUALITY_HIGH_FIELD_NUMBER: _ClassVar[int]
    tier: str
    samples: int
    quality: float
    quality_low: float
    quality_high: float
    def __init__(self, tier: _Optional[str] = ..., samples: _Optional[int] = ..., quality: _Optional[float] = ..., quality_low: _Optional[float] = ..., quality_high: _Optional[float] = ...) -> None: ...

class TaskQuality(_message.Message):
    __slots__ = ("task_type", "tiers", "shadow_samples", "shadow_match", "shadow_match_low", "shadow_match_high", "guard_min_tier", "guard_since", "escalation_cost_nanos")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SHADOW_MATCH_FIELD_NUMBER: _ClassVar[int]
    SHADOW_MATCH_LOW_FIELD_NUMBER: _ClassVar[int]
    SHADOW_MATCH_HIGH_FIELD_NUMBER: _ClassVar[int]
    GUARD_MIN_TIER_FIELD_NUMBER: _ClassVar[int]
    GUARD_SINCE_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_COST_NANOS_FIELD_NUMBER: _ClassVar[int]
    task_type: str
    tiers: _containers.RepeatedCompositeFieldContainer[TierQuality]
    shadow_samples: int
    shadow_match: float
    shadow_match_low: float
    shadow_match_high: float
    guard_min_tier: str
    guard_since: _timestamp_pb2.Timestamp
    escalation_cost_nanos: int
    def __init__(self, task_type: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[TierQuality, _Mapping]]] = ..., shadow_samples: _Optional[int] = ..., shadow_match: _Optional[float] = ..., shadow_match_low: _Optional[float] = ..., shadow_match_high: _Optional[float] = ..., guard_min_tier: _Optional[str] = ..., guard_since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., escalation_cost_nanos: _Optional[int] = ...) -> None: ...

class GetQualityResponse(_message.Message):
    __slots__ = ("task_types",)
    TASK_TYPES_FIELD_NUMBER: _ClassVar[int]
    task_types: _containers.RepeatedCompositeFieldContainer[TaskQuality]
    def __init__(self, task_types: _Optional[_Iterable[_Union[TaskQuality, _Mapping]]] = ...) -> None: ...

class EscalateRequest(_message.Message):
    __slots__ = ("reservation_id", "scope", "prompt", "signals", "max_output_tokens", "model", "reason", "usage", "reservation")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    scope: Scope
    prompt: Prompt
    signals: TaskSignals
    max_output_tokens: int
    model: str
    reason: str
    usage: Usage
    reservation: ReservationOptions
    def __init__(self, reservation_id: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., prompt: _Optional[_Union[Prompt, _Mapping]] = ..., signals: _Optional[_Union[TaskSignals, _Mapping]] = ..., max_output_tokens: _Optional[int] = ..., model: _Optional[str] = ..., reason: _Optional[str] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., reservation: _Optional[_Union[ReservationOptions, _Mapping]] = ...) -> None: ...

class EscalateResponse(_message.Message):
    __slots__ = ("decision", "reservation", "previous_reservation_id", "previous_commit", "attempt")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_COMMIT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    reservation: Reservation
    previous_reservation_id: str
    previous_commit: CommitResponse
    attempt: int
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., reservation: _Optional[_Union[Reservation, _Mapping]] = ..., previous_reservation_id: _Optional[str] = ..., previous_commit: _Optional[_Union[CommitResponse, _Mapping]] = ..., attempt: _Optional[int] = ...) -> None: ...

class SetPoolCapRequest(_message.Message):
    __slots__ = ("pool_id", "cap_nanos", "reason")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    CAP_NANOS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    pool_id: str
    cap_nanos: int
    reason: str
    def __init__(self, pool_id: _Optional[str] = ..., cap_nanos: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class SetPoolCapResponse(_message.Message):
    __slots__ = ("before", "after")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    before: PoolState
    after: PoolState
    def __init__(self, before: _Optional[_Union[PoolState, _Mapping]] = ..., after: _Optional[_Union[PoolState, _Mapping]] = ...) -> None: ...

class TopUpRequest(_message.Message):
    __slots__ = ("pool_id", "amount_nanos", "reason")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_NANOS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    pool_id: str
    amount_nanos: int
    reason: str
    def __init__(self, pool_id: _Optional[str] = ..., amount_nanos: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class TopUpResponse(_message.Message):
    __slots__ = ("before", "after")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    before: PoolState
    after: PoolState
    def __init__(self, before: _Optional[_Union[PoolState, _Mapping]] = ..., after: _Optional[_Union[PoolState, _Mapping]] = ...) -> None: ...

class ResetWindowRequest(_message.Message):
    __slots__ = ("pool_id", "reason")
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    pool_id: str
    reason: str
    def __init__(self, pool_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResetWindowResponse(_message.Message):
    __slots__ = ("before", "after")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    before: PoolState
    after: PoolState
    def __init__(self, before: _Optional[_Union[PoolState, _Mapping]] = ..., after: _Optional[_Union[PoolState, _Mapping]] = ...) -> None: ...

class EndReservationRequest(_message.Message):
    __slots__ = ("reservation_id", "charge", "reason")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    charge: bool
    reason: str
    def __init__(self, reservation_id: _Optional[str] = ..., charge: bool = ..., reason: _Optional[str] = ...) -> None: ...

class EndReservationResponse(_message.Message):
    __slots__ = ("reservation_id", "state", "charged_nanos", "pools", "replayed")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHARGED_NANOS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    state: str
    charged_nanos: int
    pools: _containers.RepeatedCompositeFieldContainer[PoolState]
    replayed: bool
    def __init__(self, reservation_id: _Optional[str] = ..., state: _Optional[str] = ..., charged_nanos: _Optional[int] = ..., pools: _Optional[_Iterable[_Union[PoolState, _Mapping]]] = ..., replayed: bool = ...) -> None: ...
