"""The brain benchmarks run end to end on a tiny configuration and end with one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _last_json(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_brain_benchmark_small(tmp_path: Path) -> None:
    result = _last_json(
        [
            str(BENCH / "brain.py"),
            "--sizes",
            "300",
            "--singles",
            "3",
            "--batched",
            "30",
            "--queries",
            "10",
            "--cache-dir",
            str(tmp_path),
        ]
    )
    assert 0 <= result["recall10_hybrid_300"] <= 1 and result["hybrid_p95_ms_300"] > 0


def test_brain_crash_benchmark_loses_nothing() -> None:
    result = _last_json([str(BENCH / "brain_crash.py"), "--rounds", "5"])
    assert result["rounds"] == 5 and result["lost"] == 0 and result["integrity_failures"] == 0
