"""A learned difficulty classifier: the probability that the cheap model is good enough.

Logistic regression over two kinds of features, scored in well under a millisecond
with numpy alone:

- **Hashed n-grams** of the *ask* (the head and tail of the last user message, as in
  ``difficulty.py``), lowercased, digits folded to ``0``: word unigrams and bigrams,
  and byte 3-, 4- and 5-grams. Each is hashed into ``2**18`` buckets with a sign
  (the "hashing trick"). The hash is fixed arithmetic, never Python's per-process
  ``hash``: words go through CRC-32; byte n-grams are packed into an integer as they
  are (five bytes fit); every code then goes through a multiply-xorshift-multiply
  mix whose top 18 bits pick the bucket and the next bit the sign. Each family's
  values are scaled by ``1/sqrt(count)`` so a long prompt does not shout. The
  request's task type, when it has one, is one more hashed feature: a learned
  offset per task type (an MMLU subject, or an application's own labels).
- **The heuristic's own features** (``long_context``, ``code``, ``stack_trace``,
  ``many_turns``, ``tool_results``, ``reasoning``, ``open_task``, ``simple_task``,
  ``math``, ``multi_question``) plus ``log_tokens``. Training pulls their weights
  towards minus the heuristic's weights rather than towards zero, so a signal the
  training data never shows (public benchmarks have no stack traces) keeps the
  heuristic's judgement instead of being ignored.

The logit is then Platt-scaled on out-of-fold predictions, so the output is a
calibrated ``p(cheap ok)``; ``1 - p`` is the request's difficulty. Training lives in
``train.py``; the label definition is ``LABEL_DEFINITION``.

Model files are ``.npz`` archives of plain arrays (loaded without pickle) with a
JSON metadata blob: format version, feature spec, label, training-set hash, date,
metrics and provenance. ``Classifier.predict`` re-reads the file at most once per
``reload_interval`` seconds when its modification time or size changed, so a
retrained model can be dropped in place (write it elsewhere, then rename it over
the old one). A file that fails to load is logged and the previous model is kept.

Why one long module: the feature hashing, the model file and inference must agree to the bit
between training and serving; keeping them together keeps that contract in one place.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import math
import os
import string
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Catalog
from ..config import RoutingConfig
from . import difficulty
from .operating_point import OperatingPoint, ValidationCurve, ValidationError, derive
from .rules import Source, TierRequirement

__all__ = [
    "BUCKETS",
    "DENSE_FEATURES",
    "FEATURE_SPEC",
    "FORMAT",
    "FORMAT_VERSION",
    "LABEL_DEFINITION",
    "Classifier",
    "ClassifierError",
    "Features",
    "decode_features",
    "default_model_path",
    "encode_features",
    "featurize",
    "open_classifier",
    "point_thresholds",
    "requirement_from_probability",
]

log = logging.getLogger(__name__)

FORMAT = "tollgate-difficulty-classifier"
FORMAT_VERSION = 1
HASH_BITS = 18
BUCKETS = 1 << HASH_BITS
CHAR_NGRAMS = (3, 4, 5)
WORD_NGRAMS = (1, 2)

DENSE_FEATURES: tuple[str, ...] = (*difficulty.WEIGHTS, "log_tokens")
"""The heuristic's feature values (0 when absent), then log(1 + input tokens) / log(65536)."""

FEATURE_SPEC: dict[str, Any] = {
    "scheme": "tollgate-hash-v1",
    "hash_bits": HASH_BITS,
    "text": f"ask: last user message, first and last {difficulty.ASK_CHARS} chars, lowercased, digits -> 0",
    "char_ngrams": list(CHAR_NGRAMS),
    "word_ngrams": list(WORD_NGRAMS),
    "task_type": "the request's task type, when it has one, as one hashed feature of value 1",
    "dense": list(DENSE_FEATURES),
}
"""What a model file must have been trained on; any change to featurization changes it."""

LABEL_DEFINITION = "cheap_ok = score(weak) >= score(strong)"
"""The training target: the weak model did at least as well as the strong one on the prompt."""

DEFAULT_MODEL = "default_classifier.npz"

_U = np.uint64
_MIX1 = _U(0xFF51AFD7ED558CCD)
_MIX2 = _U(0xC4CEB9FE1A85EC53)
_SHIFT_MIX = _U(29)
_SHIFT_SLOT = _U(64 - HASH_BITS - 1)
_TAG_WORD = _U(1 << 56)
_TAG_TASK = _U(2 << 56)
_TAG_CHAR = {n: _U(n << 56) for n in CHAR_NGRAMS}
_LOG_TOKENS_SPAN = math.log(65_536)

# Byte maps over UTF-8: digits fold to "0" (a number's value says little, its shape
# a lot); for words, ASCII punctuation becomes a separator too.
_CHAR_TABLE = bytes(48 if 48 <= b <= 57 else b for b in range(256))
_WORD_TABLE = bytes(
    48 if 48 <= b <= 57 else 32 if b < 128 and chr(b) in string.punctuation else b for b in range(256)
)


class ClassifierError(ValueError):
    """A model file that cannot be used; the message names the file and what to do."""


@dataclass(frozen=True, slots=True)
class Features:
    """One request's features: hashed (bucket, value) pairs, possibly repeated, and the dense vector."""

    buckets: np.ndarray
    values: np.ndarray
    dense: np.ndarray


def _mix(codes: np.ndarray) -> np.ndarray:
    h = codes * _MIX1
    h ^= h >> _SHIFT_MIX
    h *= _MIX2
    return h


def _slots(raw: bytes, task_type: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Each n-gram's slot (bucket × 2 + sign bit) and the size of each n-gram family, in order."""
    families: list[np.ndarray] = []
    if task_type:
        # Its own family of one: a learned offset per task type, kept apart from the words.
        families.append(np.array([zlib.crc32(task_type.encode("utf-8", "surrogatepass"))], dtype=np.uint64) + _TAG_TASK)
    # Whitespace runs collapse to one space, so layout does not change the n-grams.
    text = b" ".join(raw.translate(_CHAR_TABLE).split())
    b = np.frombuffer(text, dtype=np.uint8).astype(np.uint64)
    if len(b) >= CHAR_NGRAMS[0]:
        # Pack each n-gram's bytes into one integer, growing the 3-grams into 4- and 5-grams.
        code = b[:-2] | (b[1:-1] << _U(8)) | (b[2:] << _U(16))
        families.append(code + _TAG_CHAR[3])
        for n in CHAR_NGRAMS[1:]:
            if len(b) < n:
                break
            code = code[:-1] | (b[n - 1:] << _U(8 * (n - 1)))
            families.append(code + _TAG_CHAR[n])
    words = raw.translate(_WORD_TABLE).split()
    if words:
        crc = np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=len(words))
        families.append(crc + _TAG_WORD)
        if len(crc) > 1:
            families.append((crc[:-1] << _U(32)) | crc[1:])
    if not families:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.int64)
    counts = np.fromiter((len(f) for f in families), dtype=np.int64, count=len(families))
    return (_mix(np.concatenate(families)) >> _SHIFT_SLOT).astype(np.intp), counts


def _hashed(raw: bytes, task_type: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Buckets and signed, family-scaled values of the n-grams of the lowercased ask's UTF-8 bytes."""
    return _buckets_and_values(*_slots(raw, task_type))


def _buckets_and_values(slots: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slots (bucket × 2 + sign bit) as buckets and signed values, each family scaled by 1/sqrt(its size)."""
    values = 1.0 - 2.0 * (slots & 1)
    values *= np.repeat(1.0 / np.sqrt(counts), counts)
    return slots >> 1, values


def _dense(messages: Sequence[tuple[str, str]], input_tokens: int, ask: str, low: str) -> np.ndarray:
    """The heuristic's feature values (``difficulty.feature_values``), and the length on a log scale."""
    values = difficulty.feature_values(messages, input_tokens, ask, low)
    values["log_tokens"] = math.log1p(max(input_tokens, 0)) / _LOG_TOKENS_SPAN
    return np.array([values.get(name, 0.0) for name in DENSE_FEATURES], dtype=np.float64)


def featurize(messages: Sequence[tuple[str, str]], input_tokens: int, task_type: str = "") -> Features:
    """The features of a chat request of ``(role, content)`` pairs; training and serving share this."""
    ask = difficulty._ask_of(messages)
    low = ask.lower()
    buckets, values = _hashed(low.encode("utf-8", "surrogatepass"), task_type)
    return Features(buckets, values, _dense(messages, input_tokens, ask, low))


def encode_features(messages: Sequence[tuple[str, str]], input_tokens: int, task_type: str = "") -> dict[str, Any]:
    """A request's features as JSON, without its text: what the decision log keeps for training.

    The hashed n-gram slots (bucket × 2 + sign) go as little-endian uint32 in base64,
    with each family's size, so ``decode_features`` rebuilds exactly what
    ``featurize`` computes. Hashing is one-way, but short n-grams of a guessable text
    can be confirmed by hashing guesses: treat the log as sensitive, not as anonymous.
    """
    ask = difficulty._ask_of(messages)
    low = ask.lower()
    slots, counts = _slots(low.encode("utf-8", "surrogatepass"), task_type)
    return {
        "scheme": FEATURE_SPEC["scheme"],
        "slots": base64.b64encode(slots.astype("<u4").tobytes()).decode("ascii"),
        "counts": counts.tolist(),
        "dense": [round(float(v), 6) for v in _dense(messages, input_tokens, ask, low)],
    }


def decode_features(obj: Any) -> Features:
    """``Features`` from ``encode_features``' JSON; ``ValueError`` says what is wrong."""
    if not isinstance(obj, dict) or obj.get("scheme") != FEATURE_SPEC["scheme"]:
        scheme = obj.get("scheme") if isinstance(obj, dict) else None
        raise ValueError(f"features must be an object of scheme {FEATURE_SPEC['scheme']!r}, got scheme {scheme!r}")
    try:
        slots = np.frombuffer(base64.b64decode(obj["slots"], validate=True), dtype="<u4").astype(np.intp)
        counts = np.array(obj["counts"], dtype=np.int64)
        dense = np.array(obj["dense"], dtype=np.float64)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"features need base64 slots, counts and dense values: {exc}") from None
    if counts.ndim != 1 or (counts <= 0).any() or int(counts.sum()) != len(slots):
        raise ValueError("features.counts must be positive family sizes that add up to the number of slots")
    if dense.shape != (len(DENSE_FEATURES),) or not np.isfinite(dense).all():
        raise ValueError(f"features.dense must hold {len(DENSE_FEATURES)} finite numbers ({', '.join(DENSE_FEATURES)})")
    if len(slots) and int(slots.max()) >= 2 * BUCKETS:
        raise ValueError(f"features.slots must be below {2 * BUCKETS}")
    return Features(*_buckets_and_values(slots, counts), dense)


def heuristic_prior() -> np.ndarray:
    """Prior mean of the dense weights: the heuristic's weights, negated (they predict difficulty)."""
    return np.array([-difficulty.WEIGHTS.get(name, 0.0) for name in DENSE_FEATURES], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Params:
    weights: np.ndarray  # BUCKETS float32, zero where the file has no weight
    signed: np.ndarray  # 2 × BUCKETS: slot 2k holds +weights[k], slot 2k+1 holds -weights[k]
    dense: np.ndarray
    intercept: float
    platt_a: float
    platt_b: float
    open_a: float
    """Platt's pair for requests without a task type (open-ended traffic), when calibrated apart."""
    open_b: float
    metadata: dict[str, Any] = field(default_factory=dict)
    validation: ValidationCurve | None = None
    validation_typed: ValidationCurve | None = None
    """The curve of requests with a task type, when the model has one apart."""


def _params(
    weights: np.ndarray, dense: np.ndarray, intercept: float, platt: Sequence[float], metadata: dict[str, Any]
) -> _Params:
    weights = np.asarray(weights, dtype=np.float32)
    # Folding the sign into the table turns a hashed n-gram's signed weight into one lookup.
    signed = np.empty(2 * BUCKETS, dtype=np.float32)
    signed[0::2] = weights
    signed[1::2] = -weights
    curves: dict[str, ValidationCurve] = {}
    for key in ("validation", "validation_typed"):
        if key in metadata:
            try:
                curves[key] = ValidationCurve.from_metadata(metadata[key])
            except (ValidationError, AttributeError) as exc:
                raise ClassifierError(f"the model's {key} curve is unusable: {exc}") from None
    a, b = float(platt[0]), float(platt[1])
    open_a, open_b = (float(platt[2]), float(platt[3])) if len(platt) == 4 else (a, b)
    return _Params(weights, signed, np.asarray(dense, dtype=np.float64), float(intercept), a, b, open_a, open_b,
                   metadata, curves.get("validation"), curves.get("validation_typed"))


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class Classifier:
    """A loaded model: ``predict`` gives p(cheap model good enough) for a request."""

    def __init__(
        self,
        params: _Params,
        *,
        path: str | Path | None = None,
        reload_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        stamp: tuple[int, int] | None = None,
    ) -> None:
        self._params = params
        self._path = Path(path) if path is not None else None
        self._stamp = stamp
        self.reload_interval = reload_interval
        self._clock = clock
        self._checked = clock()
        self._failed_stamp: tuple[int, int] | None = None
        self._points: dict[tuple[float, float, bool], OperatingPoint | None] = {}

    @classmethod
    def from_weights(
        cls,
        weights: np.ndarray,
        dense: np.ndarray,
        intercept: float,
        *,
        platt: Sequence[float] = (1.0, 0.0),
        metadata: dict[str, Any] | None = None,
    ) -> Classifier:
        """A classifier held in memory (training builds one before saving it)."""
        if weights.shape != (BUCKETS,) or dense.shape != (len(DENSE_FEATURES),):
            raise ClassifierError(
                f"weights must have shapes ({BUCKETS},) and ({len(DENSE_FEATURES)},), "
                f"got {weights.shape} and {dense.shape}"
            )
        return cls(_params(weights, dense, intercept, platt, dict(metadata or {})))

    @classmethod
    def load(
        cls, path: str | Path, *, reload_interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> Classifier:
        """Read a model file; ``ClassifierError`` says what is wrong with a bad one."""
        path = Path(path)
        try:
            # Stamped before reading: a file replaced meanwhile then differs from the stamp and is reloaded.
            stamp = _stamp(path)
        except OSError:
            raise ClassifierError(f"{path}: no such classifier file") from None
        return cls(_read(path), path=path, reload_interval=reload_interval, clock=clock, stamp=stamp)

    @property
    def metadata(self) -> dict[str, Any]:
        """The model file's metadata (format, features, label, training set, metrics, provenance)."""
        return self._params.metadata

    @property
    def path(self) -> Path | None:
        """The file this model was loaded from, if any."""
        return self._path

    @property
    def validation(self) -> ValidationCurve | None:
        """The model's validation curve (out-of-sample predictions with both models' quality), if it has one."""
        return self._params.validation

    def operating_point(self, target: float, frontier_share: float = 0.2, typed: bool = False) -> OperatingPoint | None:
        """The thresholds ``routing.quality_target`` gives on this model's validation curve (``None``: no curve).

        ``typed``: for a request with a task type, which has a curve (and a calibration) of its own
        when the model was trained on both kinds.
        """
        key = (target, frontier_share, typed)
        try:
            return self._points[key]
        except KeyError:
            pass
        point = self._points[key] = _point(self._params, key)
        return point

    def raw_logit(self, features: Features) -> float:
        """The logit before calibration (what Platt scaling is fitted on), from computed features."""
        p = self._params
        return float(p.weights[features.buckets] @ features.values) + float(p.dense @ features.dense) + p.intercept

    def logit(self, features: Features, typed: bool = True) -> float:
        """The calibrated logit of p(cheap ok), from computed features; ``typed``: the request had a task type."""
        p = self._params
        a, b = (p.platt_a, p.platt_b) if typed else (p.open_a, p.open_b)
        return a * self.raw_logit(features) + b

    def predict_features(self, features: Features, typed: bool = True) -> float:
        """p(the cheap model is good enough) from computed features (a decision log's, say)."""
        return _sigmoid(self.logit(features, typed))

    def predict(self, messages: Sequence[tuple[str, str]], input_tokens: int, task_type: str = "") -> float:
        """p(the cheap model is good enough) for a request, in (0, 1)."""
        if self._path is not None:
            now = self._clock()
            if now - self._checked >= self.reload_interval:
                self._checked = now
                self.reload_if_changed()
        p = self._params
        # featurize() and logit() inlined, with the signed table: this runs on every routed request.
        ask = difficulty._ask_of(messages)
        low = ask.lower()
        raw = p.intercept + float(p.dense @ _dense(messages, input_tokens, ask, low))
        slots, counts = _slots(low.encode("utf-8", "surrogatepass"), task_type)
        if len(slots):
            per_family = np.add.reduceat(p.signed[slots], np.cumsum(counts) - counts)
            raw += float(per_family @ (1.0 / np.sqrt(counts)))
        if task_type:
            return _sigmoid(p.platt_a * raw + p.platt_b)
        return _sigmoid(p.open_a * raw + p.open_b)

    def reload_if_changed(self) -> bool:
        """Re-read the model file if its mtime or size changed; ``True`` if a new model is now in use.

        A file that fails to load (half-written, wrong version) is logged once and the
        current model stays in use.
        """
        if self._path is None:
            return False
        try:
            stamp = _stamp(self._path)
        except OSError as exc:
            if self._failed_stamp != (-1, -1):
                self._failed_stamp = (-1, -1)
                log.warning("classifier file unreadable, keeping the loaded model",
                            extra={"fields": {"path": str(self._path), "error": str(exc)}})
            return False
        if stamp == self._stamp or stamp == self._failed_stamp:
            return False
        try:
            params = _read(self._path)
        except ClassifierError as exc:
            self._failed_stamp = stamp
            log.warning("classifier file changed but cannot be loaded, keeping the loaded model",
                        extra={"fields": {"path": str(self._path), "error": str(exc)}})
            return False
        if self._params.validation is not None and params.validation is None:
            self._failed_stamp = stamp
            log.warning("classifier file changed but has no validation curve, which routing.quality_target "
                        "derives its thresholds from; keeping the loaded model",
                        extra={"fields": {"path": str(self._path)}})
            return False
        self._params = params
        # The points in use are derived again now, while the file is being read anyway, not by the next Route.
        self._points = {key: _point(params, key) for key in self._points}
        self._stamp = stamp
        self._failed_stamp = None
        log.info("classifier reloaded", extra={"fields": {"path": str(self._path)}})
        return True

    def save(self, path: str | Path) -> None:
        """Write the model atomically: a reader sees the old file or the new one, never half of one."""
        path = Path(path)
        p = self._params
        nonzero = np.flatnonzero(p.weights).astype(np.uint32)
        metadata = dict(p.metadata)
        metadata["format"] = FORMAT
        metadata["format_version"] = FORMAT_VERSION
        metadata["features"] = FEATURE_SPEC
        weights = p.weights[nonzero].astype(np.float32)
        dense = p.dense.astype(np.float64)
        intercept = np.array([p.intercept], dtype=np.float64)
        pairs = [p.platt_a, p.platt_b]
        if (p.open_a, p.open_b) != (p.platt_a, p.platt_b):
            pairs += [p.open_a, p.open_b]
        platt = np.array(pairs, dtype=np.float64)
        encoded = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, buckets=nonzero, weights=weights, dense=dense, intercept=intercept, platt=platt,
                                    metadata=encoded)
            # mkstemp creates 0600; a model is read by whichever user runs the sidecar.
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._params = dataclasses.replace(p, metadata=metadata)


def _point(params: _Params, key: tuple[float, float, bool]) -> OperatingPoint | None:
    """The operating point of (target, frontier share, typed) on the model's curve for that kind of request."""
    target, frontier_share, typed = key
    curve = params.validation_typed if typed and params.validation_typed is not None else params.validation
    return derive(curve, target, frontier_share) if curve is not None else None


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


_ARRAYS = ("buckets", "weights", "dense", "intercept", "platt", "metadata")


def _read(path: Path) -> _Params:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in _ARRAYS if name not in archive.files]
            if missing:
                raise ClassifierError(f"{path}: not a Tollgate classifier file (missing {', '.join(missing)})")
            arrays = {name: archive[name] for name in _ARRAYS}
    except ClassifierError:
        raise
    except FileNotFoundError:
        raise ClassifierError(f"{path}: no such classifier file") from None
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise ClassifierError(f"{path}: not a readable classifier file: {exc}") from None
    try:
        metadata = json.loads(arrays["metadata"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClassifierError(f"{path}: the metadata is not valid JSON: {exc}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ClassifierError(f"{path}: not a Tollgate classifier file (format is not {FORMAT!r})")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ClassifierError(
            f"{path}: model format version {version!r} is not supported; this Tollgate reads version "
            f"{FORMAT_VERSION}: retrain the model with `tollgate train`"
        )
    if metadata.get("features") != FEATURE_SPEC:
        raise ClassifierError(
            f"{path}: the model was trained on different features than this Tollgate computes; "
            "retrain it with `tollgate train`"
        )
    buckets, weights, dense = arrays["buckets"], arrays["weights"], arrays["dense"]
    if (
        buckets.ndim != 1 or buckets.shape != weights.shape or dense.shape != (len(DENSE_FEATURES),)
        or arrays["intercept"].shape != (1,) or arrays["platt"].shape not in ((2,), (4,))
        or (len(buckets) and int(buckets.max()) >= BUCKETS)
    ):
        raise ClassifierError(f"{path}: the weight arrays have the wrong shapes or bucket numbers")
    full = np.zeros(BUCKETS, dtype=np.float32)
    full[buckets.astype(np.intp)] = weights
    every = np.concatenate([weights.astype(np.float64), dense, arrays["intercept"], arrays["platt"]])
    if not np.all(np.isfinite(every)):
        raise ClassifierError(f"{path}: the model has non-finite weights")
    platt = [float(v) for v in arrays["platt"]]
    try:
        return _params(full, dense, float(arrays["intercept"][0]), platt, metadata)
    except ClassifierError as exc:
        raise ClassifierError(f"{path}: {exc}") from None


def default_model_path() -> Path:
    """The classifier shipped with Tollgate (trained on public benchmark data; see its metadata)."""
    return Path(str(resources.files("tollgate.routing").joinpath(DEFAULT_MODEL)))


def open_classifier(routing: RoutingConfig) -> Classifier | None:
    """The classifier ``routing.classifier`` names, or ``None`` when it is ``none``."""
    if routing.classifier == "none":
        return None
    path = default_model_path() if routing.classifier == "default" else Path(routing.classifier)
    return Classifier.load(path)


def point_thresholds(point: OperatingPoint, catalog: Catalog) -> tuple[tuple[float, str], ...]:
    """An operating point as (minimum difficulty, tier) pairs: the top tier, then the one above cheap."""
    tiers = catalog.tiers
    if len(tiers) < 2:
        return ()
    if len(tiers) == 2:
        return ((point.medium, tiers[1]),)
    return ((point.frontier, tiers[-1]), (point.medium, tiers[1]))


def requirement_from_probability(
    p_cheap_ok: float, task_type: str, routing: RoutingConfig, catalog: Catalog,
    point: OperatingPoint | None = None,
) -> TierRequirement:
    """The tier for a classifier probability, via the difficulty ``1 - p`` and the thresholds.

    Thresholds come from ``routing.thresholds`` for the task type, else its ``default``
    entry, else the operating point of ``routing.quality_target`` (``point``), else
    ``routing.difficulty`` (the heuristic's), each a list of (minimum difficulty, tier)
    pairs, highest first; below all of them the cheapest tier.
    """
    hardness = 1.0 - p_cheap_ok
    thresholds = routing.thresholds.get(task_type) if task_type else None
    if thresholds is None:
        thresholds = routing.thresholds.get("default")
    if thresholds is None:
        thresholds = point_thresholds(point, catalog) if point is not None else routing.difficulty
    tier = catalog.tiers[0]
    for threshold, name in thresholds:
        if hardness >= threshold:
            tier = name
            break
    return TierRequirement(
        tier=tier,
        rank=catalog.tier_rank(tier),
        reason=f"classifier p(cheap ok)={p_cheap_ok:.2f} -> {tier}",
        source=Source.DIFFICULTY,
    )
