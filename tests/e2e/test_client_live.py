"""The Python client against a live sidecar: the reserve-then-commit-or-release pattern for real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.sidecar_process import SidecarProcess, write_config
from tollgate_client import (
    AsyncClient,
    BudgetExceededError,
    Client,
    ReservationEndedError,
    Scope,
    Usage,
    usage_from_openai,
)


def _config(data: dict[str, Any]) -> None:
    data["budgets"]["overrides"] = {"user:acme/capped": {"cap": "0.05", "policy": "hard", "priority_reserve": 0.0}}


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    tmp = tmp_path_factory.mktemp("client")
    with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", _config),
                        unix_socket=tmp / "t.sock") as proc:
        yield proc


SCOPE = Scope(org="acme", user="bob", session="s-1")
MESSAGES = [{"role": "user", "content": "Classify this ticket: 'I was charged twice'"}]


async def test_route_reserve_commit_with_the_context_manager(sidecar: SidecarProcess) -> None:
    async with AsyncClient(sidecar.target) as client:
        decision = await client.route(SCOPE, messages=MESSAGES, task_type="classify", reserve=True)
        assert decision.tier == "cheap" and decision.reservation is not None
        async with client.reservation(decision) as held:
            response = {"usage": {"prompt_tokens": 20, "completion_tokens": 8,
                                  "prompt_tokens_details": {"cached_tokens": 0}}}
            result = await held.commit(usage_from_openai(response))
        assert result.charged_nanos > 0 and not result.replayed
        again = await client.commit(decision.reservation.reservation_id, Usage(input_tokens=20, output_tokens=8))
        assert again.replayed and again.charged_nanos == result.charged_nanos


async def test_exception_in_the_block_releases_the_hold(sidecar: SidecarProcess) -> None:
    async with AsyncClient(f"unix://{sidecar.unix_socket}") as client:
        decision = await client.route(SCOPE, input_tokens=1_000, task_type="codegen", reserve=True)
        assert decision.reservation is not None
        with pytest.raises(RuntimeError, match="provider down"):
            async with client.reservation(decision):
                raise RuntimeError("provider down")
        with pytest.raises(ReservationEndedError, match="released"):
            await client.commit(decision.reservation.reservation_id, Usage(input_tokens=1))
        pools = await client.get_budget(SCOPE)
        assert all(p.held_nanos == 0 for p in pools)


def test_sync_client_and_budget_refusal_details(sidecar: SidecarProcess) -> None:
    scope = Scope(org="acme", user="capped")
    with Client(sidecar.target) as client:
        with pytest.raises(BudgetExceededError) as refused:
            client.reserve(scope, "claude-opus-4-1", input_tokens=10_000, max_output_tokens=2_000)
        err = refused.value
        assert err.pool_id == "user:acme/capped" and err.policy == "hard" and err.limit == "cost"
        assert err.remaining_nanos == 50_000_000 and err.requested_nanos > err.remaining_nanos
        with client.reservation(client.reserve(scope, "gpt-4o-mini", input_tokens=100)) as held:
            held.commit(Usage(input_tokens=100, output_tokens=10))
        (user, *_) = client.get_budget(scope)
        assert user.pool_id == "user:acme/capped" and user.spent_nanos > 0 and user.held_nanos == 0
