"""Context managers that give a reservation back unless it was committed."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

from ._types import CommitResult, Decision, ExtendResult, ReleaseResult, Reservation, ReserveResult, Usage

if TYPE_CHECKING:
    from ._client import AsyncClient, Client

__all__ = ["AsyncHeldReservation", "HeldReservation", "ReservationSource"]

ReservationSource = Decision | Reservation | ReserveResult
"""What ``reservation()`` accepts: a ``route(..., reserve=True)`` decision, a reserve result or a reservation."""


def _reservation_of(source: ReservationSource) -> Reservation:
    if isinstance(source, Reservation):
        return source
    if isinstance(source, ReserveResult):
        return source.reservation
    if isinstance(source, Decision):
        if source.reservation is None:
            raise ValueError("this Decision holds no reservation: call route(..., reserve=True) to get one")
        return source.reservation
    raise TypeError(f"expected a Decision, ReserveResult or Reservation, got {type(source).__name__}")


class _Held:
    """State shared by the sync and async context managers.

    The reservation counts as settled as soon as ``commit`` or ``release`` is
    called, even if that call fails. A failed commit is deliberately not
    followed by a release: the provider call has happened, so giving the hold
    back would record it as free. Commit is idempotent and may be retried;
    otherwise the sidecar's expiry policy resolves the hold.
    """

    __slots__ = ("_expires_at", "_reservation", "_result", "_settled")

    def __init__(self, source: ReservationSource) -> None:
        self._reservation = _reservation_of(source)
        self._expires_at = self._reservation.expires_at
        self._settled = False
        self._result: CommitResult | ReleaseResult | None = None

    @property
    def reservation(self) -> Reservation:
        """The reservation as it was made."""
        return self._reservation

    @property
    def reservation_id(self) -> str:
        """The reservation's id."""
        return self._reservation.reservation_id

    @property
    def model(self) -> str:
        """The model the reservation was made for."""
        return self._reservation.model

    @property
    def expires_at(self) -> datetime:
        """When the reservation expires, updated by ``extend``."""
        return self._expires_at

    @property
    def settled(self) -> bool:
        """Whether ``commit`` or ``release`` has been called, so leaving the block releases nothing."""
        return self._settled

    @property
    def result(self) -> CommitResult | ReleaseResult | None:
        """The answer to the commit or release that settled the reservation, once it succeeded."""
        return self._result

    def _note(self, error: BaseException) -> str:
        return f"releasing Tollgate reservation {self.reservation_id} on the way out also failed: {error!r}"


class AsyncHeldReservation(_Held):
    """A reservation held for the length of an ``async with`` block; from ``AsyncClient.reservation``.

    Leaving the block without ``commit`` or ``release`` releases the
    reservation. If the block raised, the original exception propagates and a
    failure to release is added to it as a note.
    """

    __slots__ = ("_client",)

    def __init__(self, client: AsyncClient, source: ReservationSource) -> None:
        super().__init__(source)
        self._client = client

    async def commit(self, usage: Usage) -> CommitResult:
        """Report what the provider call used; the hold is reconciled and the rest released."""
        self._settled = True
        self._result = await self._client.commit(self.reservation_id, usage)
        return self._result

    async def release(self) -> ReleaseResult:
        """End the reservation without charging, when no billable call happened."""
        self._settled = True
        self._result = await self._client.release(self.reservation_id)
        return self._result

    async def extend(self, ttl_ms: int = 0) -> ExtendResult:
        """Push the expiry out to ``ttl_ms`` from now (0 = the sidecar's default), for long calls."""
        result = await self._client.extend(self.reservation_id, ttl_ms)
        self._expires_at = result.expires_at
        return result

    async def __aenter__(self) -> AsyncHeldReservation:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._settled:
            return
        if exc is None:
            await self.release()
            return
        try:
            await self.release()
        except Exception as release_error:
            exc.add_note(self._note(release_error))


class HeldReservation(_Held):
    """A reservation held for the length of a ``with`` block; from ``Client.reservation``.

    Leaving the block without ``commit`` or ``release`` releases the
    reservation. If the block raised, the original exception propagates and a
    failure to release is added to it as a note.
    """

    __slots__ = ("_client",)

    def __init__(self, client: Client, source: ReservationSource) -> None:
        super().__init__(source)
        self._client = client

    def commit(self, usage: Usage) -> CommitResult:
        """Report what the provider call used; the hold is reconciled and the rest released."""
        self._settled = True
        self._result = self._client.commit(self.reservation_id, usage)
        return self._result

    def release(self) -> ReleaseResult:
        """End the reservation without charging, when no billable call happened."""
        self._settled = True
        self._result = self._client.release(self.reservation_id)
        return self._result

    def extend(self, ttl_ms: int = 0) -> ExtendResult:
        """Push the expiry out to ``ttl_ms`` from now (0 = the sidecar's default), for long calls."""
        result = self._client.extend(self.reservation_id, ttl_ms)
        self._expires_at = result.expires_at
        return result

    def __enter__(self) -> HeldReservation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._settled:
            return
        if exc is None:
            self.release()
            return
        try:
            self.release()
        except Exception as release_error:
            exc.add_note(self._note(release_error))
