"""Admission: holding a plan's cost on every pool of the scope, or saying why not.

The soft-pool downgrade loop, idempotent replay (a retried request returns the key's
first reservation, whatever was learned since), and the hold request a store is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from ..catalog import Catalog
from ..config import Policy
from ..errors import BudgetExceeded, IdempotencyConflict, InvalidRequest, Limit, Refusal, ReservationNotFound
from ..ids import fresh_reservation_id, keyed_reservation_id
from ..ledger import BudgetStore, Hold, HoldRequest, PoolRef, ReserveOutcome
from ..money import apply_margin
from ..routing.select import Priced
from ..scope import Scope
from .types import Outcome, Prompt

__all__ = ["Admission", "Admitted", "fingerprint"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    """The candidate a request was admitted on, and what policy did on the way."""

    chosen: Priced
    reservation: ReserveOutcome | None
    outcome: Outcome
    downgraded_by: str = ""
    """The level of the soft pool that forced a downgrade, if one did."""
    refused_pool: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldTerms:
    """How a request is held: for how long, under which id, for which task."""

    ttl_ms: int
    idempotency_key: str = ""
    fingerprint: str = ""
    task_type: str = ""


class Admission:
    """Holds (or, without reserving, checks) a request's cost against its pools."""

    def __init__(self, store: BudgetStore, estimate_of: Callable[[Hold], int]) -> None:
        self._store = store
        self._estimate_of = estimate_of

    async def admit(self, scope: Scope, pools: list[PoolRef], margin: int, attempts: list[Priced], *,
                    reserve: bool, terms: HoldTerms) -> Admitted:
        """The first attempt every pool admits; soft pools let later (cheaper) attempts try.

        Refusals of hard pools, and of soft pools when no attempt fits, are raised.
        """
        chosen = attempts[0]
        refused: BudgetExceeded | None = None
        high = scope.priority == "high"
        for attempt in attempts:
            hold = apply_margin(attempt.cost, margin)
            if refused is not None and hold > refused.refusal.remaining:
                continue  # cannot fit the soft pool that already refused
            reservation: ReserveOutcome | None = None
            try:
                if reserve:
                    reservation = await self._store.reserve(hold_request(scope, pools, attempt, hold, terms))
                else:
                    await self._check_fits(pools, hold, high)
            except BudgetExceeded as exc:
                if exc.refusal.policy != Policy.SOFT:
                    raise
                refused = refused or exc
                continue
            if reservation is not None and reservation.replayed:
                return Admitted(chosen=attempt, reservation=reservation, outcome=Outcome.ADMITTED)
            if attempt is chosen:
                outcome = Outcome.ADMITTED
                if reservation is not None and any(p.warning for p in reservation.pools):
                    outcome = Outcome.WARNED
                return Admitted(chosen=attempt, reservation=reservation, outcome=outcome)
            assert refused is not None
            return Admitted(chosen=attempt, reservation=reservation, outcome=Outcome.DOWNGRADED,
                            downgraded_by=refused.refusal.level, refused_pool=refused.refusal.pool_id)
        assert refused is not None
        raise refused

    async def replay(self, scope: Scope, pools: list[PoolRef], idempotency_key: str,
                     fingerprint: str) -> ReserveOutcome | None:
        """The key's first reservation, for a retry refused before it reached the store.

        What the sidecar learned since (output estimates, the quality guard) can make the
        very request that was admitted then fail a check now; its retry must still replay.
        """
        try:
            hold = await self._store.get(keyed_reservation_id(scope.org, idempotency_key))
        except ReservationNotFound:
            return None
        if hold.fingerprint != fingerprint:
            raise IdempotencyConflict(
                f"reservation {hold.reservation_id} already exists for a different request under this "
                "idempotency key; use a new key for a new call"
            )
        snapshots = await self._store.snapshot(pools, high_priority=scope.priority == "high")
        return ReserveOutcome(hold, tuple(snapshots), replayed=True)

    def replayed_choice(self, priced: list[Priced], hold: Hold, catalog: Catalog) -> Priced:
        """The candidate a replayed reservation was made for, as routing sees it now."""
        found = next((p for p in priced if p.model.name == hold.model), None)
        if found is not None:
            return found
        model = catalog.models.get(hold.model)
        if model is None:
            raise InvalidRequest(f"model {hold.model!r} of reservation {hold.reservation_id} is no longer in the "
                                 "catalog; use a new idempotency key")
        return Priced(model, hold.tokens, 0, self._estimate_of(hold))

    async def _check_fits(self, pools: list[PoolRef], amount: int, high: bool) -> None:
        """Route without reserving: refuse as admission would, from a snapshot."""
        snapshots = {s.pool_id: s for s in await self._store.snapshot(pools, high_priority=high)}
        for ref in pools:
            if ref.spec.policy is Policy.WARN:
                continue
            snap = snapshots.get(ref.pool_id)
            remaining = snap.remaining if snap else ref.spec.usable_cap(high_priority=high)
            if amount > remaining:
                raise BudgetExceeded(Refusal(
                    ref.pool_id, str(ref.level), str(ref.spec.policy), Limit.COST, amount, remaining,
                    snap.resets_at_ms if snap else None,
                ))


def hold_request(scope: Scope, pools: list[PoolRef], priced: Priced, amount: int, terms: HoldTerms) -> HoldRequest:
    """What a store is asked to hold for ``priced``."""
    key = terms.idempotency_key
    return HoldRequest(
        reservation_id=keyed_reservation_id(scope.org, key) if key else fresh_reservation_id(scope.org),
        pools=tuple(pools),
        amount=amount,
        tokens=priced.input_tokens + priced.output_tokens,
        ttl_ms=terms.ttl_ms,
        high_priority=scope.priority == "high",
        model=priced.model.name,
        task_type=terms.task_type,
        fresh=not key,
        fingerprint=terms.fingerprint,
    )


def fingerprint(kind: str, scope: Scope, prompt: Prompt, *options: object) -> str:
    """What a caller sent for a reservation, digested: the same request retried, the same fingerprint.

    Never a figure the sidecar derives (an estimate moves as it learns), or a retry
    could not replay.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{kind}\0{scope.org}\0{scope.team}\0{scope.user}\0{scope.session}\0{scope.priority}".encode())
    if prompt.messages is None:
        digest.update(f"\0tokens={prompt.input_tokens}".encode())
    else:
        for role, content in prompt.messages:
            digest.update(f"\0{role}\1".encode())
            digest.update(content.encode("utf-8", "surrogatepass"))
    digest.update("\0".join(["", *map(str, options)]).encode())
    return f"{kind}:{digest.hexdigest()}"
