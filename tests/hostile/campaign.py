"""The hostile campaign: one real sidecar, real gRPC on loopback, a seeded plan of attacks and honest traffic.

Phases:

0. **probe** — the server's message limit, found as a stranger would: by sending too much.
1. **concurrent** — the plan's first part, several calls in flight, honest tenants among the
   attackers; the sidecar's RSS is sampled throughout (and on ``--store redis`` the store is
   stalled now and then, so other calls meet the stall too).
2. **settle** — reservations that could expire during the next phase are ended by their
   owners, who learn what expiry already charged.
3. **sequential** — the rest of the plan one call at a time: around every call answered with
   an error the ledger (file or Redis keys) is compared, for nothing that lasts may change;
   around every cross-tenant attempt the victim's pools are read with the victim's own token;
   after an answer that was lost (an impatient caller, a stalled store) the pools must move
   only as the answers said, once the sidecar has had a moment to undo.
4. **reconcile** — every reservation still open is released by its owner; then every pool's
   spent and held (GetBudget) and every ledger record must be what the answers said, and
   ``tollgate audit`` must balance.

Checks, as reported:

- ``a`` no call answered UNKNOWN or INTERNAL, nor went unanswered, nor was answered too large to
  read; bytes that do not parse answer INVALID_ARGUMENT "malformed request" (or UNAUTHENTICATED
  without a valid token)
- ``b`` the sidecar's RSS stays under the shipped Kubernetes memory limit
- ``c`` ``tollgate audit`` balances
- ``d`` no tenant reaches another's pools or reservations
- ``e`` a call answered with an error changes nothing that lasts; a lost answer is undone or found
  again by its retry (sequential phase)
- ``f`` money moved only as the callers were told (pools and records at the end), and a caller
  may end every reservation it was handed
- ``g`` a keyed retry returns the same reservation, whatever the sidecar learned meanwhile
- ``h`` hostile input leaves no traceback in the sidecar's log
- ``status`` a hostile value got a status other than the deliberate one it calls for
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError, Message

from tests.support import sidecar_process
from tests.support.redis_server import RedisServer
from tests.support.sidecar_process import ROOT, SidecarProcess
from tollgate.grpc.parse import BODY_LIMITS
from tollgate_client.v1 import tollgate_pb2 as pb

from .book import Book, Held
from .garbage import tag, varint
from .ledger_view import LedgerView, RedisView, Snapshot
from .world import (
    ADMIN,
    CALLERS,
    METHODS,
    NEVER,
    VAULT_CAPS,
    Caller,
    HonestScope,
    campaign_config,
    memory_limit_bytes,
    read_limits,
)

__all__ = ["Cross", "Options", "Report", "Result", "Runner", "Violation", "run", "run_sync"]

C = grpc.StatusCode
DEPLOYMENT = ROOT / "k8s" / "base" / "deployment.yaml"
SWEEP_S = 1.0
REDIS_PREFIX = "hostile"


@dataclass(frozen=True)
class Options:
    calls: int = 20_000
    seed: int = 1
    concurrency: int = 8
    sequential_share: float = 0.4
    """Share of the plan run one call at a time, with the ledger compared around each call."""
    workdir: Path | None = None
    rss_ceiling: int = 3 * 2**30
    """Past this RSS the campaign stops sending oversized requests: the machine is shared."""
    huge_share: float = 0.006
    min_huge: int = 24
    sidecar_src: Path | None = None
    """Another checkout's ``sidecar/`` directory to attack (default: this one's)."""
    store: str = "sqlite"
    """``sqlite`` (the embedded ledger file) or ``redis`` (a redis-server of the campaign's own, stalled at times)."""


@dataclass
class Violation:
    check: str
    kind: str
    method: str
    detail: str
    repro: str = ""


@dataclass
class Result:
    code: grpc.StatusCode
    details: str
    response: Message | None = None

    @property
    def ok(self) -> bool:
        return self.code == C.OK


@dataclass(frozen=True)
class Cross:
    """A call made with one tenant's credentials against another's: ``victim`` is read before and after."""

    victim: tuple[tuple[Caller, HonestScope], ...]


Who = Caller | str | None
"""A configured caller; a raw ``authorization`` value (unknown or malformed); or no credentials."""


@dataclass
class Report:
    options: Options
    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    violations: list[Violation] = field(default_factory=list)
    peak_rss: int = 0
    hwm_rss: int = 0
    baseline_rss: int = 0
    end_rss: int = 0
    limit: int = 0
    limit_text: str = ""
    audit_ok: bool | None = None
    audit_text: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tracebacks: int = 0
    workdir: str = ""
    samples: dict[str, str] = field(default_factory=dict)
    """The first answer's details of each (kind, status)."""

    @property
    def peak(self) -> int:
        """The larger of the sampled peak and the kernel's high-water mark."""
        return max(self.peak_rss, self.hwm_rss)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def by_check(self) -> dict[str, list[Violation]]:
        out: dict[str, list[Violation]] = defaultdict(list)
        for v in self.violations:
            out[v.check].append(v)
        return dict(sorted(out.items()))

    def render(self, examples: int = 3) -> str:
        mib = 2**20
        lines = [f"hostile campaign: seed {self.options.seed}, {self.total_calls} calls "
                 f"({self.options.calls} planned), concurrency {self.options.concurrency}"]
        lines.append("phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items()))
        lines.append("calls by kind:")
        for kind, n in sorted(self.calls.items(), key=lambda kv: (-kv[1], kv[0])):
            codes = ", ".join(f"{c} {k}" for c, k in sorted(self.by_kind[kind].items(), key=lambda kv: -kv[1]))
            lines.append(f"  {kind:<22} {n:>6}   {codes}")
        lines.append("status codes: " + ", ".join(f"{c} {n}" for c, n in self.statuses.most_common()))
        lines.append(f"RSS: baseline {self.baseline_rss / mib:.0f} MiB, peak {self.peak / mib:.0f} MiB (sampled "
                     f"{self.peak_rss / mib:.0f}, VmHWM {self.hwm_rss / mib:.0f}), "
                     f"at the end {self.end_rss / mib:.0f} MiB; "
                     f"limit {self.limit_text} ({self.limit / mib:.0f} MiB, k8s/base/deployment.yaml)")
        lines.append(f"audit: {'OK' if self.audit_ok else 'FAILED' if self.audit_ok is False else 'not run'}"
                     + (f" ({self.audit_text.strip().splitlines()[0]})" if self.audit_text.strip() else ""))
        lines.append(f"sidecar log: {self.tracebacks} tracebacks")
        for note in self.notes:
            lines.append(f"note: {note}")
        groups = self.by_check()
        if not groups:
            lines.append("violations: none")
        for check, items in groups.items():
            lines.append(f"VIOLATIONS [{check}] {len(items)}:")
            shapes: dict[str, list[Violation]] = defaultdict(list)
            for v in items:
                shapes[f"{v.kind} {v.method}: {_shape(v.detail)}"].append(v)
            for group in list(shapes.values())[:examples]:
                first = group[0]
                lines.append(f"  - {len(group)} x {first.kind} {first.method}: {first.detail[:400]}")
                if first.repro:
                    lines.append(f"      repro: {first.repro[:400]}")
            if len(shapes) > examples:
                lines.append(f"  … and {len(shapes) - examples} more shapes: "
                             + "; ".join(s[:90] for s in list(shapes)[examples:examples + 8]))
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "seed": self.options.seed, "planned": self.options.calls, "calls": self.total_calls,
            "calls_by_kind": dict(self.calls), "statuses": dict(self.statuses),
            "statuses_by_kind": {k: dict(v) for k, v in self.by_kind.items()},
            "rss": {"baseline": self.baseline_rss, "peak": self.peak, "peak_sampled": self.peak_rss,
                    "hwm": self.hwm_rss, "end": self.end_rss, "limit": self.limit},
            "audit_ok": self.audit_ok, "audit": self.audit_text, "phases": self.phases, "notes": self.notes,
            "tracebacks": self.tracebacks, "samples": self.samples,
            "violations": [v.__dict__ for v in self.violations],
        }


class RssSampler(threading.Thread):
    """VmRSS of one process, every few milliseconds, on a thread of its own."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.last = 0
        self._stop_event = threading.Event()

    def read(self, key: str = "VmRSS") -> int:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            rss = self.read()
            if rss:
                self.last = rss
                self.peak = max(self.peak, rss)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)


_OVERSIZED = "more than any valid"
_MALFORMED = "malformed request"
_STORE_DOWN = "budget store"
"""In the sidecar's UNAVAILABLE when its store did not answer (not in one gRPC makes when the sidecar is gone)."""
PROBE_BYTES = 64 * 2**20
"""A request larger than any message limit a sidecar is likely to run with."""


def tag_ld(field: int, size: int) -> bytes:
    """Field ``field`` as a length-delimited run of ``size`` bytes."""
    return tag(field, 2) + varint(size) + b"y" * size


GROUPED: ContextVar[bool] = ContextVar("hostile_grouped", default=False)
"""Set by an action around calls it sends together: their ledger is compared by the action, not per call."""


class Runner:
    """One campaign against one sidecar: the calls, what they answered, and the checks."""

    def __init__(self, options: Options, sidecar: SidecarProcess, ledger: LedgerView | RedisView, report: Report,
                 sampler: RssSampler, redis_url: str | None = None) -> None:
        self.options = options
        self.sidecar = sidecar
        self.ledger = ledger
        self.report = report
        self.sampler = sampler
        self.book = Book()
        self.sequential = False
        self.concurrent = False
        self.limits = read_limits(sidecar.config)
        self.max_ttl_ms = self.limits.max_ttl_ms
        self.channel = grpc.aio.insecure_channel(sidecar.target, options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        self._calls = {name: self.channel.unary_unary(m.path) for name, m in METHODS.items()}
        self.huge_gate = asyncio.Semaphore(2)
        self.redis_url = redis_url
        self.stalls: list[list[float]] = []
        """[start, end] of each store stall (monotonic seconds): UNAVAILABLE is the right answer inside one."""
        self.keyed: dict[int, tuple[Caller, str, bytes, str, int]] = {}
        """Keyed first attempts by plan slot: caller, method, request bytes, reservation id, hold."""
        self.cache: dict[tuple[str, ...], bytes] = {}
        self.history: list[tuple[int, int, str, str, str, str, str, str]] = []
        """Every call: (start, end) in wall-clock ms, kind, method, caller, status, scope org, what."""
        self.keys: list[tuple[Caller, str]] = []
        """Idempotency keys tenants used, for others to try."""
        self._n = 0

    async def close(self) -> None:
        await self.channel.close()

    async def probe_message_limit(self) -> None:
        """The largest request the server accepts, as gRPC's refusal of a bigger one states it."""
        probe = PROBE_BYTES
        body = tag_ld(1, probe)
        code = "OK"
        try:
            await self._calls["GetQuality"](body, timeout=60)
            found = None
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            m = re.search(r"larger than max \((\d+) vs\. (\d+)\)", exc.details() or "")
            found = int(m.group(2)) if exc.code() == C.RESOURCE_EXHAUSTED and m else None
        self.report.calls["probe"] += 1
        self.report.statuses[code] += 1
        self.report.by_kind["probe"][code] += 1
        declared = self.limits.max_message_bytes
        self.limits.max_message_bytes = found if found is not None else probe
        self.report.notes.append(
            f"the server refuses requests over {found} bytes (limits.max_message_bytes"
            + (f"; the config says {declared})" if declared else ", the shipped default)")
            if found is not None else f"no refusal of a {probe}-byte request: sizes up to that are used")
        if declared and found is not None and found != declared:
            self.violation("status", "probe", "-", f"limits.max_message_bytes is {declared} but the server "
                           f"refuses requests over {found} bytes")

    # -- one call -------------------------------------------------------------------------------

    def violation(self, check: str, kind: str, method: str, detail: str, repro: str = "") -> None:
        self.report.violations.append(Violation(check, kind, method, detail, repro))

    async def call(self, kind: str, method: str, request: Message | bytes, who: Who, *,
                   expect: frozenset[grpc.StatusCode] | None = None, must_fail: bool = False,
                   cross: Cross | None = None, deadline_s: float = 30.0, lost_ok: bool = False,
                   what: str = "") -> Result:
        """Send ``request`` (a message, or raw bytes) to ``method`` as ``who``; check the answer.

        ``expect``: the statuses the input calls for (None: any deliberate one). ``must_fail``:
        an OK answer is itself a violation. ``cross``: the victim's pools must not move.
        ``lost_ok``: the deadline is the point (an impatient caller); DEADLINE_EXCEEDED is no fault.
        A call answered UNAVAILABLE while the store was stalled is retried as a client would,
        when the method is safe to retry, and the retry's answer is the one checked.
        """
        spec = METHODS[method]
        body = request if isinstance(request, bytes) else request.SerializeToString()
        metadata: tuple[tuple[str, str], ...] = ()
        if isinstance(who, Caller):
            metadata = who.metadata
        elif isinstance(who, str):
            metadata = (("authorization", who),)
        # Over the server's message limit the body is never parsed: gRPC itself refuses it.
        parsed = _parse(spec.request, body) if len(body) <= self.limits.max_message_bytes else spec.request()
        before: Snapshot | None = None
        victim_before: list[list[pb.PoolState]] | None = None
        if self.sequential and not GROUPED.get():
            before = self.ledger.snapshot()
            if cross is not None:
                victim_before = await self.read_pools(cross.victim)
        name = who.name if isinstance(who, Caller) else ("anonymous" if who is None else "bad-token")
        label = f"{name} {what}".strip()
        repro = self._repro(method, body, who)
        stalled = False
        org = parsed.scope.org_id if parsed is not None and "scope" in parsed.DESCRIPTOR.fields_by_name else ""  # type: ignore[attr-defined]
        for attempt in range(6):
            started = time.monotonic()
            wall = time.time_ns() // 1_000_000
            try:
                raw = await self._calls[method](body, metadata=metadata, timeout=deadline_s)
                result = Result(C.OK, "", spec.response.FromString(raw))
            except grpc.aio.AioRpcError as exc:
                result = Result(exc.code(), exc.details() or "")
            tally = kind if attempt == 0 else f"{kind}.retry"
            self.report.calls[tally] += 1
            self.report.statuses[result.code.name] += 1
            self.report.by_kind[tally][result.code.name] += 1
            self.report.samples.setdefault(f"{tally} {method} {result.code.name}", result.details[:300])
            self.history.append((wall, time.time_ns() // 1_000_000, tally, method, name, result.code.name, org,
                                 what))
            # The sidecar's own UNAVAILABLE (its store did not answer in time: a stall, or a loaded
            # machine) is a deliberate answer, and a lost one: the call may yet take effect.
            stalled = result.code == C.UNAVAILABLE and (_STORE_DOWN in result.details
                                                        or self.stalled(started, time.monotonic()))
            if not (stalled and parsed is not None and _retryable(method, parsed)):
                break
            await self.stall_over()
            await asyncio.sleep(0.2 * attempt)
        code = result.code.name
        lost = stalled or (lost_ok and result.code == C.DEADLINE_EXCEEDED)
        if result.code in NEVER:
            self.violation("a", kind, method, f"{label}: {code} {result.details[:300]!r}", repro)
        elif result.code in (C.DEADLINE_EXCEEDED, C.UNAVAILABLE, C.CANCELLED) and not lost:
            self.violation("a", kind, method, f"{label}: no answer ({code} {result.details[:200]!r})", repro)
        if "metadata size exceeds" in result.details:
            self.violation("a", kind, method, f"{label}: the sidecar's answer was too large for a default client to "
                           f"read (its message echoes the input?): {result.details[:200]!r}", repro)
        if parsed is None:
            authed = isinstance(who, Caller)
            # A body larger than any valid message of its method is refused for its size, unparsed.
            oversized = len(body) > BODY_LIMITS.get(spec.request.DESCRIPTOR.full_name, (len(body), ""))[0]
            good = (result.code == C.INVALID_ARGUMENT
                    and (_MALFORMED in result.details or (oversized and _OVERSIZED in result.details))) or (
                not authed and result.code == C.UNAUTHENTICATED)
            if not good:
                self.violation("a", kind, method, f"{label}: bytes that do not parse answered {code} "
                               f"{result.details[:200]!r}; want INVALID_ARGUMENT '{_MALFORMED} …'"
                               + ("" if authed else " or UNAUTHENTICATED"), repro)
        elif (expect is not None and result.code not in expect and result.code not in NEVER and not lost
              and "metadata size exceeds" not in result.details):
            self.violation("status", kind, method, f"{label}: {code} {result.details[:200]!r}, want one of "
                           f"{sorted(c.name for c in expect)}", repro)
        if must_fail and result.ok:
            self.violation("d" if cross is not None else "status", kind, method, f"{label}: answered OK", repro)
        if result.ok and parsed is not None and result.response is not None:
            self._observe(kind, method, parsed, result.response, who, repro)
        elif not result.ok and parsed is not None:
            rid = getattr(parsed, "reservation_id", "")
            if isinstance(rid, str) and rid:
                self.book.refused(name, rid, result.details)
                held = self.book.holds.get(rid)
                scope = getattr(parsed, "scope", None) if "scope" in parsed.DESCRIPTOR.fields_by_name else None
                if (result.code == C.PERMISSION_DENIED and held is not None and isinstance(who, Caller)
                        and spec.service == "TollgateService"
                        and held.caller == who.name and (scope is None or who.permits(scope.org_id, scope.team_id))):
                    self.violation("f", kind, method, f"{label}: refused the use of its own reservation {rid} "
                                   f"(handed to it by {held.how}, pools {list(held.pools)}): "
                                   f"{result.details[:160]!r}", repro)
        # A lost answer is checked by what follows it (the retry, the undo, the pools): see the actions.
        if before is not None and not result.ok and not lost:
            after = self.ledger.snapshot()
            if after is not before and after.tables != before.tables:
                self.violation("e", kind, method, f"{label}: answered {code} {result.details[:160]!r} and the "
                               f"ledger changed: " + " | ".join(before.diff(after)), repro)
        if victim_before is not None and cross is not None:
            victim_after = await self.read_pools(cross.victim)
            for (owner, scope), b, a in zip(cross.victim, victim_before, victim_after, strict=True):
                if a != b:
                    self.violation("d", kind, method, f"{label}: answered {code}; pools of {scope} (read by "
                                   f"{owner.name}) moved: {_pool_diff(b, a)}", repro)
        self._flush_book(kind, method)
        if method == "CommitBatch" and result.ok and isinstance(parsed, pb.CommitBatchRequest) and not kind.endswith(
                ".retry"):
            await self._resend_unavailable(kind, parsed, result, who, what)
        return result

    async def _resend_unavailable(self, kind: str, request: pb.CommitBatchRequest, result: Result, who: Who,
                                  what: str) -> None:
        """Send again the commits of a batch the store did not take, as the clients' senders do: such a
        commit may have taken effect before the sidecar gave up on the store, and only its retry tells."""
        assert isinstance(result.response, pb.CommitBatchResponse)
        unavailable = C.UNAVAILABLE.value[0]
        again = [item for item, r in zip(request.commits, result.response.results, strict=True)
                 if r.code == unavailable]
        for attempt in range(5):
            if not again:
                return
            await self.stall_over()
            await asyncio.sleep(0.2 * attempt)
            retried = await self.call(f"{kind}.retry", "CommitBatch", pb.CommitBatchRequest(commits=again), who,
                                      what=what)
            if not retried.ok or not isinstance(retried.response, pb.CommitBatchResponse):
                return
            again = [item for item, r in zip(again, retried.response.results, strict=True) if r.code == unavailable]

    # -- store stalls -----------------------------------------------------------------------------

    async def stall(self, seconds: float) -> None:
        """Freeze the Redis store for ``seconds`` (``DEBUG SLEEP``), as a stalled primary would."""
        assert self.redis_url is not None
        import redis

        def sleep() -> None:
            with redis.Redis.from_url(self.redis_url or "", socket_timeout=seconds + 30) as client:
                client.execute_command("DEBUG", "SLEEP", f"{seconds:.3f}")

        window = [time.monotonic(), time.monotonic() + seconds + 0.5]
        self.stalls.append(window)
        try:
            await asyncio.to_thread(sleep)
        finally:
            window[1] = time.monotonic() + 0.3
            self.report.calls["fault.stall"] += 1
            self.report.by_kind["fault.stall"][f"DEBUG SLEEP {seconds:g}"] += 1

    def stalled(self, start: float, end: float) -> bool:
        return any(s <= end and start <= e for s, e in self.stalls)

    async def stall_over(self) -> None:
        """Until every stall so far has ended (and its grace with it)."""
        if self.stalls:
            await asyncio.sleep(max(0.05, max(e for _, e in self.stalls) - time.monotonic()))
            if max(e for _, e in self.stalls) > time.monotonic():
                await self.stall_over()

    async def read_pools(self, pairs: Sequence[tuple[Caller, HonestScope]]) -> list[list[pb.PoolState]]:
        """Each scope's pools, read with its owner's token (GetBudget); counted as ``check.pools``."""
        out = []
        for owner, scope in pairs:
            try:
                raw = await self._calls["GetBudget"](pb.GetBudgetRequest(scope=scope.pb()).SerializeToString(),
                                                     metadata=owner.metadata, timeout=30)
                out.append(list(pb.GetBudgetResponse.FromString(raw).pools))
                code = "OK"
            except grpc.aio.AioRpcError as exc:
                out.append([pb.PoolState(pool_id=f"<{exc.code().name}: {exc.details()}>")])
                code = exc.code().name
            self.report.calls["check.pools"] += 1
            self.report.statuses[code] += 1
            self.report.by_kind["check.pools"][code] += 1
        return out

    async def moved_as_told(self, kind: str, method: str, owner: Caller, scope: HonestScope,
                            before: list[pb.PoolState], told_before: dict[str, tuple[int, int]], what: str,
                            patience_s: float = 5.0) -> None:
        """Sequential phase: the scope's pools moved exactly as the answers since ``before`` said.

        An undo runs after the answer it undoes, so the pools are read again for ``patience_s``
        before a difference counts.
        """
        deadline = time.monotonic() + patience_s
        while True:
            (after,) = await self.read_pools([(owner, scope)])
            told_after = self.book.expected()
            b = {p.pool_id: p for p in before}
            wrong = []
            for p in after:
                q = b.get(p.pool_id)
                if q is None or p.level == pb.POOL_LEVEL_REQUEST:
                    continue
                moved = (p.spent_nanos - q.spent_nanos, p.held_nanos - q.held_nanos)
                t0, t1 = told_before.get(p.pool_id, (0, 0)), told_after.get(p.pool_id, (0, 0))
                told = (t1[0] - t0[0], t1[1] - t0[1])
                if moved != told:
                    wrong.append(f"pool {p.pool_id} moved spent/held by {moved}; the answers said {told}")
            if not wrong or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        for line in wrong:
            self.violation("e", kind, method, f"{owner.name} {what}: {line}")

    def _flush_book(self, kind: str, method: str) -> None:
        for check, detail in self.book.problems:
            self.violation(check, kind, method, detail)
        self.book.problems.clear()

    def _observe(self, kind: str, method: str, request: Message, response: Message, who: Who, repro: str) -> None:
        """An OK answer: record what the caller was told; refuse what it should never have been told."""
        caller = who if isinstance(who, Caller) else None
        name = caller.name if caller else "anonymous"
        spec_service = METHODS[method].service
        if spec_service == "AdminService" and (caller is None or not caller.admin):
            self.violation("d", kind, method, f"{name} is not an admin and {method} answered OK", repro)
        has_scope = "scope" in request.DESCRIPTOR.fields_by_name and request.HasField("scope")
        scope_msg: pb.Scope | None = getattr(request, "scope") if has_scope else None  # noqa: B009
        if scope_msg is not None and caller is not None and not caller.permits(scope_msg.org_id, scope_msg.team_id):
            self.violation("d", kind, method, f"{name} was answered OK in org {scope_msg.org_id!r} team "
                           f"{scope_msg.team_id!r}, outside its grants {list(caller.grants)}", repro)
        if isinstance(response, pb.CommitBatchResponse):
            self._observe_batch(kind, method, request, response, caller, repro)
            return
        rid = getattr(request, "reservation_id", "")
        if isinstance(rid, str) and rid and caller is not None:
            held = self.book.holds.get(rid)
            if held is not None and not caller.permits(held.scope.org, held.scope.team):
                self.violation("d", kind, method, f"{name} used {held.caller}'s reservation {rid} "
                               f"(org {held.scope.org!r}) and was answered OK", repro)
        scope = HonestScope(scope_msg.org_id, scope_msg.team_id, scope_msg.user_id,
                            scope_msg.session_id) if scope_msg is not None else None
        if isinstance(response, pb.RouteResponse):
            assert scope is not None
            if response.HasField("reservation"):
                self.book.reserved(name, scope, response.reservation, "Route")
            if response.HasField("shadow") and response.shadow.HasField("reservation"):
                self.book.reserved(name, scope, response.shadow.reservation, "Route's shadow")
        elif isinstance(response, pb.ReserveResponse):
            assert scope is not None
            self.book.reserved(name, scope, response.reservation, "Reserve")
        elif isinstance(response, pb.EscalateResponse):
            assert scope is not None
            if response.HasField("previous_commit"):
                self.book.committed(name, response.previous_commit)
            self.book.reserved(name, scope, response.reservation, "Escalate")
        elif isinstance(response, pb.CommitResponse):
            self.book.committed(name, response)
        elif isinstance(response, pb.ReleaseResponse):
            self.book.released(name, response.reservation_id)
        elif isinstance(response, pb.ExtendResponse):
            self.book.extended(response.reservation_id, response)
        elif isinstance(response, pb.EndReservationResponse):
            self.book.ended_by_admin(name, response)

    def _observe_batch(self, kind: str, method: str, request: Message, response: pb.CommitBatchResponse,
                       caller: Caller | None, repro: str) -> None:
        """Each commit of a batch answered as if it had come alone: the same checks, item by item."""
        assert isinstance(request, pb.CommitBatchRequest)
        name = caller.name if caller else "anonymous"
        if len(response.results) != len(request.commits):
            self.violation("status", kind, method, f"{name}: {len(request.commits)} commits answered with "
                           f"{len(response.results)} results", repro)
            return
        for item, result in zip(request.commits, response.results, strict=True):
            held = self.book.holds.get(item.reservation_id)
            if result.code != 0:
                self.book.refused(name, item.reservation_id, result.message)
                if (result.code == C.PERMISSION_DENIED.value[0] and held is not None and caller is not None
                        and held.caller == caller.name):
                    self.violation("f", kind, method, f"{name}: a batch refused the commit of its own reservation "
                                   f"{item.reservation_id}: {result.message[:160]!r}", repro)
                continue
            if held is not None and caller is not None and not caller.permits(held.scope.org, held.scope.team):
                self.violation("d", kind, method, f"{name} committed {held.caller}'s reservation "
                               f"{item.reservation_id} (org {held.scope.org!r}) in a batch", repro)
            self.book.committed(name, result.response)

    def _repro(self, method: str, body: bytes, who: Who) -> str:
        token = (f"Bearer <{who.name}'s token>" if isinstance(who, Caller) else
                 "none" if who is None else repr(who[:40]))
        shown = body.hex() if len(body) <= 96 else f"{len(body)} bytes, starting {body[:48].hex()}"
        return f"{METHODS[method].path} authorization={token} body={shown}"

    # -- helpers for actions ------------------------------------------------------------------

    def open_holds(self, *, callers: Sequence[str] | None = None, free: bool = True) -> list[Held]:
        out = [h for h in self.book.open_holds() if callers is None or h.caller in callers]
        if free:
            # Shadow holds are the honest route's to end; the other moves leave them alone.
            out = [h for h in out if not h.claimed and not h.keep and h.how != "Route's shadow"]
        return out

    def suspects(self, org: str, at_ms: int, window_ms: int = 3_000) -> str:
        """Calls of ``org`` that ended without an answer, in the ``window_ms`` up to ``at_ms``."""
        found = [f"{kind} {method} by {who} ({what}) answered {code} at {end - at_ms:+d} ms"
                 for start, end, kind, method, who, code, o, what in self.history
                 if o == org and code != "OK" and method in ("Reserve", "Route", "Escalate")
                 and at_ms - window_ms <= end and start <= at_ms + 200 and code in ("UNAVAILABLE", "DEADLINE_EXCEEDED",
                                                                                   "CANCELLED")]
        return "; ".join(found[-4:]) or "none"

    def cross(self, victim: tuple[tuple[Caller, HonestScope], ...]) -> Cross:
        return Cross(victim)

    def rss_high(self) -> bool:
        return self.sampler.last > self.options.rss_ceiling


def _shape(detail: str) -> str:
    """A violation's message with its ids and figures blanked, to group alike ones."""
    return re.sub(r"[0-9a-f]{24}\.\S+|\d+", "#", detail)[:120]


def _retryable(method: str, request: Message) -> bool:
    """Safe to send again: idempotent by reservation id, or a reserve carrying its idempotency key."""
    if method in ("Commit", "CommitBatch", "Release", "Extend", "Escalate", "EndReservation", "GetBudget",
                  "GetQuality"):
        return True
    if method in ("Reserve", "Route") and request.HasField("reservation"):
        return bool(request.reservation.idempotency_key)  # type: ignore[attr-defined]
    return method == "Route" and not request.reserve  # type: ignore[attr-defined]


def _parse(cls: type[Message], body: bytes) -> Message | None:
    try:
        return cls.FromString(body)
    except DecodeError:
        return None


def _pool_diff(before: list[pb.PoolState], after: list[pb.PoolState]) -> str:
    b = {p.pool_id: p for p in before}
    out = []
    for p in after:
        q = b.get(p.pool_id)
        if q is None:
            out.append(f"{p.pool_id} appeared")
        elif q != p:
            fields = [f"{f.name} {getattr(q, f.name)}->{getattr(p, f.name)}" for f in p.DESCRIPTOR.fields
                      if getattr(q, f.name) != getattr(p, f.name)]
            out.append(f"{p.pool_id}: {', '.join(fields)}")
    return "; ".join(out) or "pool list changed"


# -- the campaign ---------------------------------------------------------------------------------


async def _phase(runner: Runner, plan: Sequence[tuple[str, int, int]], concurrency: int) -> None:
    from .actions import ACTIONS

    queue = list(reversed(plan))

    async def worker() -> None:
        while queue:
            kind, seed, ref = queue.pop()
            await ACTIONS[kind](runner, random.Random(seed), ref)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _settle(runner: Runner) -> None:
    """End every reservation that could expire during the sequential phase.

    The sweeper's expiries change the ledger on their own; the sequential phase compares
    the ledger around each call, so nothing handed out may expire while it runs. Owners
    release what would (and learn what expiry already charged).
    """
    await asyncio.sleep(2 * SWEEP_S)
    horizon = time.time() * 1000 + 25 * 60_000
    for h in [h for h in runner.book.open_holds() if h.expires_ms < horizon]:
        await _end(runner, "settle", h)


async def _end(runner: Runner, kind: str, h: Held) -> None:
    owner = CALLERS.get(h.caller, ADMIN)
    # Refused to its owner, the release is reported by the check of the owner's own reservations (f).
    r = await runner.call(kind, "Release", pb.ReleaseRequest(reservation_id=h.rid), owner,
                          expect=frozenset({C.OK, C.FAILED_PRECONDITION, C.PERMISSION_DENIED}))
    if not r.ok and h.state == "open":
        await runner.call(kind, "EndReservation", pb.EndReservationRequest(
            reservation_id=h.rid, reason="campaign cleanup"), ADMIN, expect=frozenset({C.OK}))


async def _reconcile(runner: Runner) -> None:
    """End what is open; then pools, records and the audit must say what the answers said."""
    book, report = runner.book, runner.report
    for h in list(book.open_holds()):
        await _end(runner, "cleanup", h)
    # Pools, as GetBudget shows them to a caller allowed to read them.
    scopes: dict[HonestScope, Caller] = {}
    for c in CALLERS.values():
        for s in c.scopes:
            scopes.setdefault(s, c)
    for h in book.holds.values():
        scopes.setdefault(h.scope, CALLERS.get(h.caller, ADMIN))
    expected = book.expected()
    seen: set[str] = set()
    for scope, reader in scopes.items():
        if not reader.permits(scope.org, scope.team):
            reader = ADMIN
        r = await runner.call("reconcile", "GetBudget", pb.GetBudgetRequest(scope=scope.pb()), reader)
        if not r.ok or not isinstance(r.response, pb.GetBudgetResponse):
            runner.violation("f", "reconcile", "GetBudget", f"{reader.name} cannot read {scope}: "
                             f"{r.code.name} {r.details[:200]!r}")
            continue
        for p in r.response.pools:
            if p.level == pb.POOL_LEVEL_REQUEST or p.pool_id in seen:
                continue
            seen.add(p.pool_id)
            spent, held = expected.get(p.pool_id, (0, 0))
            if (p.spent_nanos, p.held_nanos) != (spent, held):
                runner.violation("f", "reconcile", "GetBudget", f"pool {p.pool_id}: spent {p.spent_nanos} held "
                                 f"{p.held_nanos}, the answers given say spent {spent} held {held}")
    # Records, as the ledger file holds them.
    records = runner.ledger.reservations()
    undone = 0
    for rid, (state, amount, charged, pools, created) in records.items():
        record = book.holds.get(rid)
        if record is None and state == "released" and charged == 0:
            undone += 1  # a hold whose answer was lost, released by the sidecar: nobody is charged
            continue
        if record is None:
            runner.violation("f", "reconcile", "ledger", f"record {rid!r} ({state}, held {amount}, charged "
                             f"{charged}, pools {pools.split()}, created {created}) was never handed to a caller; "
                             f"calls of its org that got no reservation just before: "
                             + runner.suspects(rid.partition(".")[2], created))
            continue
        h = record
        want = set(h.pools)
        got = {p for p in pools.split("\n") if p and not p.startswith("request:")}
        if (state, charged) != (h.state, h.charged) or (want and got != want):
            runner.violation("f", "reconcile", "ledger", f"record {rid}: {state}, charged {charged}, pools "
                             f"{sorted(got)}; {h.caller} was told {h.state}, charged {h.charged} (by "
                             f"{h.ended_by or 'nobody'}), pools {sorted(want)}")
    for rid, h in book.holds.items():
        if rid not in records:
            runner.violation("f", "reconcile", "ledger", f"{h.caller} was handed {rid}, which the ledger lacks")
    if undone:
        report.notes.append(f"{undone} released records of reserves whose answer was lost (undone, nothing charged)")
    report.notes.append(f"{len(book.holds)} reservations handed out, {len(records)} ledger records, "
                        f"{sum(1 for h in book.holds.values() if h.state == 'committed')} committed, "
                        f"{sum(1 for h in book.holds.values() if h.state == 'expired')} expired")


def _scan_log(text: str, report: Report, runner: Runner) -> None:
    tracebacks = [line for line in text.splitlines() if "Traceback" in line]
    report.tracebacks = len(tracebacks)
    if tracebacks:
        shapes: Counter[str] = Counter()
        for line in tracebacks:
            try:
                entry = json.loads(line)
                exc = str(entry.get("exc", "")).strip().splitlines()
                shape = f"{entry.get('level')} {entry.get('logger')}: {entry.get('msg', '')[:100]} / {exc[-1][:160]}"
            except (ValueError, AttributeError, IndexError):
                shape = line[:200]
            shapes[shape] += 1
        for shape, n in shapes.most_common(6):
            runner.violation("h", "log", "-", f"{n} tracebacks logged: {shape}")


async def run(options: Options) -> Report:
    report = Report(options)
    report.limit, report.limit_text = memory_limit_bytes(DEPLOYMENT)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="tollgate-hostile-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report.workdir = str(workdir)
    from .actions import plan as make_plan

    redis_server: RedisServer | None = None
    store: dict[str, object] | None = None
    if options.store == "redis":
        # DEBUG SLEEP stalls it; DEBUG DIGEST tells the sequential phase whether anything changed.
        redis_server = RedisServer(workdir / "redis", args=("--enable-debug-command", "yes")).start()
        store = {"kind": "redis", "url": redis_server.url, "timeout": "250ms", "key_prefix": REDIS_PREFIX}
    sidecar: SidecarProcess | None = None
    cap: int | None = None
    for cap in VAULT_CAPS:
        config = campaign_config(workdir / "tollgate.yaml", options.seed, vault_cap=cap, store=store)
        try:
            with _sources(options):
                sidecar = SidecarProcess(workdir, config=config, store=None if store else "sqlite").start()
            break
        except (RuntimeError, TimeoutError) as exc:
            refused = str(exc).strip().splitlines()
            report.notes.append(f"the sidecar refused org:vault's cap of {cap} nano-USD: {refused[-1][:200]}")
    if sidecar is None:
        if redis_server is not None:
            redis_server.stop()
        raise RuntimeError("the sidecar did not start with any of the campaign's configs")
    report.notes.append(f"store: {options.store}; org:vault's cap: "
                        f"{cap if cap is not None else 'the org template'} nano-USD")
    assert sidecar.proc is not None
    sampler = RssSampler(sidecar.proc.pid)
    sampler.start()
    ledger: LedgerView | RedisView = (RedisView(redis_server.url, REDIS_PREFIX) if redis_server is not None
                                      else LedgerView(sidecar.db))
    runner = Runner(options, sidecar, ledger, report, sampler, redis_server.url if redis_server else None)
    try:
        await runner.probe_message_limit()
        concurrent, sequential = make_plan(options, runner)
        report.baseline_rss = sampler.read()
        t = time.monotonic()
        runner.concurrent = True
        await _phase(runner, concurrent, options.concurrency)
        runner.concurrent = False
        report.phases["concurrent"] = time.monotonic() - t
        t = time.monotonic()
        await _settle(runner)
        report.phases["settle"] = time.monotonic() - t
        t = time.monotonic()
        runner.sequential = True
        await _phase(runner, sequential, 1)
        runner.sequential = False
        report.phases["sequential"] = time.monotonic() - t
        t = time.monotonic()
        await _reconcile(runner)
        report.phases["reconcile"] = time.monotonic() - t
        result = await asyncio.to_thread(_audit, options, sidecar.config, None if redis_server else sidecar.db)
        report.audit_ok = result.returncode == 0
        report.audit_text = (result.stdout + result.stderr).strip()
        if not report.audit_ok:
            runner.violation("c", "audit", "-", report.audit_text[-1500:])
        alive = sidecar.proc.poll() is None
        if not alive:
            runner.violation("a", "process", "-", f"the sidecar exited with {sidecar.proc.returncode}")
        report.end_rss = sampler.read()
        report.hwm_rss = sampler.read("VmHWM")
    finally:
        sampler.stop()
        await runner.close()
        ledger.close()
        sidecar.stop()
        if redis_server is not None:
            redis_server.stop()
    report.peak_rss = sampler.peak
    if report.peak >= report.limit:
        runner.violation("b", "memory", "-", f"peak RSS {report.peak / 2**20:.0f} MiB (sampled "
                         f"{sampler.peak / 2**20:.0f} MiB, VmHWM {report.hwm_rss / 2**20:.0f} MiB) reached the "
                         f"container's limit {report.limit_text}; baseline was {report.baseline_rss / 2**20:.0f} MiB")
    _scan_log(sidecar.logs(), report, runner)
    return report


@contextlib.contextmanager
def _sources(options: Options) -> Iterator[None]:
    """Start the sidecar (and its CLI) from ``options.sidecar_src`` when one is given."""
    if options.sidecar_src is None:
        yield
        return
    saved = sidecar_process.ROOT
    sidecar_process.ROOT = options.sidecar_src.resolve().parent
    try:
        yield
    finally:
        sidecar_process.ROOT = saved


def _audit(options: Options, config: Path, db: Path | None) -> subprocess.CompletedProcess[str]:
    """``tollgate audit`` on the ledger file, run as an operator would."""
    with _sources(options):
        return sidecar_process.audit(config, db)


def run_sync(options: Options) -> Report:
    return asyncio.run(run(options))

