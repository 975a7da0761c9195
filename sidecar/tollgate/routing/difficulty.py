"""A fast heuristic difficulty score in [0, 1] for a chat request.

Used when no task-signal rule decides the tier. The default thresholds send
scores below 0.35 to the cheap tier, 0.35–0.70 to the medium tier and 0.70 and
above to the frontier tier.

The score is ``sigmoid(BIAS + Σ weight × value)``:

==================  ======  ==============================================================
feature (reason)    weight  value, and why the weight
==================  ======  ==============================================================
(bias)              -2.0    a request with no signal scores 0.12: most traffic is simple,
                            and the cheap tier answers it as well.
``long_context``    +1.5    input tokens, log-scaled: 0 at ≤ 128, 1 at ≥ 64k. Long input
                            needs attention over more material, but length alone (a long
                            document to summarise) should reach the medium tier at most.
``code``            +1.3    1 for a code fence, else code-like lines (definitions, imports,
                            closing braces, call statements) / 6, at most 1. Code raises the
                            bar, yet converting a snippet is not frontier work.
``stack_trace``     +2.1    0.4 + frames / 3, at most 1, counting frames and headers of
                            Python, JVM, JS/TS, .NET, Go, Rust and Ruby traces; 0.4 for a
                            bare ``XxxError:`` line. A pasted trace means debugging: with
                            code it must reach the frontier tier on its own, hence the
                            largest single weight.
``many_turns``      +0.6    (user and assistant turns − 2) / 14, at most 1: a long
                            conversation carries state the model must track.
``tool_results``    +0.7    ``tool`` messages / 5, at most 1: an agent in the middle of a task.
``reasoning``       +1.0    sum of reasoning keywords' own weights (design, architecture,
                            prove, trade-off, race condition, security, algorithm, debug...;
                            ``why`` counts 0.5, ``race condition`` 1.3), at most 3.2.
``open_task``       +1.0    sum of open-ended generation keywords' weights (write,
                            implement, explain, in detail, compare...), at most 2.2: enough
                            for the medium tier, never the frontier tier by itself.
``simple_task``     +1.0    sum of simple-task keywords' (negative) weights (translate,
                            summarise, extract, classify, fix typos, convert...), at least
                            −2.0: the cheap tier's work even on long input. A short ask
                            that is an acknowledgement or a greeting ("thanks", "ok, go
                            ahead") takes the floor, whatever code or tool results came
                            before it: they were the previous asks' work.
``math``            +1.2    math keywords' weights + 0.35 per equation-like span, LaTeX
                            command or math symbol + up to 0.5 for many numbers, at most 1.
``multi_question``  +0.6    (question marks − 1) / 3, at most 1: each question is another
                            thing to get right.
==================  ======  ==============================================================

Keywords, math and questions are read from the *ask*: the head and tail
(``ASK_CHARS`` each) of the last user message, where the question sits around
any pasted material. Each keyword counts once however often it appears. Code
and stack traces are read from the last ``TAIL_CHARS`` characters of non-system
messages, newest first: a system prompt is the same on every request of an app,
and its JSON schemas look like code. Turns and roles are counted over all
messages.

The scan runs on every routed request, so its cost is bounded and small:
keywords go through one ``str.translate`` and a set intersection instead of a
regular expression per word; math through a byte translation and substring
counts; code lines and trace frames through expressions that only start at line
breaks (a literal prefix the regex engine skips to quickly) and stop once their
feature saturates; bare error lines through one literal search, only when no
frame was found. Every expression is linear-time, so even adversarial text costs
well under a millisecond.

``reasons`` names up to three features whose contribution (weight × value)
was largest in magnitude and at least ``REASON_MIN``; it is empty when nothing
stood out and the bias alone decided.

Why one long module: its keyword table, patterns and weights are one calibrated model, and
the classifier reads its feature values from here (``feature_values``).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["ASK_CHARS", "BIAS", "REASON_MIN", "TAIL_CHARS", "WEIGHTS", "Difficulty", "score"]

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
"""Logit weight of each feature; keyword features carry their own per-keyword weights."""

TAIL_CHARS = 8_000
"""Characters of recent conversation scanned for code and stack traces."""

ASK_CHARS = 1_000
"""Characters read from each end of the last user message for keywords, math and questions."""

REASON_MIN = 0.3
"""Smallest contribution to the logit that is reported as a reason."""

_LENGTH_FLOOR = 128
_LENGTH_CEILING = 65_536
_LOG_LENGTH_SPAN = math.log(_LENGTH_CEILING / _LENGTH_FLOOR)

_CAPS = {"reasoning": (0.0, 3.2), "open_task": (0.0, 2.2), "simple_task": (-2.0, 0.0), "math": (0.0, 1.0)}
_CODE_LINES_FOR_FULL = 6
_FRAMES_FOR_FULL = 2

_SHORT_ASK_CHARS = 60
_SHORT_ASK_WORDS = 8
_ACKNOWLEDGEMENTS = frozenset(
    ["thanks", "thank", "thx", "ty", "ok", "okay", "great", "perfect", "cool", "nice", "hi", "hello", "hey",
     "bye", "goodbye", "lgtm", "sure"]
)
_PUNCTUATION_TO_SPACE = str.maketrans({c: " " for c in string.punctuation})

_SYSTEM_ROLES = frozenset({"system", "developer"})
_TURN_ROLES = frozenset({"user", "assistant"})


@dataclass(frozen=True, slots=True)
class Difficulty:
    """A request's difficulty score and the features that drove it."""

    score: float
    reasons: tuple[str, ...]


# (feature, weight, terms): "|"-separated words, or phrases (with spaces) matched at
# a word start, so "race condition" also finds "race conditions". A trailing space
# ends a phrase at a word boundary. One match per row counts, however many terms hit.
_KEYWORDS: tuple[tuple[str, float, str], ...] = (
    ("reasoning", 1.6, "prove|proves|proving|proof|proofs"),
    ("reasoning", 1.1, "design|designs|designing|redesign"),
    ("reasoning", 1.3, "architecture|architectures|architectural|architect|architecting"),
    ("reasoning", 0.8, "refactor|refactoring|refactored"),
    ("reasoning", 0.8, "optimize|optimise|optimizing|optimising|optimization|optimisation|optimized"),
    ("reasoning", 1.3, "trade-off|trade-offs|tradeoff|tradeoffs|trade offs"),
    ("reasoning", 0.8, "pros and cons"),
    ("reasoning", 0.5, "why"),
    ("reasoning", 0.9, "debug|debugging|debugger"),
    ("reasoning", 1.3, "race condition|data race"),
    ("reasoning", 1.0, "concurrency|concurrent|concurrently|thread-safe|thread-safety|thread safe|thread safety"
     "|deadlock|deadlocks|lock-free|mutex|mutexes"),
    ("reasoning", 0.9, "security|vulnerability|vulnerabilities|vulnerable|exploit|exploits|exploitable"
     "|injection|xss|csrf"),
    ("reasoning", 0.8, "algorithm|algorithms|algorithmic"),
    ("reasoning", 0.8, "complexity|big-o|optimal|optimality|asymptotic"),
    ("reasoning", 0.8, "scalable|scalability|scaling|distributed|fault tolerance|fault tolerant"
     "|high availability"),
    ("reasoning", 0.6, "consistency|consistent|invariant|invariants|idempotent|idempotency"),
    ("reasoning", 1.0, "root cause"),
    ("reasoning", 0.6, "leak|leaks|leaking"),
    ("reasoning", 0.5, "edge case|corner case"),
    ("reasoning", 0.5, "bug|bugs|crash|crashes|crashing|crashed|fail|fails|failing|failure|failures"
     "|exception|exceptions|error|errors|broken|breaks"),
    ("reasoning", 0.5, "what's wrong|what is wrong|not working|doesn't work|does not work|investigate|diagnose"),
    ("reasoning", 0.6, "migrate|migration|migrating|strategy|strategies|roadmap"),
    ("reasoning", 0.5, "best approach|best way|how would you|should i |should we "),
    ("reasoning", 0.6, "rigorous|rigorously|formally|derive|derivation|theorem|lemma|induction"),
    ("open_task", 1.0, "write|writing|draft"),
    ("open_task", 1.2, "implement|implementation|implementing"),
    ("open_task", 0.8, "create|build|generate"),
    ("open_task", 1.0, "explain|explanation|describe|elaborate"),
    ("open_task", 0.9, "detailed|thorough|thoroughly|comprehensive|in-depth|in detail|in depth"),
    ("open_task", 1.0, "compare|comparison|contrast|versus|difference between|differences between"),
    ("open_task", 0.5, "recommend|recommendation|advise"),
    ("open_task", 0.6, "function|functions|method|methods|class|classes|script|scripts|program|endpoint"
     "|endpoints|module"),
    ("open_task", 0.6, "query|queries|component|components|regex|schema|dockerfile|pipeline|api"),
    ("open_task", 0.5, "unit test|tests for|test for|step by step|walk me through|how does|how do|how can"),
    ("open_task", 0.7, "essay|article|report|proposal|blog post"),
    ("simple_task", -1.2, "translate|translation|translating"),
    ("simple_task", -1.2, "summarize|summarise|summary|summarizing|summarising|tldr|tl dr"),
    ("simple_task", -1.4, "extract|extracting|pull out"),
    ("simple_task", -1.4, "classify|categorize|categorise|sentiment|label this|label each|tag this|tag each"),
    ("simple_task", -1.2, "typo|typos|spelling|grammar|proofread"),
    ("simple_task", -0.8, "reformat|convert|rephrase|paraphrase|reword|shorten|format this|format as"
     "|format the"),
    ("simple_task", -0.6, "list all|list the|bullet points|one word|one sentence|one-line|one line|yes or no"
     "|true or false"),
    ("simple_task", -1.2, "commit message|commit messages"),
    ("simple_task", -0.4, "capital of|who is|who was|when did|when was|how many|what time"),
    ("math", 0.8, "equation|equations|integral|derivative|probability|matrix|eigenvalue|eigenvalues"
     "|eigenvector|polynomial|solve for"),
)

_Entry = tuple[int, str, float, str]  # (row, feature, weight, phrase or "")


def _keyword_table() -> dict[str, tuple[_Entry, ...]]:
    """Index every term by its first word, so one set intersection finds all candidates."""
    table: dict[str, list[_Entry]] = {}
    for row, (feature, weight, terms) in enumerate(_KEYWORDS):
        for term in terms.split("|"):
            first = term.split()[0]
            phrase = " " + term if " " in term else ""
            table.setdefault(first, []).append((row, feature, weight, phrase))
    return {word: tuple(entries) for word, entries in table.items()}


_KEYWORD_TABLE = _keyword_table()
_KEYWORD_WORDS = frozenset(_KEYWORD_TABLE)

# Punctuation splits words, except the apostrophes and hyphens inside "what's" and "trade-off".
_WORD_BREAKS = str.maketrans(
    {c: " " for c in string.punctuation if c not in "'-"} | {"\u2019": "'", "\u201c": " ", "\u201d": " "}
)

# Bytes of the ask mapped to classes: digit -> 0, letter -> a, operator -> +, space and
# minus kept, anything else (including every byte of non-ASCII text) -> ".". Equations
# then show up as short runs such as "0+0" or "a + 0" that a substring count finds.
_MATH_CLASSES = bytes(
    ord("0") if chr(b).isdigit() and b < 128
    else ord("a") if chr(b).isalpha() and b < 128
    else ord("+") if chr(b) in "+*^=<>"
    else b if chr(b) in " -"
    else ord(".")
    for b in range(256)
)
_EQUATION_SHAPES = (b"0+0", b"0 + 0", b"0 - 0", b"a+0", b"a + 0", b"a + a")
_DIGITS_ONLY = bytes(b if 48 <= b <= 57 else 32 for b in range(256))
_LATEX = (b"\\frac", b"\\sum", b"\\int", b"\\sqrt", b"\\prod", b"\\lim", b"\\partial")
# UTF-8 lead bytes of U+2200–U+22FF, the Mathematical Operators block (∑ ∫ √ ≤ ≠ ...).
_MATH_OPERATOR_PREFIXES = (b"\xe2\x88", b"\xe2\x89", b"\xe2\x8a", b"\xe2\x8b")

# Frames and headers of common runtimes' stack traces. Every alternative starts at a
# line break and opens with a literal, so a line that is not a frame costs a few
# character tests; every repetition is bounded or possessive, so a long line costs
# at most a few hundred steps.
_TRACE_LINE_RE = re.compile(
    r"\n(?:"
    r"[ \t]++(?:"
    r"at (?:[^\s(]{1,300}+\((?:Native Method|Unknown Source|[^)\n]{0,300}+\) in )"  # JVM native, .NET
    r"|[^\n]{0,300}?\.(?:java|kt|scala|groovy|clj|[cm]?js|tsx?|jsx):\d)"  # JVM, JS/TS
    r"|File \"[^\"\n]{1,500}+\", line \d"  # Python
    r"|from [^\s:]{1,300}\.rb:\d"  # Ruby
    r"|[\w./\\:-]{1,300}\.go:\d+ \+0x"  # Go
    r")"
    r"|Traceback \(most recent call last\)|Exception in thread \"|Caused by: |panic: "
    r"|goroutine \d+ \[|thread '[^'\n]{0,100}+' panicked at "
    r")"
)
# "KeyError:", "java.lang.NullPointerException:", "TypeError: x is not a function".
_ERROR_RE = re.compile(r"(?:Error|Exception)(?::|\s+at\b)")

# Lines that look like code in common languages; the lookahead rejects blank and
# punctuation-led lines with one test before trying the alternatives.
_CODE_LINE_RE = re.compile(
    r"\n[ \t]*+(?=[\w#}@])(?:def |class |import |from [\w.]{1,100}+ import |function[ (]|const |let |var "
    r"|return[ ;\n]|public |private |protected |static |#include|fn |func |package |if \(|for \(|while \("
    r"|try[ :{]|except[ :]|catch \(|\}|@\w|SELECT |INSERT |UPDATE |CREATE |[\w.]{1,100}+ := "
    r"|[\w.\[\]]{1,100}+ = |[\w.]{1,100}+\([^)\n]{0,300}+\);)"
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _ask_of(messages: Sequence[tuple[str, str]]) -> str:
    """The head and tail of the last user message (of the last message when no user spoke)."""
    text = ""
    for role, content in reversed(messages):
        if role == "user":
            text = content
            break
    else:
        if messages:
            text = messages[-1][1]
    if len(text) > 2 * ASK_CHARS:
        return text[:ASK_CHARS] + "\n" + text[-ASK_CHARS:]
    return text


def _recent_text(messages: Sequence[tuple[str, str]]) -> str:
    """Up to ``TAIL_CHARS`` of the newest non-system content, in order, each part after a line break."""
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
    if not parts:
        return ""
    parts.append("")
    parts.reverse()
    return "\n".join(parts)


def _code_value(recent: str) -> float:
    if "```" in recent:
        return 1.0
    lines = 0
    for _ in _CODE_LINE_RE.finditer(recent):
        lines += 1
        if lines == _CODE_LINES_FOR_FULL:
            break
    return lines / _CODE_LINES_FOR_FULL


def _trace_value(recent: str) -> float:
    frames = 0
    for _ in _TRACE_LINE_RE.finditer(recent):
        frames += 1
        if frames == _FRAMES_FOR_FULL:
            return 1.0
    if frames:
        return 0.4 + frames / 3
    # A bare error line without frames is a weaker sign of debugging.
    return 0.4 if _ERROR_RE.search(recent) else 0.0


def _keyword_sums_text(ask: str) -> dict[str, float]:
    """Per-feature sums of the weights of the keywords found in ``ask``, over its characters.

    The path for text with whitespace outside ASCII, where ``str.split`` and
    ``bytes.split`` disagree; ``_keyword_sums`` gives the same result faster otherwise.
    """
    return _sum_hits(ask.lower().translate(_WORD_BREAKS).split(), _KEYWORD_TABLE, _KEYWORD_WORDS, " ")


AnyStr = TypeVar("AnyStr", str, bytes)


def _sum_hits(words: list[AnyStr], table: Mapping[AnyStr, tuple[tuple[int, str, float, AnyStr], ...]],
              keywords: frozenset[AnyStr], space: AnyStr) -> dict[str, float]:
    """The weights of the table's keywords among ``words`` (and of its phrases in them), by feature."""
    hits = keywords.intersection(words)
    sums: dict[str, float] = {}
    if not hits:
        return sums
    padded = space[:0]
    seen: set[int] = set()
    # Sorted so the float sums, and so the score, are the same in every process (UTF-8 bytes sort as
    # their strings do, so the bytes path adds in the same order too).
    for word in sorted(hits):
        for row, feature, weight, phrase in table[word]:
            if row in seen:
                continue
            if phrase:
                if not padded:
                    padded = space + space.join(words) + space
                if phrase not in padded:
                    continue
            seen.add(row)
            sums[feature] = sums.get(feature, 0.0) + weight
    return sums


# The heuristic's keyword table over bytes, for the fast path of ``_keyword_sums``.
_KEYWORD_BYTES = {
    word.encode(): tuple((row, feature, weight, phrase.encode()) for row, feature, weight, phrase in entries)
    for word, entries in _KEYWORD_TABLE.items()
}
_KEYWORD_BYTES_WORDS = frozenset(_KEYWORD_BYTES)
# ASCII punctuation but ' and - splits words, as in the heuristic; so do the separators
# \x1c-\x1f, which str.split() treats as whitespace and bytes.split() does not.
_KEYWORD_BREAKS = bytes(
    32 if (chr(b) in string.punctuation and chr(b) not in "'-") or 0x1C <= b <= 0x1F else b for b in range(256)
)
# Whitespace outside ASCII, where str.split() and bytes.split() would disagree.
_UNICODE_SPACE = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def _keyword_sums(ask: str, low: str) -> dict[str, float]:
    """Per-feature sums of the weights of the keywords found in ``ask`` (``low`` is ``ask.lower()``).

    Mapping punctuation with ``str.translate`` and a dict costs ~40 ns a character;
    one ``bytes.translate`` over the UTF-8 text does the same, since every keyword and
    every mapped character but three quotes is ASCII. Text with non-ASCII whitespace
    takes ``_keyword_sums_text``.
    """
    if not low.isascii():
        if _UNICODE_SPACE.search(low):
            return _keyword_sums_text(ask)
        low = low.replace("\u2019", "'").replace("\u201c", " ").replace("\u201d", " ")
    words = low.encode("utf-8", "surrogatepass").translate(_KEYWORD_BREAKS).split()
    return _sum_hits(words, _KEYWORD_BYTES, _KEYWORD_BYTES_WORDS, b" ")


def _math_markers(ask: str) -> float:
    """Equation-like spans, LaTeX commands and operator symbols scaled, plus many numbers."""
    raw = ask.encode("utf-8", "surrogatepass")
    shapes = raw.translate(_MATH_CLASSES)
    markers = 0
    # Each presence test is one pass that usually fails, sparing the counts behind it.
    if b"+" in shapes or b" - " in shapes:
        markers += sum(shapes.count(shape) for shape in _EQUATION_SHAPES)
    if b"\\" in raw:
        markers += sum(raw.count(command) for command in _LATEX)
    if b"\xe2" in raw:
        markers += sum(raw.count(prefix) for prefix in _MATH_OPERATOR_PREFIXES)
    numbers = len(raw.translate(_DIGITS_ONLY).split()) if b"0" in shapes else 0
    return 0.35 * markers + min(0.5, max(0, numbers - 6) / 20)


def feature_values(messages: Sequence[tuple[str, str]], input_tokens: int, ask: str | None = None,
                   low: str | None = None) -> dict[str, float]:
    """The heuristic's feature values of a request: the one implementation, shared with the classifier.

    ``ask`` (the text of the request's latest ask, ``_ask_of``) and ``low`` (its
    lowercase) may be passed when the caller already has them.
    """
    values: dict[str, float] = {}

    if input_tokens > _LENGTH_FLOOR:
        values["long_context"] = min(1.0, math.log(input_tokens / _LENGTH_FLOOR) / _LOG_LENGTH_SPAN)

    turns = 0
    tools = 0
    for role, _ in messages:
        if role in _TURN_ROLES:
            turns += 1
        elif role == "tool":
            tools += 1
    if turns > 2:
        values["many_turns"] = min(1.0, (turns - 2) / 14)
    if tools:
        values["tool_results"] = min(1.0, tools / 5)

    recent = _recent_text(messages)
    if recent:
        values["code"] = _code_value(recent)
        values["stack_trace"] = _trace_value(recent)

    if ask is None:
        ask = _ask_of(messages)
    if ask:
        sums = _keyword_sums(ask, ask.lower() if low is None else low)
        sums["math"] = sums.get("math", 0.0) + _math_markers(ask)
        for feature, total in sums.items():
            floor, ceiling = _CAPS[feature]
            values[feature] = min(max(total, floor), ceiling)
        questions = ask.count("?")
        if questions > 1:
            values["multi_question"] = min(1.0, (questions - 1) / 3)
        if len(ask) <= _SHORT_ASK_CHARS and _is_acknowledgement(ask.lower() if low is None else low):
            # "thanks", "ok go ahead": the conversation's code and tool results are done work, not this ask's.
            values["simple_task"] = _CAPS["simple_task"][0]
    return values


def _is_acknowledgement(low: str) -> bool:
    words = low.translate(_PUNCTUATION_TO_SPACE).split()
    return len(words) <= _SHORT_ASK_WORDS and not _ACKNOWLEDGEMENTS.isdisjoint(words)


def score(messages: Sequence[tuple[str, str]], input_tokens: int) -> Difficulty:
    """Score a chat request of ``(role, content)`` pairs whose input is ``input_tokens`` long."""
    values = feature_values(messages, input_tokens)

    logit = BIAS
    contributions: list[tuple[float, str]] = []
    for name, value in values.items():
        contribution = WEIGHTS[name] * value
        logit += contribution
        if abs(contribution) >= REASON_MIN:
            contributions.append((abs(contribution), name))
    contributions.sort(reverse=True)
    return Difficulty(score=_sigmoid(logit), reasons=tuple(name for _, name in contributions[:3]))
