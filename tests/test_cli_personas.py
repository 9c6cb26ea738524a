"""``personad persona …`` and ``personad chat`` through the console entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from personad.cli import main
from tests.conftest import RunningDaemon


def _cli(*args: str, home: Path, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--home", str(home)], input=input)
    return result.exit_code, result.output


def test_persona_verbs_work_offline(tmp_path: Path, fake_provider_plugin: None) -> None:
    code, out = _cli(
        "persona",
        "create",
        "writer",
        "--name",
        "Writer",
        "--provider",
        "fake",
        "--adapters",
        "continuum.legal,continuum.legal.patent",
        "--capabilities",
        "chat",
        "--system-prompt",
        "Write well.",
        "--evolve-every",
        "3600",
        home=tmp_path,
    )
    assert code == 0, out
    assert "continuum.legal, continuum.legal.patent" in out
    code, out = _cli("persona", "list", "--json", home=tmp_path)
    listed = json.loads(out)
    assert [(p["id"], p["capabilities"], p["system_prompt"], p["evolve_every_s"]) for p in listed] == [
        ("writer", ["chat"], "Write well.", 3600.0)
    ]
    code, out = _cli("persona", "create", "eager", "--provider", "fake", "--evolve-every", "0", home=tmp_path)
    assert code == 2 and "evolve-every" in out
    code, out = _cli("persona", "create", "writer", home=tmp_path)
    assert code == 6 and "persona_exists" in out
    code, out = _cli("persona", "create", "Bad!", home=tmp_path)
    assert code == 2 and "invalid_persona" in out
    code, out = _cli("persona", "create", "other", "--provider", "nope", home=tmp_path)
    assert code == 2 and "unknown_provider" in out
    code, out = _cli("persona", "start", "writer", home=tmp_path)
    assert code == 7 and "daemon_not_running" in out
    code, out = _cli("persona", "delete", "writer", home=tmp_path)
    assert code == 0 and not (tmp_path / "personas" / "writer").exists()


def test_persona_lifecycle_and_chat_against_the_daemon(persona_daemon: RunningDaemon) -> None:
    home = persona_daemon.home
    code, out = _cli("persona", "create", "pal", "--provider", "fake", home=home)
    assert code == 0, out
    code, out = _cli("persona", "start", "pal", home=home)
    assert code == 0 and "running" in out, out
    code, out = _cli("persona", "show", "pal", "--json", home=home)
    assert json.loads(out)["process"]["state"] == "running"
    code, out = _cli("chat", "pal", "how are you", home=home)
    assert code == 0, out
    assert out.strip() == "echo: console: how are you"
    code, out = _cli("persona", "stop", "pal", home=home)
    assert code == 0 and "stopped" in out


def test_chat_starts_the_persona_and_runs_interactively(persona_daemon: RunningDaemon) -> None:
    home = persona_daemon.home
    assert _cli("persona", "create", "talker", "--provider", "fake", home=home)[0] == 0
    proc = subprocess.run(
        [sys.executable, "-m", "personad.cli", "chat", "talker", "--home", str(home)],
        input="first line\nsecond line\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "talker> echo: console: first line" in proc.stdout
    assert "talker> echo: console: second line" in proc.stdout
    assert "(starting talker…)" in proc.stderr


def test_brain_export_import_and_stats(tmp_path: Path, fake_provider_plugin: None) -> None:
    from personad.brain.store import Brain

    assert _cli("persona", "create", "src", "--provider", "fake", home=tmp_path)[0] == 0
    assert _cli("persona", "create", "dst", "--provider", "fake", home=tmp_path)[0] == 0
    with Brain.open(tmp_path / "personas" / "src" / "brain.sqlite") as brain:
        brain.remember({"type": "fact", "key": "user.name", "content": "The user is called Ada."})
        brain.goal_set("Learn Portuguese")
    out = tmp_path / "src.jsonl"
    code, text = _cli("brain", "export", "src", "--out", str(out), home=tmp_path)
    assert code == 0, text
    code, text = _cli("brain", "import", "dst", str(out), home=tmp_path)
    assert code == 0, text
    code, text = _cli("brain", "stats", "dst", home=tmp_path)
    stats = json.loads(text)
    assert stats["memories"] == 1 and stats["goals"] == 1
    code, text = _cli("brain", "export", "ghost", home=tmp_path)
    assert code == 5 and "persona_not_found" in text
