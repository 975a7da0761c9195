"""The verbs that talk to a running sidecar: budget, quality, admin, demo."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ..money import format_usd, parse_usd
from ._group import State, group, sidecar_options
from ._output import console, iso, json_value

if TYPE_CHECKING:
    from tollgate_client import Client

__all__: list[str] = []


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _client(target: str, token: str) -> Client:
    from tollgate_client import Client

    State.target = target
    return Client(target, metadata=_metadata(token))


def _table(*columns: str, money: tuple[str, ...] = ()) -> Table:
    """A plain table: no borders, so that a script can split its lines; money right-aligned."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, justify="right" if name in money else "left", no_wrap=True)
    return table


@group.command()
@sidecar_options
@click.option("--org", required=True, help="the organisation")
@click.option("--team", default="", help="a team of it")
@click.option("--user", default="", help="a user of it")
@click.option("--session", default="", help="a session of it")
@click.option("--json", "as_json", is_flag=True, help="print JSON (exact nano-USD, ISO 8601 times) instead of a table")
def budget(target: str, token: str, org: str, team: str, user: str, session: str, as_json: bool) -> int:
    """Show the pools of a scope: cap, usable cap, spent, held, remaining, and when each resets."""
    from tollgate_client import Scope

    with _client(target, token) as client:
        pools = client.get_budget(Scope(org=org, team=team, user=user, session=session))
    if as_json:
        print(json.dumps([dataclasses.asdict(p) for p in pools], default=json_value, indent=2))
        return 0
    # remaining = usable - spent - held: the usable cap is the cap less what is kept for high-priority calls.
    # Amounts to the hundredth of a cent, aligned; --json has them exact, in nano-USD.
    money = ("cap", "usable", "spent", "held", "remaining")
    table = _table("pool", "policy", *money, "resets (UTC)", money=money)
    for p in pools:
        amounts = (p.cap_nanos, p.usable_cap_nanos, p.spent_nanos, p.held_nanos, p.remaining_nanos)
        table.add_row(p.pool_id, p.policy, *(format_usd(a, 4) for a in amounts),
                      iso(p.resets_at) if p.resets_at else "never")
    console().print(table)
    return 0


@group.command()
@sidecar_options
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def quality(target: str, token: str, as_json: bool) -> int:
    """Quality per task type and tier, the guard's minimum tiers, and what escalations cost."""
    with _client(target, token) as client:
        report = client.get_quality()
    if as_json:
        print(json.dumps([dataclasses.asdict(t) for t in report], default=json_value, indent=2))
        return 0
    table = _table("task type", "shadow match", "n", "guard", "escalations cost", "feedback by tier",
                   money=("shadow match", "n", "escalations cost"))
    for t in report:
        shadow = "-"
        if t.shadow_samples:
            shadow = f"{t.shadow_match:.0%} ({t.shadow_match_low:.0%}-{t.shadow_match_high:.0%})"
        guard = f"{t.guard_min_tier} since {iso(t.guard_since)}" if t.guard_min_tier and t.guard_since else "-"
        tiers = ", ".join(f"{q.tier} {q.quality:.0%} ({q.quality_low:.0%}-{q.quality_high:.0%}, n={q.samples})"
                          for q in t.tiers) or "-"
        table.add_row(t.task_type or "<none>", shadow, str(t.shadow_samples), guard,
                      format_usd(t.escalation_cost_nanos, 4), tiers)
    console().print(table)
    return 0


@group.command()
@sidecar_options
@click.argument("op", type=click.Choice(["set-cap", "top-up", "reset", "end"]))
@click.argument("target_id", metavar="POOL|RESERVATION")
@click.argument("usd", required=False, default="")
@click.option("--charge", is_flag=True, help="end: charge the hold instead of releasing it")
@click.option("--reason", default="", help="why, for the audit log")
def admin(target: str, token: str, op: str, target_id: str, usd: str, charge: bool, reason: str) -> int:
    """Operator actions (an admin caller's token): set-cap POOL USD, top-up POOL USD, reset POOL (its window),
    end RESERVATION (release its hold, or --charge it)."""
    import grpc

    from tollgate_client.v1 import tollgate_pb2 as pb
    from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

    State.target = target
    metadata = _metadata(token)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.AdminServiceStub(channel)
        try:
            if op == "end":
                ended = stub.EndReservation(pb.EndReservationRequest(
                    reservation_id=target_id, charge=charge, reason=reason), metadata=metadata, timeout=10)
                print(f"{ended.reservation_id}: {ended.state}, charged {format_usd(ended.charged_nanos)}"
                      f"{' (already)' if ended.replayed else ''}")
                return 0
            if op == "set-cap":
                change = stub.SetPoolCap(pb.SetPoolCapRequest(pool_id=target_id, cap_nanos=parse_usd(usd),
                                                              reason=reason), metadata=metadata, timeout=10)
            elif op == "top-up":
                change = stub.TopUp(pb.TopUpRequest(pool_id=target_id, amount_nanos=parse_usd(usd), reason=reason),
                                    metadata=metadata, timeout=10)
            else:
                change = stub.ResetWindow(pb.ResetWindowRequest(pool_id=target_id, reason=reason),
                                          metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    for label, p in (("before", change.before), ("after", change.after)):
        print(f"{label:<7} {p.pool_id}: cap {format_usd(p.cap_nanos)}, spent {format_usd(p.spent_nanos)}, "
              f"held {format_usd(p.held_nanos)}, remaining {format_usd(p.remaining_nanos)}")
    return 0


@group.command()
@sidecar_options
@click.option("--calls", type=int, default=120, show_default=True, help="calls of the workload after the four beats")
@click.option("--seed", type=int, default=7, show_default=True, help="seed of the simulated workload")
@click.option("--baseline", help="the model you would have used without routing, for the saving "
                                 "(default: the dearest model of the middle tier)")
@click.option("--config", help="the config the sidecar runs with, whose catalog prices the table "
                               "(default: the shipped defaults)")
@click.option("--wait", type=float, default=10.0, show_default=True, help="seconds to wait for the sidecar to come up")
def demo(target: str, token: str, calls: int, seed: int, baseline: str | None, config: str | None,
         wait: float) -> int:
    """Show routing, a soft pool, a session cap and a refusal, then a workload and its table (no provider is
    called)."""
    from ..learn.demo import DemoError, run_demo

    State.target = target
    try:
        return run_demo(target=target, calls=calls, seed=seed, wait=wait, config_path=config, baseline=baseline,
                        token=token)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
