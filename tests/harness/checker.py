"""Compare what the store holds with what every caller was told (ledger invariants 3, 5, 6, 7, 8).

Run once faults have stopped, every sidecar is serving again and every hold has
expired or ended. Kinds of violation:

- ``unknown-charge`` (a): money moved for a reservation no caller received, and no
  retry with the same key resolved the lost answer.
- ``ghost-hold`` (a): a keyless call the sidecar answered UNAVAILABLE (its store did
  not answer in time) left a hold that was charged: the store ran what the sidecar
  had given up on, and nothing undid it.
- ``retry-refused`` (7): a keyed retry after a lost answer was refused (or answered
  with another reservation) while the first attempt's hold exists.
- ``replay-differs`` (7): a retry or a duplicate with the same key was told another
  reservation or another amount, or was refused.
- ``open-after-settle`` (b): a hold still open, or a pool still holding, after settling.
- ``money-differs`` (c): a record's charge is not what its caller was told (committed
  for another amount, charged at expiry after a commit was acknowledged, ...).
- ``pool-mismatch`` (c): a pool's spent / held / calls differ from its records, or from
  what callers were told.
- ``audit`` (d): ``tollgate audit`` did not balance.
- ``tenant`` (e): a record holds on pools outside its caller's scope or org, another
  tenant's call ended or extended a reservation, or an owner was refused its own.
- ``error-changed-state`` (f): a call answered INVALID_ARGUMENT, PERMISSION_DENIED,
  NOT_FOUND, RESOURCE_EXHAUSTED or FAILED_PRECONDITION left a lasting change.
- ``lost-ack``: a reservation a caller was told about is not in the store.
- ``admission`` (invariant 1): a hard or soft pool admitted more than its cap,
  overshoot aside.
- ``fail-open-bound`` / ``fail-open-lost`` (6): spend admitted by one sidecar while its
  store was unreachable exceeded the allowance, or was never written back.
- ``internal``: a call answered INTERNAL or UNKNOWN (outside the error table; the caller
  cannot tell what happened; the checks above still judge its effect as a lost answer).
- ``liveness``: a sidecar never served again after the faults were healed.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tests.harness.history import Call, History
from tests.harness.store import Record, StoreView
from tests.harness.tenants import cap_of, pools_of, tenant
from tests.harness.workload import Plan

__all__ = ["CheckResult", "Violation", "check"]

_CHARGED = ("committed", "expired")
_OWNER_REFUSED = ("PERMISSION_DENIED", "UNAUTHENTICATED", "NOT_FOUND")
_INTERNAL = ("INTERNAL", "UNKNOWN", "DATA_LOSS", "UNIMPLEMENTED")
"""Codes outside the sidecar's error table: whatever happened, the caller cannot tell."""


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    message: str
    calls: tuple[Call, ...] = ()
    record: Record | None = None

    def render(self, seed: int, store: str, t0: float) -> str:
        lines = [f"VIOLATION [{self.kind}] SEED={seed} store={store}: {self.message}"]
        if self.record is not None:
            r = self.record
            lines.append(f"    record {r.rid} org_tag={r.org_tag or '-'} state={r.state} amount={r.amount} "
                         f"charged={r.charged} cfp={r.cfp or '-'} pools={','.join(r.pools)}")
        lines.extend(f"    {c.render(t0)}" for c in self.calls[:12])
        if len(self.calls) > 12:
            lines.append(f"    ... {len(self.calls) - 12} more calls")
        return "\n".join(lines)


@dataclass(slots=True)
class CheckResult:
    violations: list[Violation] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    flagged: set[str] = field(default_factory=set)
    """Records already reported: a pool's sums do not report them again."""

    def add(self, kind: str, message: str, calls: Iterable[Call] = (), record: Record | None = None) -> None:
        self.violations.append(Violation(kind, message, tuple(calls), record))
        if record is not None:
            self.flagged.add(record.rid)

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for v in self.violations:
            out[v.kind] += 1
        return dict(sorted(out.items()))


def _session_of(record: Record) -> str:
    for pool in record.pools:
        if pool.startswith("session:") and "/" in pool:
            return pool.partition("/")[2]
    return ""


def _pool_org(pool_id: str) -> str:
    return pool_id.partition(":")[2].partition("/")[0]


def check(
    plans: Sequence[Plan],
    history: History,
    view: StoreView,
    *,
    audit: tuple[bool, str],
    sidecar_logs: Sequence[str] = (),
    allowance: int = 0,
    serving: bool = True,
) -> CheckResult:
    """Every check of the module docstring; ``allowance`` > 0 for a fail-open run."""
    out = CheckResult()
    plan_by_session = {p.session: p for p in plans}
    plan_by_intent = {p.intent: p for p in plans}
    calls_by_intent = history.by_intent()
    acquire = {i: [c for c in calls if c.op in ("reserve", "route")] for i, calls in calls_by_intent.items()}
    # Calls on a reservation id, whoever sent them.
    on_rid: dict[str, list[Call]] = defaultdict(list)
    for call in history.calls:
        if call.op in ("commit", "release", "extend") and call.rid:
            on_rid[call.rid].append(call)
    told_to: dict[str, set[int]] = defaultdict(set)
    for intent, calls in acquire.items():
        for call in calls:
            if call.ok:
                told_to[call.rid].add(intent)

    if not serving:
        out.add("liveness", "a sidecar did not serve again within 30 s of the faults being healed")
    ok, text = audit
    if not ok:
        out.add("audit", "`tollgate audit` did not balance:\n      " + "\n      ".join(text.splitlines()[-20:]))

    # -- what each caller was told, intent by intent -----------------------------------------------
    for rid, intents in told_to.items():
        if len(intents) > 1:
            calls = [c for i in sorted(intents) for c in acquire[i]]
            out.add("tenant", f"reservation {rid} was told to {len(intents)} different calls "
                              f"({', '.join(plan_by_intent[i].tenant + ':' + plan_by_intent[i].org for i in intents)})",
                    calls)
    for intent, calls in acquire.items():
        plan = plan_by_intent[intent]
        oks = [c for c in calls if c.ok]
        rids = {c.rid for c in oks}
        if len(rids) > 1:
            out.add("replay-differs", f"one idempotency key, {len(rids)} reservations told: {sorted(rids)}", calls)
        for rid in rids:
            helds = {c.held for c in oks if c.rid == rid}
            if len(helds) > 1:
                out.add("replay-differs", f"reservation {rid} told with different holds {sorted(helds)}", calls)
        if oks and plan.key:
            after = [c for c in calls if c.index > oks[0].index and c.definite]
            if after:
                out.add("replay-differs", f"a resend with the same key after {oks[0].rid} was told was refused: "
                                          f"{after[0].code}: {after[0].message[:200]}", calls)
        if plan.kind == "trespass" and oks:
            out.add("tenant", f"{plan.tenant} (grants {', '.join(tenant(plan.tenant).grants)}) was admitted in "
                              f"{plan.org}/{plan.team}, outside its grants", calls)
        if plan.kind == "invalid" and oks:
            # Answered OK, so the caller knows its reservation: not a caller's-view matter; counted.
            out.stats[f"invalid_admitted_{plan.invalid}"] += 1
        for rid in rids:
            if rid not in view.records:
                out.add("lost-ack", f"reservation {rid} was told to its caller (held "
                                    f"{next(c.held for c in oks if c.rid == rid)}) but the store has no record of it",
                        calls + on_rid.get(rid, []))
        own_tenant = plan.tenant
        for rid in rids:
            for call in on_rid.get(rid, []):
                if call.tenant == own_tenant and call.code in _OWNER_REFUSED:
                    out.add("tenant", f"{own_tenant} was refused {call.op} of its own reservation {rid}: "
                                      f"{call.code}: {call.message[:200]}", [*calls, call])

    # -- another tenant's calls on a reservation; answers outside the error table ------------------
    for call in history.calls:
        if call.code in _INTERNAL:
            out.add("internal", f"{call.op} answered {call.code}: {call.message[:300]}", [call])
        plan = plan_by_intent[call.intent]
        if plan.kind == "meddle" and call.ok:
            out.add("tenant", f"{call.tenant} (grants {', '.join(tenant(call.tenant).grants)}) was answered OK "
                              f"for {call.op} of {call.rid}, a reservation of org {plan.target_org}", [call])

    # -- every record in the store ----------------------------------------------------------------
    lost_keyless: list[Record] = []
    for record in view.records.values():
        out.stats["records"] += 1
        owner = plan_by_session.get(_session_of(record))
        if owner is None:
            out.add("unknown-charge" if record.charged else "tenant",
                    f"record {record.rid} belongs to no caller's call (pools {', '.join(record.pools)})",
                    record=record)
            continue
        calls = acquire.get(owner.intent, [])
        _check_tenant(out, owner, record, calls)
        if _check_told(out, owner, record, calls):
            lost_keyless.append(record)
        _check_end(out, owner, record, calls, on_rid.get(record.rid, []))
        if not record.indexed:
            out.add("audit", f"record {record.rid} is missing from its org's record index: the audit and "
                             "retention never see it", calls, record)
    out.stats["lost_keyless_records"] = len(lost_keyless)
    out.stats["lost_keyless_charged"] = sum(r.charged for r in lost_keyless)

    _check_pools(out, view, acquire, on_rid, plan_by_session, lost_keyless, allowance=allowance,
                 sidecars=len(sidecar_logs))
    if allowance:
        _check_fail_open(out, view, history, sidecar_logs, allowance)
    return out


def _check_tenant(out: CheckResult, plan: Plan, record: Record, calls: list[Call]) -> None:
    expected = pools_of(plan.org, plan.team, plan.user, plan.session)
    strangers = sorted({_pool_org(p) for p in record.pools} - {plan.org})
    if strangers:
        out.add("tenant", f"{plan.tenant}'s call in org {plan.org} holds on pools of org(s) {strangers}", calls,
                record)
    elif set(record.pools) != expected:
        out.add("tenant", f"record pools {sorted(record.pools)} are not its scope's {sorted(expected)}", calls,
                record)
    if record.org_tag and record.org_tag != plan.org:
        out.add("tenant", f"{plan.tenant}'s reservation in org {plan.org} is filed under org {record.org_tag!r}",
                calls, record)
    if plan.kind == "trespass":
        out.add("tenant", f"{plan.tenant} (grants {', '.join(tenant(plan.tenant).grants)}) left a record in "
                          f"{plan.org}/{plan.team}, outside its grants", calls, record)


def _check_told(out: CheckResult, plan: Plan, record: Record, calls: list[Call]) -> bool:
    """Was the caller told about this record? True for a keyless lost answer (tolerated, counted)."""
    oks = [c for c in calls if c.ok]
    if any(c.rid == record.rid for c in oks):
        helds = {c.held for c in oks if c.rid == record.rid}
        if helds != {record.amount}:
            out.add("money-differs", f"caller was told held {sorted(helds)}, the record holds {record.amount}", calls,
                    record)
        return False
    moved = record.charged > 0 or record.state == "open"
    if not moved:
        # A hold no caller was told of, ended without a charge: the sidecar undid what it had given up on.
        out.stats["undone_holds"] += 1
    if oks:
        if not moved:
            return False  # the sidecar undid a hold of an attempt whose answer it had given up on
        out.add("replay-differs", f"the caller was told {oks[0].rid}, yet its call also left {record.rid} "
                                  f"({record.state}, charged {record.charged})", calls, record)
        return False
    if not calls:
        out.add("unknown-charge", "a record for an intent that never called", calls, record)
        return False
    # A lost answer: a call that ended unknown, or one the client itself sent more than once.
    lost = any(c.unknown or c.attempts > 1 for c in calls)
    if not lost:
        if plan.kind == "trespass" or not moved:
            return False  # reported as a tenant violation; or undone, nothing charged
        codes = sorted({c.code for c in calls})
        out.add("error-changed-state", f"every call was refused ({', '.join(codes)}), yet a record is left "
                                       f"({record.state}, charged {record.charged})", calls, record)
        return False
    last = calls[-1]
    if plan.key or last.definite:
        if not moved:
            return False  # undone: released, nothing charged
        if last.definite:
            by = "the client's own retry" if last.attempts > 1 else "the keyed retry"
            out.add("retry-refused", f"{by} was refused ({last.code}: {last.message[:200]}) while the first "
                                     f"attempt's hold exists and was {record.state} for {record.charged}",
                    calls, record)
        else:
            out.add("unknown-charge", f"the caller's retries never got an answer; its hold was {record.state} for "
                                      f"{record.charged}", calls, record)
        return False
    call = calls[0]
    if call.sidecar_unavailable and call.attempts == 1 and not call.client_retry:
        if moved:
            out.add("ghost-hold", f"the sidecar answered UNAVAILABLE ({call.message[:120]}), yet the hold was "
                                  f"written and {record.state} for {record.charged}", calls, record)
        return False
    return True  # a keyless call whose answer was lost: the caller chose not to be able to find it


def _check_end(out: CheckResult, plan: Plan, record: Record, calls: list[Call], on_it: list[Call]) -> None:
    """The record's end against every commit, release and extend sent for it."""
    own = [c for c in on_it if c.intent == plan.intent]
    strangers = [c for c in on_it if c.intent != plan.intent]
    everything = calls + on_it
    told = any(c.ok and c.rid == record.rid for c in calls)
    commits_ok = [c for c in own if c.op == "commit" and c.ok]
    releases_ok = [c for c in own if c.op == "release" and c.ok]
    if record.state == "open":
        out.add("open-after-settle", f"still open {record.expires_ms - record.created_ms} ms after creation",
                everything, record)
        return
    if record.state == "committed":
        matching = [c for c in on_it if c.op == "commit" and c.args.get("fp") == record.cfp]
        if not matching:
            out.add("money-differs", f"committed with figures {record.cfp!r} that no commit sent", everything, record)
        elif all(c.intent != plan.intent for c in matching):
            out.add("tenant", f"committed by another tenant's call ({matching[0].tenant})", everything, record)
        elif not any(c.ok for c in matching):
            if all(c.definite for c in matching):
                out.add("error-changed-state", f"every commit with these figures was refused "
                                               f"({matching[-1].code}), yet the record is committed", everything,
                        record)
            else:
                out.stats["commits_unanswered"] += 1
        for c in commits_ok:
            if c.charged != record.charged:
                out.add("money-differs", f"commit told charged {c.charged}, the record charged {record.charged}",
                        everything, record)
                break
            if c.args.get("fp") != record.cfp:
                out.add("money-differs", f"commit with {c.args.get('fp')} answered OK, but the record is committed "
                                         f"with {record.cfp}", everything, record)
                break
        if releases_ok:
            out.add("money-differs", f"release answered OK, yet the record is committed for {record.charged}",
                    everything, record)
    elif record.state == "expired":
        if record.charged != record.amount:
            out.add("money-differs", f"expired with charge {record.charged}, its hold was {record.amount} (expiry "
                                     "policy: charge)", everything, record)
        if commits_ok:
            out.add("money-differs", f"commit answered OK (charged {commits_ok[0].charged}), yet the record expired "
                                     f"and was charged {record.charged}", everything, record)
        if releases_ok:
            out.add("money-differs", f"release answered OK, yet the record expired and was charged {record.charged}",
                    everything, record)
    elif record.state == "released":
        if record.charged:
            out.add("money-differs", f"released with a charge of {record.charged}", everything, record)
        if commits_ok:
            out.add("money-differs", f"commit answered OK (charged {commits_ok[0].charged}), yet the record is "
                                     "released", everything, record)
        own_releases = [c for c in own if c.op == "release"]
        stranger_releases = [c for c in strangers if c.op == "release" and not c.definite]
        if told and not any(not c.definite for c in own_releases):
            if stranger_releases:
                out.add("tenant", f"released by another tenant's call ({stranger_releases[0].tenant})", everything,
                        record)
            elif own_releases:
                out.add("error-changed-state", f"every release was refused ({own_releases[-1].code}), yet the record "
                                               "is released", everything, record)
            else:
                out.add("money-differs", "released, though its caller never released it", everything, record)
    else:
        out.add("money-differs", f"unknown record state {record.state!r}", everything, record)


def _check_pools(
    out: CheckResult,
    view: StoreView,
    acquire: dict[int, list[Call]],
    on_rid: dict[str, list[Call]],
    plan_by_session: dict[str, Plan],
    lost_keyless: list[Record],
    *,
    allowance: int,
    sidecars: int,
) -> None:
    lost = {r.rid for r in lost_keyless}
    by_pool: dict[str, list[Record]] = defaultdict(list)
    for record in view.records.values():
        for pool in record.pools:
            by_pool[pool].append(record)
    for pool_id in sorted(set(view.pools) | set(by_pool)):
        row = view.pools.get(pool_id)
        records = by_pool.get(pool_id, [])
        charged = [r for r in records if r.state in _CHARGED]
        spent_rec = sum(r.charged for r in charged) + (row.arch_spent if row else 0)
        calls_rec = len(charged) + (row.arch_calls if row else 0)
        held_rec = sum(r.amount for r in records if r.state == "open")
        spent, held, calls = (row.spent, row.held, row.calls) if row else (0, 0, 0)
        if (spent, held, calls) != (spent_rec, held_rec, calls_rec):
            out.add("pool-mismatch", f"pool {pool_id}: stored spent/held/calls {spent}/{held}/{calls}, its records "
                                     f"say {spent_rec}/{held_rec}/{calls_rec}")
        if held:
            out.add("open-after-settle", f"pool {pool_id} still holds {held} in {row.held_calls if row else 0} holds")
        # What the callers were told about this pool's money.
        told = unexplained = lost_sum = reported = 0
        for r in charged:
            if r.rid in lost:
                lost_sum += r.charged
                continue
            said = _told_charge(r, acquire, on_rid, plan_by_session)
            if r.rid in out.flagged:
                reported += r.charged
            elif said is None:
                unexplained += r.charged
            else:
                told += said
        # Records already reported on their own are not reported again through each of their pools.
        if told + lost_sum + reported != spent:
            out.add("pool-mismatch", f"pool {pool_id}: spent {spent}, callers were told {told} (+ {lost_sum} from "
                                     f"keyless calls whose answers were lost, {reported} in records reported above; "
                                     f"{unexplained} no caller was told)")
        cap, policy = cap_of(pool_id)
        if policy in ("hard", "soft") and cap:
            admitted = sum(min(r.charged, r.amount) for r in charged)
            bound = cap + (allowance * sidecars if allowance else 0)
            if admitted > bound:
                out.add("admission", f"pool {pool_id} ({policy}, cap {cap}) admitted {admitted}, overshoot aside "
                                     f"(bound {bound})")


def _told_charge(record: Record, acquire: dict[int, list[Call]], on_rid: dict[str, list[Call]],
                 plan_by_session: dict[str, Plan]) -> int | None:
    """What the record's caller was told it would be charged: a commit's answer, or its hold at expiry."""
    plan = plan_by_session.get(_session_of(record))
    if plan is None:
        return None
    told = [c for c in acquire.get(plan.intent, []) if c.ok and c.rid == record.rid]
    if not told:
        return None
    if record.state == "committed":
        oks = [c for c in on_rid.get(record.rid, []) if c.op == "commit" and c.ok and c.intent == plan.intent]
        if oks:
            return oks[0].charged
        return record.charged if record.cfp in {c.args.get("fp") for c in on_rid.get(record.rid, [])
                                                if c.intent == plan.intent} else None
    return told[0].held  # expired: its hold


_ADMITTED = re.compile(r"admitted reservation (\S+) on the fail-open allowance")
_WROTE = re.compile(r"wrote fail-open reservation (\S+)")


def _check_fail_open(out: CheckResult, view: StoreView, history: History, logs: Sequence[str],
                     allowance: int) -> None:
    """Per sidecar, between two write-backs, local charges stay within the allowance; all are written back."""
    local_told = {c.rid for c in history.calls if c.op in ("reserve", "route") and c.ok and c.pools_told == 0}
    logged: set[str] = set()
    for index, text in enumerate(logs):
        # In the log's own order: timestamps are rounded to the millisecond and may tie.
        events: list[tuple[str, str]] = []
        for line in text.splitlines():
            if "fail-open" not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            msg = str(entry.get("msg", ""))
            if m := _ADMITTED.search(msg):
                events.append(("admit", m.group(1)))
            elif m := _WROTE.search(msg):
                events.append(("wrote", m.group(1)))
        epoch: list[str] = []
        epochs: list[list[str]] = []
        for what, rid in events:
            if what == "admit":
                epoch.append(rid)
                logged.add(rid)
            elif epoch:
                epochs.append(epoch)
                epoch = []
        if epoch:
            epochs.append(epoch)
        out.stats["fail_open_admitted"] += sum(len(e) for e in epochs)
        for rids in epochs:
            records = [view.records[r] for r in rids if r in view.records]
            local = sum(min(r.charged, r.amount) for r in records if r.state in _CHARGED)
            if local > allowance:
                out.add("fail-open-bound", f"sidecar {index} admitted {len(rids)} reservations on its own while the "
                                           f"store was unreachable, charged {local} > allowance {allowance}")
    for rid in sorted(local_told | logged):
        record = view.records.get(rid)
        if record is None:
            out.add("fail-open-lost", f"reservation {rid}, admitted on the fail-open allowance, never reached the "
                                      "store", [c for c in history.calls if c.rid == rid])
        elif record.state == "open":
            out.add("fail-open-lost", f"reservation {rid}, admitted on the fail-open allowance, is still open",
                    [c for c in history.calls if c.rid == rid], record)
    out.stats["fail_open_told_local"] = len(local_told)
