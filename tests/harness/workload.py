"""Callers as applications behave: reserve or route, call the provider, commit, release, or walk away.

Every logical operation (an *intent*) is planned from the seed before the run:
who calls, in which scope, with which idempotency key, deadline, sidecars to try,
how it ends. Each intent gets a session id of its own, so whatever record it leaves
in the store names it (``session:<org>/<session>``), whatever the id grammar.

Keyed intents are retried with the same key after a lost answer, on the next sidecar
of their plan, until they get a definite answer: that is how a caller resolves a lost
answer. Keyless intents are never retried. Commit and Release are retried by
reservation id after a lost answer, as the client's docs allow.

Some intents are hostile: a reserve outside the caller's grants, malformed requests,
or a commit / release / extend of another tenant's reservation (an id seen on the
wire, or guessed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from tests.harness.history import DEFINITE, ERROR, OK, UNKNOWN, UNSENT, Call, History
from tests.harness.tenants import MAX_TTL_MS, TENANTS, TTL_MS, Tenant, tenant
from tollgate_client import AsyncClient, Scope, TollgateClientError, Usage

__all__ = ["Clients", "Plan", "Workload", "make_plans"]

MODELS = ("gpt-4o-mini", "gemini-2.0-flash", "claude-haiku-4-5", "gpt-4o")
TASK_TYPES = ("extract", "classify", "summarize", "codegen", "qa")
DEADLINES = (2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.3, 0.3, 0.08)
"""Per-call client deadlines: most generous, some shorter than a call under faults."""
GUESSED = "000000000000000000000000"


@dataclass(frozen=True, slots=True)
class Plan:
    intent: int
    task: int
    tenant: str
    kind: str
    """reserve | route | invalid | trespass | meddle."""
    org: str
    team: str
    user: str
    session: str
    key: str
    model: str
    task_type: str
    input_tokens: int
    max_output_tokens: int
    ttl_ms: int
    deadline: float
    sidecars: tuple[int, ...]
    think_s: float
    end: str
    """commit | release | abandon | extend | late | recommit | commit_release."""
    usage: tuple[int, int, int, int]
    other_usage: tuple[int, int, int, int]
    duplicate: bool
    invalid: str
    target_org: str
    target_team: str
    meddle_op: str
    pick: float
    delay_s: float
    client_retry: bool
    """Use the client's own retry policy (as apps do by default); else one attempt per call, retried here."""

    @property
    def fingerprint(self) -> str:
        return "/".join(str(x) for x in self.usage)


def _usage_fp(usage: tuple[int, int, int, int]) -> str:
    return "/".join(str(x) for x in usage)


# Who each hostile caller goes after: (target org, target team or "" for any team).
_MEDDLE_TARGETS: dict[str, tuple[tuple[str, str], ...]] = {
    "eu-app": (("acme.eu", ""),),
    "acme-app": (("acme.eu", ""), ("eu", "")),
    "acme-eu-app": (("acme", ""), ("eu", "")),
    "bravo-search": (("bravo", "ads"),),
    "bravo-app": (("acme", ""),),
}
_TRESPASS: dict[str, tuple[tuple[str, str], ...]] = {
    "eu-app": (("acme.eu", "search"),),
    "acme-app": (("acme.eu", "ops"),),
    "acme-eu-app": (("eu", "search"), ("acme", "search")),
    "bravo-search": (("bravo", "ads"),),
    "bravo-app": (("acme", "ads"),),
}


def make_plans(seed: int, kind: str, ops: int, tasks: int, sidecars: int) -> list[Plan]:
    """``ops`` intents for ``tasks`` caller tasks, all drawn from ``seed``."""
    rng = random.Random(seed)
    keyed_in_org: dict[str, int] = defaultdict(int)
    plans = []
    for intent in range(ops):
        task = intent % tasks
        who = TENANTS[task % len(TENANTS)]
        roll = rng.random()
        kind_ = ("reserve" if roll < 0.62 else "route" if roll < 0.82 else "invalid" if roll < 0.87
                 else "trespass" if roll < 0.92 else "meddle")
        org, team = who.org, rng.choice((*who.teams, "")) if who.caller != "bravo-search" else "search"
        if kind_ == "trespass":
            org, team = rng.choice(_TRESPASS[who.caller])
        tight = kind_ in ("reserve", "route") and rng.random() < 0.12
        user = "tight" if tight else rng.choice((*who.users[:-1], ""))
        keyed = rng.random() < (0.8 if kind_ in ("reserve", "route") else 0.5)
        key = ""
        if keyed:
            # The n-th keyed intent of every org uses the same key: keys of different orgs must never collide.
            key = f"k{seed}-{keyed_in_org[org]}"
            keyed_in_org[org] += 1
        model = "claude-opus-4-1" if tight else rng.choice(MODELS)
        input_tokens = rng.randint(2000, 6000) if tight else rng.randint(50, 4000)
        in_used = max(1, input_tokens + rng.randint(-input_tokens // 5, input_tokens // 5))
        usage = (in_used, rng.choice((0, 0, 0, in_used // 2)), rng.randint(20, 1200), rng.choice((0, 0, 0, 64)))
        other = (usage[0] + 1, 0, usage[2] + 7, 0)
        n = 1 if kind == "sqlite" else sidecars
        end_roll = rng.random()
        end = ("commit" if end_roll < 0.52 else "release" if end_roll < 0.64 else "abandon" if end_roll < 0.76
               else "extend" if end_roll < 0.83 else "late" if end_roll < 0.88 else "recommit" if end_roll < 0.94
               else "commit_release")
        target_org, target_team = rng.choice(_MEDDLE_TARGETS[who.caller])
        plans.append(Plan(
            intent=intent, task=task, tenant=who.caller, kind=kind_, org=org, team=team, user=user,
            session=f"h{seed}-{intent}", key=key, model=model, task_type=rng.choice(TASK_TYPES),
            input_tokens=input_tokens, max_output_tokens=rng.choice((0, 0, 256, 1024, 4096)),
            ttl_ms=rng.choice((0, 0, 0, 1500, 2000, 4000)), deadline=rng.choice(DEADLINES),
            sidecars=tuple(rng.randrange(n) for _ in range(6)), think_s=rng.uniform(0.0, 0.3), end=end,
            usage=usage, other_usage=other, duplicate=keyed and rng.random() < 0.15,
            invalid=rng.choice(("model", "ttl", "org", "task", "max_output", "key")),
            target_org=target_org, target_team=target_team,
            meddle_op=rng.choice(("commit", "commit", "release", "extend")), pick=rng.random(),
            delay_s=rng.uniform(0.0, 0.15), client_retry=rng.random() < 0.5,
        ))
    return plans


class Clients:
    """One ``AsyncClient`` per (sidecar, caller, deadline), replaced after its sidecar restarts."""

    def __init__(self, targets: Callable[[int], str]) -> None:
        self._targets = targets
        self._clients: dict[tuple[int, str, float, bool], AsyncClient] = {}
        self._retired: list[AsyncClient] = []

    def get(self, sidecar: int, who: Tenant, deadline: float, retry: bool) -> AsyncClient:
        key = (sidecar, who.caller, deadline, retry)
        client = self._clients.get(key)
        if client is None:
            client = _client(self._targets(sidecar), deadline, who.metadata, retry)
            self._clients[key] = client
        return client

    def reset(self, sidecar: int) -> None:
        """Fresh channels for a restarted sidecar (a channel that saw it die may be backing off)."""
        for key in [k for k in self._clients if k[0] == sidecar]:
            self._retired.append(self._clients.pop(key))

    async def close(self) -> None:
        clients = [*self._clients.values(), *self._retired]
        self._clients.clear()
        self._retired.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


def _client(target: str, deadline: float, metadata: tuple[tuple[str, str], ...], retry: bool) -> AsyncClient:
    if retry:
        return AsyncClient(target, timeout=deadline, metadata=metadata)
    try:
        return AsyncClient(target, timeout=deadline, metadata=metadata, retry=None)  # type: ignore[call-arg]
    except TypeError:  # a client without its own retries
        return AsyncClient(target, timeout=deadline, metadata=metadata)


class Workload:
    """Runs every plan, one task per caller, and writes the history."""

    def __init__(self, plans: list[Plan], history: History, clients: Clients, *, sticky: bool,
                 give_up_after: float = 90.0) -> None:
        self.plans = plans
        self.history = history
        self.clients = clients
        self.sticky = sticky
        """Retries stay on the sidecar that was asked first (a per-pod sidecar under fail-open)."""
        self.give_up_after = give_up_after
        self.seen: dict[str, list[str]] = defaultdict(list)
        """Reservation ids told to callers, by ``org/team``: what a hostile caller may have seen on the wire."""
        self.unresolved = 0
        self._deadline = 0.0

    async def run(self) -> None:
        self._deadline = time.monotonic() + self.give_up_after
        by_task: dict[int, list[Plan]] = defaultdict(list)
        for plan in self.plans:
            by_task[plan.task].append(plan)
        await asyncio.gather(*(self._caller(task, plans) for task, plans in sorted(by_task.items())))

    async def _caller(self, task: int, plans: list[Plan]) -> None:
        background: list[asyncio.Task[None]] = []
        for plan in plans:
            await asyncio.sleep(plan.delay_s)
            if plan.end in ("late", "abandon") or plan.kind == "meddle":
                # The app moves on; this call's end (or its neglect) happens beside the next calls.
                background.append(asyncio.create_task(self._intent(plan)))
            else:
                await self._intent(plan)
        await asyncio.gather(*background)

    async def _intent(self, plan: Plan) -> None:
        if plan.kind == "meddle":
            await self._meddle(plan)
            return
        told = await self._acquire(plan)
        if told is None:
            return
        rid, home = told
        self.seen[f"{plan.org}/{plan.team}"].append(rid)
        if plan.duplicate:
            await asyncio.sleep(plan.think_s / 2)
            again = home if self.sticky else plan.sidecars[1 % len(plan.sidecars)]
            await self._send(plan, self._acquire_op(plan), again)
        await asyncio.sleep(plan.think_s)
        if plan.end == "commit":
            await self._settle(plan, "commit", rid, home, plan.usage)
        elif plan.end == "release":
            await self._settle(plan, "release", rid, home)
        elif plan.end == "extend":
            await self._settle(plan, "extend", rid, home, ttl_ms=min(MAX_TTL_MS, 3_000))
            await asyncio.sleep(plan.think_s)
            await self._settle(plan, "commit", rid, home, plan.usage)
        elif plan.end == "late":
            await asyncio.sleep((plan.ttl_ms or TTL_MS) / 1000 + 1.0)
            await self._settle(plan, "commit", rid, home, plan.usage)
        elif plan.end == "recommit":
            if await self._settle(plan, "commit", rid, home, plan.usage):
                await self._settle(plan, "commit", rid, home, plan.other_usage)
        elif plan.end == "commit_release" and await self._settle(plan, "commit", rid, home, plan.usage):
            await self._settle(plan, "release", rid, home)
        # "abandon": the app never ends it; expiry does.

    def _acquire_op(self, plan: Plan) -> str:
        return "route" if plan.kind == "route" else "reserve"

    async def _acquire(self, plan: Plan) -> tuple[str, int] | None:
        """Reserve (or route with reserve) until told something definite; keyless intents get one try."""
        op = self._acquire_op(plan)
        attempt = 0
        while True:
            sidecar = plan.sidecars[0 if self.sticky else attempt % len(plan.sidecars)]
            call = await self._send(plan, op, sidecar)
            if call.outcome == OK:
                return call.rid, sidecar
            if call.outcome != UNKNOWN or not plan.key:
                return None
            attempt += 1
            if time.monotonic() > self._deadline:
                self.unresolved += 1
                return None
            await asyncio.sleep(min(1.0, 0.05 * 2 ** min(attempt, 5)))

    async def _settle(self, plan: Plan, op: str, rid: str, home: int,
                      usage: tuple[int, int, int, int] = (0, 0, 0, 0), ttl_ms: int = 0) -> bool:
        """Commit / release / extend by reservation id, resent after a lost answer. True if answered OK."""
        attempt = 0
        order = [home] + [s for s in plan.sidecars if s != home]
        while True:
            sidecar = order[0 if self.sticky else attempt % len(order)]
            call = await self._send(plan, op, sidecar, rid=rid, usage=usage, ttl_ms=ttl_ms)
            if call.outcome != UNKNOWN:
                return call.outcome == OK
            attempt += 1
            if time.monotonic() > self._deadline:
                self.unresolved += 1
                return False
            await asyncio.sleep(min(1.0, 0.05 * 2 ** min(attempt, 5)))

    async def _meddle(self, plan: Plan) -> None:
        """End (or extend) a reservation of another tenant: it must be refused and change nothing."""
        seen = [rid for where, rids in self.seen.items() for rid in rids
                if where.partition("/")[0] == plan.target_org
                and (not plan.target_team or where.partition("/")[2] == plan.target_team)]
        rid = seen[int(plan.pick * len(seen))] if seen else f"{GUESSED}.{plan.target_org}"
        # Figures no owner ever sends, so a commit that lands anyway is recognisable in the record.
        usage = (900_000 + plan.intent, 0, 1, 0)
        await self._send(plan, plan.meddle_op, plan.sidecars[0], rid=rid, usage=usage, ttl_ms=MAX_TTL_MS)

    # -- one RPC ------------------------------------------------------------------------------------

    async def _send(self, plan: Plan, op: str, sidecar: int, *, rid: str = "",
                    usage: tuple[int, int, int, int] = (0, 0, 0, 0), ttl_ms: int = 0) -> Call:
        who = tenant(plan.tenant)
        deadline = plan.deadline
        args: dict[str, Any] = {}
        action: Callable[[AsyncClient], Awaitable[Any]]
        if op in ("reserve", "route"):
            scope, model, opts, args = self._request(plan, op)

            if op == "reserve":
                def action(c: AsyncClient) -> Awaitable[Any]:
                    return c.reserve(scope, model, **opts)
            else:
                def action(c: AsyncClient) -> Awaitable[Any]:
                    return c.route(scope, reserve=True, **opts)
        elif op == "commit":
            args = {"fp": _usage_fp(usage)}
            figures = Usage(input_tokens=usage[0], cached_input_tokens=usage[1], output_tokens=usage[2],
                            reasoning_tokens=usage[3])

            def action(c: AsyncClient) -> Awaitable[Any]:
                return c.commit(rid, figures)
        elif op == "release":
            def action(c: AsyncClient) -> Awaitable[Any]:
                return c.release(rid)
        else:
            args = {"ttl_ms": ttl_ms}

            def action(c: AsyncClient) -> Awaitable[Any]:
                return c.extend(rid, ttl_ms)
        call = self.history.begin(intent=plan.intent, caller=f"{plan.tenant}#{plan.task}", tenant=plan.tenant, op=op,
                                  sidecar=sidecar, key=plan.key if op in ("reserve", "route") else "", args=args,
                                  deadline=deadline, rid=rid, client_retry=plan.client_retry)
        try:
            client = self.clients.get(sidecar, who, deadline, plan.client_retry)
            # A guard beyond the deadline, should a channel ever hang past it.
            result = await asyncio.wait_for(action(client), deadline + 10)
        except TollgateClientError as exc:
            code = exc.code.name if isinstance(exc.code, grpc.StatusCode) else str(exc.code)
            call.code, call.message = code, exc.details or str(exc)
            call.outcome = ERROR if code in DEFINITE else UNKNOWN
            call.attempts = int(getattr(exc, "attempts", 1) or 1)
        except (ValueError, TypeError) as exc:
            call.outcome, call.code, call.message = UNSENT, type(exc).__name__, str(exc)
        except TimeoutError:
            call.outcome, call.code, call.message = UNKNOWN, "HARNESS_TIMEOUT", "no answer past the deadline"
        except Exception as exc:
            call.outcome, call.code, call.message = UNKNOWN, type(exc).__name__, str(exc)
        else:
            call.outcome = OK
            _told(call, op, result)
        call.completed_at = time.time()
        return call

    @staticmethod
    def _request(plan: Plan, op: str) -> tuple[Scope, str, dict[str, Any], dict[str, Any]]:
        org, model, ttl_ms, key = plan.org, plan.model, plan.ttl_ms, plan.key
        task_type, max_output = plan.task_type, plan.max_output_tokens
        if plan.kind == "invalid":
            if plan.invalid == "model":
                model = "gpt-nonexistent"
            elif plan.invalid == "ttl":
                ttl_ms = MAX_TTL_MS + 1_000
            elif plan.invalid == "org":
                org = f"-{org}"
            elif plan.invalid == "task":
                task_type = "no such task"
            elif plan.invalid == "max_output":
                max_output = 10_000_000_000
            elif plan.invalid == "key":
                key = "two words"
        scope = Scope(org=org, team=plan.team, user=plan.user, session=plan.session)
        opts: dict[str, Any] = {"input_tokens": plan.input_tokens, "task_type": task_type,
                                "max_output_tokens": max_output, "idempotency_key": key, "ttl_ms": ttl_ms}
        args = {"scope": f"{org}/{plan.team}/{plan.user}/{plan.session}", "in": plan.input_tokens,
                "task": task_type, "max_out": max_output, "ttl_ms": ttl_ms}
        if op == "reserve":
            args["model"] = model
        elif plan.kind == "invalid" and plan.invalid == "model":
            opts["min_tier"] = "no-such-tier"
            args["min_tier"] = "no-such-tier"
        return scope, model, opts, args


def _told(call: Call, op: str, result: Any) -> None:
    """What the answer told the caller."""
    if op in ("reserve", "route"):
        reservation = result.reservation
        if reservation is None:
            call.outcome, call.code, call.message = ERROR, "NO_RESERVATION", "route answered without a reservation"
            return
        call.rid, call.held, call.replayed = reservation.reservation_id, reservation.held_nanos, reservation.replayed
        call.model, call.pools_told = reservation.model, len(reservation.pools)
    elif op == "commit":
        call.rid, call.charged, call.replayed = result.reservation_id, result.charged_nanos, result.replayed
    elif op == "release":
        call.rid, call.replayed = result.reservation_id, result.replayed
    else:
        call.rid = result.reservation_id
