"""The shipped alert rules and dashboard, against a real Prometheus scraping a live sidecar.

``promtool`` checks the rules and runs their unit tests (k8s/monitoring/alerts.test.yaml); then a
Prometheus server (Debian's ``prometheus``) scrapes a sidecar that served a workload, loads the rules,
and answers every rule's and every dashboard panel's query: each must parse, each metric it names must
be one the sidecar exports, and the spend it sums must be the ledger's.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.sidecar_process import ROOT, SidecarProcess, free_port, write_config
from tollgate_client import AsyncClient, BudgetExceededError, Scope, Usage

MONITORING = ROOT / "k8s" / "monitoring"
RULES = MONITORING / "alerts.yaml"
DASHBOARD = MONITORING / "tollgate-dashboard.json"
NAMES = re.compile(r"\b((?:tollgate|process)_[a-z_]+)\b")

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                reason="needs Debian's prometheus package (prometheus and promtool)")


def test_promtool_checks_the_rules_and_their_unit_tests_pass() -> None:
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(["promtool", "test", "rules", "alerts.test.yaml"], cwd=MONITORING, capture_output=True,
                          text=True, timeout=60)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(RULES)],
                  "scrape_configs": [{"job_name": "tollgate", "static_configs": [{"targets": [target]}]}]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def wait(self, expr: str, what: str, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()}")
            try:
                found = self.query(expr)
                if found:
                    return found
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what} ({expr})")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """A sidecar that served a workload, scraped by Prometheus; and the ledger's spend per org, in nano-USD."""
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()

    def edit(data: dict[str, Any]) -> None:
        data["telemetry"] = {"metrics_port": port, "metrics_host": "127.0.0.1", "watch_pools": ["org:tight"]}
        data["budgets"]["overrides"] = {"org:tight": {"cap": "0.002", "policy": "hard", "priority_reserve": 0}}

    with SidecarProcess(tmp, config=write_config(tmp / "tollgate.yaml", edit)) as sidecar:
        spend = _workload(sidecar)
        prometheus = Prometheus(tmp, f"127.0.0.1:{port}")
        try:
            # Two scrapes after the workload, so that rates have two samples.
            prometheus.wait("count_over_time(tollgate_spend_usd_total[1m]) >= 3", "three scrapes of the spend")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                declared = _declared(response.read().decode())
            yield Scraped(prometheus, spend, declared)
        finally:
            prometheus.stop()


@dataclass(frozen=True)
class Scraped:
    prometheus: Prometheus
    spend: dict[str, int]
    """The ledger's spend per org, in nano-USD."""
    declared: frozenset[str]
    """Every series name the sidecar's /metrics declares, those with no sample yet included."""


def _declared(text: str) -> frozenset[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return frozenset(names)


def _workload(sidecar: SidecarProcess) -> dict[str, int]:
    async def run() -> dict[str, int]:
        async with AsyncClient(sidecar.target) as client:
            for i in range(12):
                d = await client.route(Scope(org="shop", user=f"u{i % 3}"), input_tokens=800,
                                       task_type=["extract", "planning"][i % 2], max_output_tokens=200, reserve=True)
                assert d.reservation is not None
                await client.commit(d.reservation.reservation_id, Usage(input_tokens=800, output_tokens=150))
            # org:tight, past 80 % of its cap with calls whose cost is known.
            while True:
                pool = next(p for p in await client.get_budget(Scope(org="tight")) if p.pool_id == "org:tight")
                if pool.spent_nanos >= pool.usable_cap_nanos * 0.85:
                    break
                try:
                    r = await client.reserve(Scope(org="tight"), "gpt-4o-mini", input_tokens=2_000,
                                             max_output_tokens=500)
                except BudgetExceededError:
                    break
                await client.commit(r.reservation.reservation_id, Usage(input_tokens=2_000, output_tokens=500))
            with pytest.raises(BudgetExceededError):
                await client.reserve(Scope(org="tight"), "claude-opus-4-1", input_tokens=50_000)
            spent = {}
            for org in ("shop", "tight"):
                spent[org] = next(p for p in await client.get_budget(Scope(org=org)) if p.pool_id == f"org:{org}"
                                  ).spent_nanos
            return spent

    return asyncio.run(run())


def test_the_rules_load_and_evaluate_cleanly_against_the_sidecars_metrics(
        scraped: Scraped) -> None:
    prometheus = scraped.prometheus
    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    shipped = [rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert sorted(rule["name"] for rule in rules) == sorted(shipped)
    # Evaluated at least once, without an error.
    deadline = time.monotonic() + 20
    while any(rule.get("lastEvaluation", "").startswith("0001") for rule in rules) and time.monotonic() < deadline:
        time.sleep(0.5)
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
    # The watched pool is past 80 %: the near-cap alert's query names it (the alert fires after 5 minutes).
    near = prometheus.query(yaml.safe_load(RULES.read_text())["groups"][0]["rules"][0]["expr"])
    assert [(r["metric"]["pool"], float(r["value"][1]) >= 0.8) for r in near] == [("org:tight", True)]
    pending = [a for a in prometheus.api("alerts")["alerts"] if a["labels"]["alertname"] == "TollgatePoolNearCap"]
    assert [a["state"] for a in pending] == ["pending"]


def test_the_spend_prometheus_sums_is_the_ledgers(scraped: Scraped) -> None:
    prometheus, spend = scraped.prometheus, scraped.spend
    total = float(prometheus.query("sum(tollgate_spend_usd_total)")[0]["value"][1])
    assert round(total * 1_000_000_000) == sum(spend.values())
    by_level = {r["metric"]["level"]: float(r["value"][1])
                for r in prometheus.query("sum by (level) (tollgate_pool_spend_usd_total)")}
    assert round(by_level["org"] * 1_000_000_000) == sum(spend.values())


def test_every_dashboard_and_rule_query_runs_on_metrics_the_sidecar_exports(
        scraped: Scraped) -> None:
    prometheus = scraped.prometheus
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    missing = sorted({name for expr in exprs for name in NAMES.findall(expr)} - scraped.declared)
    assert not missing, f"queries name metrics the sidecar does not export: {missing}"
    answered = 0
    for expr in exprs:
        # Grafana's own interval variable, which Prometheus does not know.
        result = prometheus.query(expr.replace("$__rate_interval", "1m"))
        answered += bool(result)
    # Every panel about what the workload did shows data (the quality guard and failures have none yet).
    assert answered >= 15, answered
    by_model = prometheus.query(dashboard["panels"][1]["targets"][0]["expr"].replace("$__rate_interval", "1m"))
    # (At rate 0: the workload ended before the first scrape.) One series per model the workload paid for.
    assert {r["metric"]["model"] for r in by_model} >= {"gpt-4o-mini"}
