"""The Daemon: home directory, token, and the services every transport shares."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from personad.browser.manager import BrowserManager
from personad.bus.commands import CommandRegistry
from personad.bus.events import EventBus
from personad.bus.processor import CommandProcessor
from personad.bus.sessions import Session, SessionManager
from personad.config import Settings
from personad.rooms.store import RoomStore

log = logging.getLogger(__name__)

STATE_FILE = "daemon.json"
TOKEN_FILE = "token"


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (never a moment with looser permissions)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create_token(home: Path) -> str:
    path = home / TOKEN_FILE
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    _write_private(path, token + "\n")
    return token


def read_state(home: Path) -> dict[str, Any] | None:
    """The running daemon's ``daemon.json`` (url, port, token, pid), or None when there is none."""
    try:
        return json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class Daemon:
    """Owns the command registry, processor, sessions, events, rooms and browser of one home."""

    def __init__(self, settings: Settings | None = None, *, registry: CommandRegistry | None = None) -> None:
        self.settings = settings or Settings()
        self.home = self.settings.resolved_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.token = self.settings.token or load_or_create_token(self.home)
        if registry is None:
            registry = CommandRegistry()
            registry.load_plugins()
        self.registry = registry
        self.sessions = SessionManager(self.home)
        self.events = EventBus(self.sessions)
        self.processor = CommandProcessor(self, self.registry, self.events)
        self.browser = BrowserManager(
            self.settings.browser_executable, headless=self.settings.browser_headless
        )
        self.rooms: RoomStore = RoomStore(self.home / "rooms.sqlite")
        self.sessions.on_close(self._release_session)
        self._reaper: asyncio.Task[None] | None = None
        self.url: str | None = None

    async def start(self) -> None:
        self.rooms.create(self.settings.default_room, topic="everyone", exist_ok=True)
        self._reaper = asyncio.create_task(self._reap_idle_sessions(), name="personad-session-reaper")

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.sessions.close_all()
        await self.browser.close()
        self.rooms.close()
        self.remove_state_file()

    async def execute(
        self,
        session: Session,
        command: str,
        params: Any = None,
        *,
        client_id: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Run a command as ``session`` through the one processor (the Python transport)."""
        return await self.processor.execute(
            session, command, params, client_id=client_id, request_id=request_id
        )

    def check_token(self, token: str | None) -> bool:
        return token is not None and secrets.compare_digest(token.encode(), self.token.encode())

    def write_state_file(self, host: str, port: int) -> None:
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{port}"
        state = {"url": self.url, "port": port, "token": self.token, "pid": os.getpid()}
        _write_private(self.home / STATE_FILE, json.dumps(state, indent=2) + "\n")

    def remove_state_file(self) -> None:
        state = read_state(self.home)
        # Only our own file: a second daemon on the same home must not lose its state file.
        if state is not None and state.get("pid") == os.getpid():
            (self.home / STATE_FILE).unlink(missing_ok=True)

    async def _release_session(self, session: Session) -> None:
        await self.browser.close_session(session.id)

    async def _reap_idle_sessions(self) -> None:
        interval = max(1.0, min(60.0, self.settings.session_idle_seconds / 4))
        while True:
            await asyncio.sleep(interval)
            closed = await self.sessions.close_idle(self.settings.session_idle_seconds)
            if closed:
                log.info("closed %d idle sessions", closed)
