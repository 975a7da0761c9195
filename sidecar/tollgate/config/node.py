"""A YAML value that knows its dotted key path, so every config error names file, line, key and problem."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..money import parse_usd
from .layers import Positions

__all__ = ["Node"]


class Node:
    """A value in the YAML tree that knows its key path and where it was written, for precise errors."""

    def __init__(self, value: Any, key: str, source: str, *, trail: tuple[str, ...] = (),
                 positions: Positions | None = None) -> None:
        self.value = value
        self.key = key
        self.source = source
        self.trail = trail
        """The keys from the top to this value."""
        self.positions: Positions = positions if positions is not None else {}

    def where(self) -> tuple[str, int]:
        """The file and line of this key, or of the nearest key above it that was written somewhere."""
        for end in range(len(self.trail), 0, -1):
            found = self.positions.get(self.trail[:end])
            if found is not None:
                return found
        return self.source, 0

    def error(self, problem: str) -> ConfigError:
        file, line = self.where()
        return ConfigError(problem, key=self.key or "<top level>", file=file or self.source, line=line)

    def child(self, name: str, value: Any) -> Node:
        return Node(value, f"{self.key}.{name}" if self.key else str(name), self.source, trail=(*self.trail, str(name)),
                    positions=self.positions)

    def require_mapping(self) -> Mapping[str, Any]:
        if self.value is None:
            raise self.error("is empty or missing: expected a mapping of key: value lines")
        if not isinstance(self.value, Mapping):
            raise self.error(f"expected a mapping of key: value lines, got {_shown(self.value)}")
        return self.value

    def only(self, *allowed: str) -> None:
        unknown = sorted(str(k) for k in self.require_mapping() if k not in allowed)
        if unknown:
            raise self.child(unknown[0], None).error(f"unknown key; allowed here: {', '.join(allowed)}")

    def get(self, name: str, default: Any = None) -> Node:
        mapping = self.require_mapping()
        return self.child(name, mapping.get(name, default))

    def has(self, name: str) -> bool:
        return name in self.require_mapping()

    def items(self) -> Iterator[tuple[str, Node]]:
        for k, v in self.require_mapping().items():
            yield str(k), self.child(str(k), v)

    def int(self, *, minimum: int = 0, maximum: int | None = None) -> int:
        v = self.value
        if v is None:
            raise self.error("is required (a whole number)")
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(f"expected an integer, got {v!r}")
        if v < minimum or (maximum is not None and v > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise self.error(f"{v} is out of range: must be {bound}")
        return v

    def number(self, *, minimum: float, maximum: float) -> float:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(f"expected a number, got {v!r}")
        if not minimum <= v <= maximum:
            raise self.error(f"{v} is out of range: must be between {minimum} and {maximum}")
        return float(v)

    def bool(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {self.value!r}")
        return self.value

    def path(self, what: str) -> Path:
        """A path, relative to the config file's folder when the config came from a file."""
        raw = self.str()
        if not raw.strip():
            raise self.error(f"expected {what}")
        path = Path(raw).expanduser()
        if not path.is_absolute() and Path(self.source).is_file():
            path = Path(self.source).resolve().parent / path
        return path

    def str(self, *, choices: tuple[str, ...] | None = None) -> str:
        v = self.value
        if v is None:
            raise self.error("is required" + (f": one of {', '.join(choices)}" if choices else " (a string)"))
        if not isinstance(v, str):
            raise self.error(f"expected a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.error(f"{v!r} is not one of: {', '.join(choices)}")
        return v

    def usd(self) -> builtins.int:
        try:
            return parse_usd(self.value)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def share_bp(self) -> builtins.int:
        """A share in [0, 1] as basis points."""
        return round(self.number(minimum=0.0, maximum=1.0) * 10_000)

    def duration_ms(self) -> builtins.int:
        """``30s``, ``5m``, ``1h``, ``7d`` or a number of seconds."""
        v = self.value
        units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v * 1000
        if isinstance(v, str):
            for unit in sorted(units, key=len, reverse=True):
                number = v.strip().removesuffix(unit)
                if number != v.strip() and number.isdigit() and int(number) > 0:
                    return int(number) * units[unit]
        raise self.error(f"expected a duration like 30s, 5m, 1h or 7d, got {v!r}")


def _shown(value: Any) -> builtins.str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
