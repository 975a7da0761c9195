"""The routing section of the config: tiers for task types and modes, thresholds, providers, the decision log."""

from __future__ import annotations

from ..catalog import Catalog
from .node import Node
from .sections import DecisionLogConfig, ProviderRule, RoutingConfig

__all__ = ["parse_routing"]


def parse_routing(node: Node, catalog: Catalog) -> RoutingConfig:
    node.only(
        "task_types", "agent_modes", "difficulty", "fallbacks", "classifier", "quality_target", "frontier_share",
        "thresholds",
        "providers", "max_escalations", "decision_log",
    )
    tiers = catalog.tiers

    def tier_map(name: str) -> dict[str, str]:
        return {k: v.str(choices=tiers) for k, v in node.get(name, {}).items()}

    def tier_thresholds(tnode: Node) -> tuple[tuple[float, str], ...]:
        thresholds: list[tuple[float, str]] = []
        for tier, vnode in tnode.items():
            if tier not in tiers:
                raise vnode.error(f"unknown tier; tiers are: {', '.join(tiers)}")
            thresholds.append((vnode.number(minimum=0.0, maximum=1.0), tier))
        thresholds.sort(reverse=True)
        ranks = [tiers.index(t) for _, t in thresholds]
        if ranks != sorted(ranks, reverse=True):
            raise tnode.error("a higher tier needs a higher difficulty threshold")
        return tuple(thresholds)

    # Per task type (or "default" for every other request): the classifier's knob of cost against quality.
    by_task = {name: tier_thresholds(tnode) for name, tnode in node.get("thresholds", {}).items()}
    return RoutingConfig(
        task_types=tier_map("task_types"),
        agent_modes=tier_map("agent_modes"),
        difficulty=tier_thresholds(node.get("difficulty", {})),
        fallbacks=node.get("fallbacks", 3).int(maximum=20),
        classifier=parse_classifier_ref(node.get("classifier", "default")),
        quality_target=_quality_target(node.get("quality_target")) if node.has("quality_target") else None,
        frontier_share=node.get("frontier_share", 0.2).number(minimum=0.0, maximum=1.0),
        thresholds=by_task,
        providers={key: parse_provider_rule(key, pnode, catalog) for key, pnode in node.get("providers", {}).items()},
        max_escalations=node.get("max_escalations", 2).int(maximum=10),
        decision_log=parse_decision_log(node.get("decision_log")) if node.has("decision_log") else None,
    )


def _quality_target(node: Node) -> float:
    raw = node.value
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and 1 < raw <= 100:
        raise node.error(f"{raw} is a percentage; write a share of the strong tier's quality, "
                         f"such as {raw / 100:g} for {raw:g} %")
    value = node.number(minimum=0.0, maximum=1.0)
    if value <= 0.0:
        raise node.error("expected a share of the strong tier's quality above 0, such as 0.95")
    return value


def parse_provider_rule(key: str, node: Node, catalog: Catalog) -> ProviderRule:
    if key != "*":
        level, sep, rest = key.partition(":")
        if not sep or level not in ("org", "team", "user", "session") or not rest:
            raise node.error("expected a pool id such as org:acme or team:acme/legal, or * for every scope")
    node.only("allow", "deny")
    known = sorted({m.provider for m in catalog.models.values()})

    def names(name: str) -> frozenset[str]:
        lnode = node.get(name)
        if not isinstance(lnode.value, list):
            raise lnode.error(f"expected a list of provider names from the catalog: {', '.join(known)}")
        return frozenset(lnode.child(str(i), v).str(choices=tuple(known)) for i, v in enumerate(lnode.value))

    return ProviderRule(
        allow=names("allow") if node.has("allow") else None,
        deny=names("deny") if node.has("deny") else frozenset(),
    )


def parse_decision_log(node: Node) -> DecisionLogConfig:
    node.only("path", "include_text")
    path = node.get("path").path("the path of a JSON-lines file")
    return DecisionLogConfig(path=str(path), include_text=node.get("include_text", False).bool())


def parse_classifier_ref(node: Node) -> str:
    """``default``, ``none``, or a model file's path (relative to the config file's folder)."""
    value = node.str()
    if value in ("default", "none"):
        return value
    path = node.path("default, none or the path of a model file from `tollgate train`")
    if not path.is_file():
        raise node.error(f"no such model file {str(path)!r}; use default, none or a file from `tollgate train`")
    return str(path)
