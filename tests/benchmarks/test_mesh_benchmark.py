"""The mesh benchmark runs end to end (--quick: 2 MB, one repeat) and ends with one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_mesh_benchmark_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "mesh.py"), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bytes_2mb"] > 2_000_000
    for key in ("2mb_1seeder", "2mb_2seeders"):
        assert result[f"transfer_{key}_s"] > 0 and result[f"raw_{key}_s"] > 0
        assert result[f"acquire_{key}_s"] >= result[f"transfer_{key}_s"]
    assert result["peers_sending_2mb_2seeders"] >= 1  # (that both send is tests/mesh/test_daemons.py)
    assert result["verify_ms_per_mb_2mb"] > 0
    assert 0 < result["propagation_p0.2_median_s"] <= result["propagation_p0.2_max_s"]
