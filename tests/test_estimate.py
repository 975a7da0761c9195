"""Token counting and output estimation."""

from __future__ import annotations

import math
import random
import sys

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.config import EstimationConfig
from tollgate.estimate import ENCODING_NAME, ErrorStats, OutputEstimator, TokenCounter, quantile

ENC = tiktoken.get_encoding(ENCODING_NAME)


def reference_count(messages: list[tuple[str, str]], overhead: int) -> int:
    """The documented formula, computed straight from tiktoken."""
    return 3 + sum(len(ENC.encode_ordinary(content)) + len(ENC.encode_ordinary(role)) + overhead
                   for role, content in messages)


def reference_quantile(values: list[int], q: float) -> int:
    """``numpy.percentile`` (linear interpolation) rounded up, written out independently."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    below = int(rank)
    above = below + 1 if below + 1 < len(ordered) else below
    return math.ceil(round(ordered[below] * (1 - (rank - below)) + ordered[above] * (rank - below), 9))


CONVERSATION = [
    ("system", "You are a careful assistant. Answer in British English."),
    ("user", "Summarise the attached incident report in three bullet points."),
    ("assistant", "- The primary database failed over at 02:14 UTC.\n- Writes were lost for 40 s.\n- No data loss."),
    ("user", "Translate the second bullet into Japanese: 書き込みは40秒間失われました。 Is that right? 🙂"),
    ("tool", '{"status": "ok", "rows": [1, 2, 3], "note": "naïve café — déjà vu"}'),
]


# --- TokenCounter -----------------------------------------------------------------


@pytest.mark.parametrize("overhead", [0, 4, 7])
def test_count_matches_tiktoken_and_the_message_formula(overhead: int) -> None:
    counter = TokenCounter(overhead)
    assert counter.count_messages(CONVERSATION) == reference_count(CONVERSATION, overhead)
    # Cached counts must give the same total.
    assert counter.count_messages(CONVERSATION) == reference_count(CONVERSATION, overhead)


def test_count_of_no_messages_is_the_reply_priming() -> None:
    assert TokenCounter(4).count_messages([]) == 3


def test_empty_content_and_role_cost_only_the_overhead() -> None:
    assert TokenCounter(4).count_messages([("", "")]) == 3 + 4
    assert TokenCounter(4).count_messages([("user", "")]) == 3 + 4 + len(ENC.encode_ordinary("user"))


@pytest.mark.parametrize("text", ["", "hello world", "naïve café 🙂 書き込み", "x" * 5000, "  \n\t  "])
def test_count_text_matches_tiktoken(text: str) -> None:
    assert TokenCounter().count_text(text) == len(ENC.encode_ordinary(text))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["system", "user", "assistant", "tool", ""]), st.text(max_size=200)),
                max_size=8))
def test_count_matches_tiktoken_on_arbitrary_text(messages: list[tuple[str, str]]) -> None:
    assert TokenCounter(4).count_messages(messages) == reference_count(messages, 4)


@pytest.mark.parametrize(
    "special", ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>"]
)
def test_special_token_strings_count_as_plain_text(special: str) -> None:
    text = f"Please explain what {special} means in a prompt."
    counter = TokenCounter(4)
    assert counter.count_text(text) == len(ENC.encode_ordinary(text))
    assert counter.count_messages([("user", text)]) == reference_count([("user", text)], 4)


def test_lone_surrogates_do_not_raise() -> None:
    counter = TokenCounter(4)
    assert counter.count_messages([("user", "broken \ud800 text")]) > 3


def test_growing_conversation_encodes_only_the_new_turn() -> None:
    counter = TokenCounter(4)
    conversation: list[tuple[str, str]] = []
    for turn, message in enumerate(CONVERSATION, start=1):
        conversation.append(message)
        misses, hits = counter.misses, counter.hits
        assert counter.count_messages(conversation) == reference_count(conversation, 4)
        assert counter.misses - misses == 1
        assert counter.hits - hits == turn - 1


def test_role_and_content_boundaries_are_distinct_keys() -> None:
    counter = TokenCounter(0)
    assert counter.count_messages([("ab", "c")]) == reference_count([("ab", "c")], 0)
    assert counter.count_messages([("a", "bc")]) == reference_count([("a", "bc")], 0)
    assert counter.misses == 2
    counter.count_messages([("user", "hello"), ("assistant", "hello")])
    assert counter.misses == 4


def test_cache_is_bounded_and_keeps_the_recently_used() -> None:
    counter = TokenCounter(4, max_entries=5)
    first = ("user", "message 0")
    counter.count_messages([first])
    for i in range(1, 20):
        # Touching the first message each time keeps it the most recently used.
        counter.count_messages([first, ("user", f"message {i}")])
        assert len(counter) <= 5
    assert len(counter) == 5
    misses = counter.misses
    counter.count_messages([first])
    assert counter.misses == misses
    counter.count_messages([("user", "message 1")])
    assert counter.misses == misses + 1


def test_cache_keeps_digests_not_text() -> None:
    counter = TokenCounter(4)
    secret = "my password is hunter2 " + "".join(random.choice("abcdef") for _ in range(40))
    refs_before = sys.getrefcount(secret)
    counter.count_messages([("user", secret), ("assistant", "noted")])
    assert sys.getrefcount(secret) == refs_before
    keys = counter.cache_keys()
    assert len(keys) == 2
    for key in keys:
        assert isinstance(key, bytes)
        assert len(key) == 16
        assert b"hunter2" not in key


def test_clear_forgets_counts_but_keeps_metrics() -> None:
    counter = TokenCounter(4)
    counter.count_messages(CONVERSATION)
    counter.clear()
    assert len(counter) == 0
    assert counter.misses == len(CONVERSATION)
    counter.count_messages(CONVERSATION)
    assert counter.misses == 2 * len(CONVERSATION)


def test_invalid_counter_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenCounter(-1)
    with pytest.raises(ValueError):
        TokenCounter(4, max_entries=0)


# --- quantile -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        # numpy.percentile(values, 100 * q) rounded up.
        (list(range(1, 11)), 0.9, 10),  # 9.1
        (list(range(1, 11)), 0.5, 6),  # 5.5
        ([10, 20, 30, 40], 0.9, 37),  # 37.0
        ([10, 20, 30, 40], 1.0, 40),
        ([7], 0.9, 7),
        ([5, 5, 5, 500], 0.5, 5),
        ([0, 100], 0.95, 95),
    ],
)
def test_quantile_known_values(values: list[int], q: float, expected: int) -> None:
    assert quantile(sorted(values), q) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 200_000), min_size=1, max_size=300), st.floats(0.5, 1.0))
def test_quantile_matches_the_reference(values: list[int], q: float) -> None:
    assert quantile(sorted(values), q) == reference_quantile(values, q)


def test_quantile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        quantile([], 0.9)


# --- OutputEstimator ----------------------------------------------------------------

CONFIG = EstimationConfig(default_output_tokens=512, output_quantile=0.9, min_samples=20)


def test_default_before_any_observation() -> None:
    estimator = OutputEstimator(CONFIG)
    assert estimator.estimate("extract", "small", 0) == 512
    assert estimator.key_count() == 0


def test_estimate_is_bounded_by_max_output_tokens_but_never_raised_to_it() -> None:
    estimator = OutputEstimator(CONFIG)
    assert estimator.estimate("extract", "small", 100) == 100
    assert estimator.estimate("extract", "small", 100_000) == 512
    for _ in range(40):
        estimator.observe("extract", "small", 30)
    assert estimator.estimate("extract", "small", 100_000) == 30
    assert estimator.estimate("extract", "small", 10) == 10


def test_estimate_is_never_zero() -> None:
    estimator = OutputEstimator(CONFIG)
    for _ in range(40):
        estimator.observe("classify", "small", 0)
    assert estimator.estimate("classify", "small", 0) == 1
    assert estimator.estimate("classify", "small", 50) == 1
    assert OutputEstimator(EstimationConfig(default_output_tokens=1)).estimate("x", "y", 0) == 1


def test_learned_estimate_needs_min_samples() -> None:
    estimator = OutputEstimator(CONFIG)
    for _ in range(19):
        estimator.observe("extract", "small", 40)
    assert estimator.estimate("extract", "small", 0) == 512
    estimator.observe("extract", "small", 40)
    assert estimator.estimate("extract", "small", 0) == 40


def test_fallback_chain() -> None:
    estimator = OutputEstimator(CONFIG)
    for _ in range(20):
        estimator.observe("extract", "small", 40)
    for _ in range(20):
        estimator.observe("planning", "large", 2000)
    # The pair itself.
    assert estimator.estimate("extract", "small", 0) == 40
    # The task type on another model.
    assert estimator.estimate("extract", "large", 0) == 40
    # The model on another task type.
    assert estimator.estimate("summarize", "large", 0) == 2000
    # Nothing known: the configured default.
    assert estimator.estimate("summarize", "medium", 0) == 512
    # A pair with too few samples of its own falls back to the task type.
    for _ in range(5):
        estimator.observe("extract", "large", 900)
    assert estimator.estimate("extract", "large", 0) == quantile(sorted([40] * 20 + [900] * 5), 0.9)


def test_task_type_across_models_outranks_model_across_task_types() -> None:
    estimator = OutputEstimator(CONFIG)
    for _ in range(20):
        estimator.observe("extract", "small", 40)
        estimator.observe("planning", "large", 2000)
    assert estimator.estimate("extract", "large", 0) == 40


def test_empty_task_type_uses_its_own_history() -> None:
    estimator = OutputEstimator(CONFIG)
    for _ in range(20):
        estimator.observe("", "small", 70)
    assert estimator.estimate("", "small", 0) == 70
    assert estimator.estimate("anything", "small", 0) == 70


def test_estimate_matches_the_quantile_of_the_last_window() -> None:
    rng = random.Random(7)
    estimator = OutputEstimator(CONFIG, window=256, refresh_every=1)
    seen: list[int] = []
    for _ in range(700):
        tokens = int(rng.lognormvariate(5, 1))
        seen.append(tokens)
        estimator.observe("codegen", "medium", tokens)
        if len(seen) >= 20:
            assert estimator.estimate("codegen", "medium", 0) == reference_quantile(seen[-256:], 0.9)
    assert estimator.sample_count("codegen", "medium") == 256


def test_default_refresh_is_exact_at_each_refresh_point() -> None:
    rng = random.Random(11)
    estimator = OutputEstimator(CONFIG)  # window 256, refresh every 16 past 64 samples
    seen: list[int] = []
    for i in range(1, 513):
        tokens = rng.randrange(1, 5000)
        seen.append(tokens)
        estimator.observe("t", "m", tokens)
        if i >= 20 and (i <= 64 or i % 16 == 0):
            assert estimator.estimate("t", "m", 0) == reference_quantile(seen[-256:], 0.9)


def test_old_observations_leave_the_window() -> None:
    estimator = OutputEstimator(CONFIG, window=64, refresh_every=8)
    for _ in range(64):
        estimator.observe("t", "m", 10_000)
    for _ in range(64):
        estimator.observe("t", "m", 10)
    assert estimator.estimate("t", "m", 0) == 10


@pytest.mark.parametrize("q", [0.5, 0.75, 0.95, 1.0])
def test_configured_quantile_is_used(q: float) -> None:
    estimator = OutputEstimator(EstimationConfig(output_quantile=q, min_samples=10), refresh_every=1)
    values = list(range(1, 101))
    for v in values:
        estimator.observe("t", "m", v)
    assert estimator.estimate("t", "m", 0) == reference_quantile(values, q)


def test_window_is_at_least_min_samples() -> None:
    estimator = OutputEstimator(EstimationConfig(min_samples=50), window=10)
    assert estimator.window == 50
    for _ in range(50):
        estimator.observe("t", "m", 33)
    assert estimator.estimate("t", "m", 0) == 33


def test_negative_and_huge_observations_are_clamped() -> None:
    estimator = OutputEstimator(CONFIG)
    for _ in range(20):
        estimator.observe("t", "m", -5)
    assert estimator.estimate("t", "m", 0) == 1
    for _ in range(256):
        estimator.observe("t", "m", 10**12)
    assert estimator.estimate("t", "m", 0) == 0xFFFF_FFFF


def test_keys_are_capped_least_recently_used_first() -> None:
    estimator = OutputEstimator(CONFIG, max_keys=3)
    for name in ("a", "b", "c"):
        estimator.observe(name, "m", 10)
    estimator.observe("a", "m", 10)  # "a" is now the most recent
    estimator.observe("d", "m", 10)
    assert estimator.key_count() == 3
    assert estimator.sample_count("b", "m") == 0
    assert estimator.sample_count("a", "m") == 2
    for i in range(1000):
        estimator.observe(f"client-task-{i}", f"model-{i % 7}", 10)
    assert estimator.key_count() == 3


def test_estimating_unknown_keys_stores_nothing() -> None:
    estimator = OutputEstimator(CONFIG)
    for i in range(100):
        estimator.estimate(f"task-{i}", "m", 0)
    assert estimator.key_count() == 0
    assert estimator.errors() == {}


def test_invalid_estimator_settings_are_refused() -> None:
    for kwargs in ({"window": 0}, {"refresh_every": 0}, {"max_keys": 0}):
        with pytest.raises(ValueError):
            OutputEstimator(CONFIG, **kwargs)


# --- estimation error -------------------------------------------------------------


def test_error_stats_aggregate_ratio_and_underestimates() -> None:
    estimator = OutputEstimator(CONFIG)
    estimator.record_error("extract", "small", 1_000, 1_300)
    estimator.record_error("extract", "small", 1_000, 800)
    estimator.record_error("planning", "large", 50_000, 50_000)
    errors = estimator.errors()
    assert set(errors) == {("extract", "small"), ("planning", "large")}
    extract = errors[("extract", "small")]
    assert extract == ErrorStats(count=2, ratio_sum=pytest.approx(2.1), underestimates=1)
    assert extract.mean_ratio == pytest.approx(1.05)
    assert extract.underestimate_rate == 0.5
    planning = errors[("planning", "large")]
    assert (planning.count, planning.ratio_sum, planning.underestimates) == (1, 1.0, 0)


def test_error_stats_with_zero_estimates() -> None:
    estimator = OutputEstimator(CONFIG)
    estimator.record_error("t", "free", 0, 0)
    assert estimator.errors()[("t", "free")] == ErrorStats(count=1, ratio_sum=1.0, underestimates=0)
    estimator.record_error("t", "m", 0, 50)
    assert estimator.errors()[("t", "m")] == ErrorStats(count=1, ratio_sum=50.0, underestimates=1)


def test_error_snapshot_does_not_change_afterwards() -> None:
    estimator = OutputEstimator(CONFIG)
    estimator.record_error("t", "m", 100, 100)
    snapshot = estimator.errors()
    estimator.record_error("t", "m", 100, 300)
    assert snapshot[("t", "m")].count == 1
    assert estimator.errors()[("t", "m")].count == 2


def test_empty_error_stats() -> None:
    empty = ErrorStats(count=0, ratio_sum=0.0, underestimates=0)
    assert empty.mean_ratio == 0.0
    assert empty.underestimate_rate == 0.0


def test_error_keys_are_capped() -> None:
    estimator = OutputEstimator(CONFIG, max_keys=4)
    for i in range(50):
        estimator.record_error(f"task-{i}", "m", 100, 110)
    errors = estimator.errors()
    assert len(errors) == 4
    assert ("task-49", "m") in errors
