"""The metrics' arithmetic in process: a spend that sums once, warning crossings, watched pools."""

from __future__ import annotations

import yaml

from tests.support.catalog import suite_config_text
from tollgate.app import Tollgate
from tollgate.app.types import Prompt
from tollgate.config import parse_config
from tollgate.ledger import LocalLedger, MemoryJournal, spec_resolver
from tollgate.scope import Scope
from tollgate.telemetry import Telemetry


def _gate() -> Tollgate:
    data = yaml.safe_load(suite_config_text())
    # A cap that a handful of small holds cross half of.
    data["budgets"]["overrides"] = {"org:warm": {"cap": "0.0001", "policy": "hard", "warn_at": 0.5,
                                                  "priority_reserve": 0}}
    config = parse_config(yaml.safe_dump(data))
    return Tollgate(config, LocalLedger(MemoryJournal(), specs=spec_resolver(config.budgets)))


def _value(telemetry: Telemetry, name: str, **labels: str) -> float:
    return telemetry.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_warning_is_counted_once_per_crossing_of_the_threshold() -> None:
    gate, telemetry = _gate(), Telemetry(enable_tracing=False, watched_pools=["org:warm"])
    scope = Scope(org="warm")
    held = []
    crossings = []
    while True:
        result = await gate.reserve(scope, "gpt-4o-mini", Prompt(input_tokens=40), max_output_tokens=10)
        telemetry.reserved(result.reservation)
        held.append(result.reservation.hold.reservation_id)
        crossings.append(_value(telemetry, "tollgate_pool_warnings_total", level="org"))
        org = next(p for p in result.reservation.pools if p.pool_id == "org:warm")
        if org.spent + org.held > org.spec.cap * 0.8:
            break
    # Zero until the hold that took the pool past half its cap, one from then on.
    first = crossings.index(1.0)
    assert crossings == [0.0] * first + [1.0] * (len(crossings) - first) and 0 < first < len(crossings) - 1
    assert _value(telemetry, "tollgate_pool_utilisation_ratio", pool="org:warm") > 0.8
    for rid in held:
        telemetry.released(await gate.release(rid))
    assert _value(telemetry, "tollgate_pool_utilisation_ratio", pool="org:warm") == 0.0
    # Below the line again: the next crossing counts again.
    for _ in range(first + 1):
        telemetry.reserved((await gate.reserve(scope, "gpt-4o-mini", Prompt(input_tokens=40),
                                               max_output_tokens=10)).reservation)
    assert _value(telemetry, "tollgate_pool_warnings_total", level="org") == 2.0
