"""Training the difficulty classifier from labelled routing data (``tollgate train``).

Label: a prompt is *cheap ok* when the weak model scored at least as well as the
strong one (``LABEL_DEFINITION``). Ties count as ok because on them the strong
model buys nothing; with right/wrong scores that means both right or both wrong.

Procedure, deterministic for a given file and seed:

1. Features as the sidecar computes them (``classifier.featurize``), input tokens
   counted by the sidecar's ``TokenCounter``.
2. Prompts go to ``folds`` folds by a keyed hash of their text, so duplicate prompts
   stay in one fold and cannot leak between fitting and checking.
3. For each L2 strength in ``lambdas`` (strongest first, each fit warm-started from
   the previous one) the model is fitted on all folds but one and scores the one
   left out. The strength whose out-of-fold predictions have the lowest log loss
   after Platt scaling wins.
4. Platt scaling (a logistic fit of the label on the out-of-fold logit, with Platt's
   smoothed targets) turns the logit into a calibrated probability.
5. The final model is fitted on every prompt with the chosen strength, and the
   out-of-fold metrics (log loss, Brier, accuracy, AUC, calibration error and a
   reliability table) go into the model file's metadata.

The loss is the mean logistic loss plus ``lambda/2 * (|w_hashed|² + |w_dense - prior|²)``
where the prior is the heuristic's weights (see ``classifier``); the intercept is
not penalised. It is minimised with L-BFGS written against numpy, so training needs
nothing the sidecar does not already install.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..estimate import TokenCounter
from ..routing import difficulty
from ..routing.classifier import (
    BUCKETS,
    DENSE_FEATURES,
    LABEL_DEFINITION,
    Classifier,
    Features,
    featurize,
    heuristic_prior,
)
from ..routing.operating_point import ValidationCurve, curve_of
from .dataset import DatasetError, Record, file_digest

__all__ = ["DEFAULT_LAMBDAS", "TrainResult", "fit_intercept", "fit_platt", "labels", "probability_metrics", "train"]

DEFAULT_LAMBDAS = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4)
"""L2 strengths tried, strongest first."""

OPEN_CALIBRATION_MIN = 50
"""Requests without a task type needed, beside typed ones, to calibrate them apart."""


@dataclass(frozen=True, slots=True)
class TrainResult:
    """A trained classifier and what training measured."""

    classifier: Classifier
    metadata: dict[str, Any]
    out_of_fold: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    """Calibrated p(cheap ok) of each training record from the fold that did not see it."""


def labels(records: Sequence[Record], weak: str, strong: str, source: str = "") -> np.ndarray:
    """1.0 where the weak model was good enough (``LABEL_DEFINITION``), else 0.0."""
    return np.array(
        [1.0 if r.score(weak, source) >= r.score(strong, source) else 0.0 for r in records], dtype=np.float64
    )


class _Design:
    """A sparse design matrix (rows of hashed features, possibly repeated) with its dense block.

    Columns are indices into the buckets the training data uses (``width`` of them),
    not all ``BUCKETS``: most buckets never occur, and every optimiser step touches
    every parameter.
    """

    def __init__(self, feats: Sequence[Features], width: int) -> None:
        self.n = len(feats)
        self.width = width
        lengths = np.fromiter((len(f.buckets) for f in feats), dtype=np.int64, count=self.n)
        self.rows = np.repeat(np.arange(self.n, dtype=np.int64), lengths)
        self.cols = np.concatenate([f.buckets for f in feats]) if self.n else np.zeros(0, dtype=np.intp)
        self.vals = np.concatenate([f.values for f in feats]) if self.n else np.zeros(0)
        self.dense = np.stack([f.dense for f in feats]) if self.n else np.zeros((0, len(DENSE_FEATURES)))

    def logits(self, theta: np.ndarray) -> np.ndarray:
        w, d, b = _split(theta, self.width)
        z = np.bincount(self.rows, weights=self.vals * w[self.cols], minlength=self.n)
        return z + self.dense @ d + b

    def gradient(self, residual: np.ndarray) -> np.ndarray:
        """``X^T residual`` for every parameter, intercept last."""
        gw = np.bincount(self.cols, weights=self.vals * residual[self.rows], minlength=self.width)
        return np.concatenate([gw, self.dense.T @ residual, [residual.sum()]])


def _split(theta: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, float]:
    return theta[:width], theta[width:-1], float(theta[-1])


def _objective(
    design: _Design, y: np.ndarray, lam: float, prior: np.ndarray, weight: np.ndarray, held: np.ndarray
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    center = np.concatenate([np.zeros(design.width), prior, [0.0]])
    strength = np.full(len(center), lam)
    strength[-1] = 0.0
    # Held features keep the heuristic's weights: no gradient moves them from where they start.
    free = np.ones(len(center))
    free[design.width:-1] = ~held
    share = weight / weight.sum()

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = design.logits(theta)
        loss = float(share @ (np.logaddexp(0.0, z) - y * z))
        residual = (_sigmoid(z) - y) * share
        off = (theta - center) * free
        return loss + 0.5 * float(off @ (strength * off)), (design.gradient(residual) + strength * off) * free

    return f


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _lbfgs(
    f: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    max_iter: int = 300,
    memory: int = 10,
    tol: float = 1e-9,
) -> np.ndarray:
    """Minimise a smooth convex ``f`` (value, gradient) by L-BFGS with a backtracking line search."""
    x = x0.copy()
    fx, g = f(x)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    for _ in range(max_iter):
        q = g.copy()
        alphas: list[float] = []
        for s, y in zip(reversed(s_hist), reversed(y_hist), strict=True):
            a = float(s @ q) / float(y @ s)
            alphas.append(a)
            q -= a * y
        if s_hist:
            q *= float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for (s, y), a in zip(zip(s_hist, y_hist, strict=True), reversed(alphas), strict=True):
            q += s * (a - float(y @ q) / float(y @ s))
        direction = -q
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction: restart from the gradient
            s_hist.clear()
            y_hist.clear()
            direction = -g / max(1.0, float(np.linalg.norm(g)))
            slope = float(g @ direction)
        step = 1.0
        while True:
            x_new = x + step * direction
            f_new, g_new = f(x_new)
            if f_new <= fx + 1e-4 * step * slope or step < 1e-12:
                break
            step *= 0.5
        s_vec, y_vec = x_new - x, g_new - g
        if float(s_vec @ y_vec) > 1e-12:
            s_hist.append(s_vec)
            y_hist.append(y_vec)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        done = fx - f_new <= tol * max(1.0, abs(f_new))
        x, fx, g = x_new, f_new, g_new
        if done or float(np.max(np.abs(g))) < 1e-8:
            break
    return x


def fit_platt(logits: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, float]:
    """Platt scaling: (a, b) so that sigmoid(a·logit + b) is calibrated, with Platt's smoothed targets."""
    w_rec = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64) * len(y) / weight.sum()
    pos = float(w_rec @ y)
    neg = float(w_rec.sum() - pos)
    target = np.where(y > 0.5, (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0))
    def loss(a: float, b: float) -> float:
        z = a * logits + b
        return float(np.mean(w_rec * (np.logaddexp(0.0, z) - target * z)))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(100):
        p = _sigmoid(a * logits + b)
        r = (p - target) * w_rec
        w = p * (1.0 - p) * w_rec
        grad = np.array([float(r @ logits), float(r.sum())])
        # A tiny ridge keeps the Newton step defined when the logits are all equal.
        hess = np.array([[float(w @ (logits * logits)) + 1e-9, float(w @ logits)],
                         [float(w @ logits), float(w.sum()) + 1e-9]])
        step = np.linalg.solve(hess, grad)
        # Halve the Newton step until the loss falls: extreme logits make the full step overshoot.
        t = 1.0
        while t > 1e-10:
            trial = loss(a - t * float(step[0]), b - t * float(step[1]))
            if trial <= current:
                break
            t *= 0.5
        else:
            break
        a, b, current = a - t * float(step[0]), b - t * float(step[1]), trial
        if t * float(np.max(np.abs(step))) < 1e-10:
            break
    return a, b


def fit_intercept(logits: np.ndarray, y: np.ndarray, start: float = 0.0) -> float:
    """The offset ``b`` that makes ``sigmoid(logit + b)`` match the base rate of ``y`` (maximum likelihood)."""
    b = start
    for _ in range(50):
        p = _sigmoid(logits + b)
        grad = float((p - y).sum())
        hess = float((p * (1.0 - p)).sum()) + 1e-9
        b -= grad / hess
        if abs(grad / hess) < 1e-10:
            break
    return b


def _auc(p: np.ndarray, y: np.ndarray) -> float | None:
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return None
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]  # 1-based, ties share their mean rank
    return float((ranks[y > 0.5].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def probability_metrics(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Log loss, Brier score, accuracy at 0.5, AUC, expected calibration error and a reliability table."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(y, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        if not count:
            continue
        mean_p = float(p[mask].mean())
        observed = float(y[mask].mean())
        ece += count / len(p) * abs(mean_p - observed)
        table.append({"from": round(float(edges[b]), 2), "to": round(float(edges[b + 1]), 2), "n": count,
                      "mean_predicted": round(mean_p, 4), "observed": round(observed, 4)})
    auc = _auc(p, y)
    return {
        "n": len(p),
        "positive_rate": round(float(y.mean()), 4),
        "log_loss": round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 4),
        "brier": round(float(np.mean((p - y) ** 2)), 4),
        "accuracy": round(float(np.mean((p >= 0.5) == (y > 0.5))), 4),
        "auc": None if auc is None else round(auc, 4),
        "ece": round(ece, 4),
        "reliability": table,
    }


def _features(record: Record, counter: TokenCounter) -> Features:
    """A record's features: decoded from a decision log's export, or computed from its messages."""
    if record.features is not None:
        return record.features
    return featurize(record.messages, counter.count_messages(record.messages), record.task_type)


def _fold_of(record: Record, seed: int, folds: int) -> int:
    if record.features is not None:
        text = record.features.buckets.tobytes().hex() + record.features.dense.tobytes().hex()
    else:
        text = json.dumps(record.messages, ensure_ascii=False)
    digest = hashlib.blake2b(f"{seed}\0{text}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % folds


VALIDATION_MAX = 3000
"""Validation points kept per kind of request: enough for the bootstrap, small enough for the model file."""


def _curve(records: Sequence[Record], calibrated: np.ndarray, mask: np.ndarray, weak: str, strong: str,
           source: str, kind: str, seed: int) -> ValidationCurve:
    found = np.flatnonzero(mask)
    if len(found) > VALIDATION_MAX:
        found = np.sort(np.random.default_rng(seed).choice(found, VALIDATION_MAX, replace=False))
    picked = [int(i) for i in found]
    what = source or "out-of-fold predictions on training prompts"
    return curve_of([float(calibrated[i]) for i in picked], [records[i].score(weak) for i in picked],
                    [records[i].score(strong) for i in picked], f"{what}, {kind} ({len(picked)})")


def train(
    records: Sequence[Record],
    *,
    weak: str,
    strong: str,
    seed: int = 0,
    folds: int = 5,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    source: str | Path | None = None,
    provenance: str = "",
    progress: Callable[[str], None] | None = None,
    holdout: Sequence[tuple[str | Path, Sequence[Record]]] = (),
    weights: Sequence[float] | None = None,
    hold_heuristic: bool = False,
    validate_on: Sequence[bool] | None = None,
    validation_source: str = "",
) -> TrainResult:
    """Fit, calibrate and measure a classifier on ``records`` (see the module docstring).

    ``weights`` weigh each record in the loss (a small set of the traffic that matters
    next to a large benchmark); ``hold_heuristic`` keeps the heuristic's features at the
    heuristic's weights, so benchmark data cannot zero them out, and the n-grams learn
    what the heuristic misses. The
    out-of-fold predictions of the records ``validate_on`` marks (all by default) are
    stored as the model's validation curve, from which ``routing.quality_target``
    derives thresholds.

    Each ``holdout`` (file, records) pair is scored by the final model, and its metrics
    go into the metadata beside the out-of-fold ones.
    """
    say = progress or (lambda _msg: None)
    where = str(source) if source is not None else ""
    y = labels(records, weak, strong, where)
    positives = int(y.sum())
    if positives in (0, len(y)):
        raise DatasetError(
            f"{where or 'the data'}: every prompt has the same label (cheap ok: {bool(positives)}); "
            "training needs prompts where the weak model was good enough and prompts where it was not"
        )
    weight = np.ones(len(records)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weight.shape != (len(records),) or not np.all(weight > 0):
        raise ValueError("weights: one positive number per record")
    counter = TokenCounter()
    feats = [_features(r, counter) for r in records]
    say(f"{len(records)} prompts featurized; cheap ok on {positives / len(y):.1%}")
    prior = heuristic_prior()
    hold_mask = np.array([hold_heuristic and name in difficulty.WEIGHTS for name in DENSE_FEATURES])
    folds = max(2, min(folds, len(records)))
    fold = np.array([_fold_of(r, seed, folds) for r in records])
    splits = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(folds)]
    splits = [(fit, held) for fit, held in splits if len(fit) and len(held)]
    used = np.unique(np.concatenate([f.buckets for f in feats]))
    width = len(used)
    compact = [Features(np.searchsorted(used, f.buckets), f.values, f.dense) for f in feats]
    designs = [
        (_Design([compact[i] for i in fit], width), _Design([compact[i] for i in held], width)) for fit, held in splits
    ]
    theta0 = np.concatenate([np.zeros(width), prior, [math.log((positives + 1) / (len(y) - positives + 1))]])
    warm = [theta0.copy() for _ in splits]
    best: tuple[float, float, np.ndarray] | None = None
    for lam in lambdas:
        oof = np.zeros(len(records))
        for k, ((fit, held), (fit_design, held_design)) in enumerate(zip(splits, designs, strict=True)):
            warm[k] = _lbfgs(_objective(fit_design, y[fit], lam, prior, weight[fit], hold_mask), warm[k])
            oof[held] = held_design.logits(warm[k])
        a, b = fit_platt(oof, y, weight)
        calibrated = np.clip(_sigmoid(a * oof + b), 1e-12, 1 - 1e-12)
        loss = float(-(weight @ (y * np.log(calibrated) + (1 - y) * np.log(1 - calibrated))) / weight.sum())
        say(f"lambda {lam:g}: out-of-fold log loss {loss:.4f}")
        if best is None or loss < best[1]:
            best = (lam, loss, oof.copy())
    assert best is not None
    lam, _, oof = best
    a, b = fit_platt(oof, y, weight)
    platt = [a, b]
    untyped = np.array([not r.task_type for r in records])
    if OPEN_CALIBRATION_MIN <= int(untyped.sum()) < len(records):
        # Requests without a task type (open-ended chat, agents) get a base rate of their own: a pooled
        # fit is dominated by the typed benchmark prompts, whose base rate is another. Only the intercept
        # moves: a few hundred open-ended prompts are too few to re-estimate the slope, which would
        # otherwise flatten the heuristic's signals along with the n-grams'.
        platt += [a, fit_intercept(a * oof[untyped], y[untyped], b)]
    open_a, open_b = platt[-2:]
    calibrated = np.where(untyped, _sigmoid(open_a * oof + open_b), _sigmoid(a * oof + b))
    metrics = probability_metrics(calibrated, y)
    theta = _lbfgs(_objective(_Design(compact, width), y, lam, prior, weight, hold_mask), theta0)
    used_weights, d, intercept = _split(theta, width)
    w = np.zeros(BUCKETS)
    # Weights too small to move any prediction are dropped to keep the file small.
    w[used] = np.where(np.abs(used_weights) >= 1e-6, used_weights, 0.0)
    metadata: dict[str, Any] = {
        "label": LABEL_DEFINITION,
        "weak_model": weak,
        "strong_model": strong,
        "training_set": {
            "file": Path(source).name if source is not None else "",
            "sha256": file_digest(source) if source is not None and Path(source).is_file() else "",
            "records": len(records),
            "cheap_ok_rate": round(positives / len(y), 4),
        },
        "trained_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "trainer": {"tollgate_version": __version__, "seed": seed, "folds": len(splits), "lambda": lam,
                    "lambdas_tried": list(lambdas), "calibration": "platt", "platt": platt,
                    "calibrated_on": "out-of-fold predictions" + (
                        f"; the base rate of requests without a task type apart ({int(untyped.sum())})"
                        if len(platt) == 4 else "")},
        "metrics": {"out_of_fold": metrics},
        "provenance": provenance,
    }
    say(f"chosen lambda {lam:g}; out-of-fold AUC {metrics['auc']}, ECE {metrics['ece']}")
    chosen = np.ones(len(records), dtype=bool) if validate_on is None else np.asarray(validate_on, dtype=bool)
    kinds = [("without a task type", chosen & untyped), ("with a task type", chosen & ~untyped)]
    curves = [_curve(records, calibrated, mask, weak, strong, validation_source, kind, seed)
              for kind, mask in kinds if mask.any()]
    if curves:
        # The first kind present is the default curve; a typed one beside it is kept apart.
        metadata["validation"] = curves[0].to_metadata()
        if len(curves) == 2:
            metadata["validation_typed"] = curves[1].to_metadata()
    metadata["trainer"]["heuristic"] = "held at its weights" if hold_heuristic else "prior of the learned weights"
    model = Classifier.from_weights(w, d, intercept, platt=platt, metadata=metadata)
    for path, held_records in holdout:
        held_y = labels(held_records, weak, strong, str(path))
        p = np.array([model.predict_features(_features(r, counter), bool(r.task_type)) for r in held_records])
        found = probability_metrics(p, held_y)
        metadata["metrics"].setdefault("heldout", {})[Path(path).name] = {
            "sha256": file_digest(path) if Path(path).is_file() else "", **found,
        }
        say(f"held out {Path(path).name}: AUC {found['auc']}, ECE {found['ece']}, log loss {found['log_loss']}")
    return TrainResult(model, metadata, calibrated)
