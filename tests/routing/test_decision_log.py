"""The decision log end to end: sidecar decisions and feedback → export → training → a better router."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.catalog import suite_config_text
from tollgate.app import Prompt, Tollgate
from tollgate.cli import main
from tollgate.config import load_config
from tollgate.estimate import TokenCounter
from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver
from tollgate.routing.classifier import Classifier
from tollgate.routing.decision_log import ExportError, export_training
from tollgate.routing.rules import Signals
from tollgate.scope import Scope

_NAMES = ("ann", "bob", "cyd", "dee", "eve", "fay", "gus", "hal", "ida", "jon", "kim", "lea", "max", "ned")
_FIELDS = ("email address", "phone number", "city", "date", "invoice total", "company name", "zip code")
_CLAIMS = ("the sum of quadratic residues vanishes", "the group is solvable", "the series converges uniformly",
           "the operator is compact", "the manifold is orientable", "the polynomial is irreducible",
           "the graph has a perfect matching")
_ASKS = ("derive the closed form", "bound the error term")
# Distinct texts (digits fold to 0 in the features, so they cannot tell prompts apart).
EASY = [f"Extract the {field} from this note by {name}" for name, field in zip(_NAMES, _FIELDS * 2, strict=True)]
HARD = [f"Prove rigorously that {claim}, then {ask} step by step" for claim in _CLAIMS for ask in _ASKS]


def logged_gate(tmp_path: Path, include_text: bool = False) -> Tollgate:
    data = yaml.safe_load(suite_config_text())
    data["routing"]["decision_log"] = {"path": "decisions.jsonl", "include_text": include_text}
    # Every cheap decision is shadowed, and the guard never steps in: the test controls the labels.
    data["quality"] = {"warmup_share": 1.0, "shadow_share": 1.0, "guard": False}
    path = tmp_path / "tollgate.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    return Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets)))


async def _traffic(g: Tollgate) -> None:
    """Every prompt routed to the cheap tier; the comparisons say the cheap answer only did the easy ones."""
    for text, as_good in [*((t, 1.0) for t in EASY), *((t, 0.0) for t in HARD)]:
        d = await g.route(Scope(org="acme"), Prompt(messages=(("user", text),)), Signals(task_type="extract"),
                          reserve=True, accept_shadow=True)
        assert d.reservation is not None and d.shadow is not None and d.shadow.purpose == "reference"
        await g.feedback(d.reservation.hold.reservation_id, as_good, source="shadow_comparison")
        await g.feedback(d.reservation.hold.reservation_id, 0.8, source="user")
    assert g.decision_log is not None
    g.decision_log.close()


async def test_export_joins_comparisons_and_trains_a_classifier(tmp_path: Path) -> None:
    g = logged_gate(tmp_path)
    await _traffic(g)
    log_text = (tmp_path / "decisions.jsonl").read_text()
    assert "rigorously" not in log_text and "Extract" not in log_text  # features only, no prompt text
    out = tmp_path / "train.jsonl"
    assert main(["export-training", str(tmp_path / "decisions.jsonl"), "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(EASY) + len(HARD)
    assert {tuple(sorted(r["scores"])) for r in records} == {("cheap", "frontier")}
    assert sum(r["scores"]["cheap"] for r in records) == len(EASY)
    assert all("features" in r and "messages" not in r and r["feedback"] == {"user": 0.8} for r in records)

    model = tmp_path / "mine.npz"
    assert main(["train", str(out), "--out", str(model), "--folds", "2", "--quiet"]) == 0
    clf = Classifier.load(model)
    assert clf.metadata["weak_model"] == "cheap" and clf.metadata["strong_model"] == "frontier"
    counter = TokenCounter()

    def p(text: str) -> float:
        msgs = (("user", text),)
        return clf.predict(msgs, counter.count_messages(msgs), "extract")

    # Unseen prompts of each kind: the team's own traffic taught the router which is which.
    assert p("Extract the email address from this note by zed") > 0.5
    assert p("Prove rigorously that the ring is noetherian, then derive the closed form step by step") < 0.5


async def test_include_text_exports_messages_for_eval(tmp_path: Path) -> None:
    g = logged_gate(tmp_path, include_text=True)
    await _traffic(g)
    records, stats = export_training([tmp_path / "decisions.jsonl"])
    assert stats.exported == len(records) == len(EASY) + len(HARD)
    assert records[0]["messages"] == [{"role": "user", "content": EASY[0]}]


def test_export_reports_what_it_skipped_and_refuses_bad_lines(tmp_path: Path) -> None:
    features = {"scheme": "tollgate-hash-v1", "slots": "", "counts": [], "dense": [0.0] * 11}
    lines = [
        {"kind": "decision", "reservation_id": "a", "tier": "cheap", "features": features,
         "shadow": {"model": "m", "tier": "frontier", "purpose": "reference"}},
        {"kind": "decision", "reservation_id": "b", "tier": "frontier", "features": features,
         "shadow": {"model": "m", "tier": "cheap", "purpose": "probe"}},
        {"kind": "decision", "reservation_id": "c", "tier": "medium", "features": features,
         "shadow": {"model": "m", "tier": "frontier", "purpose": "reference"}},
        {"kind": "decision", "reservation_id": "d", "tier": "cheap", "features": features},
        {"kind": "feedback", "reservation_id": "a", "score": 1.0, "source": "shadow_comparison"},
        {"kind": "feedback", "reservation_id": "b", "score": 0.2, "source": "shadow_comparison"},
        {"kind": "feedback", "reservation_id": "c", "score": 1.0, "source": "shadow_comparison"},
        {"kind": "feedback", "reservation_id": "d", "score": 1.0, "source": "shadow_comparison"},
        {"kind": "feedback", "reservation_id": "zz", "score": 1.0, "source": "shadow_comparison"},
    ]
    log = tmp_path / "d.jsonl"
    # The last line was cut short by a crash: skipped, not fatal.
    log.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"kind": "deci')
    records, stats = export_training([log])
    # A probe's pair is (shadow, primary): b compares cheap with frontier too.
    assert {r["id"]: r["scores"] for r in records} == {"a": {"cheap": 1.0, "frontier": 1.0},
                                                       "b": {"cheap": 0.0, "frontier": 1.0}}
    assert dict(stats.skipped) == {"tier pair medium/frontier": 1, "no shadow call in the decision": 1,
                                   "no decision in the logs": 1}
    records, stats = export_training([log], weak_tier="medium", strong_tier="frontier")
    assert [r["id"] for r in records] == ["c"]
    log.write_text('{"kind": "decision"\n{"kind": "feedback", "reservation_id": "a", "score": 1}\n')
    with pytest.raises(ExportError, match=r"d\.jsonl:1: not a decision log line"):
        export_training([log])
    log.write_text('{"kind": "feedback", "reservation_id": "a", "score": 7}\n')
    with pytest.raises(ExportError, match=r"d\.jsonl:1: score must be a number in \[0, 1\]"):
        export_training([log])
