"""The engine benchmark runs end to end (--quick) and ends with one JSON line; without llama-cpp-python
it says so and still measures ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_engine_benchmark_quick_without_llama_cpp(tmp_path: Path) -> None:
    no_llama = tmp_path / "python-without-llama"
    no_llama.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import llama_cpp_is_not_here' \"$@\"\n")
    no_llama.chmod(0o755)
    proc = subprocess.run(
        [sys.executable, str(BENCH / "engine.py"), "--quick", "--llama-python", str(no_llama)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "llama.cpp: not measured" in proc.stdout
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["llama_cpp"].startswith("not measured")
    for key in ("ours_decode_tps", "ours_stack3_tps", "ours_mixed8_aggregate_tps", "ours_start_s"):
        assert result[key] > 0, key
    assert result["ours_peak_rss_mib"] > 100 and 0 < result["ours_ttft_v1_s"] < 60
    assert result["agreement_same_prefix"] is not None and 0 <= result["agreement_same_prefix"] <= 1
    assert "decode_ratio" not in result
