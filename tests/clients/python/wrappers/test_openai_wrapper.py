"""``GatedOpenAI`` with the real ``openai`` SDK against the fake provider over HTTP, and a real sidecar.

Every test ends on the ledger: each pool of the test's scope has spent exactly what the fake
provider reported (priced by the default catalog), or what the wrapper documents it commits
when the provider reported nothing, and holds nothing.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.support.fake_provider import (
    ANSWER_GOOD,
    BROKE,
    Fake,
    Reported,
    check_ledger,
    price,
    provider_of,
    settled_budget,
    settled_budget_sync,
)
from tollgate_client import (
    AsyncClient,
    AsyncGatedOpenAI,
    BudgetExceededError,
    CallOutcome,
    CheckFailedError,
    Client,
    MissingProviderClientError,
    Scope,
)
from tollgate_client._wrappers.common import estimated_output
from tollgate_client.openai import GatedOpenAI

MESSAGES = [
    {"role": "system", "content": "Extract the invoice total as JSON."},
    {"role": "user", "content": "Invoice 17 from ACME GmbH: total 42.50 EUR, due in 30 days."},
]


def sdk_clients(fake: Fake, providers: tuple[str, ...], *, sync: bool = False) -> dict[str, Any]:
    kind = openai.OpenAI if sync else openai.AsyncOpenAI
    return {p: kind(api_key="sk-test", base_url=fake.openai_url(p), max_retries=0) for p in providers}


def gated(fake: Fake, tollgate: AsyncClient, scope: Scope, providers: tuple[str, ...] = ("openai", "google"),
          **options: Any) -> AsyncGatedOpenAI:
    client = GatedOpenAI(sdk_clients(fake, providers), tollgate=tollgate, scope=scope, **options)
    assert isinstance(client, AsyncGatedOpenAI)
    return client


def scenario(name: str) -> dict[str, Any]:
    return {"extra_headers": {"x-fake-scenario": name}}


def chat_json(response: Any) -> str | None:
    try:
        json.loads(response.choices[0].message.content or "")
    except ValueError:
        return "invalid json"
    return None


def charged_as_reported(fake: Fake) -> int:
    return sum(price(c.model, c.reported) for c in fake.calls if c.reported is not None)


# ---- Chat Completions ---------------------------------------------------------------------------------------

async def test_a_json_call_is_routed_reserved_and_committed_as_reported(
        fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    outcomes: list[CallOutcome] = []
    client = gated(fake, tollgate, scope, on_outcome=outcomes.append)
    response = await client.chat.completions.create(messages=MESSAGES, max_tokens=256, task_type="extract")
    await client.flush()  # its commit follows the answer, in the background
    assert response.choices[0].message.content == ANSWER_GOOD
    [call] = fake.calls
    # extract -> cheap -> gemini-2.0-flash, the cheapest; sent through the client given for its provider.
    assert (call.provider, call.model) == ("google", "gemini-2.0-flash")
    assert call.body["max_tokens"] == 256 and "task_type" not in call.body
    assert call.reported is not None
    [outcome] = outcomes
    assert [(a.model, a.provider, a.settlement) for a in outcome.attempts] == [
        ("gemini-2.0-flash", "google", "committed")]
    assert outcome.charged_nanos == price(call.model, call.reported) > 0
    check_ledger(await settled_budget(tollgate, scope), price(call.model, call.reported))


async def test_a_stream_asks_for_usage_and_commits_its_last_chunk(
        fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    stream = await client.chat.completions.create(messages=MESSAGES, max_tokens=256, task_type="extract", stream=True,
                                                  stream_options={"include_obfuscation": False})
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == ANSWER_GOOD
    [call] = fake.calls
    assert call.body["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert stream.outcome is not None and stream.outcome.attempts[0].settlement == "committed"
    assert call.reported is not None and call.final
    assert stream.outcome.charged_nanos == price(call.model, call.reported)
    check_ledger(await settled_budget(tollgate, scope), price(call.model, call.reported))


async def _stream_until_it_fails(stream: Any, error: type[BaseException]) -> list[str]:
    seen: list[str] = []
    with pytest.raises(error):
        async for chunk in stream:
            seen.extend(c.delta.content or "" for c in chunk.choices)
    return [s for s in seen if s]


@pytest.mark.parametrize(("name", "error"), [("midstream_error", openai.APIError),
                                             ("cut", openai.APIConnectionError)])
async def test_a_stream_that_fails_after_output_without_usage_commits_an_estimate(
        fake: Fake, tollgate: AsyncClient, scope: Scope, name: str, error: type[BaseException]) -> None:
    """An OpenAI stream reports usage only in its last chunk: cut or failed before it, the provider has billed the
    prompt and the output so far, and reported neither. The wrapper commits the sidecar's count of the prompt and
    about a token per 4 characters of output (at least one per delta), so a cut stream is never free."""
    client = gated(fake, tollgate, scope)
    stream = await client.chat.completions.create(messages=MESSAGES, task_type="extract", stream=True,
                                                  **scenario(name))
    seen = await _stream_until_it_fails(stream, error)
    [call] = fake.calls
    assert seen == call.deltas and len(seen) == 2 and call.reported is None
    assert stream.outcome is not None
    [attempt] = stream.outcome.attempts
    assert attempt.settlement == "estimated" and attempt.usage is not None
    assert attempt.usage.output_tokens == estimated_output(len(seen), sum(map(len, seen)))
    assert attempt.usage.input_tokens > 0
    expected = price(call.model, Reported(attempt.usage.input_tokens, 0, attempt.usage.output_tokens))
    assert attempt.charged_nanos == expected
    check_ledger(await settled_budget(tollgate, scope), expected)


async def test_a_stream_cut_before_any_output_is_released(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    stream = await client.chat.completions.create(messages=MESSAGES, task_type="extract", stream=True,
                                                  **scenario("cut_early"))
    assert await _stream_until_it_fails(stream, openai.APIConnectionError) == []
    assert stream.outcome is not None and stream.outcome.attempts[0].settlement == "released"
    check_ledger(await settled_budget(tollgate, scope), 0)


async def test_a_provider_error_before_any_token_releases(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    outcomes: list[CallOutcome] = []
    client = gated(fake, tollgate, scope, on_outcome=outcomes.append)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(messages=MESSAGES, task_type="extract", **scenario("http_error"))
    assert len(fake.calls) == 1
    assert [a.settlement for a in outcomes[0].attempts] == ["released"]
    check_ledger(await settled_budget(tollgate, scope), 0)


async def test_a_failed_check_escalates_one_tier_up(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    fake.bad_models.add("gemini-2.0-flash")
    outcomes: list[CallOutcome] = []
    client = gated(fake, tollgate, scope, check=chat_json, on_outcome=outcomes.append)
    response = await client.chat.completions.create(messages=MESSAGES, max_tokens=256, task_type="extract")
    await client.flush()  # its commit follows the answer, in the background
    assert response.choices[0].message.content == ANSWER_GOOD
    # cheap (gemini, google) failed the check -> medium: gpt-4o (openai), the cheapest of its tier.
    assert [(c.provider, c.model) for c in fake.calls] == [("google", "gemini-2.0-flash"), ("openai", "gpt-4o")]
    [outcome] = outcomes
    assert [(a.model, a.problem, a.settlement) for a in outcome.attempts] == [
        ("gemini-2.0-flash", "invalid json", "committed"), ("gpt-4o", "", "committed")]
    assert outcome.charged_nanos == charged_as_reported(fake)
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


async def test_no_escalation_left_raises_check_failed_with_the_answer(
        fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    """A pinned frontier model: the sidecar refuses to escalate past the top tier; the answer is paid for."""
    fake.bad_models.add("claude-opus-4-1")
    client = gated(fake, tollgate, scope, providers=("openai", "anthropic"), check=chat_json)
    with pytest.raises(CheckFailedError) as failed:
        await client.chat.completions.create(messages=MESSAGES, model="claude-opus-4-1", provider="anthropic")
    [call] = fake.calls
    assert (call.provider, call.model) == ("anthropic", "claude-opus-4-1")
    assert failed.value.problem == "invalid json"
    assert failed.value.response.choices[0].message.content != ANSWER_GOOD
    assert failed.value.outcome.charged_nanos == charged_as_reported(fake)
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


async def test_an_escalation_to_a_provider_without_a_client_ends_the_cascade(
        fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    """gemini fails, gpt-4o fails, and the only frontier models are Anthropic's: no client, no third attempt."""
    fake.bad_models.update({"gemini-2.0-flash", "gpt-4o"})
    client = gated(fake, tollgate, scope, check=chat_json)
    with pytest.raises(CheckFailedError) as failed:
        await client.chat.completions.create(messages=MESSAGES, task_type="extract")
    assert isinstance(failed.value.__cause__, MissingProviderClientError)
    assert [c.model for c in fake.calls] == ["gemini-2.0-flash", "gpt-4o"]
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


async def test_a_pinned_model_is_reserved_and_kept(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    await client.chat.completions.create(messages=MESSAGES, model="gpt-4o", task_type="extract")
    [call] = fake.calls
    assert (call.provider, call.model) == ("openai", "gpt-4o")
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


async def test_a_decision_for_a_provider_without_a_client_goes_to_the_first_fallback_with_one(
        fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope, providers=("openai",))
    await client.chat.completions.create(messages=MESSAGES, task_type="extract")
    [call] = fake.calls
    assert (call.provider, call.model) == ("openai", "gpt-4o-mini")
    assert provider_of("gemini-2.0-flash") == "google"
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


async def test_a_budget_refusal_comes_before_any_provider_call(fake: Fake, tollgate: AsyncClient) -> None:
    broke = Scope(org=BROKE, user="bob")
    client = gated(fake, tollgate, broke)
    with pytest.raises(BudgetExceededError) as refused:
        await client.chat.completions.create(messages=MESSAGES, task_type="extract")
    assert refused.value.pool_id == f"org:{BROKE}"
    assert fake.calls == []
    assert all(p.held_nanos == 0 for p in await tollgate.get_budget(broke))


async def test_a_long_stream_is_extended_while_it_runs(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    """A reservation of 2 s, a stream of about 4 s: extended every second, committed at the end."""
    client = gated(fake, tollgate, scope, ttl_ms=2000)
    stream = await client.chat.completions.create(messages=MESSAGES, task_type="extract", stream=True,
                                                  **scenario("slow"))
    async with stream:
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == ANSWER_GOOD
    assert stream.outcome is not None
    [attempt] = stream.outcome.attempts
    assert attempt.settlement == "committed" and attempt.extensions >= 2
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


async def test_a_stream_closed_early_commits_what_came(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    stream = await client.chat.completions.create(messages=MESSAGES, task_type="extract", stream=True)
    async with stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    assert stream.outcome is not None
    [attempt] = stream.outcome.attempts
    assert attempt.settlement == "estimated" and attempt.usage is not None and attempt.usage.output_tokens >= 1
    check_ledger(await settled_budget(tollgate, scope), attempt.charged_nanos)


async def test_an_answer_without_usage_commits_an_estimate(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    outcomes: list[CallOutcome] = []
    client = gated(fake, tollgate, scope, on_outcome=outcomes.append)
    await client.chat.completions.create(messages=MESSAGES, task_type="extract", **scenario("no_usage"))
    await client.flush()  # its commit follows the answer, in the background
    [attempt] = outcomes[0].attempts
    assert attempt.settlement == "estimated" and attempt.usage is not None
    assert attempt.usage.output_tokens == estimated_output(0, len(ANSWER_GOOD))
    check_ledger(await settled_budget(tollgate, scope), attempt.charged_nanos)


# ---- Responses API ------------------------------------------------------------------------------------------

async def test_responses_json_call(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    response = await client.responses.create(input="Invoice 17: total 42.50 EUR", instructions="Extract as JSON.",
                                             max_output_tokens=300, task_type="extract")
    await client.flush()  # its commit follows the answer, in the background
    assert response.output_text == ANSWER_GOOD
    [call] = fake.calls
    assert (call.api, call.model, call.body["max_output_tokens"]) == ("responses", "gemini-2.0-flash", 300)
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


async def test_responses_stream_commits_the_completed_usage(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    stream = await client.responses.create(input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Invoice 17: total 42.50 EUR"}]}], task_type="extract", stream=True)
    deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
    assert "".join(deltas) == ANSWER_GOOD
    assert stream.outcome is not None and stream.outcome.attempts[0].settlement == "committed"
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


async def test_responses_stream_cut_commits_an_estimate(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    stream = await client.responses.create(input="Invoice 17: total 42.50 EUR", task_type="extract", stream=True,
                                           **scenario("cut"))
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass
    [call] = fake.calls
    assert stream.outcome is not None
    [attempt] = stream.outcome.attempts
    assert attempt.settlement == "estimated" and attempt.usage is not None
    assert attempt.usage.output_tokens == estimated_output(len(call.deltas), sum(map(len, call.deltas)))
    check_ledger(await settled_budget(tollgate, scope), attempt.charged_nanos)


async def test_responses_error_event_mid_stream(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    """The Responses API reports a failure as an ``error`` event, which the SDK yields: the stream ends unreported."""
    client = gated(fake, tollgate, scope)
    stream = await client.responses.create(input="Invoice 17", task_type="extract", stream=True,
                                           **scenario("midstream_error"))
    kinds = [e.type async for e in stream]
    assert kinds[-1] == "error"
    assert stream.outcome is not None and stream.outcome.attempts[0].settlement == "estimated"
    check_ledger(await settled_budget(tollgate, scope), stream.outcome.charged_nanos)


async def test_responses_provider_error_releases(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(input="Invoice 17", task_type="extract", **scenario("http_error"))
    check_ledger(await settled_budget(tollgate, scope), 0)


# ---- blocking -----------------------------------------------------------------------------------------------

def sync_gated(fake: Fake, tollgate: Client, scope: Scope, **options: Any) -> GatedOpenAI:
    return GatedOpenAI(sdk_clients(fake, ("openai", "google"), sync=True), tollgate=tollgate, scope=scope,
                       **options)


def test_sync_json_call_and_escalation(fake: Fake, sync_tollgate: Client, scope: Scope) -> None:
    fake.bad_models.add("gemini-2.0-flash")
    client = sync_gated(fake, sync_tollgate, scope, check=chat_json)
    response = client.chat.completions.create(messages=MESSAGES, task_type="extract")
    assert response.choices[0].message.content == ANSWER_GOOD
    assert [c.model for c in fake.calls] == ["gemini-2.0-flash", "gpt-4o"]
    check_ledger(settled_budget_sync(sync_tollgate, scope), charged_as_reported(fake))


def test_sync_stream_commits_its_usage(fake: Fake, sync_tollgate: Client, scope: Scope) -> None:
    client = sync_gated(fake, sync_tollgate, scope)
    with client.chat.completions.create(messages=MESSAGES, task_type="extract", stream=True) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == ANSWER_GOOD
    assert stream.outcome is not None and stream.outcome.attempts[0].settlement == "committed"
    check_ledger(settled_budget_sync(sync_tollgate, scope), charged_as_reported(fake))


def test_sync_stream_cut_commits_an_estimate(fake: Fake, sync_tollgate: Client, scope: Scope) -> None:
    client = sync_gated(fake, sync_tollgate, scope)
    stream = client.chat.completions.create(messages=MESSAGES, task_type="extract", stream=True, **scenario("cut"))
    with pytest.raises(openai.APIConnectionError):
        for _ in stream:
            pass
    assert stream.outcome is not None and stream.outcome.attempts[0].settlement == "estimated"
    check_ledger(settled_budget_sync(sync_tollgate, scope), stream.outcome.charged_nanos)


def test_sync_provider_error_releases(fake: Fake, sync_tollgate: Client, scope: Scope) -> None:
    client = sync_gated(fake, sync_tollgate, scope)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(messages=MESSAGES, task_type="extract", **scenario("http_error"))
    check_ledger(settled_budget_sync(sync_tollgate, scope), 0)


def test_sync_long_stream_is_extended(fake: Fake, sync_tollgate: Client, scope: Scope) -> None:
    client = sync_gated(fake, sync_tollgate, scope, ttl_ms=2000)
    with client.chat.completions.create(messages=MESSAGES, task_type="extract", stream=True,
                                        **scenario("slow")) as stream:
        for _ in stream:
            pass
    assert stream.outcome is not None
    assert stream.outcome.attempts[0].settlement == "committed" and stream.outcome.attempts[0].extensions >= 2
    check_ledger(settled_budget_sync(sync_tollgate, scope), charged_as_reported(fake))


async def test_the_readmes_two_lines_run(fake: Fake, sidecar: Any, tollgate: AsyncClient,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's two lines, as written, with the SDK pointed at the fake by its own environment variables."""
    from tests.clients.readme_example import readme_block, with_target
    from tests.support.sidecar_process import ROOT

    code = readme_block(ROOT / "clients" / "python" / "README.md", "python", "GatedOpenAI(")
    code = with_target(code, sidecar.target).replace("[...]", repr(MESSAGES))
    monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_url("openai"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    body = "\n".join("    " + line for line in code.splitlines())
    namespace: dict[str, Any] = {}
    exec(f"import openai\nfrom tollgate_client import AsyncClient, Scope\nasync def main():\n{body}\n"
         "    return resp, client", namespace)
    resp, client = await namespace["main"]()
    await client.flush()  # its commit follows the answer, in the background
    assert resp.choices[0].message.content == ANSWER_GOOD
    [call] = fake.calls
    assert (call.provider, call.model) == ("openai", "gpt-4o-mini")
    check_ledger(await settled_budget(tollgate, Scope(org="acme", user="alice")), charged_as_reported(fake))
