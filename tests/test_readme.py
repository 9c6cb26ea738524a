"""Every command in the README's "Using it" blocks runs verbatim, in order, against a running daemon.

Only the `personad serve` synopsis is not run (this test starts the daemon, with the default persona on the
real local model, as `make serve` does). A README edit that breaks an example fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, start_daemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

README = REPO / "README.md"
NOT_RUN = {"personad serve [--home DIR] [--host 127.0.0.1] [--port 8765] [--token T]": "starts the daemon"}


def readme_commands() -> list[str]:
    """The shell commands of the README's usage section, continuation lines joined, in order."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Using it") : text.index("## Documentation")]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_the_readme_lists_what_this_test_runs() -> None:
    commands = readme_commands()
    assert len(commands) >= 15
    for skipped in NOT_RUN:
        assert any(c.startswith(skipped) for c in commands), f"README no longer has {skipped!r}"


def test_every_readme_example_runs_verbatim(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    daemon = start_daemon(home, default_persona="assistant", preload_embedder=True)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PERSONAD_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    outputs: dict[str, str] = {}
    try:
        for command in readme_commands():
            if any(command.startswith(skipped) for skipped in NOT_RUN):
                continue
            done = subprocess.run(
                ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=1500
            )
            assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
            outputs[command] = done.stdout
    finally:
        daemon.stop()

    def out(prefix: str) -> str:
        return next(v for k, v in outputs.items() if k.startswith(prefix))

    assert json.loads(out("personad exec browser_js"))["value"] == 42
    assert out("personad exec screenshot").strip()
    assert out("personad chat patent-expert").strip()  # the real model answered
    assert "continuum.legal" in out("personad lora load patent-expert")
    assert (work / "flat" / "adapter_config.json").is_file()
    assert (home / "adapters" / "continuum.legal.patent").is_dir()
    manifest = json.loads(
        (home / "adapters" / "continuum.legal.patent" / "personad-adapter.json").read_text()
    )
    assert manifest["parents"] == ["continuum.legal"]
    assert not (home / "adapters" / "continuum").exists()
    assert "patent-expert" in out("personad persona list") and "claude-helper" in out("personad persona list")
