"""The bus benchmark runs and ends with one JSON line: its ratios and load figures (no speed assertion)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bus.py"


@pytest.mark.slow
def test_bus_benchmark_prints_ratios() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--samples", "200", "--duration", "0.5", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("p50_ms", "p99_ms", "throughput_ratio_1", "throughput_ratio_32", "echo_p99_ms"):
        assert isinstance(result[key], float) and result[key] > 0, key
    # The load phases (200 connections x 50 commands; chat fan-out to 50 members) found nothing wrong.
    for phase in (result["load"], result["load_pipelined"]):
        assert phase["requests"] == phase["completed"] == 200 * 50, phase
        assert phase["lost"] == phase["duplicated"] == phase["mismatched"] == phase["errors"] == 0, phase
        assert phase["p50_ms"] > 0 and phase["p99_ms"] >= phase["p50_ms"] and phase["throughput"] > 0
    assert result["load_ok"] is True
    for fanout in result["chat_fanout"].values():
        assert fanout["events_received"] == fanout["events_expected"] == 50 * 50, fanout
        assert fanout["lost"] == fanout["duplicated"] == fanout["order_mismatches"] == 0, fanout
        assert fanout["history_count"] == 50 and fanout["history_in_id_order"] is True, fanout
    assert result["chat_fanout_ok"] is True
