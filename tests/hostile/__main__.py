"""``python -m tests.hostile --calls 20000 --seed 7``: run the campaign, print its summary, exit 1 on a violation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .campaign import Options, run_sync


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="calls in the plan (default 20000)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the plan and every choice in it")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight in the concurrent phase")
    parser.add_argument("--sequential-share", type=float, default=0.4,
                        help="share of the plan run one call at a time, with the ledger compared around each call")
    parser.add_argument("--workdir", type=Path, help="keep the sidecar's config, ledger and log here")
    parser.add_argument("--sidecar-src", type=Path,
                        help="attack the sidecar package of another checkout (its sidecar/ directory)")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite",
                        help="the sidecar's store; on redis the campaign also stalls the store (DEBUG SLEEP)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    args = parser.parse_args(argv)
    report = run_sync(Options(calls=args.calls, seed=args.seed, concurrency=args.concurrency,
                              sequential_share=args.sequential_share, workdir=args.workdir,
                              sidecar_src=args.sidecar_src, store=args.store))
    print(report.render())
    print(f"workdir: {report.workdir}")
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2, default=str))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
