"""The console transport: ``personad serve`` as a real process and ``personad exec`` against it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

PERSONAD = [sys.executable, "-m", "personad.cli"]


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PERSONAD, *args, "--home", str(home)], capture_output=True, text=True, timeout=120
    )


def _start(home: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*PERSONAD, "serve", "--home", str(home), "--port", "0", "--log-level", "warning", *extra],
        env={**os.environ, "PERSONAD_DEFAULT_PERSONA": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (home / "daemon.json").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "daemon did not write daemon.json"
        time.sleep(0.05)
    state = json.loads((home / "daemon.json").read_text())
    while True:
        try:
            if httpx.get(state["url"] + "/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    home = tmp_path / "home"
    proc = _start(home)
    yield proc, home
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)  # reaps the process and closes its pipes


def test_serve_writes_private_state_and_prints_url(served: tuple[subprocess.Popen[str], Path]) -> None:
    proc, home = served
    state = json.loads((home / "daemon.json").read_text())
    assert set(state) == {"url", "port", "token", "pid"} and state["pid"] == proc.pid
    assert stat.S_IMODE((home / "daemon.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "token").stat().st_mode) == 0o600
    assert (home / "token").read_text().strip() == state["token"]
    assert proc.stdout is not None
    line = proc.stdout.readline()
    # Not a terminal (a pipe, as a log would be): the URL without the token, and where the token is.
    assert f"listening on {state['url']}/ (token in {home.resolve() / 'token'})" in line
    assert state["token"] not in line


def test_exec_prints_results_and_fails_with_exit_codes(served: tuple[subprocess.Popen[str], Path]) -> None:
    _, home = served
    ok = _run("exec", "ping", "-p", "echo=hello", "--json", home=home)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"pong": True, "echo": "hello"}
    human = _run("exec", "session", home=home)
    assert human.returncode == 0 and "kind: console" in human.stdout
    cases = [
        (["exec", "no_such"], 5, "unknown_command"),
        (["exec", "file_read", "-p", "path=../../token"], 4, "path_escape"),
        (["exec", "chat_history", "-p", "room=general", "-p", "limit=lots"], 2, "invalid_params"),
        (["exec", "ping", "-p", "novalue"], 2, "invalid_params"),
        (["exec", "ping", "--params", "[1]"], 2, "invalid_params"),
    ]
    for args, code, error in cases:
        result = _run(*args, home=home)
        assert result.returncode == code, (args, result.stderr)
        assert f"error [{error}]" in result.stderr
    as_json = _run("exec", "no_such", "--json", home=home)
    assert as_json.returncode == 5 and json.loads(as_json.stdout)["error"]["code"] == "unknown_command"


def test_console_session_persists_between_exec_calls(served: tuple[subprocess.Popen[str], Path]) -> None:
    _, home = served
    assert _run("exec", "room_create", "-p", "room=cli-room", home=home).returncode == 0
    assert (
        _run("exec", "chat", "-p", "room=cli-room", "-p", "text=from the console", home=home).returncode == 0
    )
    history = _run("exec", "chat_history", "-p", "room=cli-room", "--json", home=home)
    assert [m["text"] for m in json.loads(history.stdout)["messages"]] == ["from the console"]


def test_sigterm_shuts_down_cleanly(served: tuple[subprocess.Popen[str], Path]) -> None:
    proc, home = served
    assert _run("exec", "browser_js", "-p", "script=1+1", home=home).returncode == 0  # browser running
    descendants = _descendants(proc.pid)
    assert descendants, "expected the Playwright driver and Chromium under the daemon"
    proc.send_signal(signal.SIGTERM)
    # uvicorn finishes the lifespan shutdown, then re-raises SIGTERM so the exit status tells the truth.
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert not (home / "daemon.json").exists()  # removed by the daemon's own shutdown path
    # No Chromium or driver left behind by this daemon.
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in descendants if Path(f"/proc/{pid}").exists()]


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for child in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((child / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out += [int(child.name), *_descendants(int(child.name))]
    return out


def test_exec_without_daemon(tmp_path: Path) -> None:
    result = _run("exec", "ping", home=tmp_path)
    assert result.returncode == 7 and "daemon_not_running" in result.stderr
    (tmp_path / "daemon.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "token": "x", "port": 9}))
    stale = _run("exec", "ping", home=tmp_path)
    assert stale.returncode == 7 and "daemon_unreachable" in stale.stderr


def test_token_override_and_env_home(tmp_path: Path) -> None:
    home = tmp_path / "envhome"
    env = {**os.environ, "PERSONAD_HOME": str(home), "PERSONAD_DEFAULT_PERSONA": ""}
    proc = subprocess.Popen(
        [*PERSONAD, "serve", "--port", "0", "--token", "fixed-token-123"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (home / "daemon.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert json.loads((home / "daemon.json").read_text())["token"] == "fixed-token-123"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
