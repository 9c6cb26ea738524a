"""Every script in examples/ runs as a user would run it, against a daemon found through PERSONAD_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RunningDaemon

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, daemon: RunningDaemon, *args: str) -> str:
    env = {**os.environ, "PERSONAD_HOME": str(daemon.home)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        cwd=daemon.home.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_example_is_tested() -> None:
    tested = {"persona_chat.py", "persona_commands.py", "persona_memory.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert all(name in readme for name in tested)


def test_persona_memory(running: RunningDaemon) -> None:
    out = run("persona_memory.py", running)
    assert "learning_experience: Successfully solved quantum mechanics problem" in out
    assert "collaboration: Collaborated with academy-chemistry-002" in out
    assert "0 skills learned as adapters so far" in out
    assert (running.home / "personas" / "academy-physics-001" / "brain.sqlite").is_file()


def test_persona_commands(running: RunningDaemon) -> None:
    out = run("persona_commands.py", running)
    assert "patent number: US10,123,456" in out
    shot = Path(out.split("screenshot: ", 1)[1].strip())
    assert shot.is_file() and shot.is_relative_to(running.home.resolve() / "personas" / "example-analyst")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_persona_chat(running: RunningDaemon) -> None:
    out = run("persona_chat.py", running, "What is prior art?")
    *answer, usage = out.strip().splitlines()
    assert "".join(answer).strip() and usage.endswith(" tokens)") and not usage.startswith("(0 ")
