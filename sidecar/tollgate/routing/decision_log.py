"""The decision log: each routing decision and each feedback as one JSON line, for training.

A team's own traffic is the best training data for its router. With
``routing.decision_log`` set, the sidecar appends:

- ``{"kind": "decision", ...}`` for every Route and Escalate: the reservation id
  (and the failed attempt's, for an escalation), org, team and tags, task signals,
  the decision (model, tier, required tier, source, reason, difficulty, outcome,
  estimated cost), the shadow call if one was asked for, and the request's
  *features* (``classifier.encode_features``: hashed n-grams and the heuristic's
  values). The messages themselves only with ``include_text: true``.
- ``{"kind": "feedback", ...}`` for every Feedback: reservation id, score, source.

``export_training`` joins the two by reservation id into records that
``tollgate train`` reads. A shadow comparison is the label: it says whether the
cheaper of the two tiers answered as well as the stronger one on that very request.

Writes go through a buffered file and are flushed by the sidecar's sweeper and at
shutdown: a crash may lose the last second of lines, and a line cut short by it is
skipped on export. The log is never on the money path: a failing disk is logged
and routing goes on.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..config import DecisionLogConfig
from .classifier import encode_features

__all__ = ["SHADOW_COMPARISON", "DecisionLog", "ExportError", "ExportStats", "export_training"]

log = logging.getLogger("tollgate.decisions")

SHADOW_COMPARISON = "shadow_comparison"


class DecisionLog:
    """Appends decision and feedback lines to one file."""

    def __init__(self, config: DecisionLogConfig, clock: Callable[[], int]) -> None:
        self.config = config
        self._clock = clock
        path = Path(config.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = path.open("a", encoding="utf-8", buffering=1 << 16)
        self._failed = False

    def decision(
        self,
        *,
        reservation_id: str,
        org: str,
        team: str,
        tags: dict[str, str],
        task_type: str,
        agent_mode: str,
        messages: Sequence[tuple[str, str]] | None,
        input_tokens: int,
        decision: dict[str, Any],
        shadow: dict[str, str] | None = None,
        parent_id: str = "",
        attempt: int = 1,
        escalation_reason: str = "",
    ) -> None:
        """One routing decision (``decision`` holds the fields the caller was answered with)."""
        line: dict[str, Any] = {
            "kind": "decision",
            "at_ms": self._clock(),
            "reservation_id": reservation_id,
            "org": org,
            "team": team,
            "tags": tags,
            "task_type": task_type,
            "agent_mode": agent_mode,
            "input_tokens": input_tokens,
            **decision,
            "features": encode_features(messages or (), input_tokens, task_type),
        }
        if shadow:
            line["shadow"] = shadow
        if parent_id:
            line.update(parent_id=parent_id, attempt=attempt, escalation_reason=escalation_reason)
        if self.config.include_text and messages:
            line["messages"] = [{"role": role, "content": content} for role, content in messages]
        self._write(line)

    def feedback(self, reservation_id: str, score: float, source: str) -> None:
        """One quality signal for a reserved call."""
        self._write({"kind": "feedback", "at_ms": self._clock(), "reservation_id": reservation_id,
                     "score": score, "source": source})

    def flush(self) -> None:
        """Push buffered lines to the file (the sweeper calls this every tick)."""
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._fail(exc)

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def _write(self, line: dict[str, Any]) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if not self._failed:
            log.error("decision log %s cannot be written (%s); routing goes on without it", self.config.path, exc)
            self._failed = True


class ExportError(ValueError):
    """A decision log that cannot be exported, with the file and line that says why."""


@dataclass(slots=True)
class ExportStats:
    """What an export read and wrote."""

    decisions: int = 0
    feedback: int = 0
    comparisons: int = 0
    exported: int = 0
    weak_tier: str = ""
    strong_tier: str = ""
    skipped: Counter[str] = field(default_factory=Counter)


def _lines(paths: Iterable[str | Path]) -> Iterable[tuple[str, dict[str, Any]]]:
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExportError(f"{path}: cannot read the decision log: {exc}") from None
        rows = text.split("\n")
        for number, row in enumerate(rows, 1):
            if not row.strip():
                continue
            try:
                obj = json.loads(row)
            except json.JSONDecodeError as exc:
                if number == len(rows):  # the last line, cut short by a crash: the rest is whole
                    continue
                raise ExportError(f"{path}:{number}: not a decision log line: {exc.msg}") from None
            if not isinstance(obj, dict) or obj.get("kind") not in ("decision", "feedback"):
                raise ExportError(f"{path}:{number}: expected a decision or feedback object")
            yield f"{path}:{number}", obj


def export_training(
    paths: Sequence[str | Path],
    *,
    weak_tier: str = "",
    strong_tier: str = "",
    threshold: float = 0.5,
) -> tuple[list[dict[str, Any]], ExportStats]:
    """Training records (``dataset`` format) from decision logs, and what was found.

    A decision becomes a record when it has a shadow comparison: its label compares
    the cheaper tier of the pair (the primary for a ``reference`` shadow, the shadow
    for a ``probe``) with the stronger one, as scores ``{weak: 1 or 0, strong: 1}``
    where 1 means the comparison score reached ``threshold``. Only one (weak,
    strong) tier pair is exported, since the classifier learns one question: the
    one given, else the most common in the logs.
    """
    stats = ExportStats()
    decisions: dict[str, dict[str, Any]] = {}
    comparisons: dict[str, float] = {}
    direct: dict[str, dict[str, float]] = {}
    for where, obj in _lines(paths):
        rid = obj.get("reservation_id")
        if not isinstance(rid, str):
            raise ExportError(f"{where}: reservation_id must be a string")
        if obj["kind"] == "decision":
            stats.decisions += 1
            if rid:
                decisions[rid] = obj
            continue
        stats.feedback += 1
        score = obj.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise ExportError(f"{where}: score must be a number in [0, 1]")
        if obj.get("source") == SHADOW_COMPARISON:
            comparisons[rid] = float(score)  # the latest comparison of a call wins
        else:
            direct.setdefault(rid, {})[str(obj.get("source", ""))] = float(score)
    stats.comparisons = len(comparisons)
    pairs: dict[str, tuple[str, str]] = {}
    for rid in comparisons:
        d = decisions.get(rid)
        shadow = d.get("shadow") if d else None
        if d is None:
            stats.skipped["no decision in the logs"] += 1
        elif not isinstance(shadow, dict):
            stats.skipped["no shadow call in the decision"] += 1
        elif shadow.get("purpose") == "probe":
            pairs[rid] = (str(shadow.get("tier")), str(d.get("tier")))
        else:
            pairs[rid] = (str(d.get("tier")), str(shadow.get("tier")))
    if not weak_tier or not strong_tier:
        common = Counter(pairs.values()).most_common(1)
        if common:
            weak_tier, strong_tier = weak_tier or common[0][0][0], strong_tier or common[0][0][1]
    stats.weak_tier, stats.strong_tier = weak_tier, strong_tier
    records = []
    for rid, (weak, strong) in pairs.items():
        if (weak, strong) != (weak_tier, strong_tier):
            stats.skipped[f"tier pair {weak}/{strong}"] += 1
            continue
        d = decisions[rid]
        ok = comparisons[rid] >= threshold
        record: dict[str, Any] = {
            "id": rid,
            "task_type": d.get("task_type", ""),
            "scores": {weak: 1.0 if ok else 0.0, strong: 1.0},
            "source": "decision-log",
            "decision": {k: d.get(k) for k in ("model", "tier", "required_tier", "source", "difficulty", "at_ms")},
        }
        if "messages" in d:
            record["messages"] = d["messages"]
        else:
            record["features"] = d["features"]
        if rid in direct:
            record["feedback"] = direct[rid]
        records.append(record)
    stats.exported = len(records)
    return records, stats
