"""scripts/convert_routellm.py on a few rows in RouteLLM's file layout."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import ROOT

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"


def _converter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("convert_routellm", ROOT / "scripts" / "convert_routellm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _fixture(root: Path) -> None:
    gsm8k_header = ["prompt", WEAK, STRONG, f"{WEAK}_response", f"{STRONG}_response"]
    _write_csv(root / "gsm8k" / "gsm8k_responses.csv", gsm8k_header, [
        ["Janet’s ducks lay 16 eggs per day. How many are left?", "True", "True", " 9 eggs.\n#### 9", "9"],
        ["A robe takes 2 bolts of blue fiber and half that much white fiber.", "False", "True", "2.5", "3"],
        ["Contaminated: what is 2 + 2?", "True", "True", "4", "4"],
    ])
    (root / "gsm8k" / "contaminated_prompts.jsonl").write_text(
        json.dumps({"train_prompt": "x", "eval_prompt": "Contaminated: what is 2 + 2?", "train_idx": 1,
                    "eval_idx": 2}) + "\n")
    header = ["prompt", WEAK, STRONG]
    _write_csv(root / "mmlu" / "responses" / "mmlu_anatomy.csv", header, [
        ["Which structure collects urine?\nA. Bladder\nB. Kidney\nC. Ureter\nD. Urethra\nAnswer:", "True", "True"],
        ["Which is derived from ectomesenchyme?\nA. Motor neurons\nB. Melanocytes\nAnswer:", "False", "True"],
    ])
    _write_csv(root / "mmlu" / "responses" / "mmlu_virology.csv", header, [
        ["A line\u2028with a separator inside\nA. yes\nB. no\nAnswer:", "True", "False"],
        ["Leaked question?\nA. a\nB. b\nAnswer:", "True", "True"],
    ])
    (root / "mmlu" / "contaminated_prompts.jsonl").write_text(
        json.dumps({"train_prompt": "y", "eval_prompt": "Leaked question?\nA. a\nB. b\nAnswer:", "train_idx": 0,
                    "eval_idx": 1}) + "\n")


def _read(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_converts_drops_contaminated_prompts_and_splits_by_prompt(tmp_path: Path) -> None:
    src, out = tmp_path / "routellm", tmp_path / "out"
    _fixture(src)
    convert = _converter()
    counts = convert.convert(src, out, 0.5)
    assert counts["gsm8k"]["dropped"] == 1 and counts["mmlu"]["dropped"] == 1
    assert counts["gsm8k"]["train"] + counts["gsm8k"]["heldout"] == 2
    assert counts["mmlu"]["train"] + counts["mmlu"]["heldout"] == 3
    gsm8k = _read(out / "gsm8k-train.jsonl") + _read(out / "gsm8k-heldout.jsonl")
    mmlu = _read(out / "mmlu-train.jsonl") + _read(out / "mmlu-heldout.jsonl")
    assert not any("Contaminated" in r["messages"][0]["content"] or "Leaked" in r["messages"][0]["content"]
                   for r in gsm8k + mmlu)
    robe = next(r for r in gsm8k if "robe" in r["messages"][0]["content"])
    assert robe["task_type"] == "math" and robe["scores"] == {WEAK: 0.0, STRONG: 1.0}
    assert robe["responses"] == {WEAK: "2.5", STRONG: "3"} and robe["id"] == "gsm8k-0001"
    assert sorted(r["task_type"] for r in mmlu) == ["anatomy", "anatomy", "virology"]
    assert all("responses" not in r and r["messages"][0]["role"] == "user" for r in mmlu)
    # Every record sits in the split its prompt hashes to, whatever the run.
    for r in gsm8k + mmlu:
        assert r["split"] == ("heldout" if convert.heldout(r["messages"][0]["content"], 0.5) else "train")
    train = _read(out / "train.jsonl")
    assert len(train) == counts["gsm8k"]["train"] + counts["mmlu"]["train"]
    assert all(r["split"] == "train" for r in train)


def test_the_output_is_what_tollgate_reads_and_the_command_line_works(tmp_path: Path) -> None:
    from tollgate.learn.dataset import read_records

    src, out = tmp_path / "routellm", tmp_path / "out"
    _fixture(src)
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_routellm.py"), str(src), str(out)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "gsm8k:" in run.stdout and "1 contaminated dropped" in run.stdout
    records = read_records(out / "train.jsonl") if (out / "train.jsonl").stat().st_size else []
    held = [r for name in ("gsm8k-heldout.jsonl", "mmlu-heldout.jsonl") if (out / name).stat().st_size
            for r in read_records(out / name)]
    assert len(records) + len(held) == 5
    separator = [r for r in [*records, *held] if "\u2028" in r.messages[0][1]]
    assert len(separator) == 1


def test_missing_contamination_list_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "routellm"
    _fixture(src)
    (src / "mmlu" / "contaminated_prompts.jsonl").unlink()
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_routellm.py"), str(src),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "contaminated_prompts.jsonl: missing" in run.stderr
