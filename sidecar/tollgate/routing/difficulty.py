"""A fast heuristic difficulty score in [0, 1] for a chat request.

Used when no task-signal rule decides the tier. The default thresholds send
scores below 0.35 to the cheap tier, 0.35–0.70 to the medium tier and 0.70 and
above to the frontier tier.

The score is ``sigmoid(BIAS + Σ weight × feature)``, each feature in [0, 1]:

==================  ======  ==============================================================
feature (reason)    weight  meaning, and why the weight
==================  ======  ==============================================================
(bias)              -2.2    a request with no signal at all scores 0.10: most traffic is
                            simple, and the cheap tier answers it as well.
``long_context``    +1.5    input tokens, log-scaled: 0 at ≤ 128, 1 at ≥ 64k. Long inputs
                            need attention over more material, but length alone (a long
                            document to summarise) should reach the medium tier at most.
``code``            +1.3    code fences and code-like lines (definitions, imports, lines
                            ending in ``;``, ``{`` or ``}``), saturating at a fence or six
                            lines. Code raises the bar, yet converting a snippet is not hard.
``stack_trace``     +2.1    a stack trace (Python, Java/Kotlin, JS/TS, Go, Rust, C#, Ruby
                            frames and headers), or a weaker 0.4 for an ``XxxError:`` line.
                            Someone pasting a trace is debugging: with code it must reach the
                            frontier tier on its own, hence the largest single weight.
``many_turns``      +0.6    user and assistant turns beyond two, saturating at 16: a long
                            conversation carries state the model must track.
``tool_results``    +0.7    ``tool`` messages, saturating at five: an agent mid-task.
``reasoning``       +1.0    design, architecture, proofs, trade-offs, concurrency, security,
                            algorithms, debugging vocabulary in the last user message. Each
                            keyword has its own weight (``why`` counts less than
                            ``race condition``); their sum is capped at 3.2 and scaled here.
``open_task``       +1.0    open-ended generation or explanation (write, implement,
                            explain, in detail, compare...), capped at 1.8: it needs a
                            capable model but not usually the best one.
``simple_task``     -1.0    translate, summarise, extract, classify, fix a typo, convert...
                            capped at -2.0: these are the cheap tier's work even on long input.
``math``            +1.2    equations, LaTeX, math vocabulary, many numbers in the ask.
``multi_question``  +0.6    several question marks in the ask, saturating at four: each
                            question is a separate thing to get right.
==================  ======  ==============================================================

The keyword features sum per-keyword weights (each keyword once) and put that
sum into the table's weight of 1.0, so a keyword's own weight is its direct
contribution to the logit.

Bounded cost whatever the request size: keywords, math and questions are read
from the head and tail of the last user message (where the ask usually is,
around pasted material); code and stack traces from the last ``TAIL_CHARS``
characters of non-system messages, newest first (a system prompt is the same on
every request of an app and its JSON schemas look like code); turns and roles
are counted over all messages. Every regular expression is precompiled and
linear-time.

``reasons`` names up to three features whose contribution (weight × value) was
largest in magnitude and at least ``REASON_MIN``; it is empty when nothing stood
out and the bias alone decided.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BIAS", "TAIL_CHARS", "WEIGHTS", "Difficulty", "score"]

BIAS = -2.0

WEIGHTS: dict[str, float] = {
    "long_context": 1.5,
    "code": 1.3,
    "stack_trace": 2.1,
    "many_turns": 0.6,
    "tool_results": 0.7,
    "reasoning": 1.0,
    "open_task": 1.0,
    "simple_task": 1.0,
    "math": 1.2,
    "multi_question": 0.6,
}
"""Logit weight of each feature; the keyword features carry their own per-keyword weights."""

TAIL_CHARS = 8_000
"""Characters of recent conversation scanned for code and stack traces."""

ASK_CHARS = 2_000
"""Characters read from each end of the last user message for keywords, math and questions."""

REASON_MIN = 0.3
"""Smallest contribution to the logit that is reported as a reason."""

_LENGTH_FLOOR = 128
_LENGTH_CEILING = 65_536
_LOG_LENGTH_SPAN = math.log(_LENGTH_CEILING / _LENGTH_FLOOR)

_REASONING_CAP = 3.2
_OPEN_TASK_CAP = 2.2
_SIMPLE_TASK_CAP = -2.0

_SYSTEM_ROLES = frozenset({"system", "developer"})
_TURN_ROLES = frozenset({"user", "assistant"})


@dataclass(frozen=True, slots=True)
class Difficulty:
    """A request's difficulty score and the features that drove it."""

    score: float
    reasons: tuple[str, ...]


# (feature, weight, pattern) for every keyword; each is matched on whole words
# of the lower-cased ask, and counted once however often it appears.
_KEYWORDS: tuple[tuple[str, float, str], ...] = (
    ("reasoning", 1.6, r"prove|proof"),
    ("reasoning", 1.1, r"design(?:ing)?|redesign"),
    ("reasoning", 1.3, r"architect(?:ure|ural|ing)?"),
    ("reasoning", 0.8, r"refactor(?:ing)?"),
    ("reasoning", 0.8, r"optimi[sz](?:e|ing|ation)"),
    ("reasoning", 1.3, r"trade-?offs?"),
    ("reasoning", 0.8, r"pros and cons"),
    ("reasoning", 0.5, r"why"),
    ("reasoning", 0.9, r"debug(?:ging)?"),
    ("reasoning", 1.3, r"race conditions?"),
    ("reasoning", 1.0, r"concurren(?:cy|t)|thread[- ]safe(?:ty)?|deadlocks?|lock-free"),
    ("reasoning", 0.9, r"security|vulnerab\w*|exploit\w*"),
    ("reasoning", 0.8, r"algorithms?"),
    ("reasoning", 0.8, r"complexity|big-o|optimal(?:ity)?"),
    ("reasoning", 0.8, r"scalab\w*|distributed|fault[- ]toleran\w*|high availability"),
    ("reasoning", 0.6, r"consisten(?:cy|t)|invariants?"),
    ("reasoning", 1.0, r"root cause"),
    ("reasoning", 0.6, r"memory leak|leaks?"),
    ("reasoning", 0.5, r"edge cases?|corner cases?"),
    ("reasoning", 0.5, r"bugs?|crash(?:es|ing)?|fail(?:s|ing|ure)?|exceptions?|errors?"),
    ("reasoning", 0.5, r"what(?:'s| is) wrong|not working|doesn'?t work|investigate"),
    ("reasoning", 0.6, r"migrat(?:e|ion|ing)|strateg(?:y|ies)|roadmap"),
    ("reasoning", 0.5, r"best (?:approach|way)|how would you|should i"),
    ("reasoning", 0.6, r"rigorous(?:ly)?|formal(?:ly)?|derive|theorem|lemma"),
    ("open_task", 1.0, r"write|draft"),
    ("open_task", 1.2, r"implement(?:ation|ing)?"),
    ("open_task", 0.8, r"create|build|generate"),
    ("open_task", 1.0, r"explain|describe|elaborate"),
    ("open_task", 0.9, r"in detail|in depth|detailed|thorough(?:ly)?|comprehensive"),
    ("open_task", 1.0, r"compare|comparison|difference between|contrast"),
    ("open_task", 0.5, r"recommend(?:ation)?|advise"),
    ("open_task", 0.6, r"functions?|methods?|class|scripts?|programs?|endpoints?|modules?"),
    ("open_task", 0.6, r"quer(?:y|ies)|components?|regex|schema|dockerfile|pipeline|api"),
    ("open_task", 0.5, r"unit tests?|tests? for|step by step|walk me through|how (?:does|do|can)"),
    ("open_task", 0.7, r"essay|article|blog post|report|proposal"),
    ("simple_task", -1.2, r"translat(?:e|ion)|into (?:english|french|german|spanish|japanese|chinese)"),
    ("simple_task", -1.2, r"summari[sz](?:e|ing)|summary|tl;?dr"),
    ("simple_task", -1.4, r"extract|pull out"),
    ("simple_task", -1.4, r"classify|categori[sz]e|sentiment|(?:label|tag) (?:this|these|each|the)"),
    ("simple_task", -1.2, r"typos?|spelling|grammar|proofread"),
    ("simple_task", -0.8, r"reformat|format (?:this|these|the|it|as)|convert|rephrase|paraphrase|reword|shorten"),
    ("simple_task", -0.6, r"list (?:all|the|every|\d+|three|five|ten)|bullet points|one word|one sentence|yes or no|true or false"),
    ("simple_task", -0.4, r"capital of|who (?:is|was)|when (?:is|was|did)|what time|how many"),
    ("math", 0.8, r"equations?|integral|derivative|solve for|probability|matrix|eigen\w*|polynomial"),
)

_KEYWORD_RE = re.compile(
    r"\b(?:" + "|".join(f"(?P<k{i}>{pattern})" for i, (_, _, pattern) in enumerate(_KEYWORDS)) + r")\b"
)
_KEYWORD_BY_GROUP: dict[str, tuple[str, float]] = {
    f"k{i}": (feature, weight) for i, (feature, weight, _) in enumerate(_KEYWORDS)
}

# Frames and headers of the stack traces of common runtimes.
_TRACE_RE = re.compile(
    r"Traceback \(most recent call last\)"  # Python header
    r"|^[ \t]*File \"[^\"\n]+\", line \d+"  # Python frame
    r"|^[ \t]*at [\w$.<>/]+\([\w$]+\.(?:java|kt|scala|groovy|clj):\d+\)"  # JVM frame
    r"|^[ \t]*at [\w$.<>/]+\((?:Native Method|Unknown Source)\)"  # JVM frame without source
    r"|^[ \t]*at (?:[^\s(]+ )?\(?[^\s()]+\.(?:[cm]?js|tsx?|jsx):\d+:\d+"  # JS/TS frame
    r"|^[ \t]*at [^\n]+ in [^\n]+:line \d+"  # .NET frame
    r"|^Exception in thread \"|^Caused by: "  # JVM headers
    r"|^panic: |goroutine \d+ \[[a-z ]+\]:|\.go:\d+ \+0x[0-9a-f]+"  # Go
    r"|thread '[^'\n]*' panicked at"  # Rust
    r"|^[ \t]*from [^\s:]+\.rb:\d+:in "  # Ruby
    r"|^[ \t]*\d+: 0x[0-9a-f]+ - ",  # Rust backtrace frame
    re.MULTILINE,
)
_ERROR_LINE_RE = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b(?::|\s+at\b)")

_CODE_LINE_RE = re.compile(
    r"^[ \t]*(?:def |class |import |from [\w.]+ import |function\b|const |let |var |return\b|public |private "
    r"|protected |static |#include|fn |func |package |async |await |if ?\(|for ?\(|while ?\(|try ?[:{]|except\b"
    r"|catch ?\(|SELECT |INSERT |UPDATE |CREATE TABLE|@\w+)"
    r"|[;{}][ \t]*$",
    re.MULTILINE,
)

_EQUATION_RE = re.compile(
    r"\d\s*[-+*/^=<>]\s*\(?\d"  # 3 + 4, 2^10, x = 5 after a digit
    r"|\b[a-z]\s*(?:\^|\*\*)\s*\d"  # x^2, n**3
    r"|\b[a-z]\s*[=<>]\s*[-\d(a-z]"  # x = ..., n > 0
    r"|\\(?:frac|sum|int|sqrt|prod|lim|partial|cdot|leq|geq)\b"  # LaTeX
    r"|[∑∫√≤≥≠∂∞π]"
)
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)?")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _ask_of(messages: Sequence[tuple[str, str]]) -> str:
    """The head and tail of the last user message (the last message when no user spoke)."""
    text = ""
    for role, content in reversed(messages):
        if role == "user":
            text = content
            break
    else:
        if messages:
            text = messages[-1][1]
    if len(text) > 2 * ASK_CHARS:
        # Pasted material sits in the middle; the question is at either end.
        return text[:ASK_CHARS] + "\n" + text[-ASK_CHARS:]
    return text


def _recent_text(messages: Sequence[tuple[str, str]]) -> str:
    """Up to ``TAIL_CHARS`` of the newest non-system content, in conversation order."""
    parts: list[str] = []
    budget = TAIL_CHARS
    for role, content in reversed(messages):
        if role in _SYSTEM_ROLES or not content:
            continue
        part = content[-budget:]
        parts.append(part)
        budget -= len(part)
        if budget <= 0:
            break
    parts.reverse()
    return "\n".join(parts)


def score(messages: Sequence[tuple[str, str]], input_tokens: int) -> Difficulty:
    """Score a chat request of ``(role, content)`` pairs whose input is ``input_tokens`` long."""
    features: dict[str, float] = {}

    if input_tokens > _LENGTH_FLOOR:
        features["long_context"] = min(1.0, math.log(input_tokens / _LENGTH_FLOOR) / _LOG_LENGTH_SPAN)

    turns = 0
    tools = 0
    for role, _ in messages:
        if role in _TURN_ROLES:
            turns += 1
        elif role == "tool":
            tools += 1
    if turns > 2:
        features["many_turns"] = min(1.0, (turns - 2) / 14)
    if tools:
        features["tool_results"] = min(1.0, tools / 5)

    recent = _recent_text(messages)
    if recent:
        fences = recent.count("```") // 2
        code_lines = len(_CODE_LINE_RE.findall(recent))
        if fences or code_lines:
            features["code"] = min(1.0, fences + code_lines / 6)
        frames = len(_TRACE_RE.findall(recent))
        if frames:
            features["stack_trace"] = min(1.0, 0.4 + frames / 3)
        elif _ERROR_LINE_RE.search(recent):
            features["stack_trace"] = 0.4

    ask = _ask_of(messages)
    if ask:
        lowered = ask.lower()
        sums = {"reasoning": 0.0, "open_task": 0.0, "simple_task": 0.0, "math": 0.0}
        seen: set[str] = set()
        for match in _KEYWORD_RE.finditer(lowered):
            group = match.lastgroup
            if group is not None and group not in seen:
                seen.add(group)
                feature, weight = _KEYWORD_BY_GROUP[group]
                sums[feature] += weight
        if sums["reasoning"]:
            features["reasoning"] = min(sums["reasoning"], _REASONING_CAP)
        if sums["open_task"]:
            features["open_task"] = min(sums["open_task"], _OPEN_TASK_CAP)
        if sums["simple_task"]:
            features["simple_task"] = max(sums["simple_task"], _SIMPLE_TASK_CAP)

        equations = len(_EQUATION_RE.findall(ask))
        numbers = len(_NUMBER_RE.findall(ask))
        math_value = sums["math"] + 0.35 * equations + max(0, numbers - 6) / 20
        if math_value:
            features["math"] = min(1.0, math_value)

        questions = ask.count("?")
        if questions > 1:
            features["multi_question"] = min(1.0, (questions - 1) / 3)

    logit = BIAS
    contributions: list[tuple[float, str]] = []
    for name, value in features.items():
        contribution = WEIGHTS[name] * value
        logit += contribution
        if abs(contribution) >= REASON_MIN:
            contributions.append((abs(contribution), name))
    contributions.sort(reverse=True)
    return Difficulty(score=_sigmoid(logit), reasons=tuple(name for _, name in contributions[:3]))
