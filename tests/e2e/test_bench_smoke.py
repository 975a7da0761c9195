"""A short run of the benchmark harness: it runs and produces every figure (not what the figures are).

``benchmarks/bench.py --quick`` against the embedded store and the suite's Redis: tiny open
loads, a scale check over 1k open reservations and a 2k-call memory check. Speeds are
not asserted here; this machine is shared.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.redis]

LOADS = ("one-at-a-time", "20/s", "50/s", "saturation")
TARGET_FIGURES = ("calls_per_s", "cpu_us_per_call", "cpu_us_per_rpc", "rss_mb", "hwm_mb", "client_cpu_us_per_call",
                  "schedule_lag_p99_ms")
LATENCY = ("p50", "p99", "p999")
RATIOS = ("route_p50", "route_p99", "route_p999", "commit_p50", "commit_p99", "commit_p999", "cpu_per_call",
          "calls_per_s", "rss")
SCALE_FIGURES = ("populate_s", "startup_s", "rss_mb", "hwm_mb")
LEAK_FIGURES = ("calls_per_s", "rss_before_mb", "rss_first_mb", "rss_last_mb", "rss_max_mb", "growth_mb",
                "second_half_growth_mb", "slope_mb_per_100k_calls")
REQUEST_FIGURES = ("messages", "input_tokens", "route_request_bytes", "route_response_bytes",
                   "commit_request_bytes", "commit_response_bytes")


def numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def assert_numeric(figures: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        assert numeric(figures.get(key)), f"{where}.{key} = {figures.get(key)!r}"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--json", "--store", "sqlite,redis",
         "--loads", "20,50", "--scale", "1000", "--leak-calls", "2000", "--redis-url", redis_server.url,
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == data
    return data


def test_header_figures(report: dict[str, Any]) -> None:
    assert report["schema"] == "tollgate-bench/1"
    assert_numeric(report["machine"], ("cpus", "mem_total_mb"), "machine")
    assert_numeric(report["request"], REQUEST_FIGURES, "request")
    assert report["settings"]["workers"] >= 1
    assert set(report["stores"]) == {"sqlite", "redis"}


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_every_load_has_every_figure(report: dict[str, Any], store: str) -> None:
    loads = report["stores"][store]["loads"]
    assert [e["load"] for e in loads] == list(LOADS)
    for entry in loads:
        where = f"{store}.{entry['load']}"
        for target in ("echo", "floor", "tollgate"):
            figures = entry[target]
            # A call can fail on a starved machine (the Redis store's 250 ms bound): the figures must still be there.
            assert figures["calls"] > 0, f"{where}.{target}: {figures}"
            assert figures["errors"] <= figures["calls"] // 10, f"{where}.{target}: {figures['error_codes']}"
            assert_numeric(figures, TARGET_FIGURES, f"{where}.{target}")
            for path in ("route_ms", "commit_ms"):
                assert_numeric(figures[path], LATENCY, f"{where}.{target}.{path}")
        assert_numeric(entry["ratios"], RATIOS, f"{where}.ratios")
        assert_numeric(entry["ratios_floor"], RATIOS, f"{where}.ratios_floor")
    for entry in loads:
        if store == "redis":
            assert numeric(entry["tollgate"]["store_cpu_us_per_call"])
    assert loads[1]["offered_calls_per_s"] == 20 and loads[2]["offered_calls_per_s"] == 50


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_scale_and_memory_checks(report: dict[str, Any], store: str) -> None:
    result = report["stores"][store]
    assert [p["open_reservations"] for p in result["scale"]] == [0, 1000]
    for point in result["scale"]:
        where = f"{store}.scale[{point['open_reservations']}]"
        assert_numeric(point, SCALE_FIGURES, where)
        for path in ("route_ms", "commit_ms", "echo_route_ms"):
            assert_numeric(point[path], LATENCY, f"{where}.{path}")
        assert_numeric(point["ratios"], ("route_p50", "route_p99"), f"{where}.ratios")
        if store == "redis":
            assert numeric(point["store_rss_mb"])
    assert_numeric(result["request"], REQUEST_FIGURES, f"{store}.request")
    leak = result["leak"]
    assert leak["calls"] + leak["errors"] == 2000 and leak["errors"] <= 200, leak["error_codes"]
    assert_numeric(leak, LEAK_FIGURES, f"{store}.leak")
    assert len(leak["samples"]) == 11 and all(numeric(s["rss_mb"]) for s in leak["samples"])
    assert result["targets"] and all(numeric(t["value"]) for t in result["targets"])
