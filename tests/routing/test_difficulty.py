"""The difficulty heuristic: tier ranges on realistic prompts, monotonic effects, robustness."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollgate.estimate import TokenCounter
from tollgate.routing.difficulty import Difficulty, score

MEDIUM = 0.35
FRONTIER = 0.70

_counter = TokenCounter(4)

Messages = list[tuple[str, str]]


def _score(messages: Messages) -> Difficulty:
    return score(messages, _counter.count_messages(messages))


def _user(text: str, system: str = "You are a helpful assistant.") -> Messages:
    return [("system", system), ("user", text)]


PYTHON_TRACE = """Traceback (most recent call last):
  File "/srv/app/worker.py", line 88, in <module>
    main()
  File "/srv/app/worker.py", line 81, in main
    totals = aggregate(load_orders(path))
  File "/srv/app/worker.py", line 57, in aggregate
    by_user[order["user_id"]] += order["total"]
KeyError: 'user_id'"""

JAVA_TRACE = """Exception in thread "main" java.lang.NullPointerException: Cannot invoke "String.length()"
    at com.acme.billing.InvoiceFormatter.pad(InvoiceFormatter.java:41)
    at com.acme.billing.InvoiceFormatter.format(InvoiceFormatter.java:27)
    at com.acme.billing.InvoiceJob.run(InvoiceJob.java:112)
    at java.base/java.lang.Thread.run(Thread.java:833)"""

GO_TRACE = """panic: runtime error: index out of range [5] with length 5

goroutine 23 [running]:
main.(*Pool).dispatch(0xc0000a2000, {0xc0000b4000, 0x5, 0x8})
        /home/dev/pool/pool.go:64 +0x1c5
main.(*Pool).Run.func1()
        /home/dev/pool/pool.go:41 +0x6e
created by main.(*Pool).Run in goroutine 1
        /home/dev/pool/pool.go:38 +0x85"""

NODE_TRACE = """TypeError: Cannot read properties of undefined (reading 'map')
    at renderRows (/app/src/components/OrderTable.js:23:31)
    at OrderTable (/app/src/components/OrderTable.js:11:10)
    at processChild (/app/node_modules/react-dom/cjs/react-dom-server.node.development.js:3353:14)"""

DOTNET_TRACE = """System.NullReferenceException: Object reference not set to an instance of an object.
   at Shop.Cart.Total(IEnumerable`1 items) in C:\\src\\Shop\\Cart.cs:line 42
   at Shop.Program.Main(String[] args) in C:\\src\\Shop\\Program.cs:line 12"""

RUST_PANIC = """thread 'main' panicked at src/main.rs:14:22:
called `Option::unwrap()` on a `None` value
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"""

RUBY_TRACE = """app/models/user.rb:12:in `full_name': undefined method `upcase' for nil:NilClass (NoMethodError)
\tfrom app/controllers/users_controller.rb:8:in `show'
\tfrom app/controllers/application_controller.rb:31:in `around_action'"""

SIMPLE_PROMPTS: list[Messages] = [
    _user("What's the capital of France?"),
    _user(
        "Extract the email address from this text: \"Hi, I'm Dana from Acme Logistics. Reach me at "
        'dana.k@acme-logistics.io or call the front desk after 3pm."'
    ),
    _user("Translate to Spanish: \"The meeting has been moved to Thursday at 10am, same room as last week.\""),
    _user(
        "Summarize this in one sentence: Our Q3 townhall covered the new parental leave policy, the move to "
        "the Riverside office in January, and the results of the engagement survey, which showed higher "
        "scores for team collaboration but lower scores for career growth. Leadership promised a mentoring "
        "program and quarterly promotion reviews starting next year."
    ),
    _user(
        "Classify the sentiment of this review as positive, negative or neutral: \"Battery life is great "
        'but the screen scratches way too easily."'
    ),
    _user("Fix the typos: \"Teh quick brwon fox jumsp over the lazy dgo, and then it ran awya.\""),
    _user("Convert 72 degrees Fahrenheit to Celsius."),
    _user("Give me a fun fact about octopuses."),
    _user(
        "Format this as a bulleted list: milk, eggs, sourdough bread, two avocados, coffee beans",
        system="You are a concise shopping assistant.",
    ),
]

MEDIUM_PROMPTS: list[Messages] = [
    _user(
        "Write a Python function that takes a list of (start, end) intervals and merges the overlapping "
        "ones. Include type hints and a docstring."
    ),
    _user(
        "Explain in detail how HTTPS certificate validation works, from the TLS handshake to the chain of "
        "trust up to the root CA."
    ),
    _user(
        "Write a bash script that backs up /var/www to an S3 bucket every night and keeps only the last "
        "seven backups."
    ),
    _user("Can you explain how Python's garbage collector handles reference cycles? Please be thorough."),
    _user(
        "Implement a React component that shows a paginated table of users fetched from /api/users, "
        "with a loading state and an empty state."
    ),
    _user(
        "Compare PostgreSQL and MongoDB for storing the product catalog of a mid-sized e-commerce site, "
        "and recommend one."
    ),
    _user(
        "Write a SQL query that returns the top 5 customers by total order value in 2023, given the tables "
        "orders(id, customer_id, total, created_at) and customers(id, name)."
    ),
]

HARD_PROMPTS: list[Messages] = [
    _user(
        "I'm getting this error when I run the nightly job and I can't figure out why, the field is "
        "definitely in the file:\n\n```python\ndef load_orders(path):\n    with open(path) as f:\n"
        "        return [json.loads(line) for line in f]\n\n\ndef aggregate(orders):\n"
        "    by_user = defaultdict(int)\n    for order in orders:\n"
        "        by_user[order[\"user_id\"]] += order[\"total\"]\n    return by_user\n```\n\n"
        + PYTHON_TRACE
    ),
    _user(
        "Our invoice job crashes on some customers. Here is the formatter:\n\n```java\n"
        "public String pad(String name) {\n    return name.length() > 20 ? name.substring(0, 20) : name;\n}\n"
        "```\n\nand the log:\n\n" + JAVA_TRACE + "\n\nWhat is the root cause and how do we fix it properly?"
    ),
    _user(
        "Design the architecture of a rate limiter for our public API that runs in three regions. What are "
        "the trade-offs between a centralised Redis token bucket and per-region sliding windows with "
        "asynchronous reconciliation? How do we keep limits consistent when a region is partitioned?"
    ),
    _user(
        "Our Go worker pool panics under load, I suspect a race condition between dispatch and resize:\n\n"
        "```go\nfunc (p *Pool) dispatch(jobs []Job) {\n    for i := range jobs {\n"
        "        p.workers[i%p.size] <- jobs[i]\n    }\n}\n```\n\n" + GO_TRACE
    ),
    _user(
        "Prove that the greedy algorithm that always picks the interval with the earliest finish time "
        "yields a maximum set of non-overlapping intervals, and state its time complexity."
    ),
    _user(
        "We're splitting our Rails monolith into services. Should we use event sourcing or plain CRUD "
        "with change data capture for the orders domain? Walk me through the trade-offs for consistency, "
        "failure handling and the migration strategy, and how the architecture should evolve."
    ),
    _user(
        "```python\nclass Cart:\n    def __init__(self, items):\n        self.items = items\n\n"
        "    def total(self):\n        return sum(i.price * i.qty for i in self.items)\n```\n\n"
        "Traceback (most recent call last):\n  File \"shop/cart.py\", line 6, in total\n"
        "    return sum(i.price * i.qty for i in self.items)\n"
        "  File \"shop/cart.py\", line 6, in <genexpr>\n"
        "    return sum(i.price * i.qty for i in self.items)\n"
        "AttributeError: 'dict' object has no attribute 'price'"
    ),
    _user(
        "The orders page breaks after the API change, here's the component:\n\n```jsx\n"
        "export function OrderTable({ data }) {\n  const rows = renderRows(data.orders);\n"
        "  return <table>{rows}</table>;\n}\n\nfunction renderRows(orders) {\n"
        "  return orders.map((o) => <Row key={o.id} order={o} />);\n}\n```\n\n" + NODE_TRACE
    ),
]


@pytest.mark.parametrize("messages", SIMPLE_PROMPTS)
def test_simple_prompts_go_to_the_cheap_tier(messages: Messages) -> None:
    assert _score(messages).score < MEDIUM


@pytest.mark.parametrize("messages", MEDIUM_PROMPTS)
def test_medium_prompts_go_to_the_medium_tier(messages: Messages) -> None:
    assert MEDIUM <= _score(messages).score < FRONTIER


@pytest.mark.parametrize("messages", HARD_PROMPTS)
def test_hard_prompts_go_to_the_frontier_tier(messages: Messages) -> None:
    assert _score(messages).score >= FRONTIER


ALL_TRACES = [PYTHON_TRACE, JAVA_TRACE, GO_TRACE, NODE_TRACE, DOTNET_TRACE, RUST_PANIC, RUBY_TRACE]


@pytest.mark.parametrize("trace", ALL_TRACES)
def test_stack_traces_of_each_runtime_are_recognised(trace: str) -> None:
    as_tool_result = [*_user("Run the failing test."), ("tool", trace)]
    assert "stack_trace" in _score(as_tool_result).reasons
    pasted = _user(f"Why is this happening?\n\n{trace}")
    assert "stack_trace" in _score(pasted).reasons


def test_prose_mentioning_errors_is_not_a_stack_trace() -> None:
    prose = _user(
        "Our team at the agency looked at the error budget, and at the end of the quarter we decided "
        "that the file format is fine.\n    at least that is what we wrote in the notes."
    )
    assert "stack_trace" not in _score(prose).reasons


def test_code_without_fences_is_recognised() -> None:
    snippet = (
        "Rename the variable in this:\n\nimport os\n\ndef home():\n    path = os.environ['HOME']\n"
        "    return path\n\nclass Config:\n    pass\n"
    )
    assert "code" in _score(_user(snippet)).reasons


@pytest.mark.parametrize("messages", SIMPLE_PROMPTS + MEDIUM_PROMPTS + HARD_PROMPTS)
@pytest.mark.parametrize("trace", ALL_TRACES)
def test_adding_a_stack_trace_never_lowers_the_score(messages: Messages, trace: str) -> None:
    before = _score(messages).score
    role, text = messages[-1]
    appended = [*messages[:-1], (role, text + "\n\n" + trace)]
    as_tool_result = [*messages, ("tool", trace)]
    assert _score(appended).score >= before
    assert _score(as_tool_result).score >= before


@pytest.mark.parametrize("messages", SIMPLE_PROMPTS + MEDIUM_PROMPTS)
def test_more_input_tokens_never_lower_the_score(messages: Messages) -> None:
    tokens = _counter.count_messages(messages)
    scores = [score(messages, n).score for n in (tokens, tokens * 4, tokens * 64, tokens * 4096)]
    assert scores == sorted(scores)


def test_tool_results_and_turns_raise_the_score() -> None:
    base = _user("Write a function that parses ISO 8601 durations.")
    agent = [
        *base,
        ("assistant", "Let me look at the existing helpers."),
        ("tool", "helpers.py: 120 lines"),
        ("assistant", "Now the tests."),
        ("tool", "tests/test_helpers.py: 40 lines"),
        ("assistant", "Running them."),
        ("tool", "12 passed in 0.31s"),
        ("assistant", "And the call sites."),
        ("tool", "scheduler.py:88 uses parse_period"),
        ("user", "Write a function that parses ISO 8601 durations."),
    ]
    assert _score(agent).score > _score(base).score
    assert "tool_results" in _score(agent).reasons


def test_reasons_name_the_features_that_drove_the_score() -> None:
    debugging = _score(HARD_PROMPTS[0])
    assert "stack_trace" in debugging.reasons
    assert "code" in debugging.reasons
    design = _score(HARD_PROMPTS[2])
    assert "reasoning" in design.reasons
    extract = _score(SIMPLE_PROMPTS[1])
    assert extract.reasons == ("simple_task",)
    assert all(len(_score(m).reasons) <= 3 for m in SIMPLE_PROMPTS + MEDIUM_PROMPTS + HARD_PROMPTS)


def test_long_context_is_a_reason_for_a_long_input() -> None:
    messages = _user("Here are the meeting notes. " + "We agreed on the plan for the launch. " * 4000)
    result = _score(messages)
    assert "long_context" in result.reasons
    # Length alone is not a reason for the frontier tier.
    assert result.score < FRONTIER


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [("user", "")],
        [("system", ""), ("user", ""), ("assistant", "")],
        [("tool", "")],
        [("", "")],
    ],
)
def test_empty_requests_are_safe(messages: Messages) -> None:
    result = score(messages, 0)
    assert 0.0 < result.score < MEDIUM
    assert isinstance(result.reasons, tuple)


def test_negative_token_count_is_treated_as_short() -> None:
    assert score(_user("hi"), -5).score == score(_user("hi"), 0).score


def test_very_large_input_is_bounded() -> None:
    huge = "x = compute(a, b);\n" * 200_000 + "a" * 1_000_000
    messages: Messages = [("system", "s" * 1_000_000)]
    messages += [("user", huge), ("assistant", "ok")] * 1_000
    messages.append(("user", "Why does this fail? " * 50_000))
    result = score(messages, 10_000_000)
    assert 0.0 <= result.score <= 1.0
    assert len(result.reasons) <= 3


@pytest.mark.timeout(30)
def test_pathological_text_does_not_hang() -> None:
    # Long runs that could make a backtracking pattern quadratic.
    for text in ("at " + "a " * 50_000, "File \"" * 20_000, "1+" * 50_000, " " * 100_000, "{" * 100_000):
        result = score([("user", text)], 100_000)
        assert 0.0 <= result.score <= 1.0


def test_score_is_in_unit_interval_at_the_extremes() -> None:
    everything = (
        "Prove and design the architecture, trade-offs, race condition, deadlock, security, algorithm, "
        "complexity, root cause? why? how would you? x^2 + y^2 = z^2 \\frac{1}{2}\n```\nint main() {\n}\n```\n"
        + PYTHON_TRACE
        + JAVA_TRACE
    )
    top = score([("user", everything)] * 40 + [("tool", GO_TRACE)] * 10, 5_000_000)
    assert top.score <= 1.0
    assert top.score > 0.99
    bottom = score([("user", "Translate, summarize, extract, classify, fix the typo, convert, list the items")], 0)
    assert 0.0 <= bottom.score < 0.05


# Pieces that exercise every expression's special paths when mixed with random text.
FRAGMENTS = ["\n", "    at ", "```", "?", "Error:", 'File "', ".java:1", "why", " = 1", "\\frac", "∑", "in detail"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["system", "developer", "user", "assistant", "tool", ""]),
            st.lists(st.text(max_size=30) | st.sampled_from(FRAGMENTS), max_size=20).map("".join),
        ),
        max_size=6,
    ),
    st.integers(-10, 10_000_000),
)
def test_any_request_scores_in_the_unit_interval(messages: Messages, input_tokens: int) -> None:
    result = score(messages, input_tokens)
    assert 0.0 <= result.score <= 1.0
    assert len(result.reasons) <= 3
    assert score(messages, input_tokens) == result
