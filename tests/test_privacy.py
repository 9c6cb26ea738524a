"""Secrets and private data at rest: the home is the daemon user's alone, and no token or key reaches a log
or a command record (src/personad/privacy.py)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from personad import privacy
from tests.conftest import REPO, RunningDaemon

API_KEY = "sk-test-0123456789abcdefSECRET"
CANARY = "PERSIMMON-CANARY-7"


def test_redact_text_masks_url_tokens_bearers_and_known_secrets() -> None:
    privacy.register_secret("registered-secret-value")
    text = 'GET /ws?kind=api&token=abc.DEF-123 "Authorization: Bearer xyz.789" registered-secret-value'
    assert privacy.redact_text(text) == 'GET /ws?kind=api&token=*** "Authorization: Bearer ***" ***'
    assert privacy.redact_text("nothing to hide here") == "nothing to hide here"
    privacy.register_secret("short")  # too short to mask safely: ordinary words would vanish
    assert privacy.redact_text("a short note") == "a short note"


def test_redact_params_masks_marked_fields_and_secret_keys() -> None:
    params = {
        "id": "p",
        "secret": CANARY,
        "code": "invite-code-1234",
        "model_config": {"api_key": API_KEY, "base_url": "http://127.0.0.1:9/v1", "apiKey": API_KEY},
        "items": [{"password": "hunter2"}, "plain"],
        "empty_token": None,
    }
    masked = privacy.redact_params(params, {"code"})
    assert masked == {
        "id": "p",
        "secret": "***",
        "code": "***",
        "model_config": {"api_key": "***", "base_url": "http://127.0.0.1:9/v1", "apiKey": "***"},
        "items": [{"password": "***"}, "plain"],
        "empty_token": None,
    }
    assert params["secret"] == CANARY  # a copy: the command still gets its params


def test_the_log_filter_keeps_uvicorns_access_record_shape(caplog: pytest.LogCaptureFixture) -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", "/ws?token=t0p", "1.1", 101),
        None,
    )
    privacy.RedactingFilter().filter(record)
    assert record.args == ("1.2.3.4", "GET", "/ws?token=***", "1.1", 101)
    assert record.getMessage() == '1.2.3.4 - "GET /ws?token=*** HTTP/1.1" 101'


def test_an_existing_home_is_tightened_and_new_files_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "personas" / "old").mkdir(parents=True)
    os.chmod(home, 0o755)
    os.chmod(home / "personas", 0o755)
    loose = home / "personas" / "old" / "brain.sqlite"
    loose.write_text("x")
    os.chmod(loose, 0o644)
    script = home / "run.sh"
    script.write_text("#!/bin/sh\n")
    os.chmod(script, 0o755)
    (home / "link").symlink_to("/etc/hostname")
    old_umask = os.umask(0o022)
    try:
        assert privacy.make_home_private(home) >= 4
        fresh = home / "new.txt"
        fresh.write_text("y")
        created = stat.S_IMODE(fresh.stat().st_mode)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "personas").stat().st_mode) == 0o700
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert stat.S_IMODE(script.stat().st_mode) == 0o700  # the owner keeps its execute bit
    assert created == 0o600
    assert privacy.make_home_private(home) == 0


def test_command_records_never_hold_a_secret(running: RunningDaemon) -> None:
    with running.ws() as ws:
        made = ws.call(
            "persona_create",
            {
                "id": "remote",
                "model_provider": "openai",
                "model_config": {"api_key": API_KEY, "base_url": "http://127.0.0.1:9/v1"},
                "secret": CANARY,
            },
        )
        assert made["ok"], made
        session = ws.call("session")["result"]
        bad = ws.call("mesh_join", {"code": "not-a-real-invite-code"})
        assert not bad["ok"]
    log = Path(session["directory"]) / "commands.jsonl"
    text = log.read_text(encoding="utf-8")
    assert API_KEY not in text and CANARY not in text and "not-a-real-invite-code" not in text
    entry = next(json.loads(line) for line in text.splitlines() if '"persona_create"' in line)
    assert entry["params"]["secret"] == "***" and entry["params"]["model_config"]["api_key"] == "***"
    assert entry["params"]["model_config"]["base_url"] == "http://127.0.0.1:9/v1"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def _walk(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if not p.is_symlink()]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_whole_session_leaves_nothing_readable_and_no_secret_in_logs(tmp_path: Path) -> None:
    """`personad serve` with its log in the home, every transport, personas on several providers, a brain
    write, chats, a LoRA training and an Academy run; then the home is walked."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "logs").mkdir(mode=0o755)
    env = {
        **os.environ,
        "PERSONAD_PLUGINS": "tests.fakes.fake_provider",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "PERSONAD_DEFAULT_PERSONA": "",
    }
    env.pop("PERSONAD_TOKEN", None)
    log_path = home / "logs" / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "personad.cli",
                "serve",
                "--home",
                str(home),
                "--port",
                "0",
                "--log-level",
                "info",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        state = _wait_for_state(home, proc)
        token, url = state["token"], state["url"]
        _use_every_transport(url, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    loose = [p for p in _walk(home) if stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert loose == [], [(str(p), oct(stat.S_IMODE(p.lstat().st_mode))) for p in loose]
    allowed = {home / "token", home / "daemon.json"}  # where the admin token lives, 0600, for the CLI
    leaks: list[tuple[str, str]] = []
    for path in _walk(home):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if token.encode() in data and path not in allowed:
            leaks.append((str(path), "admin token"))
        if API_KEY.encode() in data and path.name != "persona.json":
            leaks.append((str(path), "api key"))
        if re.search(rb"token=(?!\*\*\*)[A-Za-z0-9_-]{8,}", data):
            leaks.append((str(path), "a token in a URL"))
    assert leaks == []
    logged = log_path.read_text(encoding="utf-8", errors="replace")
    assert "token=***" in logged and "/v1/chat/completions" in logged  # the access log was written


def _wait_for_state(home: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (home / "logs" / "daemon.log").read_text()
        try:
            state = json.loads((home / "daemon.json").read_text())
            if httpx.get(f"{state['url']}/healthz", timeout=2).status_code == 200:
                return dict(state)
        except (FileNotFoundError, ValueError, httpx.HTTPError):
            pass
        assert time.monotonic() < deadline, "the daemon did not start"
        time.sleep(0.1)


def _use_every_transport(url: str, token: str) -> None:
    from websockets.sync.client import connect

    def call(http: httpx.Client, command: str, params: dict[str, Any], **kw: Any) -> dict[str, Any]:
        reply = http.post(f"{url}/api/commands/{command}", json=params, timeout=600, **kw).json()
        assert reply["ok"], reply
        return dict(reply["result"])

    with httpx.Client() as http:
        bearer = {"headers": {"Authorization": f"Bearer {token}"}}
        assert http.get(f"{url}/api/commands?token={token}").status_code == 200
        call(
            http,
            "persona_create",
            {
                "id": "remote",
                "model_provider": "openai",
                "secret": CANARY,
                "model_config": {"api_key": API_KEY, "base_url": "http://127.0.0.1:9/v1"},
            },
            **bearer,
        )
        call(
            http,
            "persona_create",
            {"id": "claude", "model_provider": "anthropic", "model_config": {"api_key": API_KEY}},
            **bearer,
        )
        call(
            http,
            "persona_create",
            {
                "id": "fakey",
                "model_provider": "fake",
                "start": True,
                "respond_in": ["general"],
                "capabilities": ["chat"],
            },
            **bearer,
        )
        call(http, "persona_create", {"id": "student", "secret": "PERSIMMON"}, **bearer)
        call(
            http,
            "remember",
            {"persona": "fakey", "memory": {"type": "fact", "content": "the sky is blue"}},
            **bearer,
        )
        with connect(f"{url.replace('http', 'ws')}/ws?token={token}&kind=api&name=tester") as ws:
            json.loads(ws.recv())  # welcome
            ws.send(
                json.dumps(
                    {
                        "type": "execute_command",
                        "id": "j",
                        "data": {"command": "room_join", "params": {"room": "general"}},
                    }
                )
            )
            ws.send(
                json.dumps(
                    {
                        "type": "execute_command",
                        "id": "c",
                        "data": {"command": "chat", "params": {"room": "general", "text": "hello fakey"}},
                    }
                )
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                message = json.loads(ws.recv(timeout=60))
                sender = ((message.get("data") or {}).get("sender") or {}).get("session_id")
                if message.get("event") == "chat_message" and sender == "fakey":
                    break
            answer = http.post(
                f"{url}/v1/chat/completions",
                json={"model": "fakey", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            examples = [
                {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}
            ]
            _run_job(ws, "lora_train", {"name": "tiny", "examples": examples, "max_steps": 1})
            academy = {"student": "student", "rounds": 1, "attacks": 2, "heldout": 5, "benign": 1, "steps": 1}
            _run_job(ws, "academy_train", {**academy, "max_tokens": 4})


def _run_job(ws: Any, command: str, params: dict[str, Any]) -> None:
    """Start a job over the WebSocket and wait for it (job_wait), in that connection's session."""
    ws.send(
        json.dumps({"type": "execute_command", "id": command, "data": {"command": command, "params": params}})
    )
    job_id = _reply(ws, command)["job"]["job_id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        wait = {"command": "job_wait", "params": {"job_id": job_id, "timeout": 30}}
        ws.send(json.dumps({"type": "execute_command", "id": "w", "data": wait}))
        job = _reply(ws, "w")["job"]
        if job["state"] in ("succeeded", "failed", "cancelled", "interrupted"):
            assert job["state"] == "succeeded", job
            return
    raise AssertionError(f"{command} did not finish")


def _reply(ws: Any, request_id: str) -> dict[str, Any]:
    while True:
        message = json.loads(ws.recv(timeout=120))
        if message.get("id") == request_id and message.get("type") == "command_result":
            assert message["ok"], message
            return dict(message["result"])


def test_error_messages_never_carry_a_known_secret() -> None:
    from personad.errors import ProviderError

    privacy.register_secret(API_KEY)
    error = ProviderError(f"Incorrect API key provided: {API_KEY} (see http://x/?token=abcdefgh123)")
    assert error.to_dict()["message"] == "Incorrect API key provided: *** (see http://x/?token=***)"
