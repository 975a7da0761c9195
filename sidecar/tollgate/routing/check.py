"""What ``tollgate check`` and the sidecar's start say about routing: the operating point and likely mistakes."""

from __future__ import annotations

from ..config import Config
from .classifier import Classifier, ClassifierError, open_classifier
from .rules import task_type_notes

__all__ = ["routing_lines", "routing_report"]


def routing_lines(config: Config) -> tuple[list[str], list[str]]:
    """``routing_report`` with the config's classifier opened here (``tollgate check``)."""
    try:
        classifier = open_classifier(config.routing)
    except ClassifierError as exc:
        return [*task_type_notes(config.routing), str(exc)], []
    return routing_report(config, classifier)


def routing_report(config: Config, classifier: Classifier | None) -> tuple[list[str], list[str]]:
    """(warnings, facts): task-type mistakes, and the thresholds in force with the figures behind them."""
    routing = config.routing
    warnings = task_type_notes(routing)
    facts: list[str] = []
    if classifier is None:
        if routing.quality_target is not None:
            warnings.append("routing.quality_target applies to a classifier; with routing.classifier: none the "
                            "heuristic's routing.difficulty thresholds decide")
        facts.append("routing: heuristic difficulty, thresholds "
                     + ", ".join(f"{tier} {value:g}" for value, tier in routing.difficulty))
        return warnings, facts
    if "default" in routing.thresholds:
        facts.append("routing: classifier with the explicit routing.thresholds.default "
                     + ", ".join(f"{tier} {value:g}" for value, tier in routing.thresholds["default"]))
    elif routing.quality_target is not None:
        untyped = classifier.operating_point(routing.quality_target, routing.frontier_share)
        typed = classifier.operating_point(routing.quality_target, routing.frontier_share, typed=True)
        if untyped is not None:
            facts.append(f"routing, requests without a task type: {untyped.describe()}")
        if typed is not None and typed != untyped:
            facts.append(f"routing, requests with a task type (no rule): {typed.describe()}")
    else:
        facts.append("routing: classifier with routing.difficulty's thresholds "
                     + ", ".join(f"{tier} {value:g}" for value, tier in routing.difficulty))
    return warnings, facts
