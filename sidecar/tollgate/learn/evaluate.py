"""Offline evaluation of a router on labelled data (``tollgate eval``), in RouteLLM's metrics.

Two models, a strong and a weak one, scored on every prompt. A router gives each
prompt a *difficulty* (higher = send to the strong model); it never sees the
scores. Sweeping the threshold sends the hardest prompts to the strong model first.

- **Curve.** One point per distinct difficulty: the share ``x`` of prompts sent to
  the strong model, mean quality ``Q(x)``, cost. Prompts with equal difficulty move
  together (no threshold separates them), and a point between two thresholds is
  reached by sending a random part of the next group, so the curve is piecewise
  linear between the points.
- **PGR(x)** = (Q(x) − Q_weak) / (Q_strong − Q_weak): the share of the quality gap
  recovered. **APGR** is the area under PGR over x ∈ [0, 1] (trapezoids between the
  points). **CPT(p)** is the smallest x where the curve reaches PGR p.
- **Saving at 95 %**: where the curve first reaches 95 % of the strong model's mean
  quality, 1 − cost / cost of sending everything to the strong model.
- **Random baseline**: a router sending a random share x has expected quality and
  cost linear in x, so PGR(x) = x exactly: APGR 0.5, CPT(p) = p. It is computed
  exactly, not sampled.

Costs are integer nano-dollars from ``tollgate.money.Price``: input tokens by the
sidecar's ``TokenCounter`` (scaled by a catalog model's token ratio), output tokens
from the record's response text for that model when present, else
``DEFAULT_OUTPUT_TOKENS`` (the sidecar's own output estimate before it has history).

Routers: ``heuristic`` (``difficulty.score``), ``classifier`` (1 − p(cheap ok)),
``rules`` (the config's task-type rules: the tier rank of the rule, 0.5 between the
cheapest tier and the next when no rule applies; or, with ``rules_from``, the
share of prompts of the same task type in a labelled file where the cheap model was
*not* good enough) and ``default`` (what the sidecar does: a rule that names a tier
above the cheapest sends to the strong model, a rule naming the cheapest tier to the
weak one, otherwise the configured classifier or the heuristic). In the two-model
view every tier above the cheapest is "strong". The *operating point* is where the
configured thresholds put the router.

Why one long module: the report's figures (APGR, cost curves, operating points) are computed
from one sweep and printed together; it is offline tooling, never on the serving path.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..estimate import TokenCounter
from ..money import Price
from ..routing import difficulty
from ..routing.classifier import Classifier, default_model_path, open_classifier, requirement_from_probability
from ..routing.rules import Signals, from_difficulty, from_signals
from .dataset import Record, read_records
from .train import labels, probability_metrics

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "ROUTERS",
    "EvalError",
    "Point",
    "Report",
    "Summary",
    "apgr",
    "cpt",
    "evaluate",
    "parse_price",
    "plot",
    "random_curve",
    "report_json",
    "report_text",
    "saving_at",
    "summarize",
    "sweep",
]

ROUTERS = ("rules", "heuristic", "classifier", "default")
DEFAULT_OUTPUT_TOKENS = 512
QUALITY_SHARE = 0.95
BOOTSTRAP_ROUNDS = 1000


class EvalError(ValueError):
    """An evaluation that cannot be run as asked; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a router's curve."""

    threshold: float | None
    """Prompts with difficulty at or above it go to the strong model (``None``: none do)."""
    strong_share: float
    quality: float
    pgr: float
    cost_nanos: int
    cost_share: float
    """Cost relative to sending every prompt to the strong model."""


@dataclass(frozen=True, slots=True)
class Summary:
    """RouteLLM's metrics of one curve."""

    apgr: float
    cpt50: float
    cpt80: float
    saving_at_95: float | None
    curve: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """An evaluation: the router's metrics, the random baseline, and context."""

    router: str
    records: int
    strong: str
    weak: str
    quality_strong: float
    quality_weak: float
    cost_strong_nanos: int
    cost_weak_nanos: int
    summary: Summary
    random: Summary
    operating_point: Point | None
    calibration: dict[str, Any] | None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """95 % bootstrap intervals of the router's APGR, CPT(50 %) and CPT(80 %)."""
    target: str = ""
    """What set the operating point: the quality target and its thresholds, or the explicit thresholds."""


def parse_price(text: str) -> tuple[str, Price]:
    """``MODEL=IN/OUT`` in USD per million tokens (model names may contain ``/``)."""
    model, sep, prices = text.rpartition("=")
    inp, slash, out = prices.partition("/")
    if not sep or not model or not slash:
        raise EvalError(f"--price {text!r}: expected MODEL=IN/OUT in USD per million tokens, "
                        "e.g. gpt-5.4-mini=0.75/4.50")
    try:
        Decimal(inp)
        Decimal(out)
        return model, Price.per_million(input=inp, output=out)
    except (ValueError, InvalidOperation) as exc:
        raise EvalError(f"--price {text!r}: {exc}") from None


# -- curves ------------------------------------------------------------------------------


def sweep(
    difficulty_scores: Sequence[float] | np.ndarray,
    quality_weak: Sequence[float],
    quality_strong: Sequence[float],
    cost_weak: Sequence[int],
    cost_strong: Sequence[int],
) -> tuple[Point, ...]:
    """The curve of a router whose per-prompt difficulties are ``difficulty_scores``."""
    h = np.asarray(difficulty_scores, dtype=np.float64)
    qw = np.asarray(quality_weak, dtype=np.float64)
    qs = np.asarray(quality_strong, dtype=np.float64)
    cw = np.asarray(cost_weak, dtype=np.int64)
    cs = np.asarray(cost_strong, dtype=np.int64)
    n = len(h)
    if n == 0:
        raise EvalError("no prompts to evaluate")
    mean_w, mean_s = float(qw.mean()), float(qs.mean())
    if math.isclose(mean_w, mean_s, rel_tol=0.0, abs_tol=1e-12):
        raise EvalError(
            f"both models have mean quality {mean_s:.4f} on this data: the gap a router recovers (PGR) is undefined"
        )
    order = np.argsort(-h, kind="stable")
    hs = h[order]
    gain_q = np.concatenate([[0.0], np.cumsum((qs - qw)[order])])
    gain_c = np.concatenate([[0], np.cumsum((cs - cw)[order])])
    ends = [0, *(np.flatnonzero(np.diff(hs) != 0) + 1).tolist(), n]
    base_q, base_c, all_strong = float(qw.sum()), int(cw.sum()), int(cs.sum())
    points = []
    for k in ends:
        quality = (base_q + float(gain_q[k])) / n
        cost = base_c + int(gain_c[k])
        points.append(Point(
            threshold=None if k == 0 else float(hs[k - 1]),
            strong_share=k / n,
            quality=quality,
            pgr=(quality - mean_w) / (mean_s - mean_w),
            cost_nanos=cost,
            cost_share=cost / all_strong if all_strong else 0.0,
        ))
    return tuple(points)


def random_curve(curve: Sequence[Point]) -> tuple[Point, ...]:
    """The exact expected curve of a random router: a straight line between the curve's two ends."""
    return (curve[0], curve[-1])


def apgr(curve: Sequence[Point]) -> float:
    """Area under PGR over the strong share, by trapezoids."""
    return sum((b.strong_share - a.strong_share) * (a.pgr + b.pgr) / 2 for a, b in itertools.pairwise(curve))


def _first_crossing(
    curve: Sequence[Point], value: Callable[[Point], float], target: float
) -> tuple[float, float] | None:
    """(strong share, cost share) where ``value(point)`` first reaches ``target``, interpolated."""
    # Float sums of the same qualities in another order may miss the target by an ulp.
    reached = target - 1e-12
    for a, b in itertools.pairwise(curve):
        if value(a) >= reached:
            return a.strong_share, a.cost_share
        if value(b) >= reached:
            t = min(max((target - value(a)) / (value(b) - value(a)), 0.0), 1.0)
            return (a.strong_share + t * (b.strong_share - a.strong_share),
                    a.cost_share + t * (b.cost_share - a.cost_share))
    last = curve[-1]
    return (last.strong_share, last.cost_share) if value(last) >= reached else None


def cpt(curve: Sequence[Point], target_pgr: float) -> float:
    """CPT(p): the smallest strong share at which the curve reaches PGR ``target_pgr``."""
    hit = _first_crossing(curve, lambda p: p.pgr, target_pgr)
    return hit[0] if hit is not None else 1.0


def saving_at(curve: Sequence[Point], quality: float) -> float | None:
    """1 − cost share where the curve first reaches mean ``quality``; ``None`` if it never does."""
    hit = _first_crossing(curve, lambda p: p.quality, quality)
    return None if hit is None else 1.0 - hit[1]


def summarize(curve: Sequence[Point], quality_strong: float) -> Summary:
    """APGR, CPT(50 %), CPT(80 %) and the saving at 95 % of the strong model's quality."""
    return Summary(
        apgr=apgr(curve),
        cpt50=cpt(curve, 0.5),
        cpt80=cpt(curve, 0.8),
        saving_at_95=saving_at(curve, QUALITY_SHARE * quality_strong),
        curve=tuple(curve),
    )


def _curve_arrays(h: np.ndarray, qw: np.ndarray, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(strong share, PGR) at every distinct threshold, or ``None`` when the models tie on this sample."""
    n = len(h)
    mean_w, mean_s = float(qw.mean()), float(qs.mean())
    if math.isclose(mean_w, mean_s, rel_tol=0.0, abs_tol=1e-12):
        return None
    order = np.argsort(-h, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((qs - qw)[order])])
    ends = np.concatenate([[0], np.flatnonzero(np.diff(h[order]) != 0) + 1, [n]])
    quality = (float(qw.sum()) + gain[ends]) / n
    return ends / n, (quality - mean_w) / (mean_s - mean_w)


def _cpt_arrays(x: np.ndarray, pgr: np.ndarray, target: float) -> float:
    above = np.flatnonzero(pgr >= target - 1e-12)
    if not len(above):
        return 1.0
    k = int(above[0])
    if k == 0:
        return float(x[0])
    t = min(max((target - pgr[k - 1]) / (pgr[k] - pgr[k - 1]), 0.0), 1.0)
    return float(x[k - 1] + t * (x[k] - x[k - 1]))


def bootstrap(
    difficulty_scores: Sequence[float] | np.ndarray,
    quality_weak: Sequence[float],
    quality_strong: Sequence[float],
    *,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of APGR, CPT(50 %) and CPT(80 %), resampling prompts with replacement."""
    h = np.asarray(difficulty_scores, dtype=np.float64)
    qw = np.asarray(quality_weak, dtype=np.float64)
    qs = np.asarray(quality_strong, dtype=np.float64)
    rng = np.random.default_rng(seed)
    found: dict[str, list[float]] = {"apgr": [], "cpt50": [], "cpt80": []}
    for _ in range(rounds):
        pick = rng.integers(0, len(h), len(h))
        arrays = _curve_arrays(h[pick], qw[pick], qs[pick])
        if arrays is None:
            continue
        x, pgr = arrays
        found["apgr"].append(float(np.sum(np.diff(x) * (pgr[1:] + pgr[:-1]) / 2)))
        found["cpt50"].append(_cpt_arrays(x, pgr, 0.5))
        found["cpt80"].append(_cpt_arrays(x, pgr, 0.8))
    return {name: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else (math.nan, math.nan)
            for name, v in found.items()}


# -- routers -----------------------------------------------------------------------------


def _task_rates(path: Path, weak: str, strong: str) -> tuple[dict[str, float], float]:
    """Per task type, the smoothed share of prompts where the cheap model was *not* good enough."""
    records = read_records(path)
    y = labels(records, weak, strong, str(path))
    counts: dict[str, list[float]] = {}
    for record, ok in zip(records, y, strict=True):
        c = counts.setdefault(record.task_type, [0.0, 0.0])
        c[0] += 1.0 - ok
        c[1] += 1.0
    overall = (float(len(y) - y.sum()) + 1.0) / (len(y) + 2.0)
    return {t: (bad + 1.0) / (n + 2.0) for t, (bad, n) in counts.items()}, overall


def _scores(
    router: str,
    records: Sequence[Record],
    tokens: Sequence[int],
    config: Config,
    classifier: Classifier | None,
    rules_from: tuple[dict[str, float], float] | None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Per prompt: difficulty, the decision at the configured thresholds, and p(cheap ok) if a classifier ran."""
    routing, catalog = config.routing, config.catalog
    h = np.zeros(len(records))
    strong = np.zeros(len(records), dtype=bool)
    probabilities = np.zeros(len(records)) if router == "classifier" else None
    decided = True
    target = routing.quality_target
    points = {typed: classifier.operating_point(target, routing.frontier_share, typed)
              if classifier is not None and target is not None else None for typed in (False, True)}
    for i, (record, n_tokens) in enumerate(zip(records, tokens, strict=True)):
        rule = from_signals(Signals(task_type=record.task_type), routing, catalog) if record.task_type else None
        if router == "rules":
            if rules_from is not None:
                table, overall = rules_from
                h[i] = table.get(record.task_type, overall)
                decided = False
            elif rule is not None:
                h[i] = float(rule.rank)
                strong[i] = rule.rank > 0
            else:
                h[i] = 0.5
            continue
        if router == "default" and rule is not None:
            h[i] = 2.0 if rule.rank > 0 else -1.0
            strong[i] = rule.rank > 0
            continue
        if router == "heuristic" or (router == "default" and classifier is None):
            scored = difficulty.score(record.messages, n_tokens)
            h[i] = scored.score
            strong[i] = from_difficulty(scored.score, scored.reasons, routing, catalog).rank > 0
            continue
        assert classifier is not None
        p = classifier.predict(record.messages, n_tokens, record.task_type)
        if probabilities is not None:
            probabilities[i] = p
        h[i] = 1.0 - p
        point = points[bool(record.task_type)]
        strong[i] = requirement_from_probability(p, record.task_type, routing, catalog, point).rank > 0
    return h, (strong if decided else None), probabilities


def _costs(
    records: Sequence[Record],
    tokens: Sequence[int],
    model: str,
    config: Config,
    prices: dict[str, Price],
    counter: TokenCounter,
    output_tokens: int,
) -> list[int]:
    if model in prices:
        price, ratio = prices[model], None
    elif model in config.catalog.models:
        catalog_model = config.catalog.models[model]
        price, ratio = catalog_model.price, catalog_model
    else:
        raise EvalError(
            f"no price for model {model!r}: it is not in the catalog of {config.source}; "
            f"pass --price {model}=IN/OUT (USD per million tokens)"
        )
    costs = []
    for record, n_tokens in zip(records, tokens, strict=True):
        response = record.responses.get(model)
        out = counter.count_text(response) if response is not None else output_tokens
        inp = ratio.input_tokens(n_tokens) if ratio is not None else n_tokens
        costs.append(price.cost(input_tokens=inp, output_tokens=out))
    return costs


def evaluate(
    records: Sequence[Record],
    *,
    strong: str,
    weak: str,
    config: Config,
    router: str = "default",
    prices: dict[str, Price] | None = None,
    classifier: Classifier | None = None,
    rules_from: str | Path | None = None,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    source: str = "",
) -> Report:
    """Evaluate ``router`` on ``records`` against the random baseline.

    ``classifier`` overrides the one the config names (for ``classifier``, and for
    ``default`` when the config enables one); the ``classifier`` router falls back
    to the shipped model when the config names none.
    """
    if router not in ROUTERS:
        raise EvalError(f"unknown router {router!r}; choose one of: {', '.join(ROUTERS)}")
    if strong == weak:
        raise EvalError("--strong and --weak name the same model")
    prices = prices or {}
    textless = next((r for r in records if r.features is not None), None)
    if textless is not None:
        raise EvalError(
            f"{source or 'the data'}:{textless.line}: record {textless.id!r} has features but no messages; evaluation "
            "prices and routes the messages (export the decision log with include_text, or evaluate on other data)"
        )
    counter = TokenCounter(config.estimation.message_overhead_tokens)
    tokens = [counter.count_messages(r.messages) for r in records]
    cost_s = _costs(records, tokens, strong, config, prices, counter, output_tokens)
    cost_w = _costs(records, tokens, weak, config, prices, counter, output_tokens)
    qs = [r.score(strong, source) for r in records]
    qw = [r.score(weak, source) for r in records]
    if router == "default" and config.routing.classifier == "none":
        classifier = None  # the sidecar would use the heuristic
    elif classifier is None and router in ("classifier", "default"):
        classifier = open_classifier(config.routing)
        if classifier is None and router == "classifier":
            classifier = Classifier.load(default_model_path())
    rates = _task_rates(Path(rules_from), weak, strong) if rules_from is not None and router == "rules" else None
    h, decisions, probabilities = _scores(router, records, tokens, config, classifier, rates)
    curve = sweep(h, qw, qs, cost_w, cost_s)
    quality_strong = float(np.mean(qs))
    operating = None
    if decisions is not None:
        share = float(decisions.mean())
        quality = float(np.where(decisions, qs, qw).mean())
        cost = int(sum(s if d else w for d, s, w in zip(decisions, cost_s, cost_w, strict=True)))
        operating = Point(
            threshold=None,
            strong_share=share,
            quality=quality,
            pgr=(quality - curve[0].quality) / (curve[-1].quality - curve[0].quality),
            cost_nanos=cost,
            cost_share=cost / curve[-1].cost_nanos if curve[-1].cost_nanos else 0.0,
        )
    calibration = None
    if probabilities is not None:
        calibration = probability_metrics(probabilities, labels(records, weak, strong, source))
    return Report(
        router=router,
        records=len(records),
        strong=strong,
        weak=weak,
        quality_strong=quality_strong,
        quality_weak=float(np.mean(qw)),
        cost_strong_nanos=int(sum(cost_s)),
        cost_weak_nanos=int(sum(cost_w)),
        summary=summarize(curve, quality_strong),
        random=summarize(random_curve(curve), quality_strong),
        operating_point=operating,
        calibration=calibration,
        intervals=bootstrap(h, qw, qs),
        target=_target_text(config, classifier, router),
    )


def _target_text(config: Config, classifier: Classifier | None, router: str) -> str:
    routing = config.routing
    if router not in ("classifier", "default") or classifier is None:
        return ""
    if "default" in routing.thresholds:
        return "the explicit routing.thresholds"
    if routing.quality_target is not None:
        untyped = classifier.operating_point(routing.quality_target, routing.frontier_share)
        typed = classifier.operating_point(routing.quality_target, routing.frontier_share, typed=True)
        if untyped is not None and typed is not None and typed != untyped:
            return f"without a task type: {untyped.describe()}; with a task type: {typed.describe()}"
        if untyped is not None:
            return untyped.describe()
    return "routing.difficulty's thresholds"


# -- output ------------------------------------------------------------------------------


def _summary_json(summary: Summary) -> dict[str, Any]:
    return {
        "apgr": round(summary.apgr, 6),
        "cpt50": round(summary.cpt50, 6),
        "cpt80": round(summary.cpt80, 6),
        "saving_at_95": None if summary.saving_at_95 is None else round(summary.saving_at_95, 6),
        "curve": [_point_json(p) for p in summary.curve],
    }


def _point_json(point: Point) -> dict[str, Any]:
    out = asdict(point)
    for key in ("strong_share", "quality", "pgr", "cost_share"):
        out[key] = round(out[key], 6)
    return out


def report_json(report: Report) -> dict[str, Any]:
    """The report as a JSON-ready object: the router's metrics at the top level, ``random`` beside them."""
    return {
        "router": report.router,
        "records": report.records,
        "strong": report.strong,
        "weak": report.weak,
        "quality_strong": round(report.quality_strong, 6),
        "quality_weak": round(report.quality_weak, 6),
        "cost_strong_nanos": report.cost_strong_nanos,
        "cost_weak_nanos": report.cost_weak_nanos,
        **_summary_json(report.summary),
        "random": _summary_json(report.random),
        "operating_point": None if report.operating_point is None else {
            **_point_json(report.operating_point),
            "relative_quality": round(report.operating_point.quality / report.quality_strong, 6)
            if report.quality_strong else None,
            "set_by": report.target,
        },
        "intervals": {k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in report.intervals.items()},
        "calibration": report.calibration,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def report_text(report: Report, source: str = "") -> str:
    """The report for a terminal."""
    lines = [
        f"{source + ': ' if source else ''}{report.records} prompts; strong {report.strong} "
        f"(quality {report.quality_strong:.3f}), weak {report.weak} (quality {report.quality_weak:.3f})",
        f"cheap-only cost is {report.cost_weak_nanos / max(report.cost_strong_nanos, 1):.1%} of strong-only",
        "",
        f"{'router':<12} {'APGR':>6} {'CPT(50%)':>9} {'CPT(80%)':>9} {'saving at 95% quality':>22}",
    ]
    for name, s in ((report.router, report.summary), ("random", report.random)):
        lines.append(f"{name:<12} {s.apgr:>6.3f} {_pct(s.cpt50):>9} {_pct(s.cpt80):>9} {_pct(s.saving_at_95):>22}")
    if report.intervals:
        iv = report.intervals
        lines.append(f"95 % bootstrap intervals of {report.router}: APGR [{iv['apgr'][0]:.3f}, {iv['apgr'][1]:.3f}], "
                     f"CPT(50%) [{_pct(iv['cpt50'][0])}, {_pct(iv['cpt50'][1])}], "
                     f"CPT(80%) [{_pct(iv['cpt80'][0])}, {_pct(iv['cpt80'][1])}]")
    op = report.operating_point
    if op is not None:
        relative = op.quality / report.quality_strong if report.quality_strong else 0.0
        lines += ["", f"at the operating point: {op.strong_share:.1%} to the strong model, PGR {op.pgr:.2f}, "
                      f"quality {relative:.1%} of strong-only, cost {op.cost_share:.1%} of strong-only"]
        if report.target:
            lines.append(f"  set by {report.target}")
    cal = report.calibration
    if cal is not None:
        lines += ["", f"calibration of p(cheap ok) on this data: ECE {cal['ece']:.3f}, log loss {cal['log_loss']:.3f}, "
                      f"Brier {cal['brier']:.3f}, AUC {cal['auc']}",
                  f"  {'p(cheap ok)':<12} {'prompts':>8} {'predicted':>10} {'observed':>9}"]
        for row in cal["reliability"]:
            lines.append(f"  {row['from']:.1f}-{row['to']:.1f}{'':<5} {row['n']:>8} {row['mean_predicted']:>10.3f} "
                         f"{row['observed']:>9.3f}")
    return "\n".join(lines)


def plot(report: Report, path: str | Path, title: str = "") -> None:
    """PGR against the strong share, and quality against cost, as a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EvalError("--plot needs matplotlib: pip install 'tollgate[plot]'") from None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, s, style in ((report.router, report.summary, "-"), ("random", report.random, "--")):
        xs = [p.strong_share for p in s.curve]
        left.plot(xs, [p.pgr for p in s.curve], style, label=f"{name} (APGR {s.apgr:.3f})")
        right.plot([p.cost_share for p in s.curve], [p.quality for p in s.curve], style, label=name)
    op = report.operating_point
    if op is not None:
        left.plot([op.strong_share], [op.pgr], "o", label="configured thresholds")
        right.plot([op.cost_share], [op.quality], "o", label="configured thresholds")
    right.axhline(QUALITY_SHARE * report.quality_strong, color="grey", lw=0.8, ls=":", label="95% of strong quality")
    left.set(xlabel="share of calls to the strong model", ylabel="PGR", xlim=(0, 1))
    right.set(xlabel="cost relative to strong only", ylabel="mean quality", xlim=(0, 1))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title or f"{report.router} router: {report.strong} vs {report.weak} ({report.records} prompts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

