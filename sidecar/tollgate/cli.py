"""The ``tollgate`` command: run the sidecar, check and import config, read and act on budgets, route offline.

Verbs: serve, check, catalog import, budget, quality, audit, admin, demo, train, eval, export-training.
Every error is one line (the traceback with ``--debug``); verbs that talk to a sidecar take ``--target``
and ``--token`` (``$TOLLGATE_TARGET``, ``$TOLLGATE_TOKEN``).

Why one long module: every verb is its parser and a few lines of work; the verbs share the
config loading and the output helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from . import __version__
from .catalog import deprecation_notes
from .config import (
    Config,
    ServerConfig,
    StoreConfig,
    TelemetryConfig,
    check_listener,
    load_config,
    store_url_problem,
)
from .config.litellm import find_price_map, import_models, read_price_map
from .config.load import resolved_data
from .errors import ConfigError
from .money import format_usd, parse_usd
from .routing.check import routing_lines

if TYPE_CHECKING:
    from tollgate_client import Client

__all__ = ["main"]

DEFAULT_TARGET = "127.0.0.1:50551"
STORE_URL_ENV = "TOLLGATE_STORE_URL"
"""When set, replaces ``store.url``: the Redis URL (and its password) comes from a secret, not the config file."""


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: what log pipelines parse without rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(level: str) -> None:
    # The JSON lines use none of the caller, thread or process fields, and a money RPC logs one line
    # each: skip collecting them, as the logging HOWTO's "Optimization" section describes.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    handler.addFilter(_caller_gone)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _caller_gone(record: logging.LogRecord) -> bool:
    """Drop gRPC's traceback for an answer whose caller had already left (nothing to act on).

    gRPC logs it at error level, with a traceback, whenever a caller gives up between the
    handler's return and the answer's send: an impatient or hostile peer could fill the log.
    """
    return not (record.name.startswith("grpc") and "ExecuteBatchError" in record.getMessage())


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    server = config.server
    if args.host is not None:
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        server = dataclasses.replace(server, port=args.port)
    if args.unix_socket is not None:
        server = dataclasses.replace(server, unix_socket=args.unix_socket)
    if args.health_port is not None:
        if not 0 <= args.health_port <= 65_535:
            raise ConfigError(f"{args.health_port} is out of range: must be between 0 and 65535",
                              key="server.health_port", file="--health-port")
        server = dataclasses.replace(server, health_port=args.health_port)
    if args.metrics_port is not None:
        if not 0 <= args.metrics_port <= 65_535:
            raise ConfigError(f"{args.metrics_port} is out of range: must be between 0 and 65535",
                              key="telemetry.metrics_port", file="--metrics-port")
        config = dataclasses.replace(config, telemetry=dataclasses.replace(config.telemetry,
                                                                           metrics_port=args.metrics_port))
    if server.health_port and server.health_port in (server.port, config.telemetry.metrics_port):
        which = "the API port" if server.health_port == server.port else "telemetry.metrics_port"
        raise ConfigError(f"{server.health_port} is {which} too; the health listener needs its own port",
                          key="server.health_port", file="--health-port / --port")
    store = config.store
    url = os.environ.get(STORE_URL_ENV, "")
    if url:
        if problem := store_url_problem(url):
            # Never echo the value: it may carry a password.
            raise ConfigError(problem, key="store.url", file=STORE_URL_ENV)
        store = dataclasses.replace(store, url=url)
    if args.store is not None:
        store = dataclasses.replace(store, kind=args.store)
    if args.db is not None:
        store = StoreConfig(kind="sqlite", path=args.db)
    check_listener(server, "--host" if args.host is not None else config.source)
    return dataclasses.replace(config, server=server, store=store)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .grpc.server import run

    _setup_logging(args.log_level)
    try:
        run(_load(args), load=lambda: _load(args))
    except OSError as exc:  # a port taken, a socket path not writable: the message says which and what to do
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    if args.show:
        # What the sidecar runs with: the file laid over the shipped defaults, as YAML.
        data, _ = resolved_data(Path(args.file).read_text(), source=args.file, over_defaults=True)
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
        return 0
    budgets = config.budgets
    print(f"{args.file}: OK")
    for note in config.catalog.deprecation_notes(datetime.now(UTC).date()):
        print(f"  warning: {note}")
    warnings, facts = routing_lines(config)
    for note in warnings:
        print(f"  warning: {note}")
    print(f"  tiers: {' < '.join(config.catalog.tiers)}")
    for line in facts:
        print(f"  {line}")
    for model in sorted(config.catalog.models.values(), key=lambda m: (m.tier_rank, m.name)):
        print(f"  model {model.name:<20} {model.provider:<10} {model.tier:<9} ctx {model.context_window:>9,}")
    for level, spec in budgets.templates.items():
        window = spec.window.kind if not spec.window.period else f"{spec.window.period} ({spec.window.tz})"
        print(f"  pool {level:<8} cap {format_usd(spec.cap):>12}  {spec.policy:<5} window {window}")
    print(f"  {len(budgets.overrides)} override(s); margin {config.estimation.margin_bp / 10_000:.2f}")
    return 0


def _cmd_catalog_import(args: argparse.Namespace) -> int:
    path = Path(args.source) if args.source else find_price_map()
    imported = import_models(read_price_map(path), args.models, args.tier)
    header = f"# From LiteLLM's price map ({path.name}), imported {datetime.now(UTC).date().isoformat()}.\n"
    print(header + yaml.safe_dump({"models": {m.name: m.entry for m in imported}}, sort_keys=False), end="")
    for note in deprecation_notes({m.name: date.fromisoformat(m.entry["deprecation_date"])
                                   for m in imported if "deprecation_date" in m.entry}, datetime.now(UTC).date()):
        print(f"warning: {note}", file=sys.stderr)
    return 0


def _sidecar_client(args: argparse.Namespace) -> Client:
    """A client of the sidecar named by ``--target`` and ``--token`` (or their environment variables)."""
    from tollgate_client import Client

    token = args.token or os.environ.get("TOLLGATE_TOKEN", "")
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return Client(args.target, metadata=metadata)


def _cmd_quality(args: argparse.Namespace) -> int:
    with _sidecar_client(args) as client:
        report = client.get_quality()
    if args.json:
        print(json.dumps([dataclasses.asdict(t) for t in report], default=_json_value, indent=2))
        return 0
    print(f"{'task type':<20} {'shadow match':>22} {'n':>5}  {'guard':<24} {'escalations cost':>16}  feedback by tier")
    for t in report:
        shadow = "-"
        if t.shadow_samples:
            shadow = f"{t.shadow_match:.0%} ({t.shadow_match_low:.0%}-{t.shadow_match_high:.0%})"
        guard = "-"
        if t.guard_min_tier and t.guard_since:
            guard = f"{t.guard_min_tier} since {t.guard_since:%Y-%m-%d %H:%M}"
        tiers = ", ".join(f"{q.tier} {q.quality:.0%} ({q.quality_low:.0%}-{q.quality_high:.0%}, n={q.samples})"
                          for q in t.tiers) or "-"
        print(f"{t.task_type or '<none>':<20} {shadow:>22} {t.shadow_samples:>5}  {guard:<24} "
              f"{format_usd(t.escalation_cost_nanos, 4):>16}  {tiers}")
    return 0


def _cmd_budget(args: argparse.Namespace) -> int:
    from tollgate_client import Scope

    scope = Scope(org=args.org, team=args.team, user=args.user, session=args.session)
    with _sidecar_client(args) as client:
        pools = client.get_budget(scope)
    if args.json:
        print(json.dumps([dataclasses.asdict(p) for p in pools], default=_json_value, indent=2))
        return 0
    # remaining = usable - spent - held: the usable cap is the cap less what is kept for high-priority calls.
    # Amounts to the hundredth of a cent, aligned; --json has them exact, in nano-USD.
    columns = ("cap", "usable", "spent", "held", "remaining")
    print(f"{'pool':<32} {'policy':<6} " + " ".join(f"{c:>13}" for c in columns) + "  resets (UTC)")
    for p in pools:
        resets = _iso(p.resets_at) if p.resets_at else "never"
        amounts = (p.cap_nanos, p.usable_cap_nanos, p.spent_nanos, p.held_nanos, p.remaining_nanos)
        print(f"{p.pool_id:<32} {p.policy:<6} " + " ".join(f"{format_usd(a, 4):>13}" for a in amounts) +
              f"  {resets}")
    return 0


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC, to the second: 2026-12-06T00:00:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_value(value: object) -> object:
    return _iso(value) if isinstance(value, datetime) else str(value)


def _cmd_audit(args: argparse.Namespace) -> int:
    from .app.stores import open_store
    from .ledger import BudgetStore, LocalLedger, SqliteJournal, spec_resolver

    config = load_config(args.config)
    store: BudgetStore
    if args.db is not None or config.store.kind != "redis":
        db = args.db or config.store.path
        if not Path(db).exists():
            print(f"{db}: no such ledger file", file=sys.stderr)
            return 2
        store = LocalLedger(SqliteJournal(db), specs=spec_resolver(config.budgets))
    else:
        store = open_store(config)

    async def audit() -> int:
        try:
            report = await store.audit(args.org)
        finally:
            await store.close()
        print(
            f"{report.pools_checked} pools, {report.reservations_checked} reservations checked; "
            f"overshoot {format_usd(report.overshoot_total)} over {report.overshoot_count} commits"
        )
        for m in report.mismatches:
            print(f"MISMATCH {m.pool_id} {m.counter}: stored {m.stored}, records say {m.recomputed}")
        print("OK" if report.ok else "FAILED")
        return 0 if report.ok else 1

    return asyncio.run(audit())


def _cmd_demo(args: argparse.Namespace) -> int:
    from tollgate_client import UnavailableError

    from .learn.demo import DemoError, run_demo

    try:
        return run_demo(target=args.target, calls=args.calls, seed=args.seed, wait=args.wait,
                        config_path=args.config, baseline=args.baseline,
                        token=args.token or os.environ.get("TOLLGATE_TOKEN", ""))
    except UnavailableError as exc:
        print(f"error: UNAVAILABLE: cannot reach the sidecar at {args.target}: {exc}. Start it with `make run` or "
              "`tollgate serve`.", file=sys.stderr)
        return 1
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _cmd_train(args: argparse.Namespace) -> int:
    from .learn.dataset import DatasetError, infer_pair, read_records
    from .learn.train import train
    from .routing.classifier import ClassifierError

    try:
        records = read_records(args.file)
        weak, strong = infer_pair(records, args.weak, args.strong)
        holdout = [(path, read_records(path)) for path in args.holdout]
        progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        result = train(records, weak=weak, strong=strong, seed=args.seed, folds=args.folds, source=args.file,
                       provenance=args.provenance, progress=progress, holdout=holdout)
        result.classifier.save(args.out)
    except (DatasetError, ClassifierError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = result.metadata["metrics"]["out_of_fold"]
    print(f"{args.out}: trained on {len(records)} prompts (weak {weak}, strong {strong}); cheap ok on "
          f"{m['positive_rate']:.1%}")
    print(f"out-of-fold: log loss {m['log_loss']:.4f}, Brier {m['brier']:.4f}, accuracy {m['accuracy']:.1%}, "
          f"AUC {m['auc']}, ECE {m['ece']:.4f}")
    return 0


def _cmd_admin(args: argparse.Namespace) -> int:
    import grpc

    from tollgate_client.v1 import tollgate_pb2 as pb
    from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

    token = args.token or os.environ.get("TOLLGATE_TOKEN", "")
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(args.target) as channel:
        stub = pb_grpc.AdminServiceStub(channel)
        try:
            if args.op == "end":
                ended = stub.EndReservation(pb.EndReservationRequest(
                    reservation_id=args.target_id, charge=args.charge, reason=args.reason), metadata=metadata,
                    timeout=10)
                print(f"{ended.reservation_id}: {ended.state}, charged {format_usd(ended.charged_nanos)}"
                      f"{' (already)' if ended.replayed else ''}")
                return 0
            if args.op == "set-cap":
                change = stub.SetPoolCap(pb.SetPoolCapRequest(pool_id=args.target_id, cap_nanos=parse_usd(args.usd),
                                                              reason=args.reason), metadata=metadata, timeout=10)
            elif args.op == "top-up":
                change = stub.TopUp(pb.TopUpRequest(pool_id=args.target_id, amount_nanos=parse_usd(args.usd),
                                                    reason=args.reason), metadata=metadata, timeout=10)
            else:
                change = stub.ResetWindow(pb.ResetWindowRequest(pool_id=args.target_id, reason=args.reason),
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


def _cmd_export_training(args: argparse.Namespace) -> int:
    from .routing.decision_log import ExportError, export_training

    try:
        records, stats = export_training(args.logs, weak_tier=args.weak_tier, strong_tier=args.strong_tier,
                                         threshold=args.threshold)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    Path(args.out).write_text(lines, encoding="utf-8")
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(stats.skipped.items())) or "none"
    print(f"{args.out}: {stats.exported} training records (weak tier {stats.weak_tier or '-'}, strong tier "
          f"{stats.strong_tier or '-'}) from {stats.decisions} decisions, {stats.feedback} feedback lines, "
          f"{stats.comparisons} shadow comparisons; skipped: {skipped}")
    if not records:
        print("no record has a shadow comparison yet: route with accept_shadow and report the comparisons "
              "through Feedback (source SHADOW_COMPARISON)", file=sys.stderr)
        return 1
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .learn.dataset import DatasetError, read_records
    from .learn.evaluate import EvalError, evaluate, parse_price, plot, report_json, report_text
    from .routing.classifier import Classifier, ClassifierError

    try:
        config = load_config(args.config)
        prices = dict(parse_price(text) for text in args.price)
        classifier = Classifier.load(args.classifier) if args.classifier else None
        records = read_records(args.file)
        report = evaluate(records, strong=args.strong, weak=args.weak, config=config, router=args.router,
                          prices=prices, classifier=classifier, rules_from=args.rules_from,
                          output_tokens=args.output_tokens, source=args.file)
        if args.plot:
            plot(report, args.plot, title=f"{Path(args.file).name}: {args.router} router")
    except (DatasetError, ClassifierError, EvalError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(report_text(report, source=args.file))
    return 0


def _sidecar_options(parser: argparse.ArgumentParser) -> None:
    """``--target`` and ``--token``, for every verb that talks to a running sidecar."""
    parser.add_argument("--target", default=os.environ.get("TOLLGATE_TARGET", DEFAULT_TARGET),
                        help=f"the sidecar: host:port or unix:///path.sock (default: $TOLLGATE_TARGET, else "
                             f"{DEFAULT_TARGET})")
    parser.add_argument("--token", help="the caller's bearer token, once callers are configured (default: "
                                        "$TOLLGATE_TOKEN)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollgate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tollgate {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not one line")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the sidecar",
        description=f"Run the sidecar. {STORE_URL_ENV}, when set, replaces store.url (keep Redis credentials in a "
                    "secret, out of the config file).",
    )
    serve.add_argument("--config", help="YAML config file (default: the shipped default config)")
    serve.add_argument("--host", help=f"listen address (default {ServerConfig().host})")
    serve.add_argument("--port", type=int, help=f"listen port (default {ServerConfig().port}; 0 = Unix socket only)")
    serve.add_argument("--unix-socket", help="also listen on this Unix socket path")
    serve.add_argument("--health-port", type=int,
                       help="also serve grpc.health.v1 alone on this port, on server.health_host (default "
                            f"{ServerConfig().health_host}), for Kubernetes gRPC probes; 0 = off")
    serve.add_argument("--metrics-port", type=int,
                       help=f"serve /metrics on this port (default {TelemetryConfig().metrics_port}; 0 = none)")
    serve.add_argument("--store", choices=("sqlite", "memory"), help="override the configured store")
    serve.add_argument("--db", help="SQLite ledger file (implies --store sqlite)")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=_cmd_serve)

    check = sub.add_parser("check", help="validate a config file (laid over the shipped defaults)")
    check.add_argument("--show", action="store_true",
                       help="print the resolved config: the file laid over the shipped defaults")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check)

    budget = sub.add_parser("budget", help="show the pools of a scope")
    _sidecar_options(budget)
    budget.add_argument("--org", required=True, help="the organisation")
    budget.add_argument("--team", default="", help="a team of it")
    budget.add_argument("--user", default="", help="a user of it")
    budget.add_argument("--session", default="", help="a session of it")
    budget.add_argument("--json", action="store_true", help="print JSON instead of a table")
    budget.set_defaults(func=_cmd_budget)

    quality = sub.add_parser("quality", help="quality per task type and tier, and the guard's minimum tiers")
    _sidecar_options(quality)
    quality.add_argument("--json", action="store_true", help="print JSON instead of a table")
    quality.set_defaults(func=_cmd_quality)

    audit = sub.add_parser("audit", help="recompute every pool from the reservation records; exit 1 on a difference")
    audit.add_argument("--config", help="the config the sidecar runs with (its store, and the pool windows)")
    audit.add_argument("--db", help="an embedded ledger file (default: the config's store)")
    audit.add_argument("--org", action="append", help="only this org (Redis store; repeatable)")
    audit.set_defaults(func=_cmd_audit)

    catalog = sub.add_parser("catalog", help="catalog tools: import current models and prices")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    imp = catalog_sub.add_parser(
        "import", help="print catalog entries for models of LiteLLM's price map, to add under models:")
    imp.add_argument("models", nargs="+", help="model names or shell patterns, e.g. gpt-5.4-mini 'claude-opus-4-*'")
    imp.add_argument("--tier", required=True, help="the tier of the models imported (a routing decision: yours)")
    imp.add_argument("--from", dest="source", help="the price map's JSON file (default: the one litellm installs)")
    imp.set_defaults(func=_cmd_catalog_import)

    demo = sub.add_parser("demo", help="show routing, a soft pool, a session cap and a refusal, then a workload")
    _sidecar_options(demo)
    demo.add_argument("--calls", type=int, default=120, help="calls of the workload after the four beats (120)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated workload (7)")
    demo.add_argument("--baseline", help="the model you would have used without routing, for the saving "
                                         "(default: the dearest model of the middle tier)")
    demo.add_argument("--config", help="the config the sidecar runs with, whose catalog prices the table "
                                       "(default: the shipped defaults)")
    demo.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the sidecar to come up")
    demo.set_defaults(func=_cmd_demo)

    train = sub.add_parser("train", help="train a difficulty classifier on labelled routing data (JSONL)")
    train.add_argument("file", help="JSONL: {id, messages, task_type?, scores: {model: quality 0..1}} per line")
    train.add_argument("--out", required=True, help="model file to write (.npz)")
    train.add_argument("--weak", help="the cheap model (default: of the two models scored, the lower mean)")
    train.add_argument("--strong", help="the strong model (default: of the two models scored, the higher mean)")
    train.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds")
    train.add_argument("--folds", type=int, default=5, help="cross-validation folds for calibration and metrics")
    train.add_argument("--provenance", default="", help="where the data comes from, kept in the model's metadata")
    train.add_argument("--holdout", action="append", default=[], metavar="FILE.jsonl",
                       help="held-out data to measure the final model on; its metrics go into the metadata")
    train.add_argument("--quiet", action="store_true", help="no progress on stderr")
    train.set_defaults(func=_cmd_train)

    admin = sub.add_parser("admin", help="operator actions on budgets (needs an admin caller's token)")
    admin.add_argument("op", choices=("set-cap", "top-up", "reset", "end"),
                       help="set-cap POOL USD | top-up POOL USD | reset POOL | end RESERVATION [--charge]")
    admin.add_argument("target_id", metavar="POOL|RESERVATION")
    admin.add_argument("usd", nargs="?", default="", help="USD amount for set-cap and top-up, e.g. 250.00")
    admin.add_argument("--charge", action="store_true", help="end: charge the hold instead of releasing it")
    admin.add_argument("--reason", default="", help="why, for the audit log")
    _sidecar_options(admin)
    admin.set_defaults(func=_cmd_admin)

    export = sub.add_parser(
        "export-training", help="join decision logs and their feedback into training data for `tollgate train`"
    )
    export.add_argument("logs", nargs="+", metavar="LOG.jsonl", help="decision logs (routing.decision_log.path)")
    export.add_argument("--out", required=True, help="JSONL to write, in the format `tollgate train` reads")
    export.add_argument("--weak-tier", default="", help="the cheaper tier of the pair (default: the most common)")
    export.add_argument("--strong-tier", default="", help="the stronger tier of the pair (default: the most common)")
    export.add_argument("--threshold", type=float, default=0.5,
                        help="a comparison score at or above this counts as 'the cheaper answer was as good'")
    export.set_defaults(func=_cmd_export_training)

    ev = sub.add_parser("eval", help="evaluate a router on labelled data: APGR, CPT(50%%), CPT(80%%), savings")
    ev.add_argument("file", help="JSONL as for train")
    ev.add_argument("--strong", required=True, help="the strong model's name in the scores")
    ev.add_argument("--weak", required=True, help="the weak model's name in the scores")
    ev.add_argument("--price", action="append", default=[], metavar="MODEL=IN/OUT",
                    help="USD per million input/output tokens for a model not in the catalog (repeatable)")
    ev.add_argument("--router", default="default", choices=("rules", "heuristic", "classifier", "default"))
    ev.add_argument("--classifier", help="model file for the classifier (default: the config's, else the shipped one)")
    ev.add_argument("--config", help="config whose catalog, rules and thresholds apply (default: the shipped one)")
    ev.add_argument("--rules-from", help="rules router: derive per-task-type difficulty from this labelled JSONL")
    ev.add_argument("--output-tokens", type=int, default=512,
                    help="output tokens assumed for a model without response text in the record (default 512)")
    ev.add_argument("--json", action="store_true", help="print the metrics and curves as JSON")
    ev.add_argument("--plot", metavar="FILE.png", help="write the PGR and cost-quality curves (needs matplotlib)")
    ev.set_defaults(func=_cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tollgate`` command: one line per error, the traceback only with ``--debug``."""
    from tollgate_client import TollgateClientError, UnavailableError

    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        if args.debug:
            raise
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except UnavailableError as exc:
        if args.debug:
            raise
        print(f"error: cannot reach the sidecar at {getattr(args, 'target', '?')}: is it running (tollgate serve), "
              f"and is --target right? ({exc.code.name if exc.code else 'UNAVAILABLE'})", file=sys.stderr)
        return 1
    except TollgateClientError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``tollgate eval --json | head``): nothing left to say to it.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
