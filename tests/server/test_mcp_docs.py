"""docs/mcp.md's SDK example runs verbatim, from a folder whose ./.continuum is a daemon's home."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import start_daemon

DOC = Path(__file__).resolve().parents[2] / "docs" / "mcp.md"


def test_the_sdk_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) == 1
    daemon = start_daemon(tmp_path / ".continuum")
    try:
        env = {k: v for k, v in os.environ.items() if k != "PERSONAD_HOME"}
        done = subprocess.run(
            [sys.executable, "-c", blocks[0]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        daemon.stop()
    assert done.returncode == 0, done.stderr
    count, _, rest = done.stdout.partition(" tools\n")
    assert int(count) > 40 and "'pong': True" in rest and "'echo': 'hello'" in rest
