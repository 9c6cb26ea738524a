"""docs/personas.md's Python API examples run verbatim, from a folder whose ./.continuum is a home."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningDaemon, start_daemon

DOC = Path(__file__).resolve().parents[2] / "docs" / "personas.md"


def python_api_blocks() -> list[str]:
    section = DOC.read_text(encoding="utf-8").split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


@pytest.fixture
def continuum(tmp_path: Path) -> Iterator[RunningDaemon]:
    daemon = start_daemon(tmp_path / ".continuum")
    yield daemon
    daemon.stop()


def run(code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PERSONAD_HOME"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_academy_argument_example(tmp_path: Path) -> None:
    out = run(python_api_blocks()[1], tmp_path)
    assert "role='testing_droid'" in out and "adversarial_partner='protocol-sheriff-1'" in out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_python_api_example(continuum: RunningDaemon) -> None:
    blocks = python_api_blocks()
    assert len(blocks) == 2
    out = run(blocks[0], continuum.home.parent).splitlines()
    assert out[0] == "42" and out[-1] == "running" and "".join(out[1:-1]).strip()
    stored = (continuum.home / "personas" / "patent-expert" / "persona.json").read_text()
    assert '"model_provider": "local"' in stored
