#!/usr/bin/env python3
"""Rebuild the shipped difficulty classifier from the public routing data, and measure it.

    python scripts/train_default_classifier.py ROUTING_DATA OUT.npz [--work DIR]

ROUTING_DATA holds ``routellm/`` (GSM8K and MMLU), ``arena-bench-v1/`` and
``alpaca-eval/`` (the layout described in its README). The recipe:

- GSM8K and MMLU: RouteLLM's per-prompt results, contaminated prompts dropped, split
  80/20 by a keyed hash of the prompt (``convert_routellm.py``).
- Arena-Bench v1: 294 hard real user prompts, split 70/30 by the same keyed hash.
  Its training split weighs ``ARENA_WEIGHT`` times a benchmark prompt: it is the only
  open-ended traffic in the training data, and 206 prompts next to 12,255 would
  otherwise barely move the model.
- The heuristic's features are held at the heuristic's weights (``hold_heuristic``):
  benchmark data, which has no traces, tool loops or planning requests, cannot zero
  them out; the hashed n-grams learn what the heuristic misses.
- Calibration and validation are out of fold: each prediction comes from the fold that
  did not train on the prompt. Requests without a task type (Arena-Bench here: open-ended
  traffic) get their own base rate and their own validation curve; typed requests
  (GSM8K, MMLU) theirs. ``routing.quality_target`` derives its thresholds from them.
- AlpacaEval is CC BY-NC: it is never read here. Evaluate on it with ``tollgate eval``.

The held-out splits are scored by the final model and their metrics stored in the
model's metadata. The converted data derives from the sources' licences: keep it out
of the repository (``--work`` defaults to a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sidecar"))

from convert_routellm import convert, heldout

from tollgate.learn.dataset import read_records
from tollgate.learn.train import train

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
ARENA_WEIGHT = 10.0
ARENA_HELDOUT_SHARE = 0.3
ARENA_FILE = "arena-bench-v1/arena_bench_v1_gpt4-1106-preview_vs_mixtral-8x7b.jsonl"
LAMBDAS = (1e-2, 3e-3, 1e-3)


def split_arena(src: Path, out: Path) -> tuple[Path, Path]:
    """Arena-Bench's lines, split by the keyed hash of their messages (the same on every machine)."""
    train_lines: list[str] = []
    held_lines: list[str] = []
    for line in src.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        text = json.dumps(json.loads(line)["messages"], ensure_ascii=False, sort_keys=True)
        (held_lines if heldout(text, ARENA_HELDOUT_SHARE) else train_lines).append(line)
    train_path, held_path = out / "arena-train.jsonl", out / "arena-heldout.jsonl"
    train_path.write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    held_path.write_text("\n".join(held_lines) + "\n", encoding="utf-8")
    return train_path, held_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the routing data folder (routellm/, arena-bench-v1/)")
    parser.add_argument("out", type=Path, help="the model file to write (.npz)")
    parser.add_argument("--work", type=Path, help="where the converted data goes (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        convert(args.data / "routellm", work)
        arena_train, arena_held = split_arena(args.data / ARENA_FILE, work)
        # One training file, so that the model's metadata can name it by its digest.
        combined = work / "shipped-train.jsonl"
        combined.write_text("".join(path.read_text(encoding="utf-8") for path in (
            work / "gsm8k-train.jsonl", work / "mmlu-train.jsonl", arena_train)), encoding="utf-8")
        records = read_records(combined)
        arena = [r.id.startswith("arena_bench_v1/") for r in records]
        result = train(
            records, weak=WEAK, strong=STRONG, lambdas=LAMBDAS, source=combined,
            weights=[ARENA_WEIGHT if a else 1.0 for a in arena],
            hold_heuristic=True,
            validate_on=[True] * len(records),
            validation_source="out-of-fold predictions on the training splits",
            provenance=(
                "RouteLLM GSM8K + MMLU results (lm-sys/RouteLLM@0b64fdaf, Apache-2.0; prompts MIT), 80 % "
                "training split; Arena-Bench v1 (lmarena/arena-hard-auto@4a705dd6, Apache-2.0), 70 % training "
                f"split weighted {ARENA_WEIGHT:g}x; heuristic features held at the heuristic's weights; "
                "scripts/train_default_classifier.py"
            ),
            holdout=[(work / "gsm8k-heldout.jsonl", read_records(work / "gsm8k-heldout.jsonl")),
                     (work / "mmlu-heldout.jsonl", read_records(work / "mmlu-heldout.jsonl")),
                     (arena_held, read_records(arena_held))],
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
        result.classifier.save(args.out)
        print(f"wrote {args.out}: {len(records)} training prompts, {sum(arena)} of them from Arena-Bench")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
