"""The ledger invariants of DESIGN.md, held against every store.

The same tests run on the in-memory, SQLite, Redis and 3-master Redis Cluster
stores (the last two on the suite's own servers); the stateful property
test drives random sequences of reserve / commit / release / extend / expire /
clock moves / restarts and checks the invariants after every step.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule
from redis.asyncio.cluster import RedisCluster

from tollgate.config import BudgetConfig, ExpiryPolicy, Policy, PoolSpec, Window, WindowKind
from tollgate.errors import BudgetExceeded, IdempotencyConflict, ReservationEnded, ReservationNotFound
from tollgate.ledger import (
    BudgetStore,
    CommitRequest,
    HoldRequest,
    HoldState,
    LocalLedger,
    MemoryJournal,
    PoolRef,
    SqliteJournal,
    spec_resolver,
)
from tollgate.ledger.redis import RedisStore, connect
from tollgate.scope import Level

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class FakeClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


BUDGETS = BudgetConfig(
    templates={
        Level.ORG: PoolSpec(cap=1_000_000, window=Window(WindowKind.FIXED, period="day", tz="Europe/Paris")),
        Level.TEAM: PoolSpec(cap=600_000, window=Window(WindowKind.SLIDING, duration_ms=3_600_000), max_open=4),
        Level.USER: PoolSpec(
            cap=400_000, window=Window(WindowKind.TOKEN_BUCKET, duration_ms=600_000), priority_reserve_bp=2500
        ),
        Level.SESSION: PoolSpec(cap=300_000, max_calls=6, max_tokens=5_000),
    },
    overrides={"user:acme/carol": PoolSpec(cap=100_000, policy=Policy.WARN)},
)
RESOLVE = spec_resolver(BUDGETS)


def refs(*pool_ids: str) -> tuple[PoolRef, ...]:
    out = []
    for pool_id in pool_ids:
        resolved = RESOLVE(pool_id)
        assert resolved is not None
        out.append(PoolRef(pool_id, resolved[0], resolved[1]))
    return tuple(out)


SCOPES = [
    refs("session:acme/s1", "user:acme/alice", "team:acme/search", "org:acme"),
    refs("user:acme/bob", "team:acme/search", "org:acme"),
    refs("user:acme/carol", "org:acme"),
    refs("org:acme"),
]


class Stores:
    """Opens the same kind of store again on the same backing data (a restart)."""

    redis_url = ""  # set once by the session's Redis fixture
    cluster_url = ""  # set once by the session's Redis Cluster fixture

    def __init__(self, kind: str, tmp: Path, clock: FakeClock, expiry: ExpiryPolicy = ExpiryPolicy.CHARGE) -> None:
        self.kind = kind
        self.path = tmp / "ledger.db"
        self.clock = clock
        self.expiry = expiry
        self.memory = MemoryJournal()
        self.prefix = f"t{uuid.uuid4().hex[:12]}"  # each test its own keys on the shared server

    def open(self) -> BudgetStore:
        if self.kind == "redis":
            return RedisStore(connect(self.redis_url, timeout=2.0), specs=RESOLVE, expiry_policy=self.expiry,
                              clock=self.clock, prefix=self.prefix, timeout=5.0)
        if self.kind == "cluster":
            return RedisStore(connect(self.cluster_url, cluster=True, timeout=2.0), specs=RESOLVE,
                              expiry_policy=self.expiry, clock=self.clock, prefix=self.prefix, timeout=5.0)
        journal = self.memory if self.kind == "memory" else SqliteJournal(self.path)
        # "sqlite-tiny" keeps one record and one pool in memory, every other read going to the file, and
        # compacts the expiry deadlines after every second ended reservation.
        tiny = {"recent_holds": 1, "recent_pools": 1, "compact_batch": 2} if self.kind == "sqlite-tiny" else {}
        return LocalLedger(journal, specs=RESOLVE, expiry_policy=self.expiry, clock=self.clock, **tiny)


@pytest.fixture(params=["memory", "sqlite", "sqlite-tiny", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    if request.param == "redis":
        Stores.redis_url = request.getfixturevalue("redis_url")
    if request.param == "cluster":
        Stores.cluster_url = request.getfixturevalue("redis_cluster_url")
    return Stores(request.param, tmp_path, FakeClock())


_ids = itertools.count()


def hold(pools: tuple[PoolRef, ...], amount: int, *, tokens: int = 100, ttl: int = 60_000, high: bool = False,
         rid: str | None = None, fingerprint: str = "") -> HoldRequest:
    return HoldRequest(
        reservation_id=rid or f"{next(_ids):024x}.acme", pools=pools, amount=amount, tokens=tokens, ttl_ms=ttl,
        high_priority=high, model="m", fingerprint=fingerprint,
    )


def commit(rid: str, cost: int, tokens: int = 100) -> CommitRequest:
    return CommitRequest(reservation_id=rid, cost=cost, tokens=tokens, fingerprint=f"{cost}/{tokens}")


async def test_admission_is_all_or_nothing(stores: Stores) -> None:
    ledger = stores.open()
    org_only = refs("org:acme")
    # Fill the org so that the next hold fits the user pool but not the org pool.
    await ledger.reserve(hold(org_only, 790_000))
    before = await ledger.snapshot(list(SCOPES[1]))
    with pytest.raises(BudgetExceeded) as refused:
        await ledger.reserve(hold(SCOPES[1], 20_000))
    assert refused.value.refusal.pool_id == "org:acme"
    assert refused.value.refusal.remaining == 10_000  # usable 800k (20 % priority reserve) - 790k
    assert await ledger.snapshot(list(SCOPES[1])) == before
    assert (await ledger.audit()).ok


async def test_priority_reserve_only_for_high_priority(stores: Stores) -> None:
    ledger = stores.open()
    org = refs("org:acme")
    await ledger.reserve(hold(org, 800_000))
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(hold(org, 1))
    await ledger.reserve(hold(org, 200_000, high=True))
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(hold(org, 1, high=True))


async def test_commit_is_idempotent_and_refuses_other_figures(stores: Stores) -> None:
    ledger = stores.open()
    r = await ledger.reserve(hold(SCOPES[3], 50_000))
    first = await ledger.commit(commit(r.hold.reservation_id, 30_000))
    again = await ledger.commit(commit(r.hold.reservation_id, 30_000))
    assert again.replayed and again.hold == first.hold
    with pytest.raises(IdempotencyConflict):
        await ledger.commit(commit(r.hold.reservation_id, 31_000))
    with pytest.raises(ReservationEnded):
        await ledger.release(r.hold.reservation_id)
    (org,) = await ledger.snapshot(list(SCOPES[3]))
    assert (org.spent, org.held) == (30_000, 0)
    assert first.released == 20_000


async def test_release_then_commit_is_refused(stores: Stores) -> None:
    ledger = stores.open()
    r = await ledger.reserve(hold(SCOPES[3], 50_000))
    await ledger.release(r.hold.reservation_id)
    assert (await ledger.release(r.hold.reservation_id)).replayed
    with pytest.raises(ReservationEnded):
        await ledger.commit(commit(r.hold.reservation_id, 1))
    with pytest.raises(ReservationNotFound):
        await ledger.commit(commit("f" * 24 + ".acme", 1))
    (org,) = await ledger.snapshot(list(SCOPES[3]))
    assert (org.spent, org.held) == (0, 0)


async def test_overshoot_is_charged_in_full_and_visible(stores: Stores) -> None:
    ledger = stores.open()
    r = await ledger.reserve(hold(SCOPES[3], 10_000))
    out = await ledger.commit(commit(r.hold.reservation_id, 25_000))
    assert out.hold.charged == 25_000 and out.hold.overshoot == 15_000 and out.released == 0
    report = await ledger.audit()
    assert report.ok and report.overshoot_total == 15_000 and report.overshoot_count == 1


async def test_reserve_replay_by_id(stores: Stores) -> None:
    ledger = stores.open()
    rid = "5" * 24 + ".acme"
    first = await ledger.reserve(hold(SCOPES[3], 10_000, rid=rid, fingerprint="sent-a"))
    again = await ledger.reserve(hold(SCOPES[3], 10_000, rid=rid, fingerprint="sent-a"))
    assert again.replayed and again.hold == first.hold
    # The same request retried after the sidecar's estimate moved: the first hold, not a new one.
    moved = await ledger.reserve(hold(SCOPES[3], 11_000, rid=rid, fingerprint="sent-a"))
    assert moved.replayed and moved.hold == first.hold
    with pytest.raises(IdempotencyConflict):
        await ledger.reserve(hold(SCOPES[3], 10_000, rid=rid, fingerprint="sent-b"))
    (org,) = await ledger.snapshot(list(SCOPES[3]))
    assert org.held == 10_000


@pytest.mark.parametrize("policy", [ExpiryPolicy.CHARGE, ExpiryPolicy.RELEASE])
async def test_expiry_resolves_once_by_policy(stores: Stores, policy: ExpiryPolicy) -> None:
    stores.expiry = policy
    clock = stores.clock
    ledger = stores.open()
    r = await ledger.reserve(hold(SCOPES[3], 10_000, ttl=1_000))
    clock.now += 999
    assert await ledger.expire_due() == 0
    clock.now += 1
    assert await ledger.expire_due() == 1
    assert await ledger.expire_due() == 0
    with pytest.raises(ReservationEnded, match="expired"):
        await ledger.commit(commit(r.hold.reservation_id, 5))
    (org,) = await ledger.snapshot(list(SCOPES[3]))
    assert org.held == 0
    assert org.spent == (10_000 if policy is ExpiryPolicy.CHARGE else 0)
    assert (await ledger.audit()).ok


async def test_extend_pushes_expiry(stores: Stores) -> None:
    ledger = stores.open()
    r = await ledger.reserve(hold(SCOPES[3], 10_000, ttl=1_000))
    stores.clock.now += 900
    await ledger.extend(r.hold.reservation_id, 1_000)
    stores.clock.now += 900
    assert await ledger.expire_due() == 0
    await ledger.commit(commit(r.hold.reservation_id, 7))
    stores.clock.now += 10_000
    assert await ledger.expire_due() == 0


async def test_call_and_token_caps(stores: Stores) -> None:
    ledger = stores.open()
    session = refs("session:acme/s1")
    for _ in range(6):
        await ledger.reserve(hold(session, 1, tokens=10))
    with pytest.raises(BudgetExceeded) as refused:
        await ledger.reserve(hold(session, 1, tokens=10))
    assert refused.value.refusal.limit == "calls"
    with pytest.raises(BudgetExceeded) as refused:
        await ledger.reserve(hold(refs("session:acme/s2"), 1, tokens=5_001))
    assert refused.value.refusal.limit == "tokens"


async def test_fixed_window_resets_at_local_midnight(stores: Stores) -> None:
    ledger = stores.open()
    org = refs("org:acme")
    r = await ledger.reserve(hold(org, 700_000))
    await ledger.commit(commit(r.hold.reservation_id, 700_000))
    (snap,) = await ledger.snapshot(list(org))
    # Paris is UTC+1 in January: the day window ends at 23:00 UTC.
    assert snap.resets_at_ms == T0 + 23 * 3_600_000
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(hold(org, 200_000))
    stores.clock.now = T0 + 23 * 3_600_000
    await ledger.reserve(hold(org, 200_000))
    (snap,) = await ledger.snapshot(list(org))
    assert (snap.spent, snap.held) == (0, 200_000)
    assert (await ledger.audit()).ok


async def test_token_bucket_refills_linearly(stores: Stores) -> None:
    ledger = stores.open()
    user = refs("user:acme/alice")  # cap 400k per 10 min, 25 % priority reserve: 300k usable
    r = await ledger.reserve(hold(user, 300_000))
    await ledger.commit(commit(r.hold.reservation_id, 300_000))
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(hold(user, 1))
    stores.clock.now += 150_000  # a quarter of the duration drains a quarter of the cap
    await ledger.reserve(hold(user, 100_000))
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(hold(user, 1))
    assert (await ledger.audit()).ok


async def test_sliding_window_forgets_old_spend(stores: Stores) -> None:
    ledger = stores.open()
    team = refs("team:acme/search")  # 600k per hour, 480k usable
    r = await ledger.reserve(hold(team, 480_000))
    await ledger.commit(commit(r.hold.reservation_id, 480_000))
    stores.clock.now += 3_000_000
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(hold(team, 1))
    stores.clock.now += 660_000
    await ledger.reserve(hold(team, 480_000))
    assert (await ledger.audit()).ok


async def test_warn_pool_admits_over_cap_and_flags(stores: Stores) -> None:
    ledger = stores.open()
    carol = refs("user:acme/carol")
    out = await ledger.reserve(hold(carol, 150_000))
    assert out.pools[0].warning and out.pools[0].remaining < 0


async def test_failed_write_changes_nothing(tmp_path: Path) -> None:
    stores = Stores("memory", tmp_path, FakeClock())
    ledger = stores.open()
    r = await ledger.reserve(hold(SCOPES[0], 10_000))
    before = await ledger.snapshot(list(SCOPES[0]))
    stores.memory.fail_writes = True
    from tollgate.errors import StoreUnavailable

    with pytest.raises(StoreUnavailable):
        await ledger.reserve(hold(SCOPES[0], 10_000))
    with pytest.raises(StoreUnavailable):
        await ledger.commit(commit(r.hold.reservation_id, 5_000))
    stores.memory.fail_writes = False
    assert await ledger.snapshot(list(SCOPES[0])) == before
    await ledger.commit(commit(r.hold.reservation_id, 5_000))
    assert (await ledger.audit()).ok


async def test_restart_loses_nothing(stores: Stores) -> None:
    if stores.kind == "memory":
        pytest.skip("a memory store has nothing to restart from")
    clock = stores.clock
    ledger = stores.open()
    a = await ledger.reserve(hold(SCOPES[0], 10_000))
    b = await ledger.reserve(hold(SCOPES[1], 20_000, ttl=5_000))
    await ledger.commit(commit(a.hold.reservation_id, 4_000))
    before = await ledger.snapshot(list(SCOPES[0] + SCOPES[1]))
    await ledger.close()
    ledger = stores.open()
    assert await ledger.snapshot(list(SCOPES[0] + SCOPES[1])) == before
    assert (await ledger.commit(commit(a.hold.reservation_id, 4_000))).replayed
    clock.now += 5_000
    assert await ledger.expire_due() == 1  # the reloaded open hold still expires
    assert (await ledger.get(b.hold.reservation_id)).state is HoldState.EXPIRED
    assert (await ledger.audit()).ok


async def test_concurrent_reserves_admit_exactly_the_cap(stores: Stores) -> None:
    ledger = stores.open()
    org = refs("org:acme")  # 800k usable at normal priority
    amount = 21_621  # 37 * 21621 = 799977 <= 800000 < 38 * 21621
    results = await asyncio.gather(*(ledger.reserve(hold(org, amount)) for _ in range(200)), return_exceptions=True)
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(admitted) == 37 and len(refused) == 163


@pytest.mark.redis
async def test_cluster_spreads_orgs_and_keeps_each_in_one_slot(redis_cluster_url: str, tmp_path: Path) -> None:
    Stores.cluster_url = redis_cluster_url
    stores = Stores("cluster", tmp_path, FakeClock())
    ledger = stores.open()
    orgs = [f"org{i}" for i in range(12)]
    for org in orgs:
        pools = refs(f"session:{org}/s1", f"user:{org}/alice", f"team:{org}/search", f"org:{org}")
        done = await ledger.reserve(hold(pools, 10_000, rid=f"{next(_ids):024x}.{org}"))
        await ledger.commit(commit(done.hold.reservation_id, 4_000))
        await ledger.reserve(hold(pools, 20_000, ttl=1_000, rid=f"{next(_ids):024x}.{org}"))
        await ledger.reserve(hold(pools, 30_000, ttl=DAY, rid=f"{next(_ids):024x}.{org}"))
    # The sweep and the audit walk every org, so they have to cross nodes.
    stores.clock.now += 1_000
    assert await ledger.expire_due() == len(orgs)
    report = await ledger.audit()
    assert report.ok, report.mismatches
    await ledger.close()

    async with RedisCluster.from_url(redis_cluster_url) as cluster:
        primaries = cluster.get_primaries()
        assert len(primaries) == 3
        where: dict[str, set[tuple[str, int]]] = {org: set() for org in orgs}
        kinds: dict[str, set[str]] = {org: set() for org in orgs}
        for node in primaries:
            keys = await cluster.execute_command("KEYS", f"{stores.prefix}:{{*}}:*", target_nodes=node)
            for key in (k.decode() for k in keys):
                org, _, suffix = key.split("{", 1)[1].partition("}:")
                where[org].add((node.name, await cluster.cluster_keyslot(key)))
                kinds[org].add(suffix.partition(":")[0])
    for org, places in where.items():
        assert len(places) == 1, f"{org}'s keys are spread over {places}"
        assert kinds[org] == {"r", "d", "rs", "p", "b"}, kinds[org]
    assert len({node for places in where.values() for node, _ in places}) >= 2
    assert len({slot for places in where.values() for _, slot in places}) == len(orgs)


# -- the stateful property test -------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    """Random operations against one store; invariants checked after every step."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.tmp = tempfile.TemporaryDirectory()
        self.clock = FakeClock()
        self.stores = Stores(self.kind, Path(self.tmp.name), self.clock)
        self.loop = asyncio.new_event_loop()
        self.ledger = self.stores.open()
        self.ended: dict[str, str] = {}  # reservation id -> how it ended
        self.committed_cost: dict[str, int] = {}
        self.admitted: list[str] = []

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.ledger.close())
        self.loop.close()
        self.tmp.cleanup()

    opened = Bundle("opened")

    @rule(target=opened, scope=st.integers(0, len(SCOPES) - 1), amount=st.integers(0, 400_000),
          tokens=st.integers(0, 3_000), ttl=st.integers(1, 120_000), high=st.booleans())
    def reserve(self, scope: int, amount: int, tokens: int, ttl: int, high: bool) -> str:
        pools = SCOPES[scope]
        request = hold(pools, amount, tokens=tokens, ttl=ttl, high=high)
        try:
            out = self.run(self.ledger.reserve(request))
        except BudgetExceeded as exc:
            # Invariant 1, refusal side: the refusing pool really could not fit the hold
            # (the sweep at the start of reserve may only have freed room, never taken it).
            refusal = exc.refusal
            assert refusal.remaining < refusal.requested
            return "refused"
        # Invariant 1, admission side: every enforcing pool fits at this instant.
        for snap in out.pools:
            if snap.spec.policy is not Policy.WARN:
                assert snap.spent + snap.held <= snap.usable_cap
                if snap.spec.max_calls:
                    assert snap.calls <= snap.spec.max_calls
                if snap.spec.max_tokens:
                    assert snap.tokens <= snap.spec.max_tokens
        self.admitted.append(out.hold.reservation_id)
        return out.hold.reservation_id

    @rule(rid=consumes(opened), cost=st.integers(0, 500_000))
    def commit(self, rid: str, cost: int) -> None:
        if rid == "refused":
            return
        try:
            out = self.run(self.ledger.commit(commit(rid, cost)))
        except ReservationEnded:
            assert self.run(self.ledger.get(rid)).state is HoldState.EXPIRED
            self.ended[rid] = "expired"
            return
        assert out.hold.charged == cost
        assert not out.replayed
        self.ended[rid] = "committed"
        self.committed_cost[rid] = cost
        # Exactly once: the same commit again is a replay, other figures are refused.
        assert self.run(self.ledger.commit(commit(rid, cost))).replayed
        with pytest.raises(IdempotencyConflict):
            self.run(self.ledger.commit(commit(rid, cost + 1)))

    @rule(rid=consumes(opened))
    def release(self, rid: str) -> None:
        if rid == "refused":
            return
        try:
            out = self.run(self.ledger.release(rid))
        except ReservationEnded:
            assert self.run(self.ledger.get(rid)).state is HoldState.EXPIRED
            return
        assert out.hold.charged == 0 and not out.replayed
        self.ended[rid] = "released"
        with pytest.raises(ReservationEnded):
            self.run(self.ledger.commit(commit(rid, 1)))

    @rule(rid=opened, ttl=st.integers(1, 120_000))
    def extend(self, rid: str, ttl: int) -> None:
        if rid == "refused" or rid in self.ended:
            return
        try:
            self.run(self.ledger.extend(rid, ttl))
        except ReservationEnded:
            assert self.run(self.ledger.get(rid)).state is HoldState.EXPIRED

    @rule(ms=st.sampled_from([1, 999, 30_000, 600_000, 3_600_000, DAY]))
    def advance(self, ms: int) -> None:
        self.clock.now += ms

    @rule()
    def sweep(self) -> None:
        self.run(self.ledger.expire_due())
        # Nothing past its deadline is left open by a sweep (however the deadlines are kept).
        for rid in self.admitted:
            held = self.run(self.ledger.get(rid))
            assert held.state is not HoldState.OPEN or held.expires_ms > self.clock.now, rid

    @precondition(lambda self: self.kind != "memory")  # a memory store has nothing to restart from
    @rule()
    def restart(self) -> None:
        self.run(self.ledger.close())
        self.ledger = self.stores.open()

    @invariant()
    def audit_balances(self) -> None:
        report = self.run(self.ledger.audit())
        assert report.ok, report.mismatches

    @invariant()
    def every_end_is_final(self) -> None:
        for rid, how in self.ended.items():
            state = self.run(self.ledger.get(rid)).state
            assert str(state) == how or (how == "expired" and state is HoldState.EXPIRED)
            if how == "committed":
                assert self.run(self.ledger.get(rid)).charged == self.committed_cost[rid]


class MemoryLedgerMachine(LedgerMachine):
    kind = "memory"


class SqliteLedgerMachine(LedgerMachine):
    kind = "sqlite"


class SqliteTinyCacheLedgerMachine(LedgerMachine):
    kind = "sqlite-tiny"


_settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
class RedisLedgerMachine(LedgerMachine):
    kind = "redis"


class ClusterLedgerMachine(LedgerMachine):
    kind = "cluster"


@pytest.fixture
def _redis_for_machine(redis_url: str) -> None:
    Stores.redis_url = redis_url


@pytest.fixture
def _cluster_for_machine(redis_cluster_url: str) -> None:
    Stores.cluster_url = redis_cluster_url


TestMemoryLedger = _settings(MemoryLedgerMachine).TestCase
TestSqliteLedger = _settings(SqliteLedgerMachine).TestCase
TestSqliteTinyCacheLedger = _settings(SqliteTinyCacheLedgerMachine).TestCase
TestRedisLedger = pytest.mark.redis(pytest.mark.usefixtures("_redis_for_machine")(
    _settings(RedisLedgerMachine).TestCase))
TestClusterLedger = pytest.mark.redis(pytest.mark.usefixtures("_cluster_for_machine")(
    _settings(ClusterLedgerMachine).TestCase))
