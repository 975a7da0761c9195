#!/usr/bin/env python3
"""Convert RouteLLM's GSM8K and MMLU per-prompt results into Tollgate's routing JSONL.

    python scripts/convert_routellm.py ROUTELLM_DIR OUT_DIR [--heldout-share 0.2]

ROUTELLM_DIR holds ``gsm8k/gsm8k_responses.csv``, ``gsm8k/contaminated_prompts.jsonl``,
``mmlu/responses/mmlu_<subject>.csv`` and ``mmlu/contaminated_prompts.jsonl`` (the
layout of RouteLLM's published evaluation data). Prompts listed as contaminated
(their ``eval_prompt``) are dropped. Each remaining prompt becomes one line::

    {"id": "gsm8k-0042", "messages": [{"role": "user", "content": PROMPT}],
     "task_type": "math" | MMLU subject, "scores": {MODEL: 1.0 | 0.0, ...},
     "responses": {MODEL: TEXT, ...} (GSM8K only), "source": "gsm8k" | "mmlu",
     "split": "train" | "heldout"}

The split is a keyed BLAKE2b hash of the prompt text, so it is the same on every
machine and run, and duplicate prompts (MMLU has some) always land together.
Written to OUT_DIR: ``gsm8k-train.jsonl``, ``gsm8k-heldout.jsonl``,
``mmlu-train.jsonl``, ``mmlu-heldout.jsonl``, and ``train.jsonl`` (both training
splits). The converted data is derived from the source's licences (RouteLLM
Apache-2.0, GSM8K and MMLU MIT); keep it out of the repository.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SPLIT_KEY = b"tollgate-routellm-split-v1"
_RESPONSE_SUFFIX = "_response"


def heldout(prompt: str, share: float) -> bool:
    """Whether a prompt belongs to the held-out split: its hash falls in the first ``share`` of the range."""
    digest = hashlib.blake2b(prompt.encode("utf-8", "surrogatepass"), digest_size=8, key=SPLIT_KEY).digest()
    return int.from_bytes(digest, "big") < share * 2**64


def _contaminated(path: Path) -> set[str]:
    if not path.exists():
        raise SystemExit(f"{path}: missing; the contaminated prompts must be dropped, so the file is required")
    prompts = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                prompts.add(json.loads(line)["eval_prompt"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise SystemExit(f"{path}:{number}: expected a JSON object with an eval_prompt") from None
    return prompts


def _correct(value: str, where: str) -> float:
    text = value.strip().lower()
    if text in ("true", "1", "1.0"):
        return 1.0
    if text in ("false", "0", "0.0"):
        return 0.0
    raise SystemExit(f"{where}: expected True or False, got {value!r}")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str], list[str]]]:
    csv.field_size_limit(1 << 30)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        if "prompt" not in fields:
            raise SystemExit(f"{path}: no prompt column")
        models = [c for c in fields if c != "prompt" and not c.endswith(_RESPONSE_SUFFIX)]
        if len(models) < 2:
            raise SystemExit(f"{path}: expected at least two model columns, got {models}")
        for index, row in enumerate(reader):
            yield index, row, models


def _records(
    files: list[tuple[Path, str, str]], contaminated: set[str], source: str
) -> Iterator[dict[str, Any]]:
    """Records of one benchmark; ``files`` holds (csv, task type, id prefix)."""
    for path, task_type, prefix in files:
        for index, row, models in _rows(path):
            prompt = row["prompt"]
            if prompt in contaminated:
                continue
            where = f"{path}:row {index + 1}"
            record: dict[str, Any] = {
                "id": f"{prefix}-{index:04d}",
                "messages": [{"role": "user", "content": prompt}],
                "task_type": task_type,
                "scores": {m: _correct(row[m], where) for m in models},
            }
            responses = {m: row[m + _RESPONSE_SUFFIX] for m in models if row.get(m + _RESPONSE_SUFFIX)}
            if responses:
                record["responses"] = responses
            record["source"] = source
            yield record


def convert(src: Path, out: Path, share: float = 0.2) -> dict[str, dict[str, int]]:
    """Write the JSONL files; returns the number of records per (benchmark, split)."""
    gsm8k = src / "gsm8k"
    mmlu = src / "mmlu"
    benchmarks: dict[str, tuple[list[tuple[Path, str, str]], set[str]]] = {
        "gsm8k": (
            [(gsm8k / "gsm8k_responses.csv", "math", "gsm8k")],
            _contaminated(gsm8k / "contaminated_prompts.jsonl"),
        ),
        "mmlu": (
            [
                (p, p.stem.removeprefix("mmlu_"), f"mmlu-{p.stem.removeprefix('mmlu_')}")
                for p in sorted((mmlu / "responses").glob("mmlu_*.csv"))
            ],
            _contaminated(mmlu / "contaminated_prompts.jsonl"),
        ),
    }
    for name, (files, _) in benchmarks.items():
        if not files or not all(p.exists() for p, _, _ in files):
            raise SystemExit(f"{src}: no {name} results found (expected the RouteLLM data layout)")
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    with (out / "train.jsonl").open("w", encoding="utf-8") as combined:
        for name, (files, contaminated) in benchmarks.items():
            counts[name] = {"train": 0, "heldout": 0, "dropped": 0}
            seen = 0
            with (out / f"{name}-train.jsonl").open("w", encoding="utf-8") as train, \
                 (out / f"{name}-heldout.jsonl").open("w", encoding="utf-8") as held:
                for record in _records(files, contaminated, name):
                    seen += 1
                    split = "heldout" if heldout(record["messages"][0]["content"], share) else "train"
                    record["split"] = split
                    line = json.dumps(record, ensure_ascii=False) + "\n"
                    (held if split == "heldout" else train).write(line)
                    if split == "train":
                        combined.write(line)
                    counts[name][split] += 1
            total = sum(1 for p, _, _ in files for _ in _rows(p))
            counts[name]["dropped"] = total - seen
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="the RouteLLM data folder (gsm8k/ and mmlu/ inside)")
    parser.add_argument("out", type=Path, help="folder to write the JSONL files to")
    parser.add_argument("--heldout-share", type=float, default=0.2, help="share of prompts held out (default 0.2)")
    args = parser.parse_args(argv)
    if not 0.0 < args.heldout_share < 1.0:
        parser.error("--heldout-share must be between 0 and 1")
    counts = convert(args.src, args.out, args.heldout_share)
    for name, c in counts.items():
        print(f"{name}: {c['train']} train, {c['heldout']} held out, {c['dropped']} contaminated dropped")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
