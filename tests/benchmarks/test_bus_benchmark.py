"""The bus benchmark runs and ends with one JSON line carrying its ratios (not a speed assertion)."""

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
