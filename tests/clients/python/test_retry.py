"""Retries against a real grpc.aio server whose answers are scripted: refused as UNAVAILABLE, or lost after the
call took effect (the client's deadline passes first). What each attempt carried is recorded by the server."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from tollgate_client import (
    DEFAULT_RETRY,
    AsyncClient,
    BudgetExceededError,
    Client,
    Retry,
    Scope,
    TollgateClientError,
    UnavailableError,
    Usage,
)

from .fake_tollgate import Failure, FakeTollgate, Hang, refused

SCOPE = Scope(org="acme", user="alice")
DOWN = Failure(grpc.StatusCode.UNAVAILABLE, "connection reset")
# Fast enough for tests, with the default number of attempts.
QUICK = Retry(attempts=4, budget_s=5.0, backoff_s=0.01, max_backoff_s=0.02)
HEX_KEY = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
async def quick(target: str) -> AsyncIterator[AsyncClient]:
    """A client with short backoffs and a deadline a Hang overruns quickly."""
    async with AsyncClient(target, timeout=0.3, retry=QUICK) as client:
        yield client


def test_the_default_policy() -> None:
    assert DEFAULT_RETRY == Retry() == Retry(attempts=4, budget_s=5.0, backoff_s=0.05, max_backoff_s=1.0)
    assert AsyncClient().retry == Client("127.0.0.1:1").retry == DEFAULT_RETRY
    assert AsyncClient(retry=None).retry is None
    assert AsyncClient(retry=Retry(attempts=1)).retry is None


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    policy = Retry(backoff_s=0.1, max_backoff_s=0.25)
    assert [policy.backoff(n, draw=lambda: 1.0) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.25, 0.25]
    assert policy.backoff(1, draw=lambda: 0.0) == 0.0
    waits = [policy.backoff(2) for _ in range(200)]
    assert all(0.0 <= wait < 0.2 for wait in waits) and len(set(waits)) > 100


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": 2.0}, "attempts"),
        ({"budget_s": -1}, "budget_s"),
        ({"backoff_s": float("nan")}, "backoff_s"),
        ({"max_backoff_s": float("inf")}, "max_backoff_s"),
        ({"backoff_s": 2.0, "max_backoff_s": 1.0}, "below backoff_s"),
    ],
)
def test_a_policy_out_of_range_is_refused(arguments: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Retry(**arguments)  # type: ignore[arg-type]


def test_retry_must_be_a_policy() -> None:
    with pytest.raises(TypeError, match="Retry or None"):
        AsyncClient(retry=3)  # type: ignore[arg-type]


async def test_reserve_is_retried_with_the_key_it_generated(quick: AsyncClient, fake: FakeTollgate) -> None:
    fake.script["Reserve"] = [DOWN, DOWN]
    reserved = await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    keys = fake.keys("Reserve")
    assert len(keys) == 3 and len(set(keys)) == 1 and HEX_KEY.fullmatch(keys[0]), keys
    assert reserved.reservation.idempotency_key == keys[0]
    assert not reserved.reservation.replayed  # the refused attempts held nothing
    assert list(fake.open) == [reserved.reservation.reservation_id]


async def test_every_call_gets_a_key_of_its_own(quick: AsyncClient, fake: FakeTollgate) -> None:
    first = await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    second = await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert first.reservation.idempotency_key != second.reservation.idempotency_key
    assert len(fake.open) == 2


async def test_a_lost_answer_is_replayed_not_held_twice(quick: AsyncClient, fake: FakeTollgate) -> None:
    fake.script["Reserve"] = [Hang()]
    started = time.monotonic()
    reserved = await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert time.monotonic() - started >= 0.3  # the first attempt ran into its deadline
    keys = fake.keys("Reserve")
    assert len(keys) == 2 and keys[0] == keys[1], keys
    assert reserved.reservation.replayed
    assert list(fake.open) == [reserved.reservation.reservation_id]


async def test_route_with_reserve_is_retried_with_one_key(quick: AsyncClient, fake: FakeTollgate) -> None:
    fake.script["Route"] = [DOWN, Hang()]
    decision = await quick.route(SCOPE, input_tokens=100, reserve=True, ttl_ms=9000)
    keys = fake.keys("Route")
    assert len(keys) == 3 and len(set(keys)) == 1 and HEX_KEY.fullmatch(keys[0]), keys
    assert decision.reservation is not None
    assert decision.reservation.replayed and decision.reservation.idempotency_key == keys[0]
    assert [r.reservation.ttl_ms for r in fake.calls("Route")] == [9000] * 3  # type: ignore[attr-defined]
    assert len(fake.open) == 1


async def test_the_callers_key_is_kept(quick: AsyncClient, fake: FakeTollgate) -> None:
    fake.script["Reserve"] = [DOWN, Hang()]
    reserved = await quick.reserve(SCOPE, "gpt-4o", input_tokens=100, idempotency_key="order-17:summary")
    assert fake.keys("Reserve") == ["order-17:summary"] * 3
    assert reserved.reservation.idempotency_key == "order-17:summary"
    assert reserved.reservation.replayed


async def test_attempts_are_bounded(quick: AsyncClient, fake: FakeTollgate) -> None:
    fake.failures["Reserve"] = DOWN
    with pytest.raises(UnavailableError, match="connection reset") as caught:
        await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    keys = fake.keys("Reserve")
    assert len(keys) == QUICK.attempts and len(set(keys)) == 1
    assert caught.value.attempts == QUICK.attempts
    assert caught.value.idempotency_key == keys[0]  # for a later retry that must not hold twice


async def test_the_budget_bounds_the_attempts_and_their_deadlines(target: str, fake: FakeTollgate) -> None:
    fake.script["Reserve"] = [Hang()] * 10
    async with AsyncClient(target, timeout=0.4, retry=Retry(attempts=10, budget_s=0.6, backoff_s=0.0,
                                                               max_backoff_s=0.0)) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            await client.reserve(SCOPE, "gpt-4o", input_tokens=100)
        elapsed = time.monotonic() - started
    # 0.4 s for the first attempt, then what is left of the 0.6 s budget: never the 10 attempts' 4 s.
    assert 0.55 <= elapsed < 1.2, elapsed
    assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 2 <= caught.value.attempts <= 3 and len(fake.keys("Reserve")) == caught.value.attempts
    assert len(fake.open) == 1  # every attempt but the first replayed (or never got that far)


async def test_no_retry_starts_past_the_budget(target: str, fake: FakeTollgate) -> None:
    fake.failures["GetBudget"] = DOWN
    async with AsyncClient(target, retry=Retry(attempts=1000, budget_s=0.3, backoff_s=0.02,
                                               max_backoff_s=0.05)) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            await client.get_budget(SCOPE)
        elapsed = time.monotonic() - started
    assert elapsed < 0.8, elapsed
    assert 2 < caught.value.attempts < 1000 and len(fake.calls("GetBudget")) == caught.value.attempts


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ""),  # gRPC's own, such as a message too large
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
        (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_ENDED"),
        (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_CONFLICT"),
        (grpc.StatusCode.NOT_FOUND, "RESERVATION_NOT_FOUND"),
        (grpc.StatusCode.OUT_OF_RANGE, "ESCALATION_REFUSED"),
        (grpc.StatusCode.INTERNAL, "INTERNAL"),
        (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
        (grpc.StatusCode.CANCELLED, ""),
    ],
)
async def test_other_statuses_are_never_retried(quick: AsyncClient, fake: FakeTollgate,
                                                code: grpc.StatusCode, reason: str) -> None:
    fake.script["Reserve"] = [refused(code, "no", reason) if reason else Failure(code, "no")]
    with pytest.raises(TollgateClientError) as caught:
        await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert caught.value.code is code and caught.value.reason == reason and caught.value.attempts == 1
    assert len(fake.calls("Reserve")) == 1
    assert isinstance(caught.value, BudgetExceededError) == (reason == "BUDGET_EXCEEDED")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "CALLER_GONE"),
    ],
)
async def test_the_sidecars_unavailable_answers_are_retried(quick: AsyncClient, fake: FakeTollgate,
                                                            code: grpc.StatusCode, reason: str) -> None:
    fake.script["Reserve"] = [refused(code, "try again", reason)]
    await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert len(fake.calls("Reserve")) == 2
    fake.script["Reserve"] = [refused(code, "try again", reason)] * 4
    with pytest.raises(UnavailableError) as caught:
        await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert (caught.value.code, caught.value.reason, caught.value.attempts) == (code, reason, 4)


async def test_commit_release_and_extend_are_retried_as_they_are(quick: AsyncClient, fake: FakeTollgate) -> None:
    first = await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    second = await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    fake.script.update(Extend=[DOWN, Hang()], Commit=[Hang()], Release=[DOWN, Hang()])
    extended = await quick.extend(first.reservation.reservation_id, ttl_ms=60_000)
    committed = await quick.commit(first.reservation.reservation_id, Usage(100, output_tokens=20))
    released = await quick.release(second.reservation.reservation_id)
    assert extended.reservation_id == first.reservation.reservation_id
    assert committed.replayed and released.replayed  # the lost answers' work was done once
    assert [len(fake.calls(m)) for m in ("Extend", "Commit", "Release")] == [3, 2, 3]
    assert {r.reservation_id for r in fake.calls("Commit")} == {first.reservation.reservation_id}  # type: ignore[attr-defined]
    assert fake.ended == {first.reservation.reservation_id: "Commit", second.reservation.reservation_id: "Release"}


async def test_escalate_is_retried_as_it_is(quick: AsyncClient, fake: FakeTollgate) -> None:
    decision = await quick.route(SCOPE, input_tokens=100, reserve=True)
    assert decision.reservation is not None
    fake.script["Escalate"] = [DOWN, Hang()]
    escalation = await quick.escalate(decision.reservation.reservation_id, SCOPE, input_tokens=100,
                                      reason="invalid_json", usage=Usage(100, output_tokens=30))
    requests = fake.calls("Escalate")
    assert len(requests) == 3 and all(r == requests[0] for r in requests)
    assert all(not r.reservation.idempotency_key for r in requests)  # type: ignore[attr-defined]
    assert escalation.decision.reservation is not None and escalation.decision.reservation.replayed
    assert escalation.previous_commit is not None and escalation.previous_commit.replayed
    assert len(fake.open) == 1


async def test_reads_are_retried_only_when_unavailable(quick: AsyncClient, fake: FakeTollgate) -> None:
    fake.script.update(GetBudget=[DOWN, DOWN], GetQuality=[DOWN], Route=[DOWN])
    assert await quick.get_budget(SCOPE)
    assert await quick.get_quality() == ()
    decision = await quick.route(SCOPE, input_tokens=100)
    assert decision.reservation is None
    assert [len(fake.calls(m)) for m in ("GetBudget", "GetQuality", "Route")] == [3, 2, 2]
    assert fake.keys("Route") == ["", ""]  # nothing held, so no key

    fake.script.update(GetBudget=[Hang()], Route=[Hang()])
    for call in (quick.get_budget(SCOPE), quick.route(SCOPE, input_tokens=100)):
        with pytest.raises(UnavailableError) as caught:
            await call
        assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED and caught.value.attempts == 1
    assert [len(fake.calls(m)) for m in ("GetBudget", "Route")] == [4, 3]


async def test_feedback_is_never_retried(quick: AsyncClient, fake: FakeTollgate) -> None:
    reserved = await quick.reserve(SCOPE, "gpt-4o", input_tokens=100)
    fake.script["Feedback"] = [DOWN]
    with pytest.raises(UnavailableError) as caught:
        await quick.feedback(reserved.reservation.reservation_id, 0.9)
    assert caught.value.attempts == 1 and len(fake.calls("Feedback")) == 1
    assert await quick.feedback(reserved.reservation.reservation_id, 0.9) == ("extract", "cheap")


@pytest.mark.parametrize("retry", [None, Retry(attempts=1)])
async def test_retries_off(target: str, fake: FakeTollgate, retry: Retry | None) -> None:
    fake.script["Reserve"] = [DOWN]
    async with AsyncClient(target, retry=retry) as client:
        with pytest.raises(UnavailableError) as caught:
            await client.reserve(SCOPE, "gpt-4o", input_tokens=100)
        assert caught.value.attempts == 1 and caught.value.idempotency_key == ""
        reserved = await client.reserve(SCOPE, "gpt-4o", input_tokens=100)
    assert fake.keys("Reserve") == ["", ""]  # no key is invented for a call that is never retried
    assert reserved.reservation.idempotency_key == ""


async def test_the_blocking_client_retries_the_same_way(target: str, fake: FakeTollgate) -> None:
    fake.script["Reserve"] = [DOWN, Hang()]
    fake.script["Commit"] = [Hang()]

    def flow() -> tuple[str, bool, bool]:
        with Client(target, timeout=0.3, retry=QUICK) as client:
            reserved = client.reserve(SCOPE, "gpt-4o", input_tokens=100)
            committed = client.commit(reserved.reservation.reservation_id, Usage(100))
            return reserved.reservation.idempotency_key, reserved.reservation.replayed, committed.replayed

    key, reserve_replayed, commit_replayed = await asyncio.to_thread(flow)
    assert fake.keys("Reserve") == [key] * 3 and HEX_KEY.fullmatch(key)
    assert reserve_replayed and commit_replayed
    assert len(fake.calls("Commit")) == 2 and list(fake.ended.values()) == ["Commit"]
