"""YAML in, with every key's file and line; and a user's file laid over the shipped defaults.

A user's config says only what it changes: a budgets-only file is a whole config. The rules:

- A mapping is merged key by key, at every depth, the user's value winning.
- An entry of ``models`` or of ``budgets.overrides`` is replaced whole: a model (or a pool
  override) is the user's as written, never half the default's. So are ``store`` and every
  pool's ``window``, whose keys only make sense together.
- A list (``tiers``, ``auth.callers``...) is replaced whole.
- ``key: null`` removes what the defaults have there, e.g. ``models: {gpt-6-luna: null}`` drops a
  default model: removing is explicit.

A file with ``tiers`` of its own brings its whole catalog and routing (the defaults name other
tiers). A duplicate key is an error naming both lines (YAML would silently keep the last).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["WHOLE_ENTRIES", "WHOLE_KEYS", "WHOLE_VALUES", "Positions", "layer", "read_yaml"]

Path_ = tuple[str, ...]
Positions = dict[Path_, tuple[str, int]]
"""Where each key came from: (file, line), by the key's path."""

WHOLE_ENTRIES: frozenset[Path_] = frozenset({("models",), ("budgets", "overrides")})
"""Mappings whose entries a user replaces whole rather than merges into."""
WHOLE_VALUES: frozenset[Path_] = frozenset({("store",)})
WHOLE_KEYS = frozenset({"window"})
"""Values replaced whole wherever they are, by path or by key."""


def read_yaml(text: str, source: str) -> tuple[Any, Positions]:
    """The document in ``text``, and the (file, line) of each of its keys; ``ConfigError`` names the line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        positions: Positions = {}
        if node is not None:
            _walk(node, (), source, positions)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"not valid YAML: {exc.problem or exc.context}{where}", file=source,
                          line=mark.line + 1 if mark is not None else 0) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=source) from None
    finally:
        loader.dispose()
    return data, positions


def _walk(node: yaml.Node, path: Path_, source: str, positions: Positions) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"duplicate key {key!r}: first on line {seen[key]}, again on line {line}; "
                                  "YAML would keep only the last, so say it once",
                                  key=".".join((*path, key)), file=source, line=line)
            seen[key] = line
            positions[(*path, key)] = (source, line)
            _walk(value_node, (*path, key), source, positions)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            positions[(*path, str(i))] = (source, item.start_mark.line + 1)
            _walk(item, (*path, str(i)), source, positions)


def layer(base: Any, base_positions: Positions, top: Any, top_positions: Positions) -> tuple[Any, Positions]:
    """``top`` laid over ``base`` by the rules above, with the positions of what each key now holds."""
    positions = dict(base_positions)
    merged = _merge(base, top, (), positions, top_positions)
    return merged, positions


def _drop(positions: Positions, path: Path_) -> None:
    for key in [k for k in positions if k[: len(path)] == path]:
        del positions[key]


def _take(positions: Positions, top_positions: Positions, path: Path_) -> None:
    _drop(positions, path)
    positions.update({k: v for k, v in top_positions.items() if k[: len(path)] == path})


def _merge(base: Any, top: Any, path: Path_, positions: Positions, top_positions: Positions) -> Any:
    if not (isinstance(base, Mapping) and isinstance(top, Mapping)):
        _take(positions, top_positions, path)
        return top
    merged = dict(base)
    for key, value in top.items():
        child = (*path, str(key))
        if value is None and key in merged:
            del merged[key]
            _drop(positions, child)
        elif path in WHOLE_ENTRIES or child in WHOLE_VALUES or key in WHOLE_KEYS or key not in merged:
            merged[key] = value
            _take(positions, top_positions, child)
        else:
            merged[key] = _merge(merged[key], value, child, positions, top_positions)
            positions[child] = top_positions.get(child, positions.get(child, ("", 0)))
    return merged
