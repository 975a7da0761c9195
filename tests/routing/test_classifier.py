"""The learned difficulty classifier: training on data whose answer is known, the file, reloading."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tollgate.estimate import TokenCounter
from tollgate.learn.dataset import DatasetError, Record
from tollgate.learn.train import labels, probability_metrics, train
from tollgate.routing import difficulty
from tollgate.routing.classifier import (
    BUCKETS,
    DENSE_FEATURES,
    FORMAT_VERSION,
    Classifier,
    ClassifierError,
    default_model_path,
    featurize,
)

WEAK, STRONG = "weak-model", "strong-model"
FILLER = ["alpha", "beta", "gamma", "delta", "epsilon", "river", "mountain", "table", "window", "garden", "orange",
          "purple", "quiet", "green", "market", "letter", "pencil", "silver", "summer", "winter", "yellow", "cloud"]


def synthetic(n: int, seed: int, *, noise: tuple[float, float] = (0.0, 1.0)) -> list[Record]:
    """Prompts of filler words; half contain "zebra", on which the weak model is good enough with
    probability ``noise[0]`` (else ``noise[1]``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = list(rng.choice(FILLER, size=int(rng.integers(8, 20))))
        hard = bool(i % 2)
        if hard:
            words.insert(int(rng.integers(0, len(words))), "zebra")
        ok = rng.random() < (noise[0] if hard else noise[1])
        out.append(Record(
            id=f"s{seed}-{i}",
            messages=(("user", " ".join(words)),),
            scores={STRONG: 1.0, WEAK: 1.0 if ok else 0.0},
        ))
    return out


def predictions(model: Classifier, records: list[Record]) -> np.ndarray:
    counter = TokenCounter()
    return np.array([model.predict(r.messages, counter.count_messages(r.messages)) for r in records])


@pytest.fixture(scope="module")
def noisy_model() -> Classifier:
    records = synthetic(2000, seed=1, noise=(0.2, 0.9))
    return train(records, weak=WEAK, strong=STRONG, folds=3).classifier


def test_a_separating_keyword_is_learned() -> None:
    model = train(synthetic(300, seed=2), weak=WEAK, strong=STRONG, folds=3, lambdas=(1e-2, 1e-3)).classifier
    fresh = synthetic(300, seed=3)
    p = predictions(model, fresh)
    y = labels(fresh, WEAK, STRONG)
    assert np.mean((p >= 0.5) == (y > 0.5)) >= 0.98
    assert model.metadata["metrics"]["out_of_fold"]["auc"] >= 0.98


def test_probabilities_are_calibrated_on_fresh_data(noisy_model: Classifier) -> None:
    fresh = synthetic(1000, seed=4, noise=(0.2, 0.9))
    p = predictions(noisy_model, fresh)
    hard = np.array(["zebra" in r.messages[0][1] for r in fresh])
    # The true probabilities are 0.2 and 0.9: a calibrated model lands near them. (Not on them: the
    # weights the filler words pick up from label noise spread each group's predictions out.)
    assert abs(p[hard].mean() - 0.2) < 0.04
    assert abs(p[~hard].mean() - 0.9) < 0.04
    metrics = probability_metrics(p, labels(fresh, WEAK, STRONG))
    assert metrics["ece"] < 0.08
    assert metrics["accuracy"] >= 0.82  # the best possible here is 0.85
    oof = noisy_model.metadata["metrics"]["out_of_fold"]
    assert oof["ece"] < 0.06 and oof["n"] == 2000 and sum(row["n"] for row in oof["reliability"]) == 2000


def test_training_refuses_data_with_one_label_and_missing_scores() -> None:
    same = [Record(id=str(i), messages=(("user", f"q {i}"),), scores={WEAK: 1.0, STRONG: 1.0}) for i in range(10)]
    with pytest.raises(DatasetError, match="same label"):
        train(same, weak=WEAK, strong=STRONG)
    missing = [Record(id="x", messages=(("user", "q"),), scores={WEAK: 1.0}, line=7)]
    with pytest.raises(DatasetError, match=r"data.jsonl:7: record 'x' has no score for 'strong-model'"):
        train(missing, weak=WEAK, strong=STRONG, source="data.jsonl")


def test_model_file_round_trip_keeps_predictions_and_metadata(noisy_model: Classifier, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    noisy_model.save(path)
    loaded = Classifier.load(path)
    meta = loaded.metadata
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["features"]["hash_bits"] == 18 and meta["features"]["dense"] == list(DENSE_FEATURES)
    assert meta["label"] == "cheap_ok = score(weak) >= score(strong)"
    assert meta["weak_model"] == WEAK and meta["strong_model"] == STRONG
    assert {"training_set", "trained_at", "trainer", "metrics", "provenance"} <= set(meta)
    msgs = (("user", "alpha zebra river"),)
    assert loaded.predict(msgs, 10) == noisy_model.predict(msgs, 10)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def _rewrite_metadata(path: Path, change: dict[str, object]) -> None:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays["metadata"].tobytes())
    meta.update(change)
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with path.open("wb") as f:
        np.savez(f, **arrays)


def test_a_wrong_format_version_or_feature_spec_is_a_clear_error(noisy_model: Classifier, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    noisy_model.save(path)
    _rewrite_metadata(path, {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(ClassifierError, match=rf"format version {FORMAT_VERSION + 1} is not supported.*tollgate train"):
        Classifier.load(path)
    noisy_model.save(path)
    _rewrite_metadata(path, {"features": {"scheme": "other"}})
    with pytest.raises(ClassifierError, match="different features"):
        Classifier.load(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(ClassifierError, match="not a readable classifier file"):
        Classifier.load(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weights.npy", b"")
    with pytest.raises(ClassifierError, match="missing"):
        Classifier.load(path)
    with pytest.raises(ClassifierError, match="no such classifier file"):
        Classifier.load(tmp_path / "absent.npz")


def _constant(p: float) -> Classifier:
    """A model that answers ``p`` for every request."""
    logit = math.log(p / (1 - p))
    return Classifier.from_weights(np.zeros(BUCKETS), np.zeros(len(DENSE_FEATURES)), logit)


def test_a_changed_file_is_reloaded_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    _constant(0.8).save(path)
    now = [100.0]
    model = Classifier.load(path, clock=lambda: now[0])
    msgs = (("user", "hello"),)
    assert model.predict(msgs, 5) == pytest.approx(0.8)
    _constant(0.3).save(path)
    os.utime(path, ns=(1, 1))  # a new mtime even on a coarse-clock file system
    now[0] += 0.5
    assert model.predict(msgs, 5) == pytest.approx(0.8), "checked again before the interval passed"
    now[0] += 0.6
    assert model.predict(msgs, 5) == pytest.approx(0.3)
    # A broken file is logged and skipped; the model in use stays.
    path.write_bytes(b"half-written")
    now[0] += 1.1
    assert model.predict(msgs, 5) == pytest.approx(0.3)
    assert not model.reload_if_changed()
    _constant(0.6).save(path)
    assert model.reload_if_changed()
    assert model.predict(msgs, 5) == pytest.approx(0.6)


def test_dense_features_are_the_heuristics_own() -> None:
    """The classifier reads the same values the heuristic scores, so a change to one shows up here."""
    cases = [
        [("user", "What is the capital of France?")],
        [("system", "be brief"), ("user", "Explain the trade-offs of optimistic locking, step by step. Why? How?")],
        [("user", "Fix this:\n```python\ndef f(x):\n    return x/0\n```\nTraceback (most recent call last):\n"
                  '  File "a.py", line 2, in f\nZeroDivisionError: division by zero')],
        [("user", "What\u2019s wrong with my \u201cdesign\u201d? It\u2019s not working\u00a0at all, step by step")],
        [("user", "solve for x: 3x + 4 = 19, then 2x - 7 = 11"), ("assistant", "x = 5"), ("tool", "{}"),
         ("user", "and the integral of x^2?")],
    ]
    counter = TokenCounter()
    for msgs in cases:
        tokens = counter.count_messages(msgs) + 500
        dense = featurize(msgs, tokens).dense
        weights = [difficulty.WEIGHTS.get(name, 0.0) for name in DENSE_FEATURES]
        logit = difficulty.BIAS + sum(w * v for w, v in zip(weights, dense, strict=True))
        assert 1 / (1 + math.exp(-logit)) == pytest.approx(difficulty.score(msgs, tokens).score, abs=1e-12)


def test_keyword_sums_match_the_heuristic_on_any_text() -> None:
    """The bytes keyword scan must agree with the character scan, whitespace, quotes and Unicode included."""
    rng = np.random.default_rng(7)
    vocabulary = [*difficulty._KEYWORD_TABLE, "what's wrong", "step by step", "trade-off", "what\u2019s wrong",
                  "\u201cdesign\u201d", "Explain", "RACE CONDITION", "naïve", "straße", "x", "42", "a-b", "don't"]
    separators = [" ", "  ", "\n", "\t", ", ", ". ", "?", "!", "\x1c", "\u00a0", "\u2003", "/", "'", "-",
                  "\u2019"]
    for _ in range(3000):
        parts = rng.choice(vocabulary, size=int(rng.integers(1, 12)))
        text = "".join(str(w) + str(rng.choice(separators)) for w in parts)
        assert difficulty._keyword_sums(text, text.lower()) == difficulty._keyword_sums_text(text), text


def test_predict_is_featurize_then_logit(noisy_model: Classifier) -> None:
    for msgs in ([("user", "alpha zebra river")], [("system", "x"), ("user", "")], [("user", "a")],
                 [("user", "Why does this fail?\n```py\nraise KeyError\n```\n" * 30)]):
        expected = 1 / (1 + math.exp(-noisy_model.logit(featurize(msgs, 700))))
        assert noisy_model.predict(msgs, 700) == pytest.approx(expected, abs=1e-6)


def test_hashing_is_the_same_in_every_process() -> None:
    """Python's str hash changes per process; the classifier's must not, or a model file would be noise."""
    code = (
        "import sys; sys.path.insert(0, 'sidecar');"
        "from tollgate.routing.classifier import featurize;"
        "f = featurize([('user', 'Héllo wörld, 42 zebras!')], 9);"
        "print(f.buckets.tolist(), f.values.round(9).tolist())"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    local = featurize([("user", "Héllo wörld, 42 zebras!")], 9)
    assert runs.pop().strip() == f"{local.buckets.tolist()} {local.values.round(9).tolist()}"


def test_the_shipped_model_loads_and_says_where_it_comes_from() -> None:
    model = Classifier.load(default_model_path())
    meta = model.metadata
    assert meta["format_version"] == FORMAT_VERSION
    assert "RouteLLM" in meta["provenance"] and meta["training_set"]["sha256"].startswith("sha256:")
    assert default_model_path().stat().st_size < 5 * 2**20
    easy = model.predict((("user", "What is the capital of France?"),), 14)
    hard_msgs = (("user", "Design the architecture to fix this race condition:\n```python\nasync def f():\n"
                          "    await x\n```\nTraceback (most recent call last):\n  File \"a.py\", line 1\n"),)
    assert easy > 0.5 > model.predict(hard_msgs, 60)
