"""Shared fixtures: a real daemon (uvicorn on a loopback port, in a thread) and small WS/HTTP helpers."""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from personad.config import Settings
from personad.daemon import Daemon
from personad.server.serve import bind_socket, build_server

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RunningDaemon:
    daemon: Daemon
    url: str
    token: str
    home: Path
    _server: Any = field(repr=False, default=None)
    _thread: threading.Thread | None = field(repr=False, default=None)
    _sock: socket.socket | None = field(repr=False, default=None)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    def http(self, session: str | None = None, **headers: str) -> httpx.Client:
        hdrs = {"Authorization": f"Bearer {self.token}", **headers}
        if session is not None:
            hdrs["X-Personad-Session"] = session
        return httpx.Client(base_url=self.url, headers=hdrs, timeout=60)

    def ws(self, *, token: str | None = None, **query: str) -> WsClient:
        params = {"token": self.token if token is None else token, **query}
        # max_queue=None: a test that leaves many events unread must not stall the close handshake.
        conn = connect(f"{self.ws_url}?{urlencode(params)}", max_size=None, max_queue=None, open_timeout=10)
        return WsClient(conn.__enter__())  # entering marks it context-managed; WsClient closes it

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "daemon thread did not stop"
        if self._sock is not None:
            self._sock.close()


class WsClient:
    """A synchronous WebSocket client that keeps events aside while waiting for command results."""

    _ids = itertools.count(1)

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self.welcome = self.recv()

    def send(self, message: Any) -> None:
        self.conn.send(message if isinstance(message, str | bytes) else json.dumps(message))

    def recv(self, timeout: float = 30) -> dict[str, Any]:
        return json.loads(self.conn.recv(timeout=timeout))

    def call(self, command: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        """Send execute_command and return the matching command_result (events are kept in .events)."""
        request_id = f"r{next(self._ids)}"
        data: dict[str, Any] = {"command": command}
        if params is not None:
            data["params"] = params
        self.send({"type": "execute_command", "id": request_id, "data": data})
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(timeout=max(0.1, deadline - time.monotonic()))
            if message.get("id") == request_id and message["type"] in ("command_result", "error"):
                return message
            self.events.append(message)

    def call_job(
        self, command: str, params: dict[str, Any] | None = None, timeout: float = 600
    ) -> dict[str, Any]:
        """Run a long command and wait for its job; returns a command_result-shaped reply with its outcome."""
        reply = self.call(command, params)
        if not reply.get("ok") or "job" not in reply["result"]:
            return reply
        job = reply["result"]["job"]
        deadline = time.monotonic() + timeout
        while job["state"] not in ("succeeded", "failed", "cancelled", "interrupted"):
            left = deadline - time.monotonic()
            assert left > 0, f"job {job['job_id']} still {job['state']} after {timeout} s"
            job = self.call("job_wait", {"job_id": job["job_id"], "timeout": min(left, 60)}, timeout=90)
            job = job["result"]["job"]
        if job["state"] == "succeeded":
            return {"type": "command_result", "id": reply["id"], "ok": True, "result": job["result"]}
        return {"type": "command_result", "id": reply["id"], "ok": False, "error": job["error"]}

    def wait_event(self, event: str, timeout: float = 10) -> dict[str, Any]:
        for i, message in enumerate(self.events):
            if message.get("event") == event:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(timeout=max(0.1, deadline - time.monotonic()))
            if message.get("event") == event:
                return message
            self.events.append(message)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_daemon(home: Path, **overrides: Any) -> RunningDaemon:
    overrides.setdefault("default_persona", None)  # tests create the personas they need
    overrides.setdefault("preload_embedder", False)  # most tests never embed; those that do load on use
    settings = Settings(home=home, host="127.0.0.1", port=0, **overrides)
    daemon = Daemon(settings)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    daemon.write_state_file("127.0.0.1", port)
    server = build_server(daemon, sock, log_level="error")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("daemon did not start")
        time.sleep(0.02)
    return RunningDaemon(daemon, f"http://127.0.0.1:{port}", daemon.token, daemon.home, server, thread, sock)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningDaemon]:
    """A fresh daemon per test (its own home)."""
    rd = start_daemon(tmp_path / "home")
    yield rd
    rd.stop()


@pytest.fixture
def fake_provider_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake model providers, visible to the daemon and (through the environment) persona processes."""
    monkeypatch.setenv("PERSONAD_PLUGINS", "tests.fakes.fake_provider")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def persona_daemon(tmp_path: Path, fake_provider_plugin: None) -> Iterator[RunningDaemon]:
    """A fresh daemon whose personas can use the fake providers."""
    rd = start_daemon(tmp_path / "home")
    yield rd
    rd.stop()


#: garak (academy_exam's red-team suite), from its own venv: `make garak` (make test installs it).
GARAK = os.environ.get("PERSONAD_GARAK") or str(REPO / ".venv-garak" / "bin" / "garak")


@pytest.fixture
def garak_daemon(
    tmp_path: Path, fake_provider_plugin: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningDaemon]:
    """A fresh daemon that runs garak for academy_exam, its personas free to use the fake providers."""
    if not Path(GARAK).exists():
        pytest.skip(f"garak is not installed at {GARAK}: run 'make garak' (make test does)")
    monkeypatch.setenv("PERSONAD_GARAK", GARAK)
    rd = start_daemon(tmp_path / "home")
    yield rd
    rd.stop()


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """One daemon (and one Chromium) for a whole test module, for the slower browser tests."""
    rd = start_daemon(tmp_path_factory.mktemp("home"))
    yield rd
    rd.stop()
