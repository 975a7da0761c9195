"""Who is spending: the scope of a request, its validation and its pool ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .errors import InvalidRequest
from .ids import ID_PATTERN, pool_id

__all__ = ["ID_PATTERN", "Level", "Priority", "Scope", "validate_id"]

MAX_TAGS = 1_000


class Level(StrEnum):
    """Scope levels, narrowest first."""

    REQUEST = "request"
    SESSION = "session"
    USER = "user"
    TEAM = "team"
    ORG = "org"
    QUALITY = "quality"
    """Not a scope level: the org's pool for shadow calls, kept apart from the product's pools."""


class Priority(StrEnum):
    """Request priority; only ``high`` may use a pool's priority reserve."""

    NORMAL = "normal"
    HIGH = "high"


def validate_id(value: str, what: str) -> str:
    """Return ``value`` if it is a safe id, else raise ``InvalidRequest`` naming ``what``."""
    if not ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise InvalidRequest(
            f"{what} {shown!r} is not a valid id: use 1-128 characters from A-Z a-z 0-9 . _ @ -, "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True, slots=True)
class Scope:
    """The spender of one request. ``org`` is required; the other levels are optional."""

    org: str
    team: str = ""
    user: str = ""
    session: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    priority: Priority = Priority.NORMAL

    def __post_init__(self) -> None:
        if not self.org:
            raise InvalidRequest("scope.org_id is required: name the organisation that pays")
        validate_id(self.org, "scope.org_id")
        for name in ("team", "user", "session"):
            value = getattr(self, name)
            if value:
                validate_id(value, f"scope.{name}_id")
        if len(self.tags) > MAX_TAGS:
            raise InvalidRequest(f"scope.tags has {len(self.tags)} entries; at most {MAX_TAGS} are allowed")
        for key, value in self.tags.items():
            if len(key) > 64 or len(value) > 256:
                raise InvalidRequest("scope.tags keys are limited to 64 characters and values to 256")

    def ids(self) -> list[tuple[Level, str]]:
        """The (level, pool id) of every level this scope names, narrowest first.

        Pool ids carry the org, so user ``alice`` of two orgs never shares a pool.
        """
        out: list[tuple[Level, str]] = []
        for level, value in ((Level.SESSION, self.session), (Level.USER, self.user), (Level.TEAM, self.team)):
            if value:
                out.append((level, pool_id(level, self.org, value)))
        out.append((Level.ORG, pool_id(Level.ORG, self.org)))
        return out
