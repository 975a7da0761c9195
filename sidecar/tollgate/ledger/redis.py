"""The shared store: the ledger in Redis, for many sidecars spending from the same pools.

Every mutation is one call of ``lua/ledger.lua`` (EVALSHA, reloaded transparently on
NOSCRIPT), so admission across all pools, commit, release, extend and expiry are
each one atomic round trip. The script reads Redis's own clock, so sidecars with
skewed clocks agree on windows and expiry. Every key of an org carries the org as
its hash tag (``tg:{acme}:…``), so each script touches one slot and runs unchanged
on Redis Cluster.

Keys, per org: ``p:<pool>`` counters (hash), ``b:<pool>`` sliding-window buckets
(hash), ``r:<reservation>`` the record (hash), ``d`` open reservations by deadline
(sorted set, swept by any sidecar: the script re-checks the deadline, so each hold
expires exactly once), ``rs`` every record, scored by creation and then by its end
(for the audit, and so records older than the retention are deleted: state stays
bounded while every window can still be recomputed).
Outside any org: ``orgs`` (the orgs to sweep) and ``epoch`` (detects a Redis that
lost its data).

Faults: every call is bounded by ``timeout`` seconds; a refused connection, a
timeout or a cluster error becomes ``StoreUnavailable`` (gRPC UNAVAILABLE), and the
call holds nothing. The sidecar fails closed.

A call the sidecar gave up on may still be in flight (written to a socket of a Redis
that stalled, say) and run later. So that the caller's view holds (an error answer
changes nothing that lasts), every mutation carries a not-after instant on Redis's own
clock (this sidecar's clock plus the offset it last measured, plus the timeout) and the
script refuses to act past it; and a reservation with a fresh id (no idempotency key,
so no caller can ever name it) whose reserve was given up on is released in the
background once Redis answers, in case the script ran just before its deadline and
only the answer was lost. A keyed reserve is found again by the caller's retry.

Why one long module: every method is one script call plus the decoding of its reply, and they
share the key layout, the argument encoding and the clock offset; split, each half would need
the other's private grammar.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster

from ..errors import (
    BudgetExceeded,
    IdempotencyConflict,
    InvalidRequest,
    Limit,
    Refusal,
    ReservationEnded,
    ReservationNotFound,
    StoreUnavailable,
)
from ..ids import pool_org, reservation_org
from ..scope import Level
from .audit import audit_pools
from .local import SpecResolver, refuse_ended
from .pools import PoolState, stateful_pools
from .redis_client import RedisClient, connect, store_errors, text
from .spec import ExpiryPolicy, PoolSpec, WindowKind
from .types import (
    AuditReport,
    CommitOutcome,
    CommitRequest,
    Hold,
    HoldRequest,
    HoldState,
    PoolRef,
    PoolSnapshot,
    ReleaseOutcome,
    ReserveOutcome,
)
from .windows import adjacent_windows, bucket_ms, fixed_window

__all__ = ["RedisStore", "connect"]

log = logging.getLogger("tollgate.ledger.redis")

_SCRIPT = resources.files("tollgate.ledger").joinpath("lua/ledger.lua").read_text()
# Redis's clock and a record's state in one step, keyed so it runs on a cluster too.
_PROBE = ("local t = redis.call('TIME') "
          "return {t[1] * 1000 + math.floor(t[2] / 1000), redis.call('HGET', KEYS[1], 'state')}")
class RedisStore:
    """A ``BudgetStore`` in Redis or Redis Cluster. See the module docstring."""

    suspends = True

    def __init__(
        self,
        client: RedisClient,
        *,
        specs: SpecResolver,
        expiry_policy: ExpiryPolicy = ExpiryPolicy.CHARGE,
        clock: Callable[[], int] | None = None,
        local_clock: Callable[[], int] | None = None,
        prefix: str = "tg",
        timeout: float = 0.5,
        retention_ms: int = 40 * 86_400_000,
    ) -> None:
        """``clock`` overrides Redis's clock (tests only); ``local_clock`` places fixed windows."""
        from .local import wall_clock_ms

        self._client = client
        self._script = client.register_script(_SCRIPT)
        self._probe = client.register_script(_PROBE)
        self._cluster = client if isinstance(client, RedisCluster) else None
        # A cluster node's pool fails a caller when it is full instead of queueing it like the
        # single-node client's blocking pool; this queues calls within their bound instead. (A
        # RedisCluster always has max_connections among its connection kwargs.)
        self._cluster_gate = (
            asyncio.Semaphore(cast(int, client.get_connection_kwargs()["max_connections"])) if self._cluster else None
        )
        self._specs = specs
        self._expiry_policy = expiry_policy
        self._clock = clock
        self._local_clock = local_clock or clock or wall_clock_ms
        self._prefix = prefix
        self._timeout = timeout
        self._retention_ms = retention_ms
        self._known_orgs: set[str] = set()
        # The fixed facts of reservations this sidecar made (or looked up): a per-pod
        # sidecar usually commits what it reserved, so Commit needs no read first.
        self._facts: OrderedDict[str, Hold] = OrderedDict()
        # The last known record of each keyed reservation this sidecar reserved or ended, so
        # that a retry of its key can still be answered as Redis would (a replay) while
        # Redis cannot be reached (fail-open).
        self._keyed: OrderedDict[str, Hold] = OrderedDict()
        self._epoch: str | None = None
        self._offset_ms: int | None = None
        """Redis's clock minus this sidecar's, as last measured (never more than the truth)."""
        self._undoing: set[asyncio.Task[None]] = set()
        self.expired_total = 0
        self.epoch_changes = 0
        self.undone_total = 0

    # -- keys ---------------------------------------------------------------------

    def _org_key(self, org: str, suffix: str) -> str:
        return f"{self._prefix}:{{{org}}}:{suffix}"

    @staticmethod
    def _org_of(reservation_id: str) -> str:
        try:
            return reservation_org(reservation_id)
        except InvalidRequest:
            raise ReservationNotFound(f"no reservation {reservation_id[:60]!r}") from None

    def _keys(self, org: str, reservation_id: str, pool_ids: Sequence[str]) -> list[str]:
        keys = [self._org_key(org, f"r:{reservation_id}"), self._org_key(org, "d"), self._org_key(org, "rs")]
        for pool_id in pool_ids:
            keys += [self._org_key(org, f"p:{pool_id}"), self._org_key(org, f"b:{pool_id}")]
        return keys

    @contextlib.asynccontextmanager
    async def _call(self, bound_s: float) -> AsyncIterator[None]:
        """One bounded call to the store (see ``_store_errors``)."""
        async with store_errors(bound_s):
            if self._cluster is None or self._cluster_gate is None:
                yield
                return
            async with self._cluster_gate:
                # Until it has the slot map, redis-py sends keyed commands to an arbitrary node, and a
                # burst of the MOVED replies makes it close every connection, other calls' included.
                # Loading the map first is a no-op once it is loaded.
                await self._cluster.initialize()
                yield

    # -- argument and reply encoding ---------------------------------------------------

    def _spec_args(self, refs: Sequence[PoolRef], high_priority: bool) -> list[str | int]:
        now = self._local_clock()
        args: list[str | int] = [len(refs)]
        for ref in refs:
            spec, window = ref.spec, ref.spec.window
            w: tuple[int, int, int, int] = (0, 0, 0, 0)
            if window.kind is WindowKind.FIXED:
                start, end = fixed_window(now, window.period, window.tz)
                prev, after = adjacent_windows(start, end, window.period, window.tz)
                w = (prev, start, end, after)
            elif window.kind is WindowKind.SLIDING:
                w = (bucket_ms(window.duration_ms), 0, 0, 0)
            elif window.kind is WindowKind.TOKEN_BUCKET:
                w = (window.duration_ms, 0, 0, 0)
            # One argument per pool (the script splits it): see read_specs in ledger.lua.
            args.append(f"{ref.pool_id} {spec.policy} {spec.cap} {spec.usable_cap(high_priority=high_priority)} "
                        f"{spec.max_calls} {spec.max_tokens} {spec.max_open} {window.kind} {w[0]} {w[1]} {w[2]} {w[3]}")
        return args

    def _refs(self, pool_ids: Sequence[str]) -> list[PoolRef]:
        refs = []
        for pool_id in pool_ids:
            resolved = self._specs(pool_id)
            level, spec = resolved if resolved else (Level(pool_id.partition(":")[0]), PoolSpec(cap=0))
            refs.append(PoolRef(pool_id, level, spec))
        return refs

    @staticmethod
    def _state(pool_id: str, raw: Sequence[int]) -> PoolState:
        mark, spent, calls, tokens, held, hcalls, htokens, oldest = (int(x) for x in raw[:8])
        # Only the oldest bucket matters to a snapshot (it says when spend next frees up).
        buckets = {oldest: [0, 0, 0]} if oldest >= 0 else {}
        return PoolState(pool_id, mark, spent, calls, tokens, held, hcalls, htokens, buckets)

    def _snapshots(self, refs: Sequence[PoolRef], raw: Sequence[Any], now: int, high: bool) -> tuple[PoolSnapshot, ...]:
        return tuple(
            self._state(ref.pool_id, r).snapshot(ref.level, ref.spec, now, high_priority=high)
            for ref, r in zip(refs, raw, strict=True)
        )

    @staticmethod
    def _hold(reservation_id: str, raw: Sequence[Any]) -> Hold:
        pools, amount, tokens, created, expires, state, charged, used, ended, model, task, fp, cfp, parent, attempt = (
            x.decode() if isinstance(x, bytes) else x for x in raw
        )
        return Hold(
            reservation_id=reservation_id,
            pool_ids=tuple(pools.split("\n")) if pools else (),
            amount=int(amount),
            tokens=int(tokens),
            created_ms=int(created),
            expires_ms=int(expires),
            state=HoldState(state),
            charged=int(charged),
            used_tokens=int(used),
            ended_ms=int(ended),
            model=model or "",
            task_type=task or "",
            fingerprint=fp or "",
            commit_fingerprint=cfp or "",
            parent_id=parent or "",
            attempt=int(attempt or 1),
        )

    async def _run(self, keys: list[str], args: list[str | int]) -> list[Any]:
        async with self._call(self._timeout):
            reply = await self._script(keys=keys, args=args)
        out = [x.decode() if isinstance(x, bytes) else x for x in reply]
        if out[0] in _TIMED_VERDICTS:
            # Measured on arrival, so the offset errs low by the reply's trip: deadlines
            # computed from it are early, never late.
            self._offset_ms = int(out[1]) - self._local_clock()
        if out[0] == "late":
            raise StoreUnavailable(
                "the Redis budget store ran the call after this sidecar stopped waiting for it; nothing was changed"
            )
        return out

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(self._clock())

    def _not_after(self) -> str:
        """The not-after instant of a call sent now, on the script's clock ("" until the offset is known)."""
        if self._clock is not None:
            return str(self._clock() + int(self._timeout * 1000))
        if self._offset_ms is None:
            return ""
        return str(self._local_clock() + self._offset_ms + int(self._timeout * 1000))

    async def _measure_offset(self) -> None:
        async with self._call(self._timeout):
            seconds, micros = await self._client.time()
        self._offset_ms = int(seconds) * 1000 + int(micros) // 1000 - self._local_clock()

    # -- the store interface ---------------------------------------------------------------

    def set_specs(self, specs: SpecResolver) -> None:
        """Pool specs of a reloaded config: every later call resolves pools by them."""
        self._specs = specs

    async def reserve(self, request: HoldRequest) -> ReserveOutcome:
        """Hold on every pool of the request in one script call, or refuse and hold nothing."""
        org = self._org_of(request.reservation_id)
        refs = stateful_pools(request)
        await self._remember(org)
        if self._offset_ms is None and self._clock is None:
            await self._measure_offset()
        pool_ids = [r.pool_id for r in refs]
        not_after = self._not_after()
        args = [
            "reserve", self._now_arg(), not_after, *self._spec_args(refs, request.high_priority),
            request.reservation_id, request.amount, request.tokens, request.ttl_ms, request.model,
            request.task_type, request.fingerprint, "\n".join(pool_ids), request.parent_id, request.attempt,
        ]
        try:
            reply = await self._run(self._keys(org, request.reservation_id, pool_ids), args)
        except (StoreUnavailable, asyncio.CancelledError):
            # Given up on (timed out, cut, or the caller went away): the script may yet run,
            # or may have run with its answer lost. Nobody can name a fresh id, so undo it.
            if request.fresh:
                self._undo_later(request.reservation_id, int(not_after) if not_after else None)
            raise
        verdict = reply[0]
        if verdict == "conflict":
            raise IdempotencyConflict(
                f"reservation {request.reservation_id} already exists for a different request under this "
                "idempotency key; use a new key for a new call"
            )
        if verdict == "refused":
            index, limit, requested, remaining, raw, now = reply[1:7]
            ref = refs[int(index) - 1]
            snap = self._state(ref.pool_id, raw).snapshot(ref.level, ref.spec, int(now),
                                                          high_priority=request.high_priority)
            raise BudgetExceeded(Refusal(ref.pool_id, str(ref.level), str(ref.spec.policy), Limit(limit),
                                         int(requested), int(remaining), snap.resets_at_ms))
        now, record, states = int(reply[1]), reply[2], reply[3]
        hold = self._hold(request.reservation_id, record)
        self._remember_facts(hold)
        self._remember_keyed(hold)
        return ReserveOutcome(
            hold,
            self._snapshots(refs, states, now, request.high_priority),
            replayed=verdict == "replay",
        )

    async def describe(self, reservation_id: str) -> Hold:
        """A reservation's fixed facts (model, task type, pools, amount); its state may be stale."""
        hold = self._facts.get(reservation_id)
        if hold is None:
            hold = await self.get(reservation_id)
            self._remember_facts(hold)
        return hold

    def _remember_facts(self, hold: Hold) -> None:
        self._facts[hold.reservation_id] = hold
        if len(self._facts) > _FACTS_CACHE:
            self._facts.popitem(last=False)

    def _remember_keyed(self, hold: Hold) -> None:
        if hold.fingerprint:  # only keyed reservations carry what their caller sent
            self._keyed[hold.reservation_id] = hold
            self._keyed.move_to_end(hold.reservation_id)
            if len(self._keyed) > _FACTS_CACHE:
                self._keyed.popitem(last=False)

    def known(self, reservation_id: str) -> Hold | None:
        """The last record this sidecar saw of a keyed reservation, if it still remembers one."""
        return self._keyed.get(reservation_id)

    async def _end(self, reservation_id: str, action: str, extra: list[str | int]) -> tuple[str, list[Any]]:
        hold = await self.describe(reservation_id)
        org = self._org_of(reservation_id)
        refs = self._refs(hold.pool_ids)
        not_after = "" if action == "expire" else self._not_after()
        args = [action, self._now_arg(), not_after, *self._spec_args(refs, False), reservation_id,
                "\n".join(hold.pool_ids), str(self._expiry_policy), *extra]
        reply = await self._run(self._keys(org, reservation_id, hold.pool_ids), args)
        verdict = reply[0]
        if verdict == "missing":
            raise ReservationNotFound(f"no reservation {reservation_id!r}")
        if verdict == "pools_changed":  # pragma: no cover - records never change their pools
            raise StoreUnavailable(f"reservation {reservation_id} changed under us; retry")
        if verdict == "conflict":
            raise IdempotencyConflict(
                f"reservation {reservation_id} was already committed with different usage; nothing was charged again"
            )
        if verdict == "ended":
            refuse_ended(self._hold(reservation_id, reply[2]), action)
        return verdict, reply

    async def commit(self, request: CommitRequest) -> CommitOutcome:
        """Charge the actual cost and release the hold, in one script call."""
        verdict, reply = await self._end(request.reservation_id, "commit",
                                         [request.cost, request.tokens, request.fingerprint])
        hold = self._hold(request.reservation_id, reply[2])
        self._facts.pop(request.reservation_id, None)
        self._remember_keyed(hold)
        refs = self._refs(hold.pool_ids)
        return CommitOutcome(hold, self._snapshots(refs, reply[3], int(reply[1]), False), replayed=verdict == "replay")

    async def release(self, reservation_id: str) -> ReleaseOutcome:
        """End a reservation without charging."""
        verdict, reply = await self._end(reservation_id, "release", [])
        hold = self._hold(reservation_id, reply[2])
        self._facts.pop(reservation_id, None)
        self._remember_keyed(hold)
        refs = self._refs(hold.pool_ids)
        return ReleaseOutcome(hold, self._snapshots(refs, reply[3], int(reply[1]), False),
                              replayed=verdict == "replay")

    async def amend(self, reservation_id: str, state: HoldState, *, charged: int = 0, used_tokens: int = 0,
                    commit_fingerprint: str = "") -> bool:
        """Give an expired reservation the outcome its caller was told, taking back the expiry's charge.

        For outcomes learned after the expiry: a reserve given up on (released), a fail-open
        reservation ended locally while Redis was out of reach. Returns False, changing
        nothing, when the record is not expired.
        """
        verdict, _ = await self._end(reservation_id, "amend",
                                     [str(state), charged, used_tokens, commit_fingerprint])
        return verdict == "ok"

    async def extend(self, reservation_id: str, ttl_ms: int) -> Hold:
        """Move an open reservation's expiry to now + ttl."""
        _, reply = await self._end(reservation_id, "extend", [ttl_ms])
        return self._hold(reservation_id, reply[2])

    async def snapshot(self, pools: Sequence[PoolRef], *, high_priority: bool = False) -> list[PoolSnapshot]:
        """The pools as a request of this priority sees them now (read only)."""
        refs = [r for r in pools if r.level is not Level.REQUEST]
        if not refs:
            return []
        org = pool_org(refs[0].pool_id)
        args = ["snapshot", self._now_arg(), "", *self._spec_args(refs, high_priority)]
        reply = await self._run(self._keys(org, "-", [r.pool_id for r in refs]), args)
        return list(self._snapshots(refs, reply[2], int(reply[1]), high_priority))

    async def get(self, reservation_id: str) -> Hold:
        """A reservation record, or ``ReservationNotFound``."""
        org = self._org_of(reservation_id)
        async with self._call(self._timeout):
            raw = await self._client.hmget(self._org_key(org, f"r:{reservation_id}"), *_RECORD)
        if raw[0] is None:
            raise ReservationNotFound(
                f"no reservation {reservation_id!r}: use the reservation_id returned by Reserve or Route"
            )
        return self._hold(reservation_id, raw)

    async def expire_due(self, *, batch: int = 200) -> int:
        """Resolve reservations past their deadline; safe to run on every sidecar at once."""
        await self.check_epoch()
        expired = 0
        async with self._call(self._timeout):
            orgs = [text(o) for o in await self._client.smembers(f"{self._prefix}:orgs")]
        now = self._local_clock() if self._clock is None else self._clock()
        for org in orgs:
            async with self._call(self._timeout):
                due = await self._client.zrangebyscore(self._org_key(org, "d"), "-inf", now, start=0, num=batch)
            for rid in (text(d) for d in due):
                try:
                    verdict, _ = await self._end(rid, "expire", [])
                except (ReservationEnded, ReservationNotFound):
                    continue
                if verdict == "ok":
                    expired += 1
            await self._prune(org)
        self.expired_total += expired
        return expired

    async def _prune(self, org: str, *, batch: int = 200) -> int:
        """Delete records ended longer ago than the retention (folding their charges into the pools)."""
        args: list[str | int] = ["prune", self._now_arg(), "", 0, self._retention_ms, batch, self._org_key(org, "")]
        reply = await self._run([self._org_key(org, "rs")], args)
        return int(reply[2])

    async def audit(self, orgs: Sequence[str] | None = None) -> AuditReport:
        """Recompute every pool of the given orgs (default: all) from the reservation records."""
        async with self._call(self._timeout * 20):
            if orgs is None:
                orgs = [text(o) for o in await self._client.smembers(f"{self._prefix}:orgs")]
            records: list[Hold] = []
            states: dict[str, PoolState] = {}
            for org in orgs:
                ids = [text(i) for i in await self._client.zrange(self._org_key(org, "rs"), 0, -1)]
                for rid in ids:
                    records.append(self._hold(rid, await self._client.hmget(self._org_key(org, f"r:{rid}"),
                                                                            *_RECORD)))
                pool_ids = {p for h in records for p in h.pool_ids if pool_org(p) == org}
                for pool_id in pool_ids:
                    states[pool_id] = await self._load_state(org, pool_id)
            now = self._local_clock() if self._clock is None else self._clock()
        return audit_pools(states, records, self._specs, now)

    async def _load_state(self, org: str, pool_id: str) -> PoolState:
        raw = await self._client.hmget(self._org_key(org, f"p:{pool_id}"), *_FIELDS, *_ARCHIVED)
        # In the order of _FIELDS and _ARCHIVED.
        (mark_ms, spent, calls, tokens, held, held_calls, held_tokens,
         arch_spent, arch_calls, arch_tokens) = [int(x) if x is not None else 0 for x in raw]
        buckets: dict[int, list[int]] = {}
        for field, value in (await self._client.hgetall(self._org_key(org, f"b:{pool_id}"))).items():
            idx, part = text(field).split(":")
            buckets.setdefault(int(idx), [0, 0, 0])["sct".index(part)] = int(value)
        return PoolState(pool_id, mark_ms=mark_ms, spent=spent, calls=calls, tokens=tokens, held=held,
                         held_calls=held_calls, held_tokens=held_tokens, buckets=buckets,
                         archived=(arch_spent, arch_calls, arch_tokens))

    async def import_ended(self, hold: Hold, refs: Sequence[PoolRef]) -> bool:
        """Write a reservation admitted and ended without Redis (fail-open) into the pools, once.

        Returns False if it was already imported.
        """
        org = self._org_of(hold.reservation_id)
        await self._remember(org)
        pool_ids = [r.pool_id for r in refs]
        args = [
            "import", self._now_arg(), self._not_after(), *self._spec_args(refs, False), hold.reservation_id,
            hold.amount,
            hold.tokens, hold.created_ms, hold.charged, hold.used_tokens, str(hold.state), hold.model,
            hold.task_type, hold.fingerprint, hold.commit_fingerprint, "\n".join(pool_ids), hold.parent_id,
            hold.attempt,
        ]
        reply = await self._run(self._keys(org, hold.reservation_id, pool_ids), args)
        return bool(reply[0] == "ok")

    async def close(self) -> None:
        """Close the connection pool (undos still waiting for Redis are dropped)."""
        for task in self._undoing:
            task.cancel()
        await self._client.aclose()

    # -- undoing reserves the sidecar gave up on --------------------------------------------

    def _undo_later(self, reservation_id: str, not_after: int | None) -> None:
        task = asyncio.get_running_loop().create_task(self._undo(reservation_id, not_after))
        self._undoing.add(task)
        task.add_done_callback(self._undoing.discard)

    @property
    def undos_pending(self) -> int:
        """Reserves given up on whose fate Redis has not yet told."""
        return len(self._undoing)

    async def _undo(self, reservation_id: str, not_after: int | None) -> None:
        """Release a fresh reservation whose reserve was given up on, once Redis says it exists.

        Until Redis's clock is past the reserve's not-after instant, the script may still
        arrive, so an absent record proves nothing yet. Without a not-after instant (the
        offset was unknown), the reserve's own bound is waited out instead.
        """
        org = self._org_of(reservation_id)
        key = self._org_key(org, f"r:{reservation_id}")
        delay, give_up = 0.05, time.monotonic() + _UNDO_PATIENCE_S
        while time.monotonic() < give_up:
            try:
                async with self._call(self._timeout):
                    now, state = await self._probe(keys=[key], args=[])
                state = state.decode() if isinstance(state, bytes) else state
                if state == "open":
                    await self.release(reservation_id)
                    self.undone_total += 1
                    log.warning("released reservation %s: its reserve ran after this sidecar had answered "
                                "UNAVAILABLE, so no caller holds its id", reservation_id)
                    return
                if state == "expired":
                    # Expired (and charged by the policy) while this sidecar could not reach Redis.
                    if await self.amend(reservation_id, HoldState.RELEASED):
                        self.undone_total += 1
                        log.warning("took back the expiry charge of reservation %s: its reserve ran after this "
                                    "sidecar had answered UNAVAILABLE, so no caller holds its id", reservation_id)
                    return
                if state is not None:
                    return  # ended already (released by an earlier undo)
                if not_after is not None and int(now) > not_after:
                    return  # the script can no longer take effect
            except (StoreUnavailable, ReservationEnded, ReservationNotFound):
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        log.error("could not learn whether reservation %s was held after its reserve timed out; if it was, it "
                  "expires by the expiry policy", reservation_id)

    # -- restarts of Redis itself ------------------------------------------------------------

    async def _remember(self, org: str) -> None:
        if org in self._known_orgs:
            return
        async with self._call(self._timeout):
            await self._client.sadd(f"{self._prefix}:orgs", org)
        self._known_orgs.add(org)

    async def check_epoch(self) -> bool:
        """Detect a Redis that restarted without its data; returns True if it did.

        The first sidecar to meet an empty Redis writes a random epoch; a later change
        means every counter restarted from zero, which a hard cap must not hide.
        """
        key = f"{self._prefix}:epoch"
        async with self._call(self._timeout):
            await self._client.set(key, secrets.token_hex(8), nx=True)
            current = text(await self._client.get(key) or b"")
        changed = self._epoch is not None and current != self._epoch
        if changed:
            self.epoch_changes += 1
            self._known_orgs.clear()
            log.error(
                "Redis lost its data (epoch %s -> %s): every budget counter restarted from zero; "
                "run Redis with AOF persistence in production",
                self._epoch, current,
            )
        self._epoch = current
        return changed


_TIMED_VERDICTS = frozenset({"ok", "replay", "ended", "noop", "late"})
# How long an undo keeps asking a Redis that does not answer: past any stall worth riding out.
_UNDO_PATIENCE_S = 600.0
# Facts of the reservations still open here, so that a Commit costs one round trip. An ended
# one's facts go at once (a retried Commit reads the record again); beyond the bound, the
# oldest go, and their Commit reads the record first.
_FACTS_CACHE = 16_384
_RECORD = ("pools", "amount", "tokens", "created", "expires", "state", "charged", "used", "ended", "model", "task",
           "fp", "cfp", "parent", "attempt")
_FIELDS = ("mark", "spent", "calls", "tokens", "held", "hcalls", "htokens")
_ARCHIVED = ("arch_spent", "arch_calls", "arch_tokens")
