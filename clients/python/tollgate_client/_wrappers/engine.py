"""The engine of the provider SDK wrappers: route or reserve, call, commit or release, extend, escalate.

One module, past 400 lines, because the blocking and the asyncio engines are the same
steps written twice (``Gate`` and ``AsyncGate``, as ``Client`` and ``AsyncClient`` are)
over helpers they share; read one and the other follows line for line.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import EscalationRefusedError, TollgateClientError
from .._types import Candidate, Decision, ReserveResult, Scope, Usage
from .common import (
    AttemptOutcome,
    CallOutcome,
    CheckFailedError,
    Endpoint,
    Meter,
    MissingProviderClientError,
    Request,
    Settlement,
    estimated_output,
    given,
    reason_of,
)
from .streams import AsyncGatedStream, AsyncKeeper, GatedStream, Hold, ThreadKeeper

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["AsyncGate", "Check", "Gate", "OutcomeHook"]

log = logging.getLogger("tollgate_client")

Check = Callable[[Any], str | None]
"""An application's check of an answer: ``None`` or ``""`` when it is acceptable, else a short reason."""

OutcomeHook = Callable[[CallOutcome], None]
"""Called once per gated call when every reservation it made has ended (for logs and metrics)."""

# Keyword arguments the wrappers take out of an SDK call before passing the rest to the SDK.
_OWN = ("task_type", "agent_mode", "min_tier", "latency", "needs_tools", "needs_vision", "needs_json",
        "scope", "check", "provider")


@dataclasses.dataclass(frozen=True, slots=True)
class _Options:
    scope: Scope
    check: Check | None
    model: str
    provider: str
    task_type: str
    agent_mode: str
    min_tier: str
    latency: str
    needs: dict[str, bool | None]


def _method(client: Any, path: tuple[str, ...]) -> Any:
    target = client
    for name in path:
        target = getattr(target, name)
    return target


def _is_async_sdk(client: Any) -> bool | None:
    """Whether an SDK client is the asyncio kind (both SDKs derive from ``AsyncAPIClient``); ``None``: unknown."""
    for klass in type(client).__mro__:
        if klass.__name__ == "AsyncAPIClient":
            return True
        if klass.__name__ == "SyncAPIClient":
            return False
    return None


class _Base:
    """What both engines share: the clients per provider, the defaults, and every step that makes no call."""

    tollgate: AsyncClient | Client

    def __init__(self, clients: Any, *, family: str, is_async: bool, scope: Scope, check: Check | None,
                 ttl_ms: int, on_outcome: OutcomeHook | None, default_provider: str | None,
                 wait_for_commit: bool) -> None:
        if isinstance(clients, Mapping):
            self.clients: dict[str, Any] = dict(clients)
        else:
            self.clients = {family: clients}
        if not self.clients:
            raise ValueError(f"give at least one {family} SDK client")
        for provider, client in self.clients.items():
            kind = _is_async_sdk(client)
            if kind is not None and kind != is_async:
                want = "an asyncio" if is_async else "a blocking"
                raise TypeError(f"the SDK client for {provider!r} is not {want} client, as the Tollgate client is: "
                                f"pair Async{family.capitalize()}-style clients with AsyncClient, the others "
                                "with Client")
        if not isinstance(scope, Scope):
            raise TypeError(f"scope must be a tollgate_client.Scope, got {type(scope).__name__}")
        self.default_provider = default_provider or next(iter(self.clients))
        if self.default_provider not in self.clients:
            raise ValueError(f"default_provider {self.default_provider!r} has no client")
        self.scope = scope
        self.check = check
        self.ttl_ms = ttl_ms
        self.on_outcome = on_outcome
        self.wait_for_commit = wait_for_commit

    def sdk(self, provider: str | None = None) -> Any:
        """The SDK client given for ``provider`` (the default provider's when ``None``), ungated."""
        return self.clients[provider or self.default_provider]

    def settings(self) -> dict[str, Any]:
        """The wrapper's settings, as its constructor takes them (for ``with_options``)."""
        return {"scope": self.scope, "check": self.check, "ttl_ms": self.ttl_ms, "on_outcome": self.on_outcome,
                "default_provider": self.default_provider, "wait_for_commit": self.wait_for_commit}

    def with_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Each SDK client's ``with_options(**options)``, by provider."""
        return {provider: client.with_options(**options) for provider, client in self.clients.items()}

    # ---- reading a call ----

    def _options(self, params: dict[str, Any]) -> _Options:
        own = {name: params.pop(name) for name in _OWN if name in params}
        model = given(params, "model")
        params.pop("model", None)
        scope = own.get("scope") or self.scope
        if not isinstance(scope, Scope):
            raise TypeError(f"scope must be a tollgate_client.Scope, got {type(scope).__name__}")
        return _Options(
            scope=scope, check=own.get("check", self.check), model=str(model or ""),
            provider=str(own.get("provider") or ""), task_type=str(own.get("task_type") or ""),
            agent_mode=str(own.get("agent_mode") or ""), min_tier=str(own.get("min_tier") or ""),
            latency=str(own.get("latency") or ""),
            needs={name: own.get(name) for name in ("needs_tools", "needs_vision", "needs_json")},
        )

    @staticmethod
    def _prompt(request: Request) -> dict[str, Any]:
        if request.messages:
            return {"messages": request.messages}
        return {"input_tokens": 0}

    @staticmethod
    def _needs(request: Request, opts: _Options) -> dict[str, bool]:
        inferred = {"needs_tools": request.needs_tools, "needs_vision": request.needs_vision,
                    "needs_json": request.needs_json}
        return {k: bool(v if (v := opts.needs[k]) is not None else inferred[k]) for k in inferred}

    def _route_options(self, request: Request, opts: _Options) -> dict[str, Any]:
        return {**self._prompt(request), **self._needs(request, opts), "task_type": opts.task_type,
                "agent_mode": opts.agent_mode, "min_tier": opts.min_tier, "latency": opts.latency,
                "max_output_tokens": request.max_output_tokens, "reserve": True, "ttl_ms": self.ttl_ms}

    def _reserve_options(self, request: Request, opts: _Options) -> dict[str, Any]:
        return {**self._prompt(request), "task_type": opts.task_type, "max_output_tokens": request.max_output_tokens,
                "ttl_ms": self.ttl_ms}

    def _escalate_options(self, request: Request, opts: _Options, problem: str, usage: Usage) -> dict[str, Any]:
        return {**self._prompt(request), **self._needs(request, opts), "reason": reason_of(problem),
                "usage": usage, "latency": opts.latency, "max_output_tokens": request.max_output_tokens,
                "ttl_ms": self.ttl_ms}

    def _pinned_provider(self, opts: _Options) -> str:
        provider = opts.provider or self.default_provider
        if provider not in self.clients:
            raise MissingProviderClientError((provider,), tuple(self.clients))
        return provider

    def _served(self, decision: Decision) -> Candidate | None:
        """The first of the decision's choice and fallbacks whose provider this wrapper has a client for."""
        for candidate in (decision.candidate, *decision.fallbacks):
            if candidate.provider in self.clients:
                return candidate
        return None

    def _missing(self, decision: Decision) -> MissingProviderClientError:
        providers = tuple(dict.fromkeys(c.provider for c in (decision.candidate, *decision.fallbacks)))
        return MissingProviderClientError(providers, tuple(self.clients))

    @staticmethod
    def _hold_of_decision(decision: Decision) -> Hold:
        reservation = decision.reservation
        assert reservation is not None, "the sidecar answered a reserving call without a reservation"
        return Hold(decision.model, decision.provider, decision.tier, reservation.reservation_id,
                    reservation.expires_at, decision.estimated_input_tokens)

    @staticmethod
    def _hold_of_reserve(candidate: Candidate, result: ReserveResult) -> Hold:
        r = result.reservation
        return Hold(candidate.model, candidate.provider, candidate.tier, r.reservation_id, r.expires_at,
                    result.estimated_input_tokens)

    # ---- reading an answer ----

    @staticmethod
    def _usage_of(endpoint: Endpoint, response: Any, hold: Hold) -> tuple[Usage, Settlement]:
        try:
            return endpoint.usage(response), "committed"
        except ValueError:
            output = estimated_output(0, len(endpoint.text(response)))
            log.warning("the %s answer of %s carries no usage: committing an estimate (%d input, %d output tokens)",
                        endpoint.name, hold.model, hold.estimated_input_tokens, output)
            return Usage(input_tokens=hold.estimated_input_tokens, output_tokens=output), "estimated"

    @staticmethod
    def _stream_usage(meter: Meter, hold: Hold) -> tuple[Usage | None, Settlement]:
        """What to commit for a stream that ended: ``None`` to release."""
        reported = meter.reported()
        if reported is not None and meter.final:
            return reported, "committed"
        seen = estimated_output(meter.deltas, meter.chars)
        if reported is not None:
            return dataclasses.replace(reported, output_tokens=max(reported.output_tokens, seen)), "partial"
        if meter.deltas:
            log.warning("a stream of %s ended with output but no usage reported: committing an estimate "
                        "(%d input, %d output tokens)", hold.model, hold.estimated_input_tokens, seen)
            return Usage(input_tokens=hold.estimated_input_tokens, output_tokens=seen), "estimated"
        return None, "released"

    @staticmethod
    def _attempt(hold: Hold, settlement: Settlement, usage: Usage | None, charged: int, problem: str,
                 extensions: int) -> AttemptOutcome:
        return AttemptOutcome(hold.model, hold.provider, hold.tier, hold.reservation_id, settlement, usage, charged,
                              problem, extensions)

    def _emit(self, attempts: Iterable[AttemptOutcome], stream: bool) -> CallOutcome:
        outcome = CallOutcome(tuple(attempts), stream)
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:
                log.exception("the on_outcome hook raised")
        return outcome

    def _commit_in_background(self, hold: Hold, usage: Usage, settlement: Settlement, extensions: int,
                              attempts: list[AttemptOutcome]) -> None:
        """Commit off the call's path: the answer is the app's now, and ``on_outcome`` hears once the sidecar
        has (for the blocking engine, on the client's sender thread)."""
        try:
            future = self.tollgate.commit_in_background(hold.reservation_id, usage, expires_at=hold.expires_at)
        except Exception as error:  # a closed client: nothing was queued
            self._unsettled(hold, "the commit", error, None)
            self._emit([*attempts, self._attempt(hold, "unsettled", usage, 0, "", extensions)], False)
            return

        def settled(done: Any) -> None:
            # A failure was logged by the sender; the hook hears it as unsettled.
            if done.cancelled() or done.exception() is not None:
                attempt = self._attempt(hold, "unsettled", usage, 0, "", extensions)
            else:
                attempt = self._attempt(hold, settlement, usage, done.result().charged_nanos, "", extensions)
            self._emit([*attempts, attempt], False)

        future.add_done_callback(settled)

    @staticmethod
    def _unsettled(hold: Hold, what: str, error: BaseException, into: BaseException | None) -> None:
        message = (f"{what} of Tollgate reservation {hold.reservation_id} failed, so the sidecar's expiry policy "
                   f"will end it: {error!r}")
        if into is not None:
            into.add_note(message)
        else:
            log.warning(message)


class AsyncGate(_Base):
    """The asyncio engine: ``await gate.call(endpoint, params)``."""

    def __init__(self, clients: Any, *, tollgate: AsyncClient, family: str, scope: Scope, check: Check | None = None,
                 ttl_ms: int = 0, on_outcome: OutcomeHook | None = None, default_provider: str | None = None,
                 wait_for_commit: bool = False) -> None:
        super().__init__(clients, family=family, is_async=True, scope=scope, check=check, ttl_ms=ttl_ms,
                         on_outcome=on_outcome, default_provider=default_provider, wait_for_commit=wait_for_commit)
        self.tollgate: AsyncClient = tollgate

    async def call(self, endpoint: Endpoint, params: dict[str, Any]) -> Any:
        opts = self._options(params)
        request = endpoint.describe(params)
        stream = bool(params.get("stream"))
        if stream and endpoint.prepare_stream is not None:
            params = endpoint.prepare_stream(params)
        hold = await self._acquire(request, opts)
        attempts: list[AttemptOutcome] = []
        while True:
            keeper = AsyncKeeper(self.tollgate, hold, self.ttl_ms)
            try:
                response = await _method(self.clients[hold.provider], endpoint.path)(model=hold.model, **params)
            except BaseException as error:
                keeper.stop()
                attempts.append(await self._release(hold, keeper.extensions, error))
                self._emit(attempts, stream)
                raise
            if stream:
                assert endpoint.meter is not None, f"{endpoint.name} does not stream"
                gated: AsyncGatedStream[Any] = AsyncGatedStream(response, endpoint.meter(),
                                                                self._stream_end(hold, keeper, attempts))
                weakref.finalize(gated, keeper.stop)  # a dropped stream is not extended forever
                return gated
            keeper.stop()
            usage, settlement = self._usage_of(endpoint, response, hold)
            try:
                problem = (opts.check(response) or "") if opts.check is not None else ""
            except BaseException:
                attempts.append(await self._commit(hold, usage, settlement, "", keeper.extensions))
                self._emit(attempts, stream)
                raise
            if not problem:
                if self.wait_for_commit:
                    attempts.append(await self._commit(hold, usage, settlement, "", keeper.extensions))
                    self._emit(attempts, stream)
                else:
                    self._commit_in_background(hold, usage, settlement, keeper.extensions, attempts)
                return response
            try:
                escalation = await self.tollgate.escalate(
                    hold.reservation_id, opts.scope, **self._escalate_options(request, opts, problem, usage))
            except TollgateClientError as error:
                attempts.append(await self._commit(hold, usage, settlement, problem, keeper.extensions))
                failed = CheckFailedError(response, problem, self._emit(attempts, stream))
                raise failed from (None if isinstance(error, EscalationRefusedError) else error)
            previous = escalation.previous_commit
            attempts.append(self._attempt(hold, settlement, usage, previous.charged_nanos if previous else 0,
                                          problem, keeper.extensions))
            try:
                hold = await self._serve(escalation.decision, request, opts)
            except (TollgateClientError, MissingProviderClientError) as error:
                # No next attempt this wrapper can make: the caller still gets the answer it paid for.
                raise CheckFailedError(response, problem, self._emit(attempts, stream)) from error
            except BaseException:
                self._emit(attempts, stream)
                raise

    async def _acquire(self, request: Request, opts: _Options) -> Hold:
        if opts.model:
            provider = self._pinned_provider(opts)
            result = await self.tollgate.reserve(opts.scope, opts.model, **self._reserve_options(request, opts))
            return self._hold_of_reserve(Candidate(opts.model, provider, "", result.estimated_cost_nanos), result)
        decision = await self.tollgate.route(opts.scope, **self._route_options(request, opts))
        return await self._serve(decision, request, opts)

    async def _serve(self, decision: Decision, request: Request, opts: _Options) -> Hold:
        """The decision's hold if its provider has a client; else the first fallback's, reserved instead."""
        hold = self._hold_of_decision(decision)
        if hold.provider in self.clients:
            return hold
        candidate = self._served(decision)
        await self.tollgate.release(hold.reservation_id)
        if candidate is None:
            raise self._missing(decision)
        result = await self.tollgate.reserve(opts.scope, candidate.model, **self._reserve_options(request, opts))
        return self._hold_of_reserve(candidate, result)

    async def _commit(self, hold: Hold, usage: Usage, settlement: Settlement, problem: str,
                      extensions: int) -> AttemptOutcome:
        try:
            charged = (await self.tollgate.commit(hold.reservation_id, usage)).charged_nanos
        except Exception as error:
            self._unsettled(hold, "the commit", error, None)
            return self._attempt(hold, "unsettled", usage, 0, problem, extensions)
        return self._attempt(hold, settlement, usage, charged, problem, extensions)

    async def _release(self, hold: Hold, extensions: int, error: BaseException | None) -> AttemptOutcome:
        try:
            await self.tollgate.release(hold.reservation_id)
        except Exception as release_error:
            self._unsettled(hold, "the release", release_error, error)
            return self._attempt(hold, "unsettled", None, 0, "", extensions)
        return self._attempt(hold, "released", None, 0, "", extensions)

    def _stream_end(self, hold: Hold, keeper: AsyncKeeper, attempts: list[AttemptOutcome]) -> Any:
        async def end(meter: Meter, error: BaseException | None) -> CallOutcome:
            keeper.stop()
            usage, settlement = self._stream_usage(meter, hold)
            if usage is None:
                attempt = await self._release(hold, keeper.extensions, error)
            else:
                attempt = await self._commit(hold, usage, settlement, "", keeper.extensions)
            return self._emit([*attempts, attempt], True)

        return end


class Gate(_Base):
    """The blocking engine: ``gate.call(endpoint, params)``."""

    def __init__(self, clients: Any, *, tollgate: Client, family: str, scope: Scope, check: Check | None = None,
                 ttl_ms: int = 0, on_outcome: OutcomeHook | None = None, default_provider: str | None = None,
                 wait_for_commit: bool = False) -> None:
        super().__init__(clients, family=family, is_async=False, scope=scope, check=check, ttl_ms=ttl_ms,
                         on_outcome=on_outcome, default_provider=default_provider, wait_for_commit=wait_for_commit)
        self.tollgate: Client = tollgate

    def call(self, endpoint: Endpoint, params: dict[str, Any]) -> Any:
        opts = self._options(params)
        request = endpoint.describe(params)
        stream = bool(params.get("stream"))
        if stream and endpoint.prepare_stream is not None:
            params = endpoint.prepare_stream(params)
        hold = self._acquire(request, opts)
        attempts: list[AttemptOutcome] = []
        while True:
            keeper = ThreadKeeper(self.tollgate, hold, self.ttl_ms)
            try:
                response = _method(self.clients[hold.provider], endpoint.path)(model=hold.model, **params)
            except BaseException as error:
                keeper.stop()
                attempts.append(self._release(hold, keeper.extensions, error))
                self._emit(attempts, stream)
                raise
            if stream:
                assert endpoint.meter is not None, f"{endpoint.name} does not stream"
                sync_gated: GatedStream[Any] = GatedStream(response, endpoint.meter(),
                                                           self._stream_end(hold, keeper, attempts))
                weakref.finalize(sync_gated, keeper.stop)  # a dropped stream is not extended forever
                return sync_gated
            keeper.stop()
            usage, settlement = self._usage_of(endpoint, response, hold)
            try:
                problem = (opts.check(response) or "") if opts.check is not None else ""
            except BaseException:
                attempts.append(self._commit(hold, usage, settlement, "", keeper.extensions))
                self._emit(attempts, stream)
                raise
            if not problem:
                if self.wait_for_commit:
                    attempts.append(self._commit(hold, usage, settlement, "", keeper.extensions))
                    self._emit(attempts, stream)
                else:
                    self._commit_in_background(hold, usage, settlement, keeper.extensions, attempts)
                return response
            try:
                escalation = self.tollgate.escalate(
                    hold.reservation_id, opts.scope, **self._escalate_options(request, opts, problem, usage))
            except TollgateClientError as error:
                attempts.append(self._commit(hold, usage, settlement, problem, keeper.extensions))
                failed = CheckFailedError(response, problem, self._emit(attempts, stream))
                raise failed from (None if isinstance(error, EscalationRefusedError) else error)
            previous = escalation.previous_commit
            attempts.append(self._attempt(hold, settlement, usage, previous.charged_nanos if previous else 0,
                                          problem, keeper.extensions))
            try:
                hold = self._serve(escalation.decision, request, opts)
            except (TollgateClientError, MissingProviderClientError) as error:
                # No next attempt this wrapper can make: the caller still gets the answer it paid for.
                raise CheckFailedError(response, problem, self._emit(attempts, stream)) from error
            except BaseException:
                self._emit(attempts, stream)
                raise

    def _acquire(self, request: Request, opts: _Options) -> Hold:
        if opts.model:
            provider = self._pinned_provider(opts)
            result = self.tollgate.reserve(opts.scope, opts.model, **self._reserve_options(request, opts))
            return self._hold_of_reserve(Candidate(opts.model, provider, "", result.estimated_cost_nanos), result)
        decision = self.tollgate.route(opts.scope, **self._route_options(request, opts))
        return self._serve(decision, request, opts)

    def _serve(self, decision: Decision, request: Request, opts: _Options) -> Hold:
        """The decision's hold if its provider has a client; else the first fallback's, reserved instead."""
        hold = self._hold_of_decision(decision)
        if hold.provider in self.clients:
            return hold
        candidate = self._served(decision)
        self.tollgate.release(hold.reservation_id)
        if candidate is None:
            raise self._missing(decision)
        result = self.tollgate.reserve(opts.scope, candidate.model, **self._reserve_options(request, opts))
        return self._hold_of_reserve(candidate, result)

    def _commit(self, hold: Hold, usage: Usage, settlement: Settlement, problem: str,
                extensions: int) -> AttemptOutcome:
        try:
            charged = self.tollgate.commit(hold.reservation_id, usage).charged_nanos
        except Exception as error:
            self._unsettled(hold, "the commit", error, None)
            return self._attempt(hold, "unsettled", usage, 0, problem, extensions)
        return self._attempt(hold, settlement, usage, charged, problem, extensions)

    def _release(self, hold: Hold, extensions: int, error: BaseException | None) -> AttemptOutcome:
        try:
            self.tollgate.release(hold.reservation_id)
        except Exception as release_error:
            self._unsettled(hold, "the release", release_error, error)
            return self._attempt(hold, "unsettled", None, 0, "", extensions)
        return self._attempt(hold, "released", None, 0, "", extensions)

    def _stream_end(self, hold: Hold, keeper: ThreadKeeper, attempts: list[AttemptOutcome]) -> Any:
        def end(meter: Meter, error: BaseException | None) -> CallOutcome:
            keeper.stop()
            usage, settlement = self._stream_usage(meter, hold)
            if usage is None:
                attempt = self._release(hold, keeper.extensions, error)
            else:
                attempt = self._commit(hold, usage, settlement, "", keeper.extensions)
            return self._emit([*attempts, attempt], True)

        return end
