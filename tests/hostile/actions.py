"""The campaign's moves, and the seeded plan that orders them.

Every action is ``async (runner, rng, ref) -> None``: it draws its choices from ``rng``
(seeded by the plan) and from what the tenants hold at that moment, and makes one or a
few calls through ``Runner.call``, which checks each answer. Kinds:

- ``honest.*``   tenants' ordinary traffic: route and commit, reserve and release, extend,
                 escalate, feedback, keyed retries
- ``garbage``    bytes that are not the method's message, with and without valid tokens
- ``xt.*``       one tenant's credentials against another tenant's scope, reservations,
                 pools, idempotency keys; the admin API without an admin token
- ``hv.*``       well-formed messages with hostile values, on the caller's own scope
- ``adm.*``      the operator's API with hostile values (top-ups past int64 among them)
- ``huge.*``     oversized input: 100,000 messages, 100,000 tags, multi-MB ids and keys,
                 a body over the server's message limit
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc

from tollgate_client.v1 import tollgate_pb2 as pb

from .book import Held
from .garbage import GENERATORS, tag, varint
from .world import (
    ADMIN,
    CALLERS,
    ID,
    INT64_MAX,
    LOOKALIKE_ORGS,
    METHODS,
    MODEL,
    TENANT_ORGS,
    Caller,
    HonestScope,
)

if TYPE_CHECKING:
    from .campaign import Options, Runner

from .campaign import GROUPED

__all__ = ["ACTIONS", "plan"]

C = grpc.StatusCode
Action = Callable[["Runner", random.Random, int], Awaitable[None]]
TENANTS: tuple[Caller, ...] = tuple(c for c in CALLERS.values() if not c.admin)
ORG_CALLERS = {c.org: c for c in TENANTS if c.scopes[0].team == ""}
INT64 = (-(2**63), -(2**31), -1, 0, 1, 2**31 - 1, 2**31, 2**32, 2**53 + 1, INT64_MAX)
TASKS = ("extract", "extract", "extract", "classify", "summarize", "codegen", "planning")
TEXTS = ("Extract the total from: invoice {n}, total {n} EUR", "Classify this ticket: printer {n} is on fire",
         "Summarize: the meeting on day {n} moved to Tuesday", "Write a function that returns {n} squared",
         "Plan a migration of {n} services to a new cluster, step by step")
INVALID = frozenset({C.INVALID_ARGUMENT})
DENIED = frozenset({C.PERMISSION_DENIED, C.NOT_FOUND, C.INVALID_ARGUMENT})
"""What a cross-tenant attempt may answer: refused, or not found. Never OK."""
SIZE = frozenset({C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED})


# -- small builders -----------------------------------------------------------------------------


def prompt(rng: random.Random) -> pb.Prompt:
    text = rng.choice(TEXTS).format(n=rng.randint(1, 10**6))
    return pb.Prompt(messages=pb.Messages(items=[pb.Message(role="user", content=text)]))


def usage(rng: random.Random) -> pb.Usage:
    n = rng.randint(10, 400)
    return pb.Usage(input_tokens=n, cached_input_tokens=rng.randint(0, n // 2), output_tokens=rng.randint(5, 1500))


def task(rng: random.Random) -> str:
    return rng.choice(TASKS)


def long_ttl(runner: Runner, rng: random.Random) -> int:
    return rng.randint(max(1, runner.max_ttl_ms // 2), runner.max_ttl_ms)


def own_scope(rng: random.Random, caller: Caller) -> HonestScope:
    return rng.choice(caller.scopes)


def ld(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def org_of_rid(rid: str) -> str:
    return rid.partition(".")[2]


def fake_rid(rng: random.Random, org: str) -> str:
    return f"{rng.getrandbits(96):024x}.{org}"


async def reserve(runner: Runner, kind: str, rng: random.Random, caller: Caller, scope: HonestScope | None = None,
                  ttl_ms: int | None = None) -> Held | None:
    """A plain reservation for ``caller`` (in one of its scopes), or None if refused."""
    scope = scope or own_scope(rng, caller)
    r = await runner.call(kind, "Reserve", pb.ReserveRequest(
        scope=scope.pb(), model=MODEL, prompt=prompt(rng), task_type="extract",
        reservation=pb.ReservationOptions(ttl_ms=ttl_ms if ttl_ms is not None else long_ttl(runner, rng))), caller)
    if r.ok and isinstance(r.response, pb.ReserveResponse):
        return runner.book.holds.get(r.response.reservation.reservation_id)
    return None


async def own_hold(runner: Runner, kind: str, rng: random.Random, caller: Caller) -> Held | None:
    """One of ``caller``'s open reservations nobody else is using, claimed; a new one if it has none."""
    mine = runner.open_holds(callers=[caller.name])
    held = rng.choice(mine) if mine else await reserve(runner, kind, rng, caller)
    if held is not None:
        held.claimed = True
    return held


def release_claim(held: Held | None) -> None:
    if held is not None:
        held.claimed = False


def hostile_id(rng: random.Random) -> tuple[str, bool]:
    """An id value and whether the README's alphabet admits it."""
    value = rng.choice([
        "a" * 128, "a" * 129, "a." * 64, ".a", "-a", "_a", "a b", "a/b", "a:b", "{a}", "a}", "a\nb", "a\x00",
        "é", "a\u202e", "🚀", "a" * 5000, " ", "*", "a..b", "a.", "ACME", "a@b", "a\tb", "a\u0000b", "0",
        "a" * 127 + "é", "\ufeffa", "a%2Fb", "a\\b", "..", "a.-_@", "x" * 1_000_000,
    ])
    return value, bool(ID.fullmatch(value))


# -- honest traffic -----------------------------------------------------------------------------


async def honest_route_commit(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    s = own_scope(rng, c)
    req = pb.RouteRequest(scope=s.pb(priority=rng.choice([0, 0, 1, 2])), prompt=prompt(rng),
                          signals=pb.TaskSignals(task_type=task(rng)), max_output_tokens=rng.choice([0, 0, 256, 1024]),
                          reserve=True, reservation=pb.ReservationOptions(ttl_ms=long_ttl(runner, rng)),
                          accept_shadow=rng.random() < 0.3)
    r = await runner.call("honest.route_commit", "Route", req, c)
    if not r.ok or not isinstance(r.response, pb.RouteResponse):
        return
    for res in (r.response.reservation, r.response.shadow.reservation):
        held = runner.book.holds.get(res.reservation_id) if res.reservation_id else None
        if held is not None and held.state == "open" and not held.claimed:
            held.claimed = True
            await runner.call("honest.route_commit", "Commit",
                              pb.CommitRequest(reservation_id=held.rid, usage=usage(rng)), c)
            release_claim(held)


async def honest_reserve_release(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    held = await reserve(runner, "honest.reserve_release", rng, c)
    if held is not None and held.state == "open" and not held.claimed:
        held.claimed = True
        await runner.call("honest.reserve_release", "Release", pb.ReleaseRequest(reservation_id=held.rid), c)
        release_claim(held)


async def honest_reserve_open(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    if len(runner.open_holds(callers=[c.name])) > 40:
        await _commit_one(runner, rng, c, "honest.reserve_open")
        return
    await reserve(runner, "honest.reserve_open", rng, c)


async def _commit_one(runner: Runner, rng: random.Random, c: Caller, kind: str) -> None:
    mine = runner.open_holds(callers=[c.name])
    if not mine:
        await reserve(runner, kind, rng, c)
        return
    held = rng.choice(mine)
    held.claimed = True
    await runner.call(kind, "Commit", pb.CommitRequest(reservation_id=held.rid, usage=usage(rng)), c)
    release_claim(held)


async def honest_commit_open(runner: Runner, rng: random.Random, ref: int) -> None:
    await _commit_one(runner, rng, rng.choice(TENANTS), "honest.commit_open")


async def honest_commit_batch(runner: Runner, rng: random.Random, ref: int) -> None:
    """Several of a caller's open reservations committed in one CommitBatch, now and then with an unknown id."""
    c = rng.choice(TENANTS)
    mine = runner.open_holds(callers=[c.name])
    if not mine:
        await reserve(runner, "honest.commit_batch", rng, c)
        return
    chosen = rng.sample(mine, min(len(mine), rng.randint(1, 4)))
    for held in chosen:
        held.claimed = True
    commits = [pb.CommitRequest(reservation_id=h.rid, usage=usage(rng)) for h in chosen]
    if rng.random() < 0.3:
        commits.insert(rng.randrange(len(commits) + 1),
                       pb.CommitRequest(reservation_id=fake_rid(rng, chosen[0].scope.org), usage=usage(rng)))
    await runner.call("honest.commit_batch", "CommitBatch", pb.CommitBatchRequest(commits=commits), c,
                      expect=frozenset({C.OK}))
    for held in chosen:
        release_claim(held)


async def honest_extend(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    mine = runner.open_holds(callers=[c.name])
    if not mine:
        await reserve(runner, "honest.extend", rng, c)
        return
    held = rng.choice(mine)
    await runner.call("honest.extend", "Extend", pb.ExtendRequest(reservation_id=held.rid,
                                                                   ttl_ms=long_ttl(runner, rng)), c)


async def honest_getbudget(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    await runner.call("honest.getbudget", "GetBudget", pb.GetBudgetRequest(scope=own_scope(rng, c).pb()), c)


async def honest_escalate(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    held = await own_hold(runner, "honest.escalate", rng, c)
    if held is None or held.state != "open":
        release_claim(held)
        return
    await runner.call("honest.escalate", "Escalate", pb.EscalateRequest(
        reservation_id=held.rid, scope=held.scope.pb(), prompt=prompt(rng), reason="invalid_json",
        usage=usage(rng), reservation=pb.ReservationOptions(ttl_ms=long_ttl(runner, rng))), c)
    release_claim(held)


async def honest_feedback(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    mine = [h for h in runner.book.holds.values() if h.caller == c.name]
    if not mine:
        await reserve(runner, "honest.feedback", rng, c)
        return
    held = rng.choice(mine)
    await runner.call("honest.feedback", "Feedback", pb.FeedbackRequest(
        reservation_id=held.rid, score=rng.random(),
        source=rng.choice([pb.FEEDBACK_SOURCE_USER, pb.FEEDBACK_SOURCE_AUTOMATED_EVAL,
                           pb.FEEDBACK_SOURCE_HUMAN_REVIEW])), c)


async def honest_short_ttl(runner: Runner, rng: random.Random, ref: int) -> None:
    """A reservation left to expire: the expiry policy charges it, and its owner learns so."""
    await reserve(runner, "honest.short_ttl", rng, rng.choice(TENANTS), ttl_ms=rng.randint(1, 1500))


async def honest_keyed_first(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    s = own_scope(rng, c)
    key = f"order-{ref}-{rng.getrandbits(32):08x}"
    options = pb.ReservationOptions(idempotency_key=key, ttl_ms=runner.max_ttl_ms)
    req: pb.Message
    if rng.random() < 0.5:
        method, req = "Reserve", pb.ReserveRequest(scope=s.pb(), model=MODEL, prompt=prompt(rng), task_type="extract",
                                                   reservation=options)
    else:
        method, req = "Route", pb.RouteRequest(scope=s.pb(), prompt=prompt(rng), reserve=True, reservation=options,
                                               signals=pb.TaskSignals(task_type="extract"))
    body = req.SerializeToString()
    r = await runner.call("honest.keyed", method, body, c)
    runner.keys.append((c, key))
    if r.ok and isinstance(r.response, pb.ReserveResponse | pb.RouteResponse) and r.response.HasField("reservation"):
        res = r.response.reservation
        held = runner.book.holds.get(res.reservation_id)
        if held is not None:
            held.keep = True
            runner.keyed[ref] = (c, method, body, res.reservation_id, res.held_nanos)


async def honest_keyed_retry(runner: Runner, rng: random.Random, ref: int) -> None:
    """The same keyed request again, after commits have moved the learned estimates: the same reservation."""
    entry = runner.keyed.pop(ref, None)
    if entry is None:
        return
    c, method, body, rid, held_nanos = entry
    r = await runner.call("honest.keyed", method, body, c, expect=frozenset({C.OK}), what="retry")
    held = runner.book.holds.get(rid)
    if r.ok and r.response is not None:
        res: pb.Reservation = r.response.reservation  # type: ignore[attr-defined]
        if (res.reservation_id, res.held_nanos, res.replayed) != (rid, held_nanos, True):
            runner.violation("g", "honest.keyed", method, f"{c.name}'s retry with the same idempotency key returned "
                             f"{res.reservation_id} held {res.held_nanos} replayed={res.replayed}; the first "
                             f"attempt got {rid} held {held_nanos}")
    else:
        runner.violation("g", "honest.keyed", method, f"{c.name}'s retry with the same idempotency key of {rid} was "
                         f"refused: {r.code.name} {r.details[:200]!r}")
    if held is not None:
        held.keep = False
        if held.state == "open" and not held.claimed:
            held.claimed = True
            await runner.call("honest.keyed", "Commit", pb.CommitRequest(reservation_id=rid, usage=usage(rng)), c)
            release_claim(held)


# -- garbage ------------------------------------------------------------------------------------


def sample_request(runner: Runner, rng: random.Random, method: str, caller: Caller) -> bytes:
    """A well-formed request of ``method`` for ``caller``, for garbage generators to mutate."""
    s = own_scope(rng, caller) if caller.scopes else HonestScope("vault")
    # Sequentially, only ended reservations: mutated bytes that still parse could otherwise shorten an
    # open one's TTL, and an expiry mid-phase would change the ledger under another call.
    holds = [h for h in runner.book.holds.values() if not runner.sequential or h.state != "open"]
    rid = rng.choice(holds).rid if holds and rng.random() < 0.7 else fake_rid(rng, s.org)
    msg = {
        "Route": lambda: pb.RouteRequest(scope=s.pb(), prompt=prompt(rng), signals=pb.TaskSignals(task_type="extract")),
        "Reserve": lambda: pb.ReserveRequest(scope=s.pb(), model=MODEL, prompt=prompt(rng)),
        "Commit": lambda: pb.CommitRequest(reservation_id=rid, usage=usage(rng)),
        "CommitBatch": lambda: pb.CommitBatchRequest(commits=[pb.CommitRequest(reservation_id=rid, usage=usage(rng))]
                                                     * rng.randint(1, 3)),
        "Release": lambda: pb.ReleaseRequest(reservation_id=rid),
        "Extend": lambda: pb.ExtendRequest(reservation_id=rid, ttl_ms=runner.max_ttl_ms),
        "GetBudget": lambda: pb.GetBudgetRequest(scope=s.pb()),
        "Feedback": lambda: pb.FeedbackRequest(reservation_id=rid, score=0.5, source=pb.FEEDBACK_SOURCE_USER),
        "GetQuality": lambda: pb.GetQualityRequest(),
        "Escalate": lambda: pb.EscalateRequest(reservation_id=rid, scope=s.pb(), prompt=prompt(rng)),
        "SetPoolCap": lambda: pb.SetPoolCapRequest(pool_id="org:vault2", cap_nanos=10**12, reason="garbage"),
        "TopUp": lambda: pb.TopUpRequest(pool_id="org:vault2", amount_nanos=10**9, reason="garbage"),
        "ResetWindow": lambda: pb.ResetWindowRequest(pool_id="org:vault2", reason="garbage"),
        "EndReservation": lambda: pb.EndReservationRequest(reservation_id=fake_rid(rng, "vault"), reason="garbage"),
    }[method]()
    return msg.SerializeToString()


def pick_who(rng: random.Random) -> Caller | str | None:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(TENANTS)
    if roll < 0.6:
        return ADMIN
    if roll < 0.75:
        return rng.choice(["Bearer tok-nope", "Bearer ", "Basic dXNlcjpwYXNz", "bearer  ", "Bearer acme.eu",
                           "Bearer " + "t" * 4000])
    return None


async def garbage(runner: Runner, rng: random.Random, ref: int) -> None:
    method = rng.choice(sorted(METHODS))
    name = rng.choice(sorted(GENERATORS))
    who = pick_who(rng)
    caller = who if isinstance(who, Caller) else rng.choice(TENANTS)
    body = GENERATORS[name](rng, sample_request(runner, rng, method, caller))
    await runner.call("garbage", method, body, who, what=name)


# -- cross-tenant -------------------------------------------------------------------------------

# Attacker -> victim orgs (and teams) that look alike: tried more often than a random pair.
LOOKALIKE_PAIRS = (("eu-app", "acme.eu"), ("acme-app", "acme.eu"), ("eu-search", "acme.eu"),
                   ("acme-eu-app", "eu"), ("acme-eu-app", "acme"), ("acme-search", "acme"), ("eu-search", "eu"))


def owner_of(scope: HonestScope) -> Caller:
    """A caller allowed to read ``scope``: its tenant, or the operator for orgs nobody is granted."""
    c = ORG_CALLERS.get(scope.org)
    return c if c is not None else ADMIN


def victims(scope: HonestScope) -> tuple[tuple[Caller, HonestScope], ...]:
    owner = owner_of(scope)
    org = HonestScope(scope.org)
    return ((owner, scope),) if scope == org else ((owner, scope), (owner, org))


def attacker_and_hold(runner: Runner, rng: random.Random) -> tuple[Caller, Held] | None:
    holds = runner.book.open_holds()
    if rng.random() < 0.6:
        attacker_name, org = rng.choice(LOOKALIKE_PAIRS)
        attacker = CALLERS[attacker_name]
        pool = [h for h in holds if h.scope.org == org and not attacker.permits(h.scope.org, h.scope.team)]
        if pool:
            return attacker, rng.choice(pool)
    attacker = rng.choice(TENANTS)
    pool = [h for h in holds if not attacker.permits(h.scope.org, h.scope.team)]
    return (attacker, rng.choice(pool)) if pool else None


def rid_attack(runner: Runner, rng: random.Random, rid: str, attacker: Caller, victim: HonestScope) -> tuple[
        str, pb.Message]:
    method = rng.choice(["Commit", "Commit", "Release", "Extend", "Feedback", "Escalate", "Escalate"])
    req: pb.Message
    if method == "Commit":
        req = pb.CommitRequest(reservation_id=rid, usage=usage(rng))
    elif method == "Release":
        req = pb.ReleaseRequest(reservation_id=rid)
    elif method == "Extend":
        req = pb.ExtendRequest(reservation_id=rid, ttl_ms=long_ttl(runner, rng))
    elif method == "Feedback":
        req = pb.FeedbackRequest(reservation_id=rid, score=rng.random(), source=pb.FEEDBACK_SOURCE_USER)
    else:
        scope = victim if rng.random() < 0.5 else own_scope(rng, attacker)
        req = pb.EscalateRequest(reservation_id=rid, scope=scope.pb(), prompt=prompt(rng), reason="tests_failed",
                                 usage=usage(rng) if rng.random() < 0.5 else None)
    return method, req


async def xt_rid_real(runner: Runner, rng: random.Random, ref: int) -> None:
    """Another tenant's real reservation id, as handed out by the sidecar."""
    found = attacker_and_hold(runner, rng)
    if found is None:
        await reserve(runner, "xt.rid_real", rng, rng.choice(TENANTS))
        return
    attacker, held = found
    method, req = rid_attack(runner, rng, held.rid, attacker, held.scope)
    await runner.call("xt.rid_real", method, req, attacker, expect=DENIED, must_fail=True,
                      cross=runner.cross(victims(held.scope)), what=f"on {held.caller}'s {held.rid}")


async def xt_rid_batch(runner: Runner, rng: random.Random, ref: int) -> None:
    """Another tenant's real reservation slipped into a CommitBatch among the attacker's own commits."""
    found = attacker_and_hold(runner, rng)
    if found is None:
        await reserve(runner, "xt.rid_batch", rng, rng.choice(TENANTS))
        return
    attacker, held = found
    # The attacker's own commit beside it, where it moves none of the victim's pools (an org shared
    # with a team-granted attacker would).
    own = await own_hold(runner, "xt.rid_batch", rng, attacker)
    if own is not None and own.scope.org == held.scope.org:
        release_claim(own)
        own = None
    commits = [pb.CommitRequest(reservation_id=held.rid, usage=usage(rng))]
    if own is not None:
        commits.insert(rng.randrange(2), pb.CommitRequest(reservation_id=own.rid, usage=usage(rng)))
    # The batch itself is answered OK; the victim's commit inside it must be refused (checked per item).
    await runner.call("xt.rid_batch", "CommitBatch", pb.CommitBatchRequest(commits=commits), attacker,
                      cross=runner.cross(victims(held.scope)), what=f"on {held.caller}'s {held.rid}")
    release_claim(own)


async def xt_rid_forged(runner: Runner, rng: random.Random, ref: int) -> None:
    """A real reservation's token under another org: the attacker's own, the victim's tail, look-alikes."""
    found = attacker_and_hold(runner, rng)
    if found is None:
        await reserve(runner, "xt.rid_forged", rng, rng.choice(TENANTS))
        return
    attacker, held = found
    token, org = held.rid.split(".", 1)
    rid = rng.choice([f"{token}.{attacker.org}", f"{token}.{org}.", f"{token}.{org.rsplit('.', 1)[-1]}",
                      f"{token}.{org}.{attacker.org}", f"{token}..{org}", f"{token.upper()}.{org}",
                      f"{token}.{org.upper()}", f"{token}.{attacker.org}.{org}", f"{token[:-1]}0.{org}"])
    method, req = rid_attack(runner, rng, rid, attacker, held.scope)
    real = runner.book.holds.get(rid)
    legit = real is not None and attacker.permits(real.scope.org, real.scope.team)
    await runner.call("xt.rid_forged", method, req, attacker, expect=None if legit else DENIED, must_fail=not legit,
                      cross=runner.cross(victims(held.scope)), what=f"forged {rid[:80]}")


async def xt_rid_guess(runner: Runner, rng: random.Random, ref: int) -> None:
    attacker = rng.choice(TENANTS)
    org = rng.choice([o for o in (*TENANT_ORGS, *LOOKALIKE_ORGS) if not attacker.permits(o)])
    scope = HonestScope(org)
    method, req = rid_attack(runner, rng, fake_rid(rng, org), attacker, scope)
    await runner.call("xt.rid_guess", method, req, attacker, expect=DENIED, must_fail=True,
                      cross=runner.cross(victims(scope)), what=f"guessed in {org}")


def victim_scope(rng: random.Random, attacker: Caller) -> HonestScope:
    if attacker.scopes[0].team and rng.random() < 0.5:
        # A team caller outside its team: the org itself, or a sibling team.
        org = attacker.org
        return rng.choice([HonestScope(org), HonestScope(org, "ads", "x"), HonestScope(org, "searc"),
                           HonestScope(org, "search.", "sam")])
    if rng.random() < 0.35:
        return HonestScope(rng.choice(LOOKALIKE_ORGS), rng.choice(["", "search"]))
    others = [c for c in ORG_CALLERS.values() if not attacker.permits(c.org)]
    victim = rng.choice(others)
    return own_scope(rng, victim)


async def xt_scope(runner: Runner, rng: random.Random, ref: int) -> None:
    """The attacker's own credentials, another tenant's scope."""
    attacker = rng.choice(TENANTS)
    scope = victim_scope(rng, attacker)
    if attacker.permits(scope.org, scope.team):
        return
    method = rng.choice(["Route", "Reserve", "GetBudget", "Escalate"])
    req: pb.Message
    if method == "Route":
        req = pb.RouteRequest(scope=scope.pb(), prompt=prompt(rng), reserve=rng.random() < 0.8,
                              signals=pb.TaskSignals(task_type=task(rng)))
    elif method == "Reserve":
        req = pb.ReserveRequest(scope=scope.pb(), model=MODEL, prompt=prompt(rng), task_type="extract")
    elif method == "GetBudget":
        req = pb.GetBudgetRequest(scope=scope.pb())
    else:
        mine = runner.open_holds(callers=[attacker.name], free=False)
        rid = rng.choice(mine).rid if mine else fake_rid(rng, attacker.org)
        req = pb.EscalateRequest(reservation_id=rid, scope=scope.pb(), prompt=prompt(rng), reason="low_confidence")
    await runner.call("xt.scope", method, req, attacker, expect=DENIED, must_fail=True,
                      cross=runner.cross(victims(scope)), what=f"in {scope}")


async def xt_admin(runner: Runner, rng: random.Random, ref: int) -> None:
    """The admin API, and GetQuality, with a tenant's token: on its own pools and on others'."""
    attacker = rng.choice(TENANTS)
    scope = own_scope(rng, attacker) if rng.random() < 0.5 else victim_scope(rng, attacker)
    pool = f"org:{scope.org}" if not scope.team else f"team:{scope.org}/{scope.team}"
    method = rng.choice(["SetPoolCap", "TopUp", "ResetWindow", "EndReservation", "GetQuality"])
    req: pb.Message
    if method == "SetPoolCap":
        req = pb.SetPoolCapRequest(pool_id=pool, cap_nanos=rng.choice([0, 10**15]), reason="mine now")
    elif method == "TopUp":
        req = pb.TopUpRequest(pool_id=pool, amount_nanos=10**15, reason="free money")
    elif method == "ResetWindow":
        req = pb.ResetWindowRequest(pool_id=pool, reason="again")
    elif method == "EndReservation":
        holds = runner.book.open_holds()
        rid = rng.choice(holds).rid if holds else fake_rid(rng, scope.org)
        req = pb.EndReservationRequest(reservation_id=rid, charge=rng.random() < 0.5, reason="not mine")
    else:
        req = pb.GetQualityRequest()
    await runner.call("xt.admin", method, req, attacker, expect=frozenset({C.PERMISSION_DENIED}), must_fail=True,
                      cross=runner.cross(victims(HonestScope(scope.org))), what=f"on {pool}")


async def xt_idem(runner: Runner, rng: random.Random, ref: int) -> None:
    """Another tenant's idempotency key, in the attacker's own scope: a reservation of its own, never theirs."""
    if not runner.keys:
        await honest_reserve_open(runner, rng, ref)
        return
    owner, key = rng.choice(runner.keys)
    attacker = rng.choice([c for c in TENANTS if c.org != owner.org])
    s = own_scope(rng, attacker)
    await runner.call("xt.idem", "Reserve", pb.ReserveRequest(
        scope=s.pb(), model=MODEL, prompt=prompt(rng), task_type="extract",
        reservation=pb.ReservationOptions(idempotency_key=key, ttl_ms=runner.max_ttl_ms)), attacker,
        what=f"{owner.name}'s key")


# -- hostile values on one's own scope ------------------------------------------------------------


async def hv_scope_ids(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    base = own_scope(rng, c)
    field = rng.choice(["org", "team", "user", "session", "user", "session"])
    value, valid = hostile_id(rng)
    if field == "org":
        value = rng.choice([c.org + ".", c.org + "\x00", c.org.upper(), " " + c.org, c.org + "/x", "",
                            c.org + "." * (129 - len(c.org)), value, c.org + "\u200b"])
        valid = bool(ID.fullmatch(value))
    scope = HonestScope(**{**base.__dict__, field: value})
    permitted = c.permits(scope.org, scope.team)
    expect = None if valid and permitted else frozenset({C.PERMISSION_DENIED}) if valid else frozenset(
        {C.INVALID_ARGUMENT, C.PERMISSION_DENIED})
    if field == "org" and not value:
        expect = frozenset({C.INVALID_ARGUMENT, C.PERMISSION_DENIED})
    method = rng.choice(["Route", "Reserve", "GetBudget"])
    req: pb.Message
    if method == "Route":
        req = pb.RouteRequest(scope=scope.pb(), prompt=prompt(rng), reserve=rng.random() < 0.5,
                              signals=pb.TaskSignals(task_type="extract"),
                              reservation=pb.ReservationOptions(ttl_ms=runner.max_ttl_ms))
    elif method == "Reserve":
        req = pb.ReserveRequest(scope=scope.pb(), model=MODEL, prompt=prompt(rng),
                                reservation=pb.ReservationOptions(ttl_ms=runner.max_ttl_ms))
    else:
        req = pb.GetBudgetRequest(scope=scope.pb())
    cross = None if permitted or not valid else runner.cross(victims(HonestScope(scope.org)))
    await runner.call("hv.scope_ids", method, req, c, expect=expect, must_fail=not (valid and permitted),
                      cross=cross, what=f"scope.{field}={value[:40]!r}")


async def hv_numbers(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    s = own_scope(rng, c)
    limit = runner.limits.max_tokens
    field = rng.choice(["max_output_tokens", "input_tokens", "ttl_ms"])
    values = [*INT64, limit, limit + 1, runner.max_ttl_ms, runner.max_ttl_ms + 1, 16_384, 16_385]
    value = rng.choice(values)
    if field == "ttl_ms" and runner.sequential and 0 <= value < runner.max_ttl_ms // 2:
        value = rng.choice([-1, INT64_MAX, runner.max_ttl_ms + 1, runner.max_ttl_ms])
    ttl = value if field == "ttl_ms" else runner.max_ttl_ms
    bound = runner.max_ttl_ms if field == "ttl_ms" else limit
    valid = 0 <= value <= bound
    p = pb.Prompt(input_tokens=value) if field == "input_tokens" else prompt(rng)
    mot = value if field == "max_output_tokens" else 0
    options = pb.ReservationOptions(ttl_ms=ttl)
    req: pb.Message
    if rng.random() < 0.5:
        method = "Reserve"
        req = pb.ReserveRequest(scope=s.pb(), model=MODEL, prompt=p, max_output_tokens=mot, reservation=options)
    else:
        method = "Route"
        req = pb.RouteRequest(scope=s.pb(), prompt=p, max_output_tokens=mot, reserve=True, reservation=options,
                              signals=pb.TaskSignals(task_type=task(rng)))
    await runner.call("hv.numbers", method, req, c, expect=None if valid else INVALID, must_fail=not valid,
                      what=f"{field}={value}")


async def hv_usage(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    held = await own_hold(runner, "hv.usage", rng, c)
    if held is None:
        return
    limit = runner.limits.max_tokens
    edges = [*INT64, limit, limit + 1, 100, 10_000]
    u = pb.Usage(input_tokens=rng.choice(edges) if rng.random() < 0.6 else 100,
                 cached_input_tokens=rng.choice(edges) if rng.random() < 0.3 else 0,
                 output_tokens=rng.choice(edges) if rng.random() < 0.6 else 50,
                 reasoning_tokens=rng.choice(edges) if rng.random() < 0.3 else 0)
    figures = (u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens)
    valid = all(0 <= v <= limit for v in figures) and u.cached_input_tokens <= u.input_tokens
    if valid and max(figures) > 100_000:
        u.output_tokens, u.reasoning_tokens = min(u.output_tokens, 100_000), min(u.reasoning_tokens, 100_000)
        u.input_tokens = min(u.input_tokens, 100_000)
        u.cached_input_tokens = min(u.cached_input_tokens, u.input_tokens)
    await runner.call("hv.usage", "Commit", pb.CommitRequest(reservation_id=held.rid, usage=u), c,
                      expect=None if valid else INVALID, must_fail=not valid, what=f"usage {figures}")
    release_claim(held)


async def hv_float(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    rid, known = some_rid(runner, rng, c)
    score = rng.choice([math.nan, math.inf, -math.inf, -0.0, -1e-9, 1.0000001, 1e308, -1e308, 5e-324, 0.0, 1.0, 0.5])
    valid = 0.0 <= score <= 1.0
    await runner.call("hv.float", "Feedback", pb.FeedbackRequest(reservation_id=rid, score=score,
                                                                 source=pb.FEEDBACK_SOURCE_AUTOMATED_EVAL), c,
                      expect=None if valid else INVALID if known else INVALID | {C.NOT_FOUND}, must_fail=not valid,
                      what=f"score={score}")


def some_rid(runner: Runner, rng: random.Random, c: Caller) -> tuple[str, bool]:
    """One of ``c``'s reservations (in any state) it may use, or a made-up id of its org; and which."""
    mine = [h for h in runner.book.holds.values() if h.caller == c.name and c.permits(h.scope.org, h.scope.team)
            and any(p.startswith("team:") for p in h.pools) >= bool(c.scopes[0].team)]
    return (rng.choice(mine).rid, True) if mine else (fake_rid(rng, c.org), False)


async def hv_enums(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    s = own_scope(rng, c)
    which = rng.choice(["priority", "latency", "source"])
    # One past each enum's last value, far past it, and negative.
    last = {"priority": pb.PRIORITY_HIGH, "latency": pb.LATENCY_CLASS_SLOW,
            "source": pb.FEEDBACK_SOURCE_HUMAN_REVIEW}[which]
    bad = rng.choice([last + 1, last + 5, 99, -1, 2**31 - 1, -(2**31)])
    req: pb.Message
    if which == "priority":
        method, req = "GetBudget", pb.GetBudgetRequest(scope=s.pb(priority=bad))
    elif which == "latency":
        method, req = "Route", pb.RouteRequest(scope=s.pb(), prompt=prompt(rng),
                                               signals=pb.TaskSignals(task_type="extract", latency=bad))
    else:
        rid, known = some_rid(runner, rng, c)
        method, req = "Feedback", pb.FeedbackRequest(reservation_id=rid, score=0.5, source=rng.choice([bad, 0]))
    await runner.call("hv.enums", method, req, c, expect=INVALID if which != "source" or known else INVALID | {
        C.NOT_FOUND}, must_fail=True, what=f"{which}={bad}")


async def hv_strings(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    s = own_scope(rng, c)
    which = rng.choice(["model", "task_type", "agent_mode", "min_tier", "key", "role", "tags", "reason"])
    req: pb.Message
    expect: frozenset[grpc.StatusCode] | None = INVALID
    method = "Route"
    if which == "model":
        model = rng.choice(["", "gpt-4o-mini ", "GPT-4O-MINI", "x" * 10_000, "gpt-4o-mini\x00", "gpt-4o-mini\n",
                            "gpt‐4o‐mini", "../gpt-4o", "*"])
        method, req = "Reserve", pb.ReserveRequest(scope=s.pb(), model=model, prompt=prompt(rng))
    elif which in ("task_type", "agent_mode", "min_tier"):
        value, valid = hostile_id(rng)
        if which == "min_tier":
            value, valid = rng.choice(["ultra", "CHEAP", "cheap ", "", "frontier\x00", "m" * 10_000]), False
        if valid:
            expect = None
        req = pb.RouteRequest(scope=s.pb(), prompt=prompt(rng), signals=pb.TaskSignals(**{which: value}))
        if which == "min_tier" and value == "":
            expect = None
    elif which == "key":
        key = rng.choice(["k" * 128, "k" * 129, "a key", "clé", "k\x7f", "k\n", "\x00", "k" * 100_000])
        valid = 1 <= len(key) <= 128 and all(0x21 <= ord(ch) <= 0x7E for ch in key)
        expect = None if valid else INVALID
        method, req = "Reserve", pb.ReserveRequest(scope=s.pb(), model=MODEL, prompt=prompt(rng), reservation=pb.
                                                   ReservationOptions(idempotency_key=key, ttl_ms=runner.max_ttl_ms))
    elif which == "role":
        role = rng.choice(["", "root", "USER", "user\x00", "system ", "x" * 5000])
        req = pb.RouteRequest(scope=s.pb(), prompt=pb.Prompt(messages=pb.Messages(items=[
            pb.Message(role=role, content="hello")])))
    elif which == "tags":
        n, klen, vlen = rng.choice([(runner.limits.max_tags + 1, 4, 4), (1, 65, 1), (1, 1, 257), (2, 64, 256)])
        tags = {("k" * klen)[: klen - len(str(i))] + str(i): "v" * vlen for i in range(n)}
        valid = n <= runner.limits.max_tags and klen <= 64 and vlen <= 256
        expect = None if valid else INVALID
        req = pb.RouteRequest(scope=s.pb(tags=tags), prompt=prompt(rng))
    else:
        held = await own_hold(runner, "hv.strings", rng, c)
        rid = held.rid if held else fake_rid(rng, c.org)
        reason = rng.choice(["a" * 65, "bad\nreason", "é", "x:y", "", "-lead", "invalid_json", "r" * 10_000])
        valid = reason in ("", "invalid_json", "x:y")
        expect = None if valid else INVALID
        method, req = "Escalate", pb.EscalateRequest(reservation_id=rid, scope=(held.scope if held else s).pb(),
                                                     prompt=prompt(rng), reason=reason)
        await runner.call("hv.strings", method, req, c, expect=expect, must_fail=expect is not None,
                          what=f"reason={reason[:30]!r}")
        release_claim(held)
        return
    await runner.call("hv.strings", method, req, c, expect=expect, must_fail=expect is not None, what=which)


async def hv_rid(runner: Runner, rng: random.Random, ref: int) -> None:
    """Malformed reservation ids of one's own org."""
    c = rng.choice([t for t in TENANTS if not t.scopes[0].team])
    org = c.org
    token = f"{rng.getrandbits(96):024x}"
    rid = rng.choice([f"{token[:-1]}.{org}", f"{token}0.{org}", f"{token.upper()}.{org}", f"{token}{org}",
                      f"{token}.", f".{org}", f"{token}.{org}\n", f"{token}.{org}/x", f"{token}. {org}",
                      f"{token}.{'a' * 129}", "", f"{'g' * 24}.{org}", f"{token}.{org}", f"{token}:{org}",
                      f"{token}.{org}\x00", f"{token}.{org}é", f"tg:{{{org}}}:r:{token}", f"{token}.*"])
    method = rng.choice(["Commit", "Release", "Extend", "Feedback", "Escalate", "EndReservation"])
    req: pb.Message
    who = c
    if method == "Commit":
        req = pb.CommitRequest(reservation_id=rid, usage=usage(rng))
    elif method == "Release":
        req = pb.ReleaseRequest(reservation_id=rid)
    elif method == "Extend":
        req = pb.ExtendRequest(reservation_id=rid, ttl_ms=runner.max_ttl_ms)
    elif method == "Feedback":
        req = pb.FeedbackRequest(reservation_id=rid, score=0.5, source=pb.FEEDBACK_SOURCE_USER)
    elif method == "Escalate":
        req = pb.EscalateRequest(reservation_id=rid, scope=pb.Scope(org_id=org), prompt=prompt(rng))
    else:
        who = ADMIN
        req = pb.EndReservationRequest(reservation_id=rid, reason="hostile id")
    await runner.call("hv.rid", method, req, who, expect=frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND,
                                                                     C.PERMISSION_DENIED}),
                      must_fail=True, what=f"rid={rid[:60]!r}")


async def hv_extend(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    held = await own_hold(runner, "hv.extend", rng, c)
    if held is None:
        return
    invalid = [-1, -(2**63), INT64_MAX, runner.max_ttl_ms + 1, 2**31, 10**12, 2**32]
    valid = [runner.max_ttl_ms] if runner.sequential else [0, 1, 50, 1000, runner.max_ttl_ms]
    ttl = rng.choice(invalid + valid)
    ok = ttl in valid
    await runner.call("hv.extend", "Extend", pb.ExtendRequest(reservation_id=held.rid, ttl_ms=ttl), c,
                      expect=None if ok else INVALID, must_fail=not ok, what=f"ttl_ms={ttl}")
    release_claim(held)


async def hv_commit_twice(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    held = await own_hold(runner, "hv.commit_twice", rng, c)
    if held is None:
        return
    first = usage(rng)
    r = await runner.call("hv.commit_twice", "Commit", pb.CommitRequest(reservation_id=held.rid, usage=first), c)
    if r.ok:
        again = await runner.call("hv.commit_twice", "Commit", pb.CommitRequest(reservation_id=held.rid, usage=first),
                                  c, expect=frozenset({C.OK}), what="same figures")
        if again.ok and isinstance(again.response, pb.CommitResponse) and not again.response.replayed:
            runner.violation("status", "hv.commit_twice", "Commit", f"a repeated commit of {held.rid} with the same "
                             "figures was not marked replayed")
        other = pb.Usage(input_tokens=first.input_tokens + 1, output_tokens=first.output_tokens)
        await runner.call("hv.commit_twice", "Commit", pb.CommitRequest(reservation_id=held.rid, usage=other), c,
                          expect=frozenset({C.FAILED_PRECONDITION}), must_fail=True, what="other figures")
        await runner.call("hv.commit_twice", "Release", pb.ReleaseRequest(reservation_id=held.rid), c,
                          expect=frozenset({C.FAILED_PRECONDITION}), must_fail=True, what="after commit")
    release_claim(held)


async def hv_escalate(runner: Runner, rng: random.Random, ref: int) -> None:
    c = rng.choice(TENANTS)
    held = await own_hold(runner, "hv.escalate", rng, c)
    if held is None:
        return
    which = rng.choice(["model", "max_output", "usage", "chain", "ttl"])
    base = {"reservation_id": held.rid, "scope": held.scope.pb(), "prompt": prompt(rng),
            "reservation": pb.ReservationOptions(ttl_ms=runner.max_ttl_ms)}
    if which == "chain":
        rid = held.rid
        for attempt in range(4):
            r = await runner.call("hv.escalate", "Escalate", pb.EscalateRequest(**{**base, "reservation_id": rid}), c,
                                  what=f"chain {attempt}")
            if not r.ok or not isinstance(r.response, pb.EscalateResponse):
                if r.code not in (C.OUT_OF_RANGE, C.RESOURCE_EXHAUSTED):
                    runner.violation("status", "hv.escalate", "Escalate", f"escalation {attempt + 2} of a chain "
                                     f"answered {r.code.name} {r.details[:160]!r}; want OUT_OF_RANGE at the limit")
                break
            rid = r.response.reservation.reservation_id
        release_claim(held)
        return
    options: dict[str, dict[str, object]] = {
        "model": {"model": rng.choice(["nope", "", "x" * 300, "gpt-4o-mini\n", "x" * 10_000])},
        "max_output": {"max_output_tokens": rng.choice([-1, INT64_MAX, -(2**63)])},
        "usage": {"usage": pb.Usage(input_tokens=-1, output_tokens=INT64_MAX)},
        "ttl": {"reservation": pb.ReservationOptions(ttl_ms=rng.choice([-1, INT64_MAX]))},
    }
    extra = options[which]
    valid = extra.get("model") == ""
    # OUT_OF_RANGE too: the reservation may itself be an escalation at the depth limit, checked first.
    await runner.call("hv.escalate", "Escalate", pb.EscalateRequest(**{**base, **extra}), c,  # type: ignore[arg-type]
                      expect=None if valid else INVALID | {C.OUT_OF_RANGE}, must_fail=not valid, what=which)
    release_claim(held)


async def hv_impatient(runner: Runner, rng: random.Random, ref: int) -> None:
    """A caller that gives up before the answer: its hold is undone, or found again by its key."""
    c = rng.choice(TENANTS)
    s = own_scope(rng, c)
    keyed = rng.random() < 0.4
    options = pb.ReservationOptions(ttl_ms=runner.max_ttl_ms,
                                    idempotency_key=f"late-{ref}-{rng.getrandbits(32):08x}" if keyed else "")
    req: pb.Message
    if rng.random() < 0.5:
        method, req = "Reserve", pb.ReserveRequest(scope=s.pb(), model=MODEL, prompt=prompt(rng), task_type="extract",
                                                   reservation=options)
    else:
        method, req = "Route", pb.RouteRequest(scope=s.pb(), prompt=prompt(rng), reserve=True, reservation=options,
                                               signals=pb.TaskSignals(task_type="extract"))
    before = (await runner.read_pools([(c, s)]))[0] if runner.sequential else []
    told = runner.book.expected()
    deadline = rng.choice([0.0005, 0.001, 0.002, 0.004, 0.008, 0.015])
    r = await runner.call("hv.impatient", method, req, c, deadline_s=deadline, lost_ok=True, what=f"{deadline}s")
    if r.code == C.DEADLINE_EXCEEDED and keyed:
        await runner.call("hv.impatient", method, req, c, expect=frozenset({C.OK}), what="retry with its key")
    if runner.sequential:
        await asyncio.sleep(0.1)
        await runner.moved_as_told("hv.impatient", method, c, s, before, told, f"gave up after {deadline}s")


async def fault_stall(runner: Runner, rng: random.Random, ref: int) -> None:
    """The Redis store freezes around a few calls of one tenant: answers are UNAVAILABLE or the truth."""
    if runner.redis_url is None:
        await honest_reserve_open(runner, rng, ref)
        return
    c = rng.choice(TENANTS)
    s = own_scope(rng, c)
    before = (await runner.read_pools([(c, s)]))[0] if runner.sequential else []
    told = runner.book.expected()
    seconds = rng.choice([0.15, 0.22, 0.24, 0.25, 0.26, 0.3, 0.5, 0.8])
    mine = [h for h in runner.open_holds(callers=[c.name]) if h.scope == s][:2]
    for h in mine:
        h.claimed = True
    key = f"stall-{ref}-{rng.getrandbits(32):08x}"
    ttl = runner.max_ttl_ms
    calls = [
        runner.call("fault.stall", "Reserve", pb.ReserveRequest(scope=s.pb(), model=MODEL, prompt=prompt(rng),
                                                                 reservation=pb.ReservationOptions(ttl_ms=ttl)), c),
        runner.call("fault.stall", "Reserve", pb.ReserveRequest(
            scope=s.pb(), model=MODEL, prompt=prompt(rng),
            reservation=pb.ReservationOptions(ttl_ms=ttl, idempotency_key=key)), c, what="keyed"),
        runner.call("fault.stall", "Route", pb.RouteRequest(scope=s.pb(), prompt=prompt(rng), reserve=True,
                                                             reservation=pb.ReservationOptions(ttl_ms=ttl),
                                                             signals=pb.TaskSignals(task_type="extract")), c),
    ]
    if mine:
        commit = pb.CommitRequest(reservation_id=mine[0].rid, usage=usage(rng))
        # Alone, or in a batch, as the clients' background senders send it: each item answers as Commit would.
        calls.append(runner.call("fault.stall", "Commit", commit, c) if rng.random() < 0.5 else
                     runner.call("fault.stall", "CommitBatch", pb.CommitBatchRequest(commits=[commit]), c))
    if len(mine) > 1:
        calls.append(runner.call("fault.stall", "Release", pb.ReleaseRequest(reservation_id=mine[1].rid), c))
    token = GROUPED.set(True)
    try:
        stall = asyncio.create_task(runner.stall(seconds))
        await asyncio.sleep(rng.choice([0.0, 0.005, 0.02]))
        await asyncio.gather(*calls)
        await stall
    finally:
        GROUPED.reset(token)
    for h in mine:
        h.claimed = False
    if runner.sequential:
        # A reserve the sidecar gave up on is undone once Redis answers again: read until then.
        await asyncio.sleep(0.3)
        await runner.moved_as_told("fault.stall", "-", c, s, before, told, f"after a {seconds}s stall",
                                   patience_s=10.0)


# -- the operator's API -------------------------------------------------------------------------

ADMIN_POOLS = ("team:vault/ops", "org:vault2", "user:vault/root", "org:acme.eu.", "org:acme..eu", "session:vault/v1")
BAD_POOL_IDS = ("org:", "org:vault/x", "user:vault", "org:{vault}", "org:vault\n", "org:" + "v" * 129, "nope:vault",
                "org:vault:x", "ORG:vault", "", "org: vault", "team:vault/", "team:/ops", "org:vault\x00",
                "org:" + "v" * 100_000, "request:vault", "quality:vault")


def pool_valid(pool: str) -> bool:
    level, _, rest = pool.partition(":")
    if level in ("org", "quality"):
        return bool(ID.fullmatch(rest))
    if level in ("team", "user", "session"):
        org, _, member = rest.partition("/")
        return bool(ID.fullmatch(org)) and bool(ID.fullmatch(member))
    return False


async def adm_topup(runner: Runner, rng: random.Random, ref: int) -> None:
    """Top-ups of the vault, whose cap is a hair short of int64: the sum passes int64 at the first one."""
    pool = rng.choice(["org:vault", "org:vault", "team:vault/ops", *ADMIN_POOLS[1:3]])
    amount = rng.choice([10**15, 10**15, 1, INT64_MAX, -1, 0, 10**15 + 1, -(2**63), 2**62, 2**52, 2**52 + 1])
    # Positive amounts may be refused (the pool would pass its largest cap) or not: either way
    # the answer is the truth, which the sequential phase checks against the ledger.
    valid = amount > 0
    r = await runner.call("adm.topup", "TopUp", pb.TopUpRequest(pool_id=pool, amount_nanos=amount, reason="hostile"),
                          ADMIN, expect=None if valid else INVALID, must_fail=not valid, what=f"{pool} +{amount}")
    if r.ok and isinstance(r.response, pb.TopUpResponse):
        b, a = r.response.before, r.response.after
        if a.cap_nanos < b.cap_nanos or a.remaining_nanos < b.remaining_nanos:
            runner.violation("status", "adm.topup", "TopUp", f"a top-up of {amount} on {pool} lowered the pool: "
                             f"cap {b.cap_nanos}->{a.cap_nanos}, remaining {b.remaining_nanos}->{a.remaining_nanos}")


async def adm_setcap(runner: Runner, rng: random.Random, ref: int) -> None:
    pool = rng.choice([*ADMIN_POOLS, *BAD_POOL_IDS])
    cap = rng.choice([-1, 0, 10**15, 10**15 + 1, INT64_MAX, 5 * 10**9, -(2**63)])
    valid = cap >= 0 and pool_valid(pool)
    await runner.call("adm.setcap", "SetPoolCap", pb.SetPoolCapRequest(pool_id=pool, cap_nanos=cap, reason="hostile"),
                      ADMIN, expect=None if valid else INVALID, must_fail=not valid, what=f"{pool[:40]!r} cap {cap}")


async def adm_reset(runner: Runner, rng: random.Random, ref: int) -> None:
    pool = rng.choice(["org:vault", *ADMIN_POOLS, *BAD_POOL_IDS])
    reason = rng.choice(["hostile", "two\nlines", "r" * 501, "nul\x00"])
    valid = pool_valid(pool) and reason == "hostile"
    await runner.call("adm.reset", "ResetWindow", pb.ResetWindowRequest(pool_id=pool, reason=reason), ADMIN,
                      expect=None if valid else INVALID, must_fail=not valid, what=f"{pool[:40]!r}")


async def adm_end(runner: Runner, rng: random.Random, ref: int) -> None:
    holds = runner.open_holds()
    roll = rng.random()
    if roll < 0.5 and holds:
        held = rng.choice(holds)
        held.claimed = True
        await runner.call("adm.end", "EndReservation", pb.EndReservationRequest(
            reservation_id=held.rid, charge=rng.random() < 0.5, reason="stuck"), ADMIN,
            expect=frozenset({C.OK, C.FAILED_PRECONDITION}), what=f"{held.caller}'s {held.rid}")
        release_claim(held)
        return
    rid = rng.choice([fake_rid(rng, rng.choice(TENANT_ORGS)), "", "x" * 300, f"{'0' * 24}.", "a.b.c",
                      fake_rid(rng, "acme.eu.")])
    await runner.call("adm.end", "EndReservation", pb.EndReservationRequest(reservation_id=rid, reason="hostile"),
                      ADMIN, expect=frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND}), must_fail=True, what=f"{rid[:40]!r}")


async def adm_vault(runner: Runner, rng: random.Random, ref: int) -> None:
    """The operator's own spending on the vault, whose pools the top-ups push towards int64."""
    scope = rng.choice(ADMIN.scopes)
    held = await reserve(runner, "adm.vault", rng, ADMIN, scope)
    if held is not None and held.state == "open" and not held.claimed:
        held.claimed = True
        if rng.random() < 0.5:
            await runner.call("adm.vault", "Commit", pb.CommitRequest(reservation_id=held.rid, usage=usage(rng)), ADMIN)
        else:
            await runner.call("adm.vault", "Release", pb.ReleaseRequest(reservation_id=held.rid), ADMIN)
        release_claim(held)
    await runner.call("adm.vault", "GetBudget", pb.GetBudgetRequest(scope=scope.pb()), ADMIN)


# -- oversized input ----------------------------------------------------------------------------

MESSAGE = ld(1, b"user") + ld(2, b"x")
HUGE_N = 100_000


def _cached(runner: Runner, key: tuple[str, ...], build: Callable[[], bytes]) -> bytes:
    body = runner.cache.get(key)
    if body is None:
        body = runner.cache[key] = build()
    return body


def _scope_bytes(scope: HonestScope) -> bytes:
    return scope.pb().SerializeToString()


def _messages_prompt() -> bytes:
    return ld(1, ld(1, MESSAGE) * HUGE_N)


def _tags_scope(org: str) -> bytes:
    tags = b"".join(ld(5, ld(1, b"k%d" % i) + ld(2, b"v")) for i in range(HUGE_N))
    return ld(1, org.encode()) + tags


def _big(runner: Runner) -> int:
    """A size under the server's message limit, with room for the rest of the request."""
    return min(15_000_000, runner.limits.max_message_bytes - 4096)


HUGE_KINDS = ("messages_route", "tags_getbudget", "rid_commit", "messages_reserve", "tags_route", "rid_release",
              "messages_escalate", "over_limit", "rid_extend", "text_route", "key_reserve", "rid_end",
              "messages_anonymous", "rid_feedback", "reason_topup", "commits_batch")


async def huge(runner: Runner, rng: random.Random, ref: int) -> None:
    name = HUGE_KINDS[ref % len(HUGE_KINDS)]
    if runner.rss_high():
        runner.report.notes.append(f"skipped huge.{name}: the sidecar's RSS passed the campaign's ceiling")
        return
    c = rng.choice([t for t in TENANTS if not t.scopes[0].team])
    s = own_scope(rng, c)
    org = c.org
    big = _big(runner)
    who: Caller | None = c
    expect = SIZE
    prompt_bytes = _cached(runner, ("prompt",), _messages_prompt)
    body: bytes
    if name == "messages_route":
        method, body = "Route", ld(1, _scope_bytes(s)) + ld(2, prompt_bytes)
    elif name == "messages_reserve":
        method, body = "Reserve", ld(1, _scope_bytes(s)) + ld(2, MODEL.encode()) + ld(3, prompt_bytes)
    elif name == "messages_escalate":
        mine = runner.open_holds(callers=[c.name], free=False)
        rid = mine[0].rid if mine else fake_rid(rng, org)
        method, body = "Escalate", ld(1, rid.encode()) + ld(2, _scope_bytes(s)) + ld(3, prompt_bytes)
        expect = frozenset({*SIZE, C.NOT_FOUND})
    elif name == "messages_anonymous":
        who = None
        method, body = "Route", ld(1, _scope_bytes(s)) + ld(2, prompt_bytes)
        expect = frozenset({*SIZE, C.UNAUTHENTICATED})
    elif name == "tags_getbudget":
        method, body = "GetBudget", ld(1, _cached(runner, ("tags", org), lambda: _tags_scope(org)))
    elif name == "tags_route":
        method = "Route"
        body = ld(1, _cached(runner, ("tags", org), lambda: _tags_scope(org))) + ld(2, prompt(rng).SerializeToString())
    elif name.startswith("rid_"):
        # Just under the server's message limit, or 15 MB (over a 4 MiB limit, under a 16 MiB one).
        size = rng.choice([big, 15_000_000])
        rid = rng.choice([f"{rng.getrandbits(96):024x}." + "x" * size + f".{org}", "a" * size,
                          f"{rng.getrandbits(96):024x}.{org}" + "x" * size])
        expect = frozenset({*SIZE, C.PERMISSION_DENIED, C.NOT_FOUND})
        method = {"rid_commit": "Commit", "rid_release": "Release", "rid_extend": "Extend", "rid_feedback": "Feedback",
                  "rid_end": "EndReservation"}[name]
        if method == "EndReservation":
            who = ADMIN
        tail = {"Commit": ld(2, usage(rng).SerializeToString()), "Extend": tag(2, 0) + varint(60_000),
                "Feedback": tag(3, 0) + varint(1)}.get(method, b"")
        body = ld(1, rid.encode()) + tail
    elif name == "commits_batch":
        # Empty commits up to the message limit: millions of items, each an object once parsed.
        method, body = "CommitBatch", _cached(runner, ("commits",), lambda: ld(1, b"") * (big // 2))
    elif name == "over_limit":
        method = rng.choice(sorted(METHODS))
        who = rng.choice([c, ADMIN, None])
        body = _cached(runner, ("over",), lambda: ld(1, b"y" * (runner.limits.max_message_bytes + 1024)))
        expect = frozenset({C.RESOURCE_EXHAUSTED})
    elif name == "text_route":
        text = _cached(runner, ("text",), lambda: ld(1, ld(1, ld(1, b"user") + ld(2, b"z" * big))))
        method, body = "Route", ld(1, _scope_bytes(s)) + ld(2, text)
    elif name == "key_reserve":
        key = _cached(runner, ("key",), lambda: b"k" * big)
        method = "Reserve"
        body = (ld(1, _scope_bytes(s)) + ld(2, MODEL.encode()) + ld(3, prompt(rng).SerializeToString())
                + ld(6, ld(1, key)))
    else:
        method, who = "TopUp", ADMIN
        body = ld(1, b"org:vault2") + tag(2, 0) + varint(1) + ld(3, _cached(runner, ("reason",), lambda: b"r" * big))
    if len(body) > runner.limits.max_message_bytes:
        expect = frozenset({C.RESOURCE_EXHAUSTED})
    async with runner.huge_gate:
        await runner.call(f"huge.{name}", method, body, who, expect=expect, must_fail=True, deadline_s=120,
                          what=f"{len(body)} bytes")


# -- the plan -----------------------------------------------------------------------------------

ACTIONS: dict[str, Action] = {
    "honest.route_commit": honest_route_commit,
    "honest.reserve_release": honest_reserve_release,
    "honest.reserve_open": honest_reserve_open,
    "honest.commit_open": honest_commit_open,
    "honest.commit_batch": honest_commit_batch,
    "honest.extend": honest_extend,
    "honest.getbudget": honest_getbudget,
    "honest.escalate": honest_escalate,
    "honest.feedback": honest_feedback,
    "honest.short_ttl": honest_short_ttl,
    "honest.keyed_first": honest_keyed_first,
    "honest.keyed_retry": honest_keyed_retry,
    "garbage": garbage,
    "xt.scope": xt_scope,
    "xt.rid_real": xt_rid_real,
    "xt.rid_batch": xt_rid_batch,
    "xt.rid_forged": xt_rid_forged,
    "xt.rid_guess": xt_rid_guess,
    "xt.admin": xt_admin,
    "xt.idem": xt_idem,
    "hv.scope_ids": hv_scope_ids,
    "hv.numbers": hv_numbers,
    "hv.usage": hv_usage,
    "hv.float": hv_float,
    "hv.enums": hv_enums,
    "hv.strings": hv_strings,
    "hv.rid": hv_rid,
    "hv.extend": hv_extend,
    "hv.commit_twice": hv_commit_twice,
    "hv.escalate": hv_escalate,
    "adm.topup": adm_topup,
    "adm.setcap": adm_setcap,
    "adm.reset": adm_reset,
    "adm.end": adm_end,
    "adm.vault": adm_vault,
    "huge": huge,
    "hv.impatient": hv_impatient,
    "fault.stall": fault_stall,
}

# kind: (weight, calls it usually makes)
WEIGHTS: dict[str, tuple[float, int]] = {
    "honest.route_commit": (8, 2), "honest.reserve_release": (3, 2), "honest.reserve_open": (5, 1),
    "honest.commit_open": (4, 1), "honest.commit_batch": (1.5, 1), "honest.extend": (1.5, 1),
    "honest.getbudget": (2, 1), "honest.escalate": (1, 1),
    "honest.feedback": (1, 1), "honest.short_ttl": (0.7, 1), "honest.keyed_first": (1.2, 3),
    "garbage": (24, 1),
    "xt.scope": (4, 1), "xt.rid_real": (5, 1), "xt.rid_batch": (1.5, 2), "xt.rid_forged": (2, 1),
    "xt.rid_guess": (1.5, 1), "xt.admin": (1.5, 1), "xt.idem": (0.8, 1),
    "hv.scope_ids": (4, 1), "hv.numbers": (3, 1), "hv.usage": (2, 1), "hv.float": (1.5, 1), "hv.enums": (1.5, 1),
    "hv.strings": (2.5, 1), "hv.rid": (2.5, 1), "hv.extend": (1.5, 1), "hv.commit_twice": (1, 4),
    "hv.escalate": (1.2, 2),
    "adm.topup": (1.5, 1), "adm.setcap": (1, 1), "adm.reset": (0.6, 1), "adm.end": (1, 1), "adm.vault": (1, 3),
    "hv.impatient": (1, 1),
}
STORE_ONLY = {"fault.stall": ("redis", (1.2, 4))}
"""Kinds that only make sense on one store: (store, (weight, calls))."""
CONCURRENT_ONLY = {"honest.short_ttl"}

Step = tuple[str, int, int]


def plan(options: Options, runner: Runner | None = None) -> tuple[list[Step], list[Step]]:
    """The seeded plan: (concurrent part, sequential part), each a list of (kind, seed, ref)."""
    rng = random.Random(options.seed)
    n_huge = max(options.min_huge, round(options.calls * options.huge_share))
    table = {**WEIGHTS, **{k: spec for k, (store, spec) in STORE_ONLY.items() if store == options.store}}
    kinds = sorted(table)
    weights = [table[k][0] for k in kinds]
    steps: list[Step] = []
    total = 0
    while total < options.calls - n_huge:
        kind = rng.choices(kinds, weights)[0]
        steps.append((kind, rng.getrandbits(63), len(steps)))
        total += table[kind][1]
    split_at = options.calls * (1 - options.sequential_share)
    running, split = 0, len(steps)
    for i, (kind, _, _) in enumerate(steps):
        running += table[kind][1]
        if running >= split_at:
            split = i + 1
            break
    parts = [steps[:split], steps[split:]]
    parts[1] = [("honest.reserve_open", s, r) if k in CONCURRENT_ONLY else (k, s, r) for k, s, r in parts[1]]
    out: list[list[Step]] = []
    huge_seen = 0
    for index, part in enumerate(parts):
        # A keyed retry comes 100-400 steps after its first attempt, in the same phase.
        retries: dict[int, list[Step]] = {}
        for i, (kind, seed, ref) in enumerate(part):
            if kind == "honest.keyed_first":
                at = min(i + rng.randint(100, 400), len(part))
                retries.setdefault(at, []).append(("honest.keyed_retry", seed ^ 1, ref))
        merged: list[Step] = []
        for i, step in enumerate(part):
            merged.extend(retries.pop(i, []))
            merged.append(step)
        for rest in retries.values():
            merged.extend(rest)
        # Oversized requests, spread evenly through the phase.
        share = len(part) / max(1, len(steps))
        count = n_huge - huge_seen if index == len(parts) - 1 else round(n_huge * share)
        if count > 0 and merged:
            gap = len(merged) / count
            for j in reversed(range(count)):
                merged.insert(int(j * gap), ("huge", rng.getrandbits(63), huge_seen + j))
        huge_seen += max(count, 0)
        out.append(merged)
    return out[0], out[1]

