"""The reservation context manager: commit, release on exit, release on error."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from tollgate_client import (
    AsyncClient,
    AsyncHeldReservation,
    CommitResult,
    ReleaseResult,
    ReservationEndedError,
    Scope,
    UnavailableError,
    Usage,
)

from .fake_tollgate import NOW, Failure, FakeTollgate

SCOPE = Scope(org="acme", user="alice")


class ProviderError(Exception):
    """Stands in for the LLM provider's SDK failing mid-call."""


async def test_commit_inside_the_block_does_not_release(client: AsyncClient, fake: FakeTollgate) -> None:
    decision = await client.route(SCOPE, messages=[("user", "hi")], reserve=True)
    async with client.reservation(decision) as held:
        assert isinstance(held, AsyncHeldReservation)
        assert held.model == "gpt-4o-mini"
        assert held.reservation is decision.reservation
        assert not held.settled
        result = await held.commit(Usage(input_tokens=12, output_tokens=30))
    assert isinstance(result, CommitResult)
    assert held.result is result
    assert held.settled
    assert fake.methods() == ["Route", "Commit"]
    assert fake.calls("Commit")[0].reservation_id == held.reservation_id


async def test_exception_in_the_block_releases_and_propagates(client: AsyncClient, fake: FakeTollgate) -> None:
    reserved = await client.reserve(SCOPE, "gpt-4o", input_tokens=100)
    with pytest.raises(ProviderError, match="rate limited") as caught:
        async with client.reservation(reserved):
            raise ProviderError("rate limited")
    assert fake.methods() == ["Reserve", "Release"]
    assert fake.calls("Release")[0].reservation_id == reserved.reservation.reservation_id
    assert not getattr(caught.value, "__notes__", None)


async def test_leaving_without_commit_releases(client: AsyncClient, fake: FakeTollgate) -> None:
    decision = await client.route(SCOPE, input_tokens=100, reserve=True)
    async with client.reservation(decision) as held:
        pass
    assert fake.methods() == ["Route", "Release"]
    assert isinstance(held.result, ReleaseResult)
    assert fake.open == {}


async def test_explicit_release_is_not_repeated(client: AsyncClient, fake: FakeTollgate) -> None:
    decision = await client.route(SCOPE, input_tokens=100, reserve=True)
    async with client.reservation(decision.reservation) as held:  # type: ignore[arg-type]
        await held.release()
    assert fake.methods() == ["Route", "Release"]


async def test_release_failure_during_an_exception_becomes_a_note(client: AsyncClient, fake: FakeTollgate) -> None:
    decision = await client.route(SCOPE, input_tokens=100, reserve=True)
    fake.failures["Release"] = Failure(grpc.StatusCode.UNAVAILABLE, "store down")
    with pytest.raises(ProviderError) as caught:
        async with client.reservation(decision):
            raise ProviderError("boom")
    [note] = caught.value.__notes__
    assert decision.reservation is not None
    assert decision.reservation.reservation_id in note
    assert "UnavailableError" in note and "store down" in note


async def test_release_failure_on_normal_exit_is_raised(client: AsyncClient, fake: FakeTollgate) -> None:
    decision = await client.route(SCOPE, input_tokens=100, reserve=True)
    fake.failures["Release"] = Failure(grpc.StatusCode.UNAVAILABLE, "store down")
    with pytest.raises(UnavailableError, match="store down"):
        async with client.reservation(decision):
            pass


async def test_failed_commit_is_not_followed_by_a_release(client: AsyncClient, fake: FakeTollgate) -> None:
    decision = await client.route(SCOPE, input_tokens=100, reserve=True)
    fake.failures["Commit"] = Failure(grpc.StatusCode.UNAVAILABLE, "timeout")
    with pytest.raises(UnavailableError):
        async with client.reservation(decision) as held:
            await held.commit(Usage(100, output_tokens=10))
    assert fake.methods() == ["Route"] + ["Commit"] * 4  # the commit itself is retried, never a release
    assert held.settled and held.result is None


async def test_commit_after_the_reservation_ended_raises(client: AsyncClient, fake: FakeTollgate) -> None:
    decision = await client.route(SCOPE, input_tokens=100, reserve=True)
    assert decision.reservation is not None
    await client.release(decision.reservation.reservation_id)
    with pytest.raises(ReservationEndedError):
        async with client.reservation(decision) as held:
            await held.commit(Usage(100))


async def test_extend_moves_the_expiry(client: AsyncClient) -> None:
    decision = await client.route(SCOPE, input_tokens=100, reserve=True)
    async with client.reservation(decision) as held:
        assert held.expires_at == NOW + timedelta(seconds=30)
        extended = await held.extend(ttl_ms=600_000)
        assert held.expires_at == extended.expires_at == NOW + timedelta(minutes=10)
        await held.commit(Usage(100))


async def test_a_decision_without_reservation_is_refused(client: AsyncClient) -> None:
    decision = await client.route(SCOPE, input_tokens=100)
    with pytest.raises(ValueError, match="reserve=True"):
        client.reservation(decision)
    with pytest.raises(TypeError):
        client.reservation("res-1")  # type: ignore[arg-type]
