"""``GatedAnthropic`` with the real ``anthropic`` SDK against the fake provider over HTTP, and a real sidecar.

The default catalog routes a cheap call to gemini-2.0-flash (Google); with only an Anthropic
client the wrapper takes the decision's first Anthropic fallback, claude-haiku-4-5. Every test
ends on the ledger: spent exactly what the fake reported (priced by the catalog), nothing held.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from tests.support.fake_provider import (
    ANSWER_GOOD,
    Fake,
    Reported,
    check_ledger,
    price,
    settled_budget,
    settled_budget_sync,
)
from tollgate_client import AsyncClient, AsyncGatedAnthropic, CallOutcome, Client, Scope
from tollgate_client._wrappers.common import estimated_output
from tollgate_client.anthropic import GatedAnthropic

SYSTEM = "Extract the invoice total as JSON."
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "Invoice 17 from ACME GmbH: total 42.50 EUR."}]}]


def gated(fake: Fake, tollgate: AsyncClient, scope: Scope, **options: Any) -> AsyncGatedAnthropic:
    sdk = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=fake.anthropic_url(), max_retries=0)
    client = GatedAnthropic(sdk, tollgate=tollgate, scope=scope, **options)
    assert isinstance(client, AsyncGatedAnthropic)
    return client


def scenario(name: str) -> dict[str, Any]:
    return {"extra_headers": {"x-fake-scenario": name}}


def message_json(message: Any) -> str | None:
    try:
        json.loads(message.content[0].text)
    except ValueError:
        return "invalid_json"
    return None


def charged_as_reported(fake: Fake) -> int:
    return sum(price(c.model, c.reported) for c in fake.calls if c.reported is not None)


async def test_a_json_call_goes_to_the_first_anthropic_candidate(
        fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    outcomes: list[CallOutcome] = []
    client = gated(fake, tollgate, scope, on_outcome=outcomes.append)
    message = await client.messages.create(system=SYSTEM, messages=MESSAGES, max_tokens=400, task_type="extract")
    await client.flush()  # its commit follows the answer, in the background
    assert message.content[0].text == ANSWER_GOOD
    [call] = fake.calls
    assert (call.provider, call.model, call.body["max_tokens"]) == ("anthropic", "claude-haiku-4-5", 400)
    assert call.reported is not None and call.reported.cached == 8  # cache reads at the cached price
    assert outcomes[0].charged_nanos == price(call.model, call.reported)
    check_ledger(await settled_budget(tollgate, scope), price(call.model, call.reported))


async def test_a_stream_commits_message_start_input_and_message_delta_output(
        fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    stream = await client.messages.create(system=SYSTEM, messages=MESSAGES, max_tokens=400, task_type="extract",
                                          stream=True)
    text = "".join([e.delta.text async for e in stream if e.type == "content_block_delta"])
    assert text == ANSWER_GOOD
    [call] = fake.calls
    assert stream.outcome is not None
    [attempt] = stream.outcome.attempts
    assert attempt.settlement == "committed" and call.reported is not None and call.final
    assert attempt.usage is not None and attempt.usage.output_tokens == call.reported.output > 1
    check_ledger(await settled_budget(tollgate, scope), price(call.model, call.reported))


@pytest.mark.parametrize(("name", "error"), [("midstream_error", anthropic.APIStatusError),
                                             ("cut", anthropic.APIConnectionError)])
async def test_a_stream_that_fails_after_message_start_commits_what_was_reported(
        fake: Fake, tollgate: AsyncClient, scope: Scope, name: str, error: type[BaseException]) -> None:
    """``message_start`` reported the input (and one output token); the output seen since raises the output."""
    client = gated(fake, tollgate, scope)
    stream = await client.messages.create(system=SYSTEM, messages=MESSAGES, max_tokens=400, task_type="extract",
                                          stream=True, **scenario(name))
    seen: list[str] = []
    with pytest.raises(error):
        async for event in stream:
            if event.type == "content_block_delta":
                seen.append(event.delta.text)
    [call] = fake.calls
    assert seen == call.deltas and call.reported is not None and not call.final
    assert stream.outcome is not None
    [attempt] = stream.outcome.attempts
    assert attempt.settlement == "partial"
    output = max(call.reported.output, estimated_output(len(seen), sum(map(len, seen))))
    expected = price(call.model, Reported(call.reported.input, call.reported.cached, output))
    assert attempt.charged_nanos == expected
    check_ledger(await settled_budget(tollgate, scope), expected)


async def test_a_stream_cut_before_message_start_is_released(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    stream = await client.messages.create(messages=MESSAGES, max_tokens=400, task_type="extract", stream=True,
                                          **scenario("cut_early"))
    with pytest.raises(anthropic.APIConnectionError):
        async for _ in stream:
            pass
    assert stream.outcome is not None and stream.outcome.attempts[0].settlement == "released"
    check_ledger(await settled_budget(tollgate, scope), 0)


async def test_a_provider_error_before_any_token_releases(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    client = gated(fake, tollgate, scope)
    with pytest.raises(anthropic.InternalServerError):
        await client.messages.create(messages=MESSAGES, max_tokens=400, task_type="extract",
                                     **scenario("http_error"))
    assert len(fake.calls) == 1
    check_ledger(await settled_budget(tollgate, scope), 0)


async def test_a_failed_check_escalates_to_the_next_anthropic_model(
        fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    """haiku fails; one tier up the sidecar picks gpt-4o, and the wrapper takes its first Anthropic fallback."""
    fake.bad_models.add("claude-haiku-4-5")
    outcomes: list[CallOutcome] = []
    client = gated(fake, tollgate, scope, check=message_json, on_outcome=outcomes.append)
    message = await client.messages.create(system=SYSTEM, messages=MESSAGES, max_tokens=400, task_type="extract")
    await client.flush()  # its commit follows the answer, in the background
    assert message.content[0].text == ANSWER_GOOD
    assert [c.model for c in fake.calls] == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    assert [(a.model, a.problem) for a in outcomes[0].attempts] == [
        ("claude-haiku-4-5", "invalid_json"), ("claude-sonnet-4-5", "")]
    assert outcomes[0].charged_nanos == charged_as_reported(fake)
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


def sync_gated(fake: Fake, tollgate: Client, scope: Scope, **options: Any) -> GatedAnthropic:
    sdk = anthropic.Anthropic(api_key="sk-ant-test", base_url=fake.anthropic_url(), max_retries=0)
    return GatedAnthropic(sdk, tollgate=tollgate, scope=scope, **options)


def test_sync_json_call(fake: Fake, sync_tollgate: Client, scope: Scope) -> None:
    client = sync_gated(fake, sync_tollgate, scope)
    message = client.messages.create(system=SYSTEM, messages=MESSAGES, max_tokens=400, task_type="extract")
    assert message.content[0].text == ANSWER_GOOD
    check_ledger(settled_budget_sync(sync_tollgate, scope), charged_as_reported(fake))


def test_sync_stream_and_cut(fake: Fake, sync_tollgate: Client, scope: Scope) -> None:
    client = sync_gated(fake, sync_tollgate, scope)
    with client.messages.create(messages=MESSAGES, max_tokens=400, task_type="extract", stream=True) as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert stream.outcome is not None and stream.outcome.attempts[0].settlement == "committed"
    cut = client.messages.create(messages=MESSAGES, max_tokens=400, task_type="extract", stream=True,
                                 **scenario("cut"))
    with pytest.raises(anthropic.APIConnectionError):
        for _ in cut:
            pass
    assert cut.outcome is not None and cut.outcome.attempts[0].settlement == "partial"
    check_ledger(settled_budget_sync(sync_tollgate, scope), stream.outcome.charged_nanos + cut.outcome.charged_nanos)


async def test_the_stream_helper_is_gated(fake: Fake, tollgate: AsyncClient, scope: Scope) -> None:
    """``messages.stream()``: the SDK's own AsyncMessageStream, read through ``text_stream``, over the gated stream."""
    outcomes: list[CallOutcome] = []
    client = gated(fake, tollgate, scope, on_outcome=outcomes.append)
    async with client.messages.stream(system=SYSTEM, messages=MESSAGES, max_tokens=400, task_type="extract") as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == ANSWER_GOOD and final.usage.output_tokens > 1
    [call] = fake.calls
    assert call.body["stream"] is True and call.model == "claude-haiku-4-5"
    assert [a.settlement for a in outcomes[0].attempts] == ["committed"]
    check_ledger(await settled_budget(tollgate, scope), charged_as_reported(fake))


def test_the_sync_stream_helper_is_gated_and_a_cut_commits_what_was_reported(
        fake: Fake, sync_tollgate: Client, scope: Scope) -> None:
    outcomes: list[CallOutcome] = []
    client = sync_gated(fake, sync_tollgate, scope, on_outcome=outcomes.append)
    with client.messages.stream(messages=MESSAGES, max_tokens=400, task_type="extract") as stream:
        assert stream.get_final_text() == ANSWER_GOOD
    with pytest.raises(anthropic.APIConnectionError), client.messages.stream(
            messages=MESSAGES, max_tokens=400, task_type="extract", **scenario("cut")) as cut:
        for _ in cut.text_stream:
            pass
    assert [o.attempts[0].settlement for o in outcomes] == ["committed", "partial"]
    check_ledger(settled_budget_sync(sync_tollgate, scope), sum(o.charged_nanos for o in outcomes))
