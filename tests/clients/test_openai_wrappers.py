"""The Node.js and Go wrappers of the OpenAI SDKs, with the real SDK packages, against the fake provider over HTTP.

Each case runs in the language's own process, using its client and SDK as an app does: Node.js in
``openai_scenarios.mjs`` (the ``openai`` npm package), Go in ``clients/go/openaigate``'s ``TestScenarios``
(``openai-go``), under an organisation of its own. This side compares what the app was told with what the
fake provider reported and with the ledger, read through the Python client. (The Python wrappers have their
own tests, in tests/clients/python/wrappers.)
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_provider import ANSWER_GOOD, BROKE, Call, Fake, check_ledger, price, wrapper_sidecar
from tests.support.sidecar_process import SidecarProcess
from tollgate_client import Client, Scope

from .go.test_go_client import GO_CLIENT, _go_env
from .node.conftest import NODE_DIR, node, node_modules

__all__ = ["node", "node_modules"]

SCENARIOS = Path(__file__).resolve().parent / "openai_scenarios.mjs"
GATE = GO_CLIENT / "openaigate"
LANGUAGES = ["node", "go"]
RESPONSES_API = {"node"}
"""The wrappers that gate the Responses API too (openaigate gates Chat Completions)."""


class Runner:
    """Runs one case in a language's process: what the app saw, and the calls the fake provider received."""

    def __init__(self, language: str, sidecar: SidecarProcess, fake: Fake, node: str | None) -> None:
        self.language, self.sidecar, self.fake, self.node = language, sidecar, fake, node

    def __call__(self, **case: Any) -> tuple[dict[str, Any], list[Call]]:
        if case.get("api") == "responses" and self.language not in RESPONSES_API:
            pytest.skip(f"the {self.language} wrapper gates Chat Completions only")
        case = {"name": "case", "org": case.pop("org", f"n{uuid.uuid4().hex[:12]}"),
                "providers": ["openai", "google"], **case}
        self.fake.calls.clear()
        fake_url = f"http://127.0.0.1:{self.fake.port}"
        if self.language == "node":
            assert self.node is not None
            result = subprocess.run([self.node, str(SCENARIOS), str(NODE_DIR), self.sidecar.target, fake_url,
                                     json.dumps([case])], capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stdout + result.stderr
            [seen] = json.loads(result.stdout)
        else:
            out = Path(self.sidecar.tmp) / f"go-{uuid.uuid4().hex}.json"
            env = {**_go_env(), "OPENAIGATE_SCENARIOS": json.dumps([case]), "OPENAIGATE_RESULTS": str(out),
                   "TOLLGATE_TARGET": self.sidecar.target, "FAKE_PROVIDER_URL": fake_url}
            result = subprocess.run(["go", "test", "-count=1", "-run", "^TestScenarios$", "."], cwd=GATE, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stdout + result.stderr
            [seen] = json.loads(out.read_text())
        return seen, list(self.fake.calls)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with wrapper_sidecar(tmp_path_factory.mktemp("node-wrapper")) as process:
        yield process


@pytest.fixture(scope="module")
def fake() -> Iterator[Fake]:
    with Fake() as provider:
        yield provider


@pytest.fixture(scope="module")
def ledger(sidecar: SidecarProcess) -> Iterator[Client]:
    with Client(sidecar.target, timeout=5.0) as client:
        yield client


@pytest.fixture(params=LANGUAGES)
def run(request: pytest.FixtureRequest, sidecar: SidecarProcess, fake: Fake) -> Runner:
    if request.param == "node":
        request.getfixturevalue("node_modules")
        return Runner("node", sidecar, fake, request.getfixturevalue("node"))
    return Runner("go", sidecar, fake, None)


def scope_of(seen: dict[str, Any]) -> Scope:
    return Scope(org=seen["org"], team="search", user="alice")


def settlements(seen: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["model"], a["provider"], a["settlement"]) for a in seen["outcomes"][0]["attempts"]]


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_routed_call_goes_to_the_chosen_providers_client_and_commits_what_it_reported(
        run: Runner, fake: Fake, ledger: Client, api: str) -> None:
    seen, [call] = run(api=api)
    assert seen["text"] == ANSWER_GOOD, seen
    # extract -> cheap -> gemini-2.0-flash, through the client given for its provider, without the wrapper's keys.
    assert (call.provider, call.model) == ("google", "gemini-2.0-flash") and call.api.startswith(api)
    assert "tollgate" not in call.body
    assert call.reported is not None and call.final
    assert settlements(seen) == [("gemini-2.0-flash", "google", "committed")]
    assert int(seen["outcomes"][0]["chargedNanos"]) == price(call.model, call.reported) > 0
    check_ledger(ledger.get_budget(scope_of(seen)), price(call.model, call.reported))


def test_a_pinned_model_is_reserved_and_sent_to_the_default_provider(
        run: Runner, fake: Fake, ledger: Client) -> None:
    seen, [call] = run(model="gpt-4o-mini")
    assert (call.provider, call.model) == ("openai", "gpt-4o-mini")
    assert call.reported is not None
    check_ledger(ledger.get_budget(scope_of(seen)), price(call.model, call.reported))


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_stream_commits_the_usage_of_its_end(
        run: Runner, fake: Fake, ledger: Client, api: str) -> None:
    seen, [call] = run(api=api, stream=True)
    assert seen["text"] == ANSWER_GOOD and "streamError" not in seen, seen
    if api == "chat":  # asked for, so that the last chunk carries the whole call's usage
        assert call.body["stream_options"] == {"include_usage": True}
    assert call.reported is not None and call.final
    assert settlements(seen) == [("gemini-2.0-flash", "google", "committed")]
    check_ledger(ledger.get_budget(scope_of(seen)), price(call.model, call.reported))


@pytest.mark.parametrize("scenario", ["midstream_error", "cut"])
def test_a_stream_that_fails_after_output_commits_an_estimate_and_holds_nothing(
        run: Runner, fake: Fake, ledger: Client, scenario: str) -> None:
    seen, [call] = run(stream=True, scenario=scenario)
    assert seen.get("streamError"), seen
    assert call.reported is None and len(call.deltas) == 2
    [attempt] = seen["outcomes"][0]["attempts"]
    # Billed by the provider, reported by no one: never free.
    assert attempt["settlement"] == "estimated" and int(attempt["chargedNanos"]) > 0
    check_ledger(ledger.get_budget(scope_of(seen)), int(attempt["chargedNanos"]))


def test_a_stream_the_app_leaves_early_is_settled_too(
        run: Runner, fake: Fake, ledger: Client) -> None:
    seen, [_] = run(stream=True, breakAfter=2)
    [attempt] = seen["outcomes"][0]["attempts"]
    assert attempt["settlement"] == "estimated" and int(attempt["chargedNanos"]) > 0
    check_ledger(ledger.get_budget(scope_of(seen)), int(attempt["chargedNanos"]))


def test_a_failed_call_is_released(
        run: Runner, fake: Fake, ledger: Client) -> None:
    seen, [_] = run(scenario="http_error")
    assert seen["error"] and "text" not in seen, seen
    assert settlements(seen) == [("gemini-2.0-flash", "google", "released")]
    check_ledger(ledger.get_budget(scope_of(seen)), 0)


def test_a_refused_budget_calls_no_provider(
        run: Runner, fake: Fake) -> None:
    seen, calls = run(org=BROKE)
    assert seen["error"] == "BudgetExceededError" and calls == []


def test_an_answer_failing_the_check_escalates_one_tier_and_both_attempts_are_charged(
        run: Runner, fake: Fake, ledger: Client) -> None:
    fake.bad_models.add("gemini-2.0-flash")
    try:
        seen, calls = run(check=True)
    finally:
        fake.bad_models.clear()
    assert seen["text"] == ANSWER_GOOD, seen
    first, second = calls
    assert first.model == "gemini-2.0-flash" and second.model != first.model
    attempts = seen["outcomes"][0]["attempts"]
    assert [a["problem"] for a in attempts] == ["invalid json", ""]
    assert first.reported is not None and second.reported is not None
    charged = price(first.model, first.reported) + price(second.model, second.reported)
    assert int(seen["outcomes"][0]["chargedNanos"]) == charged
    check_ledger(ledger.get_budget(scope_of(seen)), charged)


def test_a_decision_for_a_provider_without_a_client_falls_back_to_one_with_a_client(
        run: Runner, fake: Fake, ledger: Client) -> None:
    seen, [call] = run(providers=["openai"])
    assert call.provider == "openai" and seen["text"] == ANSWER_GOOD
    assert call.reported is not None
    check_ledger(ledger.get_budget(scope_of(seen)), price(call.model, call.reported))


def test_the_go_wrapper_is_formatted_vetted_and_its_unit_tests_pass() -> None:
    env = _go_env()
    unformatted = subprocess.run(["gofmt", "-l", "."], cwd=GATE, env=env, capture_output=True, text=True, timeout=60)
    assert unformatted.returncode == 0 and unformatted.stdout == "", unformatted.stdout + unformatted.stderr
    for args in (["go", "mod", "verify"], ["go", "vet", "./..."], ["go", "test", "-count=1", "./..."]):
        result = subprocess.run(args, cwd=GATE, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}{result.stderr}"
