"""The verbs that work on files and this machine: serve, check, catalog import, audit, train, eval, export-training."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import click
import yaml
from rich.console import Console

from ..catalog import deprecation_notes
from ..config import Config, ServerConfig, StoreConfig, TelemetryConfig, check_listener, load_config, store_url_problem
from ..config.litellm import find_price_map, import_models, read_price_map
from ..config.load import resolved_data
from ..errors import ConfigError
from ..money import format_usd
from ..routing.check import routing_lines
from ._group import STORE_URL_ENV, Args, group
from ._output import setup_logging

__all__: list[str] = []


def _load(args: Args) -> Config:
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


@group.command(help=f"Run the sidecar. ${STORE_URL_ENV}, when set, replaces store.url (keep Redis credentials "
                    "in a secret, out of the config file).")
@click.option("--config", help="YAML config file, laid over the shipped defaults (default: the defaults alone)")
@click.option("--host", help=f"listen address (default {ServerConfig().host})")
@click.option("--port", type=int, help=f"listen port (default {ServerConfig().port}; 0 = Unix socket only)")
@click.option("--unix-socket", help="also listen on this Unix socket path")
@click.option("--health-port", type=int,
              help="also serve grpc.health.v1 alone on this port, on server.health_host (default "
                   f"{ServerConfig().health_host}), for Kubernetes gRPC probes; 0 = off")
@click.option("--metrics-port", type=int,
              help=f"serve /metrics on this port (default {TelemetryConfig().metrics_port}; 0 = none)")
@click.option("--store", type=click.Choice(["sqlite", "memory"]), help="override the configured store")
@click.option("--db", help="SQLite ledger file (implies --store sqlite)")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="the least severe log lines written")
def serve(**options: object) -> int:
    from ..grpc.server import run

    args = Args(**options)
    setup_logging(args.log_level)
    try:
        run(_load(args), load=lambda: _load(args))
    except OSError as exc:  # a port taken, a socket path not writable: the message says which and what to do
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


@group.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--show", is_flag=True, help="print the resolved config: the file laid over the shipped defaults")
def check(file: str, show: bool) -> int:
    """Validate a config FILE (laid over the shipped defaults); print what the sidecar would run with."""
    config = load_config(file)
    if show:
        data, _ = resolved_data(Path(file).read_text(), source=file, over_defaults=True)
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
        return 0
    budgets = config.budgets
    print(f"{file}: OK")
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


@group.group()
def catalog() -> None:
    """Catalog tools: import current models and their list prices."""


@catalog.command("import")
@click.argument("models", nargs=-1, required=True)
@click.option("--tier", required=True, help="the tier of the models imported (a routing decision: yours)")
@click.option("--from", "source", type=click.Path(dir_okay=False),
              help="the price map's JSON file (default: the one an installed litellm ships)")
def catalog_import(models: tuple[str, ...], tier: str, source: str | None) -> int:
    """Print catalog entries, to add under models:, for MODELS of LiteLLM's price map (names or shell patterns,
    e.g. gpt-5.4-mini 'claude-opus-4-*')."""
    path = Path(source) if source else find_price_map()
    imported = import_models(read_price_map(path), list(models), tier)
    header = f"# From LiteLLM's price map ({path.name}), imported {datetime.now(UTC).date().isoformat()}.\n"
    print(header + yaml.safe_dump({"models": {m.name: m.entry for m in imported}}, sort_keys=False), end="")
    for note in deprecation_notes({m.name: date.fromisoformat(m.entry["deprecation_date"])
                                   for m in imported if "deprecation_date" in m.entry}, datetime.now(UTC).date()):
        print(f"warning: {note}", file=sys.stderr)
    return 0


@group.command()
@click.option("--config", help="the config the sidecar runs with (its store, and the pool windows)")
@click.option("--db", help="an embedded ledger file (default: the config's store)")
@click.option("--org", multiple=True, help="only this org (Redis store; repeatable)")
def audit(config: str | None, db: str | None, org: tuple[str, ...]) -> int:
    """Recompute every pool from the reservation records; exit 1 on a difference."""
    from ..app.stores import open_store
    from ..ledger import BudgetStore, LocalLedger, SqliteJournal, spec_resolver

    loaded = load_config(config)
    store: BudgetStore
    if db is not None or loaded.store.kind != "redis":
        path = db or loaded.store.path
        if not Path(path).exists():
            print(f"error: {path}: no such ledger file", file=sys.stderr)
            return 2
        store = LocalLedger(SqliteJournal(path), specs=spec_resolver(loaded.budgets))
    else:
        store = open_store(loaded)

    async def run() -> int:
        try:
            report = await store.audit(list(org) or None)
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

    return asyncio.run(run())


@group.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", required=True, help="the model file to write (.npz)")
@click.option("--weak", help="the cheap model (default: of the two models scored, the lower mean)")
@click.option("--strong", help="the strong model (default: of the two models scored, the higher mean)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the cross-validation folds")
@click.option("--folds", type=int, default=5, show_default=True,
              help="cross-validation folds for calibration, metrics and the validation curve")
@click.option("--provenance", default="", help="where the data comes from, kept in the model's metadata")
@click.option("--holdout", multiple=True, metavar="FILE.jsonl",
              help="labelled data never trained on: its metrics go into the metadata (repeatable)")
@click.option("--hold-heuristic", is_flag=True,
              help="keep the heuristic's signals at its weights, so data without agent traffic cannot zero them")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
def train(file: str, out: str, weak: str | None, strong: str | None, seed: int, folds: int, provenance: str,
          holdout: tuple[str, ...], hold_heuristic: bool, quiet: bool) -> int:
    """Train a difficulty classifier on labelled routing data: FILE is JSONL of
    {id, messages, task_type?, scores: {model: quality 0..1}} per line."""
    from ..learn.dataset import DatasetError, infer_pair, read_records
    from ..learn.train import train as fit
    from ..routing.classifier import ClassifierError

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    # On a terminal, a spinner with the current step and each step's result kept above it; else plain lines.
    status = err.status("reading the data") if err.is_terminal and not quiet else contextlib.nullcontext()
    try:
        with status as spinner:
            def progress(msg: str) -> None:
                if spinner is not None:
                    spinner.update(msg)
                err.print(msg)

            records = read_records(file)
            weak_model, strong_model = infer_pair(records, weak, strong)
            held = [(path, read_records(path)) for path in holdout]
            result = fit(records, weak=weak_model, strong=strong_model, seed=seed, folds=folds, source=file,
                         provenance=provenance, progress=None if quiet else progress, holdout=held,
                         hold_heuristic=hold_heuristic)
            result.classifier.save(out)
    except (DatasetError, ClassifierError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = result.metadata["metrics"]["out_of_fold"]
    print(f"{out}: trained on {len(records)} prompts (weak {weak_model}, strong {strong_model}); cheap ok on "
          f"{m['positive_rate']:.1%}")
    print(f"out-of-fold: log loss {m['log_loss']:.4f}, Brier {m['brier']:.4f}, accuracy {m['accuracy']:.1%}, "
          f"AUC {m['auc']}, ECE {m['ece']:.4f}")
    return 0


@group.command("export-training")
@click.argument("logs", nargs=-1, required=True, metavar="LOG.jsonl...")
@click.option("--out", required=True, help="JSONL to write, in the format `tollgate train` reads")
@click.option("--weak-tier", default="", help="the cheaper tier of the pair (default: the most common)")
@click.option("--strong-tier", default="", help="the stronger tier of the pair (default: the most common)")
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="a shadow comparison's score at or above which the cheaper tier counts as good enough")
def export_training(logs: tuple[str, ...], out: str, weak_tier: str, strong_tier: str, threshold: float) -> int:
    """Join LOG.jsonl... (decision logs: routing.decision_log.path) with their feedback into training data."""
    from ..routing.decision_log import ExportError
    from ..routing.decision_log import export_training as export

    try:
        records, stats = export(list(logs), weak_tier=weak_tier, strong_tier=strong_tier, threshold=threshold)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    Path(out).write_text(lines, encoding="utf-8")
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(stats.skipped.items())) or "none"
    print(f"{out}: {stats.exported} training records (weak tier {stats.weak_tier or '-'}, strong tier "
          f"{stats.strong_tier or '-'}) from {stats.decisions} decisions, {stats.feedback} feedback lines, "
          f"{stats.comparisons} shadow comparisons; skipped: {skipped}")
    if not records:
        print("no record has a shadow comparison yet: route with accept_shadow and report the comparisons "
              "through Feedback (source SHADOW_COMPARISON)", file=sys.stderr)
        return 1
    return 0


@group.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--strong", required=True, help="the strong model's name in the scores")
@click.option("--weak", required=True, help="the weak model's name in the scores")
@click.option("--price", multiple=True, metavar="MODEL=IN/OUT",
              help="USD per million input/output tokens for a model not in the catalog (repeatable)")
@click.option("--router", default="default", show_default=True,
              type=click.Choice(["rules", "heuristic", "classifier", "default"]),
              help="what decides: the config's rules, the heuristic, the classifier, or all as the sidecar does")
@click.option("--classifier", help="model file for the classifier (default: the config's, else the shipped one)")
@click.option("--config", help="config whose catalog, rules and quality target apply (default: the shipped one)")
@click.option("--rules-from", help="rules router: derive per-task-type difficulty from this labelled JSONL")
@click.option("--output-tokens", type=int, default=512, show_default=True,
              help="output tokens assumed for a model without response text in the record")
@click.option("--json", "as_json", is_flag=True, help="print the metrics and curves as JSON")
@click.option("--plot", metavar="FILE.png", help="write the PGR and cost-quality curves (needs matplotlib)")
def evaluate(file: str, strong: str, weak: str, price: tuple[str, ...], router: str, classifier: str | None,
             config: str | None, rules_from: str | None, output_tokens: int, as_json: bool,
             plot: str | None) -> int:
    """Evaluate a router on labelled FILE (JSONL as for train): APGR, CPT(50%), CPT(80%) with bootstrap
    intervals, the random baseline, the operating point and the calibration."""
    from ..learn.dataset import DatasetError, read_records
    from ..learn.evaluate import EvalError, parse_price, report_json, report_text
    from ..learn.evaluate import evaluate as run
    from ..learn.evaluate import plot as draw
    from ..routing.classifier import Classifier, ClassifierError

    try:
        loaded = load_config(config)
        prices = dict(parse_price(text) for text in price)
        model = Classifier.load(classifier) if classifier else None
        records = read_records(file)
        report = run(records, strong=strong, weak=weak, config=loaded, router=router, prices=prices,
                     classifier=model, rules_from=rules_from, output_tokens=output_tokens, source=file)
        if plot:
            draw(report, plot, title=f"{Path(file).name}: {router} router")
    except (DatasetError, ClassifierError, EvalError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(report_text(report, source=file))
    return 0
