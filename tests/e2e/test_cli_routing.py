"""``tollgate train`` and ``tollgate eval`` end to end on a tiny file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tollgate.cli import main
from tollgate.routing.classifier import Classifier

WEAK, STRONG = "mixtral", "gpt-4"
PRICES = ["--price", f"{STRONG}=10/30", "--price", f"{WEAK}=0.24/0.24"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Prompts mentioning "proof" are where the weak model fails; the rest it answers as well."""
    lines = []
    for i in range(80):
        hard = i % 2 == 1
        text = f"question {i}: " + ("give a rigorous proof about primes" if hard else "name a colour of the sky")
        lines.append(json.dumps({
            "id": f"q{i}",
            "messages": [{"role": "user", "content": text}],
            "task_type": "math" if hard else "trivia",
            "scores": {STRONG: 1.0, WEAK: 0.0 if hard and i % 3 else 1.0},
            "responses": {STRONG: "a longer answer " * 5, WEAK: "short"},
        }))
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_then_eval_the_classifier(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.npz"
    assert main(["train", str(data), "--out", str(model), "--folds", "3", "--quiet", "--provenance", "tiny test",
                 "--holdout", str(data)]) == 0
    out = capsys.readouterr().out
    assert "trained on 80 prompts" in out and f"weak {WEAK}, strong {STRONG}" in out
    meta = Classifier.load(model).metadata
    assert meta["provenance"] == "tiny test" and meta["training_set"]["records"] == 80
    assert meta["metrics"]["heldout"]["data.jsonl"]["n"] == 80
    code = main(["eval", str(data), "--strong", STRONG, "--weak", WEAK, *PRICES, "--router", "classifier",
                 "--classifier", str(model), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"apgr", "cpt50", "cpt80", "saving_at_95", "curve", "random"} <= set(report)
    assert set(report["random"]) == {"apgr", "cpt50", "cpt80", "saving_at_95", "curve"}
    assert report["random"]["apgr"] == pytest.approx(0.5)
    # The keyword separates the data, so the classifier recovers the whole gap quickly.
    assert report["apgr"] > 0.7 and report["cpt80"] < 0.6
    assert report["curve"][0]["pgr"] == 0 and report["curve"][-1]["pgr"] == 1
    assert report["calibration"]["n"] == 80


def test_eval_text_plot_and_routers(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    assert main(["eval", str(data), "--strong", STRONG, "--weak", WEAK, *PRICES, "--router", "heuristic",
                 "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "APGR" in text and "random" in text and "at the operating point" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for router in ("rules", "default"):
        assert main(["eval", str(data), "--strong", STRONG, "--weak", WEAK, *PRICES, "--router", router]) == 0
    capsys.readouterr()
    assert main(["eval", str(data), "--strong", STRONG, "--weak", WEAK, *PRICES, "--router", "rules",
                 "--rules-from", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["apgr"] > 0.7


def test_eval_names_a_model_without_a_price(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", str(data), "--strong", STRONG, "--weak", WEAK, "--price", f"{STRONG}=10/30"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"no price for model '{WEAK}'" in err and f"--price {WEAK}=IN/OUT" in err


def test_catalog_models_need_no_price_and_bad_input_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}],
                                          "scores": {"gpt-5.5": 1.0, "gpt-6-luna": float(i % 2)}})
                              for i in range(6)))
    assert main(["eval", str(path), "--strong", "gpt-5.5", "--weak", "gpt-6-luna", "--router", "heuristic"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "x"}], "scores": {"a": 1}}\n{"messages": 3}\n')
    assert main(["eval", str(bad), "--strong", "a", "--weak", "b", "--price", "a=1/1", "--price", "b=1/1"]) == 2
    assert f"{bad}:2: messages must be a non-empty list" in capsys.readouterr().err
    assert main(["train", str(bad), "--out", str(tmp_path / "m.npz")]) == 2


def test_the_installed_command_runs_train_and_eval(data: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"))
    model = tmp_path / "m.npz"
    run = subprocess.run([sys.executable, "-m", "tollgate.cli", "train", str(data), "--out", str(model),
                          "--weak", WEAK, "--strong", STRONG, "--seed", "3", "--folds", "2"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "lambda" in run.stderr  # progress goes to stderr
    run = subprocess.run([sys.executable, "-m", "tollgate.cli", "eval", str(data), "--strong", STRONG, "--weak",
                          WEAK, *PRICES, "--router", "classifier", "--classifier", str(model)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "calibration of p(cheap ok)" in run.stdout


def test_a_trained_model_steers_by_quality_target(data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.npz"
    assert main(["train", str(data), "--out", str(model), "--folds", "3", "--quiet"]) == 0
    capsys.readouterr()
    # Every training prompt has a task type: the curve is theirs, and it is the model's only one.
    assert Classifier.load(model).operating_point(0.95, 0.2, typed=True) is not None
    config = tmp_path / "tollgate.yaml"
    config.write_text(f"routing:\n  classifier: {model}\n  quality_target: 0.95\n"
                      "  thresholds:\n    summarise: {medium: 0.5}\n")
    assert main(["check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "quality_target 0.95 -> difficulty thresholds medium" in out and "of the strong tier's" in out
    assert "warning: routing.thresholds.summarise: no rule has task type 'summarise'; did you mean 'summarize'?" in out
    assert main(["eval", str(data), "--strong", STRONG, "--weak", WEAK, *PRICES, "--router", "classifier",
                 "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    low, high = report["intervals"]["apgr"]
    assert low <= report["apgr"] <= high
    point = report["operating_point"]
    # The target held on the data the thresholds came from (the training file, out of fold).
    assert point["relative_quality"] >= 0.95 and point["set_by"].startswith("quality_target 0.95 -> ")
