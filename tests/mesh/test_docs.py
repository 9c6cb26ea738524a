"""docs/mesh.md's example runs verbatim: two daemons on the real local model, an adapter trained on one,
announced, acquired by the other, verified against the real base model's sha256."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from personad.lora.registry import AdapterRegistry
from tests.conftest import REPO, start_daemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DOC = REPO / "docs" / "mesh.md"


def doc_commands() -> list[str]:
    """The commands of the doc's second shell block (the first starts the daemons: the test does that)."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2 and all(line.startswith("personad serve") for line in blocks[0].splitlines())
    return [line.strip() for line in blocks[1].splitlines() if line.strip() and not line.startswith("#")]


def test_the_mesh_doc_runs_verbatim(tmp_path: Path) -> None:
    a = start_daemon(tmp_path / "a", mesh=True, mesh_name="a")
    b = start_daemon(tmp_path / "b", mesh=True, mesh_name="bob")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    outputs: dict[str, str] = {}
    try:
        for command in doc_commands():
            done = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
            outputs[command] = done.stdout
    finally:
        a.stop()
        b.stop()

    def out(prefix: str) -> str:
        return next(v for k, v in outputs.items() if k.startswith(prefix))

    assert "joined" in out("personad mesh join")
    assert "acquired continuum.legal" in out("personad mesh acquire")
    assert "clerk stack: continuum.legal" in out("personad mesh acquire")
    ours = AdapterRegistry.for_home(tmp_path / "a").manifest("continuum.legal")
    theirs = AdapterRegistry.for_home(tmp_path / "b").manifest("continuum.legal")
    assert theirs.lora_hash == ours.lora_hash and theirs.base_model_sha256 == ours.base_model_sha256
    assert theirs.created_by.startswith("mesh:")
