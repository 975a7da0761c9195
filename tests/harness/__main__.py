"""``python -m tests.harness --seeds 1-20 --store redis,sqlite --ops 2000``: many seeds, one summary table."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path

from tests.harness.checker import Violation
from tests.harness.env import KINDS
from tests.harness.run import RunResult, run_seed


def parse_seeds(text: str) -> list[int]:
    """``1-20``, ``3,7,11`` or a mix: ``1-5,9``."""
    seeds: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        seeds.extend(range(int(first), int(last) + 1) if sep else [int(first)])
    return seeds


def table(results: list[RunResult]) -> str:
    kinds = sorted({k for r in results for k in r.kinds})
    head = f"{'store':<9} {'seed':>5} {'ops':>6} {'calls':>7} {'faults':>7} {'secs':>6} {'violations':>10}  " + \
        "  ".join(kinds)
    lines = [head, "-" * len(head)]
    for r in results:
        counts = "  ".join(f"{r.kinds.get(k, 0):>{len(k)}}" for k in kinds)
        lines.append(f"{r.store:<9} {r.seed:>5} {r.intents:>6} {r.calls:>7} {sum(r.faults.values()):>7} "
                     f"{r.seconds:>6.0f} {len(r.violations):>10}  {counts}")
    total = Counter[str]()
    for r in results:
        total.update(r.kinds)
    lines.append("-" * len(head))
    lines.append(f"{len(results)} runs: {len({r.seed for r in results})} seeds x "
                 f"{sum(r.intents for r in results)} ops x {sum(sum(r.faults.values()) for r in results)} faults, "
                 f"{sum(len(r.violations) for r in results)} violations"
                 + (f" ({', '.join(f'{k} {n}' for k, n in sorted(total.items()))})" if total else ""))
    failing = sorted({(r.store, r.seed) for r in results if r.violations})
    if failing:
        lines.append("failing: " + ", ".join(f"{store} SEED={seed}" for store, seed in failing))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__)
    parser.add_argument("--seeds", default="1-3", help="e.g. 1-20 or 3,7,11")
    parser.add_argument("--store", default="redis,sqlite", help=f"comma-separated: {', '.join(KINDS)}")
    parser.add_argument("--ops", type=int, default=2000, help="logical operations per run")
    parser.add_argument("--callers", type=int, default=24, help="concurrent caller tasks")
    parser.add_argument("--fault-seconds", type=float, default=180.0, help="longest a run keeps injecting faults")
    parser.add_argument("--workdir", type=Path,
                        help="where the runs' files go and stay: logs, history, violations (default: a temporary "
                             "folder, removed at the end)")
    args = parser.parse_args(argv)
    stores = [s.strip() for s in args.store.split(",") if s.strip()]
    unknown = [s for s in stores if s not in KINDS]
    if unknown:
        parser.error(f"unknown store {unknown[0]!r}: one of {', '.join(KINDS)}")
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="tollgate-harness-") as tmp:
        workdir = args.workdir or Path(tmp)
        for seed in parse_seeds(args.seeds):
            for store in stores:
                try:
                    results.append(asyncio.run(run_seed(seed, store, args.ops, workdir, tasks=args.callers,
                                                        fault_seconds=args.fault_seconds,
                                                        log=lambda line: print(line, flush=True))))
                except Exception as exc:  # a run that could not even start is reported, and the soak goes on
                    traceback.print_exc()
                    detail = str(exc).strip().splitlines()
                    results.append(RunResult(seed, store, 0, 0, Counter(), [Violation(
                        "setup", f"the run could not complete: {type(exc).__name__}: {detail[-1] if detail else ''}")]))
                    print(results[-1].summary(), flush=True)
    print()
    print(table(results))
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
