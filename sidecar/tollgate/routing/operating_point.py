"""From a quality target to difficulty thresholds, on a model's validation data.

An operator decides how much quality to keep relative to always using the stronger
tier (``routing.quality_target: 0.95``), not at which difficulty a request leaves the
cheap tier. A model file carries a validation curve: for each validation request, the
calibrated p(cheap ok) the model gave it without having trained on it, and the quality
the weak and the strong model reached on it. Sending every request whose difficulty
(``1 - p``) is at or above a threshold to the strong model gives a relative quality

    Q(t) = mean(strong if difficulty >= t else weak) / mean(strong)

which only grows as ``t`` falls. The operating point is the highest ``t`` (fewest
requests up, so the lowest cost) whose ``Q(t)`` reaches the target with 95 %
confidence over bootstrap resamples of the validation requests: a margin that
shrinks as the validation set grows.

The data knows two models; the catalog has three tiers. The strong model stands for
any tier above the cheap one (the labelled data's strong model is older than any
medium-tier model of the catalog), so the target is met on validation whatever tier
above cheap a request gets. What the data cannot say is which requests need the
frontier tier rather than the medium one: the frontier tier takes the hardest
``frontier_share`` of the validation requests (``routing.frontier_share``, 0.2), a
ceiling on how much traffic the most expensive tier may take.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OperatingPoint", "ValidationCurve", "ValidationError", "curve_of", "derive"]


class ValidationError(ValueError):
    """A validation curve that cannot steer routing; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class ValidationCurve:
    """Out-of-sample predictions with each request's quality on the weak and the strong model."""

    p_cheap_ok: tuple[float, ...]
    weak: tuple[float, ...]
    strong: tuple[float, ...]
    source: str = ""

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> ValidationCurve:
        """Read the ``validation`` block of a model file's metadata."""
        points = meta.get("points")
        if not isinstance(points, list) or not points:
            raise ValidationError("the validation block has no points")
        try:
            p, weak, strong = zip(*((float(a), float(b), float(c)) for a, b, c in points), strict=True)
        except (TypeError, ValueError):
            raise ValidationError("validation points must be [p_cheap_ok, weak quality, strong quality]") from None
        if not all(math.isfinite(v) for v in (*p, *weak, *strong)):
            raise ValidationError("validation points must be finite")
        if sum(strong) <= 0:
            raise ValidationError("the strong model's validation quality is zero: nothing to keep a share of")
        return cls(tuple(p), tuple(weak), tuple(strong), str(meta.get("source", "")))

    def to_metadata(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n": len(self.p_cheap_ok),
            "points": [[round(p, 5), round(w, 4), round(s, 4)]
                       for p, w, s in zip(self.p_cheap_ok, self.weak, self.strong, strict=True)],
        }


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """The thresholds a quality target gives, and what they did on the validation data."""

    target: float
    medium: float
    """Difficulty at or above which a request leaves the cheap tier."""
    frontier: float
    """Difficulty at or above which a request goes to the frontier tier."""
    quality: float
    """Relative quality reached on validation (1.0 = always the strong model)."""
    share_up: float
    """Share of validation requests sent above the cheap tier."""
    share_frontier: float
    weak_quality: float
    """Relative quality of sending everything to the cheap tier."""
    n: int
    source: str
    met: bool
    """False when even sending every request up misses the target with confidence (the strong model
    scored below the weak one on too many validation requests)."""

    def describe(self) -> str:
        status = "" if self.met else " (not reachable on this data: every request goes up)"
        return (
            f"quality_target {self.target:g} -> difficulty thresholds medium {self.medium:.3f}, "
            f"frontier {self.frontier:.3f}; on validation ({self.source or 'the model file'}): "
            f"quality {self.quality:.1%} of the strong tier's (cheap alone {self.weak_quality:.1%}), "
            f"{self.share_up:.0%} of requests above cheap, {self.share_frontier:.0%} on frontier{status}"
        )


BOOTSTRAP_ROUNDS = 400
CONFIDENCE = 0.95


def _threshold(curve: ValidationCurve, target: float) -> tuple[float, float, float, bool]:
    """(threshold, relative quality, share up, met) for the fewest requests up that reach ``target``.

    "Reach" means with ``CONFIDENCE``: in that share of bootstrap resamples of the
    validation requests, the relative quality at the threshold is at least the target.
    A few hundred validation requests leave the point estimate noisy, and traffic the
    model never saw is more often below it than above.
    """
    p = np.asarray(curve.p_cheap_ok, dtype=np.float64)
    weak = np.asarray(curve.weak, dtype=np.float64)
    strong = np.asarray(curve.strong, dtype=np.float64)
    n = len(p)
    order = np.argsort(p, kind="stable")  # hardest first
    ps = p[order]
    # Requests with the same prediction move together: a threshold cannot split them.
    ends = np.concatenate([[0], np.flatnonzero(np.diff(ps) != 0) + 1, [n]])
    rng = np.random.default_rng(0)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(BOOTSTRAP_ROUNDS)])
    counts = np.vstack([np.ones(n), counts])[:, order]  # row 0: the sample itself
    gain = np.concatenate([np.zeros((len(counts), 1)), np.cumsum(counts * (strong - weak)[order], axis=1)], axis=1)
    base = counts @ weak[order]
    total = counts @ strong[order]
    relative = (base[:, None] + gain[:, ends]) / np.maximum(total, 1e-12)[:, None]
    lower = np.quantile(relative[1:], 1.0 - CONFIDENCE, axis=0)
    reached = np.flatnonzero(lower >= target - 1e-12)
    if not len(reached):
        return 0.0, float(relative[0, -1]), 1.0, False
    j = int(reached[0])
    k = int(ends[j])
    if k == 0:
        return 1.0, float(relative[0, 0]), 0.0, True
    following = float(ps[k]) if k < n else 1.0
    # Midway between the last prediction sent up and the next easier one, as a difficulty.
    return 1.0 - (float(ps[k - 1]) + following) / 2.0, float(relative[0, j]), k / n, True


def _hardest(curve: ValidationCurve, share: float) -> tuple[float, float]:
    """(threshold, share taken) for the hardest ``share`` of the validation requests, ties kept together."""
    p = np.sort(np.asarray(curve.p_cheap_ok, dtype=np.float64))  # hardest first
    n = len(p)
    k = math.floor(share * n + 1e-9)
    if k <= 0:
        return 1.0, 0.0
    if k >= n:
        return 0.0, 1.0
    # A threshold cannot split equal predictions: drop those tied with the first one left out.
    while k > 0 and p[k - 1] == p[k]:
        k -= 1
    if k == 0:
        return 1.0, 0.0
    return 1.0 - (float(p[k - 1]) + float(p[k])) / 2.0, k / n


def derive(curve: ValidationCurve, target: float, frontier_share: float = 0.2) -> OperatingPoint:
    """The operating point for ``target`` on ``curve`` (see the module docstring)."""
    if not 0.0 < target <= 1.0:
        raise ValidationError(f"quality_target must be in (0, 1], got {target}")
    if not 0.0 <= frontier_share <= 1.0:
        raise ValidationError(f"frontier_share must be in [0, 1], got {frontier_share}")
    medium, quality, share_up, met = _threshold(curve, target)
    frontier, share_frontier = _hardest(curve, frontier_share)
    if frontier <= medium:
        frontier, share_frontier = medium, share_up
    return OperatingPoint(
        target=target, medium=medium, frontier=frontier, quality=quality, share_up=share_up,
        share_frontier=share_frontier, weak_quality=sum(curve.weak) / sum(curve.strong),
        n=len(curve.p_cheap_ok), source=curve.source, met=met,
    )


def curve_of(p_cheap_ok: Sequence[float], weak: Sequence[float], strong: Sequence[float],
             source: str = "") -> ValidationCurve:
    """A validation curve from parallel sequences (training builds one from out-of-fold predictions)."""
    if not len(p_cheap_ok) == len(weak) == len(strong):
        raise ValidationError("p_cheap_ok, weak and strong must have the same length")
    return ValidationCurve(tuple(map(float, p_cheap_ok)), tuple(map(float, weak)), tuple(map(float, strong)), source)
