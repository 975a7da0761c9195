"""``tollgate demo`` and ``make run`` end to end: every run shows every beat, the table adds up, the ledger agrees."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import grpc

from tests.support.sidecar_process import ROOT, SidecarProcess, audit, free_port

MONEY = r"\$([\d,]+\.\d+)"


def tollgate(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "sidecar"))
    return subprocess.run([sys.executable, "-m", "tollgate.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def usd(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def check_run(text: str) -> tuple[str, Decimal]:
    """Every beat and the table of one run's output; returns the run id and the table's total spend."""
    run = re.search(r"run ([0-9a-f]{6}):", text)
    assert run is not None, text
    # 1. Routing: by rule and by difficulty, both ends of the ladder.
    assert re.search(r"task_type=extract\s+-> \S+ \(cheap\)\s+rule task_type=extract", text)
    assert re.search(r"no signal: 'thanks!'\s+-> \S+ \(cheap\)\s+classifier p\(cheap ok\)", text)
    assert re.search(r"no signal: an architecture question -> \S+ \(frontier\)\s+classifier", text)
    # 2. The soft pool downgrades, 3. the session cap stops the loop, 4. the team without budget is refused.
    assert re.search(r"planning, outcome downgraded\s+-> \S+ \((cheap|medium)\).*soft budget user:demo/intern", text)
    assert re.search(r"stopped at call \d+: session:demo/runaway \(hard\) refused it", text)
    assert "refused by team:demo/contractors (hard)" in text and "no provider was called" in text
    # 5. The table: rows add up to the footer; refused and downgraded apart; both savings.
    rows = re.findall(rf"^\s*(\S+)\s+(cheap|medium|frontier)\s+(\d+)\s+\d+%\s+{MONEY}\s*$", text, re.M)
    total = re.search(rf"^\s*total served\s+(\d+)\s+{MONEY}\s*$", text, re.M)
    assert rows and total is not None, text
    served, spend = int(total.group(1)), usd(total.group(2))
    assert sum(int(r[2]) for r in rows) == served
    assert sum(usd(r[3]) for r in rows) == spend
    refused = re.search(r"^refused: (\d+) calls", text, re.M)
    downgraded = re.search(rf"^downgraded by a soft pool: (\d+) calls, {MONEY}", text, re.M)
    assert refused is not None and downgraded is not None
    assert served + int(refused.group(1)) == 120
    routed = re.search(rf"saving on the (\d+) calls served as routed \({MONEY}\)", text)
    assert routed is not None and int(routed.group(1)) == served - int(downgraded.group(1))
    assert usd(routed.group(2)) == spend - usd(downgraded.group(2))
    savings = re.findall(rf"vs all on (\S+) \((the frontier model|what you would have used)\): {MONEY} -> "
                         r"(saving|routing costs) ([\d.]+)%", text)
    assert [s[1] for s in savings] == ["the frontier model", "what you would have used"], text
    for _, against, cost, verdict, share in savings:
        # Each is the routed spend against the same calls on that model; a dearer result is said so, not hidden.
        found = float(1 - usd(routed.group(2)) / usd(cost)) * 100
        assert abs(found - (float(share) if verdict == "saving" else -float(share))) < 0.06
        if against == "the frontier model":
            assert verdict == "saving" and 0 < float(share) < 100
    return run.group(1), spend


def team_spent(target: str, team: str) -> Decimal:
    out = tollgate("budget", "--target", target, "--org", "demo", "--team", team, "--json")
    assert out.returncode == 0, out.stderr
    nanos = sum(p["spent_nanos"] for p in json.loads(out.stdout) if p["pool_id"] == f"team:demo/{team}")
    return Decimal(nanos) / 1_000_000_000


def test_every_run_shows_every_beat_and_a_table_the_ledger_agrees_with(tmp_path: Path) -> None:
    with SidecarProcess(tmp_path) as sidecar:
        for _ in range(2):
            out = tollgate("demo", "--target", sidecar.target, "--config", str(sidecar.config))
            assert out.returncode == 0, out.stderr
            run, spend = check_run(out.stdout)
            # The workload's teams hold exactly what the table says was spent.
            ledger = sum(team_spent(sidecar.target, f"{run}-{team}") for team in ("platform", "support", "web"))
            # The table rounds to 4 decimals; the ledger counts nano-dollars.
            assert abs(ledger - spend) <= Decimal("0.00005"), (ledger, spend)
    result = audit(sidecar.config, sidecar.db)
    assert result.returncode == 0 and "OK" in result.stdout


def test_the_baseline_is_yours_to_name(tmp_path: Path) -> None:
    with SidecarProcess(tmp_path) as sidecar:
        out = tollgate("demo", "--target", sidecar.target, "--config", str(sidecar.config), "--calls", "20",
                       "--baseline", "nope")
        assert out.returncode == 1 and "--baseline 'nope' is not in the catalog" in out.stderr
        assert "Traceback" not in out.stderr


def test_ctrl_c_stops_make_run_cleanly(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "sidecar.log"
    env = dict(os.environ, TOLLGATE_PORT=str(port), TOLLGATE_LOG=str(log), DEMO_CALLS="30")
    proc = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "Press Ctrl-C" in line:
            break
    text = "".join(seen)
    assert "Press Ctrl-C" in text, text
    # The terminal shows the demo, not the sidecar's logs: those went to the file.
    assert '"level"' not in text and '"level"' in log.read_text()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    rest = proc.stdout.read()
    code = proc.wait(30)
    # make dies of the interrupt like any program stopped with Ctrl-C; nothing under it failed.
    assert code in (0, -signal.SIGINT), (code, rest)
    assert "Error" not in rest and "Traceback" not in rest and "stopping the sidecar" in rest
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
            raise AssertionError("the sidecar still listens after Ctrl-C")
        except grpc.FutureTimeoutError:
            pass
