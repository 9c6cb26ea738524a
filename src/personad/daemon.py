"""The Daemon: home directory, token, and the services every transport shares."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
from typing import TYPE_CHECKING, Any

from personad.browser.manager import BrowserManager
from personad.bus.commands import CommandRegistry
from personad.bus.events import EventBus
from personad.bus.jobs import JobManager
from personad.bus.processor import CommandProcessor
from personad.bus.sessions import Session, SessionManager
from personad.config import DEFAULT_CHROMIUM_ARGS, Settings
from personad.errors import PersonadError
from personad.mesh.service import MeshService
from personad.models.registry import ProviderRegistry, load_provider_registry
from personad.personas.config import PersonaStore
from personad.personas.supervisor import PersonaSupervisor
from personad.privacy import make_home_private, register_secret
from personad.rooms.store import RoomStore, Sender
from personad.state import STATE_FILE, load_or_create_token, read_state, write_private

if TYPE_CHECKING:
    from personad.brain.store import Brain

log = logging.getLogger(__name__)


def _warm_embedder() -> None:
    from personad.brain.embeddings import default_embedder

    try:
        default_embedder().embed(["warm up"])
    except Exception:  # the first real use reports the failure to its caller; here it is only logged
        log.warning("could not preload the embedding model", exc_info=True)


class Daemon:
    """Owns the command registry, processor, sessions, events, rooms and browser of one home."""

    def __init__(self, settings: Settings | None = None, *, registry: CommandRegistry | None = None) -> None:
        self.settings = settings or Settings()
        self.home = self.settings.resolved_home()
        # Before anything is written: the home and all in it are the daemon user's alone (privacy.py).
        make_home_private(self.home)
        self.token = self.settings.token or load_or_create_token(self.home)
        register_secret(self.token)
        if registry is None:
            registry = CommandRegistry()
            registry.load_plugins()
        self.registry = registry
        self.persona_store = PersonaStore(self.home)
        self.sessions = SessionManager(self.home, persona_dir=self.persona_store.session_dir)
        self.events = EventBus(self.sessions)
        self.processor = CommandProcessor(self, self.registry, self.events)
        self.jobs = JobManager(self.home, self.events, max_running=self.settings.max_jobs)
        self.browser = BrowserManager(
            self.settings.browser_executable,
            headless=self.settings.browser_headless,
            args=(*DEFAULT_CHROMIUM_ARGS, *self.settings.browser_extra_args),
        )
        self.rooms: RoomStore = RoomStore(self.home / "rooms.sqlite")
        self.personas = PersonaSupervisor(self)
        self.mesh = MeshService(self)
        self._providers: ProviderRegistry | None = None
        self._brains: dict[str, Brain] = {}
        self.sessions.on_close(self._release_session)
        self._reaper: asyncio.Task[None] | None = None
        self.url: str | None = None

    @property
    def providers(self) -> ProviderRegistry:
        """Model providers: built-ins plus plugins (loaded on first use)."""
        if self._providers is None:
            self._providers = load_provider_registry()
        return self._providers

    async def start(self) -> None:
        self.rooms.create(self.settings.default_room, topic="everyone", exist_ok=True)
        default = self.settings.default_persona
        if default and not self.persona_store.exists(default):
            self.persona_store.create(
                {
                    "id": default,
                    "name": default.capitalize(),
                    "system_prompt": "You are a helpful, concise assistant.",
                    # The 135M local model answers well but cannot drive the [CMD:...] protocol reliably;
                    # listing commands in its prompt only distracts it.
                    "capabilities": ["chat"],
                    "temperature": 0.3,  # a small model wanders at higher temperatures
                    "respond_in": [self.settings.default_room],
                    "autostart": True,
                }
            )
            log.info("created the default persona %r on the local model", default)
        self._reaper = asyncio.create_task(self._reap_idle_sessions(), name="personad-session-reaper")
        if self.settings.preload_embedder and self.persona_store.list_personas():
            # Loading the embedding model takes seconds (torch, then MiniLM); doing it now keeps the first
            # remember/recall from stalling for that long.
            threading.Thread(target=_warm_embedder, name="embedder-warmup", daemon=True).start()
        await self.mesh.start()
        await self.personas.start_autostart()

    def brain(self, persona_id: str) -> Brain:
        """The persona's brain, opened once per daemon (SQLite WAL lets its process write alongside)."""
        brain = self._brains.get(persona_id)
        if brain is None:
            from personad.brain.store import Brain

            brain = self._brains[persona_id] = Brain.open(self.persona_store.brain_path(persona_id))
        return brain

    def forget_brain(self, persona_id: str) -> None:
        """Close a persona's brain (before its directory is deleted)."""
        brain = self._brains.pop(persona_id, None)
        if brain is not None:
            brain.close()

    def persona_identity(self, persona_id: str) -> Sender | None:
        """How a persona appears as a room member, if it exists."""
        try:
            config = self.persona_store.load(persona_id)
        except PersonadError:
            return None
        return Sender(config.id, None, "persona", config.display_name)

    async def stop(self) -> None:
        await self.jobs.close()
        await self.mesh.close()
        await self.personas.close()
        for persona_id in list(self._brains):
            self.forget_brain(persona_id)
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
        write_private(self.home / STATE_FILE, json.dumps(state, indent=2) + "\n")

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
