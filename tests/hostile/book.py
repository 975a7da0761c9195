"""What every caller was told: the reservations handed out, and how each one ended.

Every answer the campaign receives goes through ``Book``; from it follow what each pool
should have spent and held, which the end of the campaign compares with the sidecar's own
figures (GetBudget) and with the ledger's records.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from tollgate_client.v1 import tollgate_pb2 as pb

from .world import HonestScope

__all__ = ["Book", "Held", "pool_org"]

_EXPIRED = re.compile(r"expired \(charged (\d+) nano")
_ENDED = re.compile(r"it was already (committed|released)")


def pool_org(pool_id: str) -> str:
    """The org of a pool id (``level:org`` or ``level:org/member``)."""
    rest = pool_id.partition(":")[2]
    return rest.partition("/")[0]


@dataclass
class Held:
    rid: str
    caller: str
    scope: HonestScope
    how: str
    amount: int
    pools: tuple[str, ...]
    expires_ms: int
    state: str = "open"
    charged: int = 0
    ended_by: str = ""
    claimed: bool = False
    """An action is using it (an honest commit, a keyed retry): others leave it alone."""
    keep: bool = False
    """Kept open for a later keyed retry."""


@dataclass
class Book:
    holds: dict[str, Held] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(check, detail) of inconsistencies seen in answers, for the runner to report."""

    def _problem(self, check: str, detail: str) -> None:
        self.problems.append((check, detail))

    # -- answers ----------------------------------------------------------------------------

    def reserved(self, caller: str, scope: HonestScope, r: pb.Reservation, how: str) -> Held | None:
        rid = r.reservation_id
        if not rid:
            return None
        if not rid.endswith("." + scope.org) or rid.partition(".")[2] != scope.org:
            self._problem("d", f"{caller} reserved in org {scope.org!r} and was told reservation {rid[:80]!r}")
        pools = tuple(p.pool_id for p in r.pools if p.level != pb.POOL_LEVEL_REQUEST)
        strangers = [p for p in pools if pool_org(p) != scope.org]
        if strangers:
            self._problem("d", f"{caller}'s reservation {rid} in org {scope.org!r} holds pools {strangers}")
        named = {f"org:{scope.org}"} | {f"{level}:{scope.org}/{value}" for level, value in (
            ("team", scope.team), ("user", scope.user), ("session", scope.session)) if value}
        if not named <= set(pools) and r.pools and r.pools[0].level != pb.POOL_LEVEL_QUALITY:
            self._problem("d", f"{caller}'s reservation {rid} holds {sorted(pools)}, not the scope's {sorted(named)}")
        known = self.holds.get(rid)
        expires = r.expires_at.seconds * 1000 + r.expires_at.nanos // 1_000_000
        if known is not None:
            if not r.replayed and known.state == "open":
                self._problem("7", f"reservation {rid} handed out twice as new (to {known.caller} and {caller})")
            if known.scope.org != scope.org:
                self._problem("d", f"{caller} was handed {known.caller}'s reservation {rid}")
            if known.state == "open":
                known.expires_ms = max(known.expires_ms, expires)
            return known
        held = Held(rid, caller, scope, how, r.held_nanos, pools, expires)
        self.holds[rid] = held
        return held

    def committed(self, caller: str, c: pb.CommitResponse) -> None:
        held = self.holds.get(c.reservation_id)
        if held is None:
            self._problem("7", f"{caller} was told of a commit of {c.reservation_id[:80]!r}, never handed out")
            return
        if held.state == "open":
            held.state, held.charged, held.ended_by = "committed", c.charged_nanos, caller
        elif held.state != "committed" or held.charged != c.charged_nanos:
            self._problem("7", f"{caller} was told {c.reservation_id} committed for {c.charged_nanos} "
                               f"after it was {held.state} (charged {held.charged})")

    def released(self, caller: str, rid: str) -> None:
        held = self.holds.get(rid)
        if held is None:
            self._problem("7", f"{caller} was told of a release of {rid[:80]!r}, never handed out")
            return
        if held.state == "open":
            held.state, held.ended_by = "released", caller
        elif held.state != "released":
            self._problem("7", f"{caller} was told {rid} released after it was {held.state}")

    def ended_by_admin(self, caller: str, e: pb.EndReservationResponse) -> None:
        held = self.holds.get(e.reservation_id)
        if held is None:
            self._problem("7", f"{caller} ended {e.reservation_id[:80]!r}, never handed out")
            return
        if held.state == "open":
            held.state, held.charged, held.ended_by = str(e.state), e.charged_nanos, caller
        elif held.state != e.state or held.charged != e.charged_nanos:
            self._problem("7", f"{caller} was told {e.reservation_id} ended {e.state} ({e.charged_nanos}) "
                               f"after it was {held.state} ({held.charged})")

    def extended(self, rid: str, e: pb.ExtendResponse) -> None:
        held = self.holds.get(rid)
        if held is not None and held.state == "open":
            held.expires_ms = e.expires_at.seconds * 1000 + e.expires_at.nanos // 1_000_000

    def refused(self, caller: str, rid: str, details: str) -> None:
        """An error answer about ``rid``: one that says it expired is how the caller learns the charge.

        One that says it already ended, of a reservation no caller was told had ended, means it
        ended behind every caller's back.
        """
        held = self.holds.get(rid)
        if held is None or held.state != "open":
            return
        m = _EXPIRED.search(details)
        if m is not None:
            held.state, held.charged, held.ended_by = "expired", int(m.group(1)), "expiry"
            return
        ended = _ENDED.search(details)
        if ended is not None:
            self._problem("f", f"{caller} was told {rid} was already {ended.group(1)}; no caller was told it ended "
                               f"(it was handed to {held.caller} by {held.how})")
            held.state, held.ended_by = f"{ended.group(1)}?", "unknown"

    # -- views ------------------------------------------------------------------------------

    def open_holds(self) -> list[Held]:
        return [h for h in self.holds.values() if h.state == "open"]

    def expected(self) -> dict[str, tuple[int, int]]:
        """Pool id -> (spent, held) as the answers imply."""
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for h in self.holds.values():
            for p in h.pools:
                entry = out[p]
                if h.state == "open":
                    entry[1] += h.amount
                else:
                    entry[0] += h.charged
        return {p: (s, hd) for p, (s, hd) in out.items()}
