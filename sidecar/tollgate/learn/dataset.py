"""Labelled routing data: one JSON object per line, read with errors that name the line.

Each line::

    {"id": "gsm8k-17", "messages": [{"role": "user", "content": "..."}],
     "task_type": "math", "scores": {"strong-model": 1.0, "weak-model": 0.0},
     "responses": {"strong-model": "..."}}

``task_type`` and ``responses`` are optional; ``scores`` are qualities in [0, 1]
(1/0 for right/wrong answers). Instead of ``messages`` a record may carry
``features`` (hashed, from the sidecar's decision log via ``tollgate
export-training``): training can use it, evaluation cannot. Unknown keys are kept out of the way, not refused,
so a converter can add its own bookkeeping (``source``, ``split``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DatasetError", "Record", "file_digest", "infer_pair", "read_records"]

_ROLES = ("system", "developer", "user", "assistant", "tool")


class DatasetError(ValueError):
    """A routing data file that cannot be used, with the file and line that says why."""


@dataclass(frozen=True, slots=True)
class Record:
    """One prompt with what each model scored on it."""

    id: str
    messages: tuple[tuple[str, str], ...]
    scores: dict[str, float]
    task_type: str = ""
    responses: dict[str, str] = field(default_factory=dict)
    line: int = 0
    features: Any = None
    """``classifier.Features`` decoded from a feature-only record, else ``None``."""

    def score(self, model: str, source: str = "") -> float:
        """The quality ``model`` reached, or a ``DatasetError`` naming the record."""
        try:
            return self.scores[model]
        except KeyError:
            where = f"{source}:{self.line}: " if source else ""
            known = ", ".join(sorted(self.scores)) or "none"
            raise DatasetError(f"{where}record {self.id!r} has no score for {model!r} (it has: {known})") from None


def read_records(path: str | Path) -> list[Record]:
    """Every record of a JSONL file; the first malformed line raises ``DatasetError``."""
    path = Path(path)
    try:
        # Only "\n" ends a line: JSON strings may hold U+2028 and friends, which splitlines() would break on.
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text: {exc}") from None
    records = [_record(text, f"{path}:{number}", number) for number, text in enumerate(lines, 1) if text.strip()]
    if not records:
        raise DatasetError(f"{path}: no records")
    return records


def _record(text: str, where: str, number: int) -> Record:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not valid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    raw_messages = obj.get("messages")
    features = None
    if raw_messages is None and "features" in obj:
        from ..routing.classifier import decode_features  # numpy only when a file needs it

        try:
            features = decode_features(obj["features"])
        except ValueError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        raw_messages = []
    elif not isinstance(raw_messages, list) or not raw_messages:
        raise DatasetError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    messages: list[tuple[str, str]] = []
    for i, m in enumerate(raw_messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DatasetError(f"{where}: messages[{i}] must be an object with string role and content")
        if m["role"] not in _ROLES:
            raise DatasetError(f"{where}: messages[{i}].role {m['role']!r} is not one of: {', '.join(_ROLES)}")
        messages.append((m["role"], m["content"]))
    scores = obj.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise DatasetError(f"{where}: scores must be a non-empty object of model name -> quality in [0, 1]")
    for model, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise DatasetError(f"{where}: scores[{model!r}] must be a number in [0, 1], got {value!r}")
    responses = obj.get("responses", {})
    if not isinstance(responses, dict) or not all(isinstance(v, str) for v in responses.values()):
        raise DatasetError(f"{where}: responses must be an object of model name -> response text")
    task_type = obj.get("task_type") or ""
    if not isinstance(task_type, str):
        raise DatasetError(f"{where}: task_type must be a string")
    record_id = obj.get("id", number)
    return Record(
        id=str(record_id),
        messages=tuple(messages),
        scores={str(k): float(v) for k, v in scores.items()},
        task_type=task_type,
        responses={str(k): v for k, v in responses.items()},
        line=number,
        features=features,
    )


def infer_pair(records: Sequence[Record], weak: str | None, strong: str | None) -> tuple[str, str]:
    """The (weak, strong) model pair: as given, or the two models every record scores.

    When not given, the data must score exactly two models; the one with the higher
    mean score is the strong one.
    """
    if weak and strong:
        return weak, strong
    common = set(records[0].scores)
    for r in records[1:]:
        common &= set(r.scores)
    candidates = sorted(common - {m for m in (weak, strong) if m})
    if weak or strong:
        given = weak or strong
        if len(candidates) != 1:
            raise DatasetError(
                f"cannot tell the other model of the pair from {given!r}: the records score {sorted(common)}; "
                "pass both --weak and --strong"
            )
        other = candidates[0]
        return (weak, other) if weak else (other, str(given))
    if len(common) != 2:
        raise DatasetError(
            f"the records score {len(common)} models in common ({', '.join(sorted(common)) or 'none'}); "
            "pass --weak and --strong"
        )
    a, b = sorted(common)
    mean_a = sum(r.scores[a] for r in records) / len(records)
    mean_b = sum(r.scores[b] for r in records) / len(records)
    return (a, b) if mean_a < mean_b else (b, a)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (training-set provenance), as ``sha256:<hex>``."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"
