"""The runtime snapshot: everything a request reads from the config, swapped whole on reload.

A request takes the snapshot once and reads only from it, so a reload in the middle
of a request can never mix two configs; a reload builds the next snapshot in full
(opening what it must, failing with ``ConfigError`` before anything is swapped) and
then replaces the reference in one assignment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..auth import Authenticator
from ..config import Config, PoolSpec
from ..errors import ConfigError
from ..estimate import TokenCounter
from ..ledger import SpecResolver, spec_resolver
from ..ledger.overrides import PoolOverride
from ..routing.classifier import Classifier, ClassifierError, open_classifier
from ..routing.decision_log import DecisionLog
from ..scope import Level

__all__ = ["AuditLog", "Runtime", "build_runtime", "restart_needed"]

log = logging.getLogger("tollgate.audit")

# What a running process cannot change: listeners, the store, telemetry, the expiry policy, the message bound.
_FIXED_SECTIONS = ("server", "store", "telemetry")


class AuditLog:
    """Appends one JSON line per admin action to a file (when configured) and to the log."""

    def __init__(self, path: str = "") -> None:
        self.path = path

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, default=str, separators=(",", ":"))
        log.info("admin %s", entry["op"], extra={"fields": entry})
        if self.path:
            # Opened per entry: admin actions are rare, and each is on disk before the answer.
            with Path(self.path).open("a", encoding="utf-8") as f:
                f.write(line + "\n")


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """One config and everything built from it."""

    config: Config
    specs: SpecResolver
    """Pool specs: the config's, with the admin overrides of the moment over them."""
    counter: TokenCounter
    classifier: Classifier | None
    decision_log: DecisionLog | None
    auth: Authenticator
    audit: AuditLog


def restart_needed(old: Config, new: Config) -> list[str]:
    """The settings ``new`` changes that only a restart can apply."""
    fixed = [name for name in _FIXED_SECTIONS if getattr(old, name) != getattr(new, name)]
    if old.reservations.expiry_policy != new.reservations.expiry_policy:
        fixed.append("reservations.expiry_policy")
    if old.limits.max_message_bytes != new.limits.max_message_bytes:
        fixed.append("limits.max_message_bytes")
    return fixed


def build_runtime(
    config: Config,
    *,
    overrides: Callable[[], dict[str, PoolOverride]],
    clock: Callable[[], int],
    previous: Runtime | None = None,
) -> Runtime:
    """The snapshot of ``config``, reusing what ``previous`` built from an equal section.

    Raises ``ConfigError`` (and builds nothing that lasts) when a classifier or the
    decision log cannot be opened.
    """
    old = previous.config if previous is not None else None
    if previous is not None and old is not None and config.routing.classifier == old.routing.classifier:
        classifier = previous.classifier
    else:
        try:
            classifier = open_classifier(config.routing)
        except ClassifierError as exc:
            raise ConfigError(str(exc), key="routing.classifier", file=config.source) from None
    target = config.routing.quality_target
    if classifier is not None and target is not None:
        if classifier.validation is None:
            raise ConfigError(
                f"the classifier {config.routing.classifier!r} has no validation curve to derive thresholds from; "
                "retrain it with `tollgate train` (which stores one), or set routing.thresholds instead",
                key="routing.quality_target", file=config.source,
            )
        # Deriving bootstraps the validation curves (tens of milliseconds): here, not on the first Route.
        for typed in (False, True):
            classifier.operating_point(target, config.routing.frontier_share, typed)
    counter = (previous.counter if previous is not None and old is not None
               and config.estimation.message_overhead_tokens == old.estimation.message_overhead_tokens
               else TokenCounter(config.estimation.message_overhead_tokens))
    log_config = config.routing.decision_log
    if previous is not None and old is not None and log_config == old.routing.decision_log:
        decision_log = previous.decision_log
    else:
        try:
            decision_log = DecisionLog(log_config, clock) if log_config is not None else None
        except OSError as exc:
            raise ConfigError(f"cannot open the decision log: {exc}", key="routing.decision_log.path",
                              file=config.source) from None
    return Runtime(
        config=config,
        specs=_resolver(config, overrides, clock),
        counter=counter,
        classifier=classifier,
        decision_log=decision_log,
        auth=Authenticator(config.auth.callers),
        audit=AuditLog(config.auth.audit_log),
    )


def _resolver(config: Config, overrides: Callable[[], dict[str, PoolOverride]],
              clock: Callable[[], int]) -> SpecResolver:
    base = spec_resolver(config.budgets)

    def resolve(pool_id: str) -> tuple[Level, PoolSpec] | None:
        found = base(pool_id)
        override = overrides().get(pool_id)
        if found is None or override is None:
            return found
        return found[0], override.apply(found[1], clock())

    return resolve
