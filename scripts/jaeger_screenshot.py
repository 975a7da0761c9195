"""The trace an SRE gets in Jaeger, as its query API returns it and, given the UI, as a picture.

Runs the scenario of tests/e2e/test_jaeger.py (a real Jaeger v2, a sidecar exporting to it,
an app's request through the Python client) and prints the trace Jaeger stored, span by span
with the attributes an SRE reads. With ``--ui-assets`` (a build of jaeger-ui: a Jaeger built
from its Go module embeds only a placeholder page, and the UI is published on no package
registry), Jaeger serves its UI too, and the trace is opened in headless Chromium (Debian's
``chromium``) driven by Playwright (``playwright-core`` from npm, in a scratch folder), the
Route span's attributes expanded, and the page saved to ``--out``.

    python scripts/jaeger_screenshot.py [--ui-assets DIR --out docs/jaeger-trace.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "sidecar")]

from tests.e2e.test_jaeger import checkout, traced_sidecar  # noqa: E402
from tests.support.jaeger import Jaeger, tags  # noqa: E402

PLAYWRIGHT = "playwright-core@1.64.1"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

SHOOT = """
const { chromium } = require('playwright-core');
(async () => {
  const [url, out, flags] = [process.argv[2], process.argv[3], JSON.parse(process.argv[4])];
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: flags });
  const page = await browser.newPage({ viewport: { width: 1500, height: 1050 } });
  await page.goto(url);
  const route = page.getByText('tollgate.v1.TollgateService/Route', { exact: false }).first();
  await route.waitFor({ timeout: 30000 });
  await route.click();  // opens the span's detail row
  const tagsToggle = page.getByText('Tags', { exact: false }).first();
  await tagsToggle.waitFor({ timeout: 10000 });
  await tagsToggle.click();
  await page.waitForTimeout(500);
  await page.screenshot({ path: out, fullPage: true });
  await browser.close();
})().catch((err) => { console.error(err); process.exit(1); });
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ui-assets", type=Path, help="a jaeger-ui build (its folder with index.html)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "jaeger-trace.png")
    args = parser.parse_args()
    npm = shutil.which("npm")
    if args.ui_assets is not None and (npm is None or not Path("/usr/bin/chromium").exists()):
        print("the picture needs npm and Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tollgate-shot-") as tmp_name:
        tmp = Path(tmp_name)
        with Jaeger(tmp, ui_assets=args.ui_assets) as jaeger, traced_sidecar(tmp, jaeger) as sidecar:
            seen = asyncio.run(checkout(sidecar, jaeger))
            print(render(jaeger.trace(seen.trace_id, spans=5)))
            if args.ui_assets is None:
                return 0
            assert npm is not None
            subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", PLAYWRIGHT], cwd=tmp,
                           check=True)
            (tmp / "shoot.js").write_text(SHOOT)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["node", "shoot.js", f"{jaeger.ui}/trace/{seen.trace_id}", str(args.out.resolve()),
                            json.dumps(CHROMIUM_FLAGS)], cwd=tmp, check=True, timeout=120)
    print(f"wrote {args.out}")
    return 0


SHOWN = ("tollgate.model", "tollgate.tier", "tollgate.outcome", "tollgate.routing.reason", "tollgate.cost.held_usd",
         "tollgate.cost.charged_usd", "tollgate.usage.input_tokens", "tollgate.usage.output_tokens",
         "tollgate.refusal.pool_id", "rpc.grpc.status_code", "gen_ai.request.model", "error")


def render(trace: dict[str, Any]) -> str:
    """The trace as a tree: service, operation, duration and the attributes an SRE reads first."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    children: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for span in sorted(trace["spans"], key=lambda s: s["startTime"]):
        parent = next((r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"), None)
        if parent in spans:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    lines: list[str] = []

    def walk(span: dict[str, Any], prefix: str, last: bool, top: bool) -> None:
        service = trace["processes"][span["processID"]]["serviceName"]
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(f"{prefix}{branch}{service}: {span['operationName']}  {span['duration'] / 1000:.2f} ms")
        shown = {k: v for k, v in tags(span).items() if k in SHOWN}
        inner = prefix + ("" if top else ("    " if last else "│   "))
        if shown:
            lines.append(inner + "      " + "  ".join(f"{k}={v}" for k, v in shown.items()))
        kids = children.get(span["spanID"], [])
        for i, kid in enumerate(kids):
            walk(kid, inner, i == len(kids) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
