"""Router evaluation: curves and RouteLLM's metrics on fixtures computed by hand."""

from __future__ import annotations

import pytest

from tests.support.catalog import suite_config, suite_config_text
from tollgate.estimate import TokenCounter
from tollgate.learn.dataset import Record
from tollgate.learn.evaluate import (
    EvalError,
    apgr,
    cpt,
    evaluate,
    parse_price,
    random_curve,
    saving_at,
    summarize,
    sweep,
)
from tollgate.money import Price

# Four prompts. Difficulty 0.9 first; the two at 0.7 are tied and move together.
#   prompt  weak  strong  difficulty  cost weak  cost strong
#   1       0     1       0.9         1          10
#   2       1     1       0.7         1          10
#   3       0     1       0.7         1          10
#   4       1     0       0.2         1          10
# Q_weak = 0.5, Q_strong = 0.75. Points (strong share, quality, PGR, cost):
#   (0, 0.5, 0, 4), (0.25, 0.75, 1, 13), (0.75, 1.0, 2, 31), (1, 0.75, 1, 40)
WEAK_Q = [0, 1, 0, 1]
STRONG_Q = [1, 1, 1, 0]
HARDNESS = [0.9, 0.7, 0.7, 0.2]
COST_W = [1, 1, 1, 1]
COST_S = [10, 10, 10, 10]


def test_the_curve_of_the_hand_made_fixture() -> None:
    curve = sweep(HARDNESS, WEAK_Q, STRONG_Q, COST_W, COST_S)
    assert [p.strong_share for p in curve] == [0, 0.25, 0.75, 1]
    assert [p.quality for p in curve] == [0.5, 0.75, 1.0, 0.75]
    assert [p.pgr for p in curve] == [0, 1, 2, 1]
    assert [p.cost_nanos for p in curve] == [4, 13, 31, 40]
    assert [p.threshold for p in curve] == [None, 0.9, 0.7, 0.2]
    # Trapezoids: 0.25 * (0 + 1) / 2 + 0.5 * (1 + 2) / 2 + 0.25 * (2 + 1) / 2
    assert apgr(curve) == pytest.approx(1.25, abs=1e-12)
    assert cpt(curve, 0.5) == pytest.approx(0.125, abs=1e-12)
    assert cpt(curve, 0.8) == pytest.approx(0.2, abs=1e-12)
    assert cpt(curve, 1.5) == pytest.approx(0.5, abs=1e-12)
    # 95 % of Q_strong = 0.7125, reached 85 % of the way from the first point to the second:
    # cost share 0.1 + 0.85 * (0.325 - 0.1) = 0.29125.
    assert saving_at(curve, 0.95 * 0.75) == pytest.approx(1 - 0.29125, abs=1e-12)


def test_the_random_baseline_is_exact() -> None:
    curve = sweep(HARDNESS, WEAK_Q, STRONG_Q, COST_W, COST_S)
    rnd = summarize(random_curve(curve), 0.75)
    assert (rnd.apgr, rnd.cpt50, rnd.cpt80) == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.8))
    # Q(x) = 0.5 + 0.25 x reaches 0.7125 at x = 0.85; cost share 0.1 + 0.85 * 0.9 = 0.865.
    assert rnd.saving_at_95 == pytest.approx(0.135, abs=1e-12)


def test_equal_model_quality_has_no_pgr() -> None:
    with pytest.raises(EvalError, match="PGR"):
        sweep([0.1, 0.2], [1, 0], [0, 1], [1, 1], [2, 2])


def test_prices_parse_with_slashes_in_model_names() -> None:
    assert parse_price("mistralai/Mixtral-8x7B=0.24/0.48") == (
        "mistralai/Mixtral-8x7B", Price.per_million(input="0.24", output="0.48"))
    for bad in ("gpt-4o", "gpt-4o=1", "=1/2", "gpt-4o=a/b", "gpt-4o=1/0.0000001"):
        with pytest.raises(EvalError, match="--price"):
            parse_price(bad)


def _records() -> list[Record]:
    rows = [("extract", 1, 1), ("planning", 0, 1), ("", 0, 1), ("", 1, 0), ("classify", 1, 1), ("planning", 1, 1)]
    return [
        Record(id=str(i), messages=(("user", f"question number {i}"),), task_type=t,
               scores={"w": float(w), "s": float(s)}, responses={"s": "four tokens of text"} if i == 0 else {})
        for i, (t, w, s) in enumerate(rows)
    ]


def test_a_model_without_a_price_is_named() -> None:
    config = suite_config()
    with pytest.raises(EvalError, match=r"no price for model 'w'.*--price w=IN/OUT"):
        evaluate(_records(), strong="s", weak="w", config=config, router="rules", prices={"s": Price(1, 1, 1)})


def test_rules_follow_the_config_and_costs_come_from_prices_and_tokens() -> None:
    config = suite_config()
    prices = dict([parse_price("s=10/30"), parse_price("w=1/3")])
    report = evaluate(_records(), strong="s", weak="w", config=config, router="rules", prices=prices,
                      output_tokens=100)
    # planning -> frontier (rank 2), no rule -> 0.5, extract/classify -> cheap (0): three tie groups.
    assert [p.strong_share for p in report.summary.curve] == [0, pytest.approx(2 / 6), pytest.approx(4 / 6), 1]
    op = report.operating_point
    assert op is not None and op.strong_share == pytest.approx(2 / 6)
    counter = TokenCounter(config.estimation.message_overhead_tokens)
    records = _records()
    expected_strong = sum(
        Price.per_million(input="10", output="30").cost(
            input_tokens=counter.count_messages(r.messages),
            output_tokens=counter.count_text("four tokens of text") if r.id == "0" else 100)
        for r in records
    )
    assert report.cost_strong_nanos == expected_strong
    assert report.random.apgr == pytest.approx(0.5)


def test_rules_from_a_labelled_file_rank_task_types(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    train = tmp_path / "train.jsonl"
    lines = [{"messages": [{"role": "user", "content": "x"}], "task_type": t, "scores": {"w": w, "s": 1}}
             for t, w in [("planning", 0), ("planning", 0), ("extract", 1), ("extract", 1)]]
    train.write_text("\n".join(json.dumps(line) for line in lines))
    report = evaluate(_records(), strong="s", weak="w", config=suite_config(), router="rules",
                      prices={"s": Price(10, 10, 10), "w": Price(1, 1, 1)}, rules_from=train)
    # planning: (2 + 1) / (2 + 2) = 0.75 hard; unseen "" and classify: overall 3/6 = 0.5; extract 1/4.
    assert [p.threshold for p in report.summary.curve] == [None, 0.75, 0.5, 0.25]
    assert report.operating_point is None


def test_unknown_router_and_same_models_are_refused() -> None:
    config = suite_config()
    with pytest.raises(EvalError, match="unknown router"):
        evaluate(_records(), strong="s", weak="w", config=config, router="magic")
    with pytest.raises(EvalError, match="same model"):
        evaluate(_records(), strong="s", weak="s", config=config)


def test_default_router_keeps_rule_decisions_and_scores_the_rest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from tollgate.config import parse_config

    data = yaml.safe_load(suite_config_text())
    data["routing"]["classifier"] = "none"
    config = parse_config(yaml.safe_dump(data))
    report = evaluate(_records(), strong="s", weak="w", config=config, router="default",
                      prices={"s": Price(10, 10, 10), "w": Price(1, 1, 1)})
    thresholds = [p.threshold for p in report.summary.curve]
    # planning (rule: frontier) is always strong, extract/classify (rule: cheap) always weak, and the
    # two prompts without a task type are ordered by the heuristic between them.
    assert thresholds[1] == 2.0 and thresholds[-1] == -1.0
    assert all(0.0 <= t <= 1.0 for t in thresholds[2:-1])
    op = report.operating_point
    assert op is not None and op.strong_share == pytest.approx(2 / 6)
    assert report.calibration is None
