"""Sessions: the one shape every client kind (browser, console, API, persona) has on the bus.

A session owns a directory (``<home>/sessions/<id>/`` or ``<home>/personas/<id>/`` for personas), a
capability set, the clients currently attached to it (each with an event sink) and a command log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, get_args

from personad.errors import BadRequestError, ConflictError, NotFoundError, PersonadError

log = logging.getLogger(__name__)

SessionKind = Literal["browser", "console", "api", "persona", "mcp"]
SESSION_KINDS: tuple[str, ...] = get_args(SessionKind)  # one list: the type and the runtime check agree
ALL_CAPABILITIES = "*"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

# An event sink must not block: transports enqueue and write from their own task.
EventSink = Callable[[dict[str, Any]], None]
CloseHook = Callable[["Session"], Awaitable[None]]


def validate_session_id(session_id: str) -> str:
    """Session ids name directories, so only a safe alphabet is accepted."""
    if not _SESSION_ID.match(session_id):
        raise BadRequestError(
            f"invalid session id {session_id!r}: use 1-64 letters, digits, '_' or '-', starting alphanumeric",
            code="invalid_session_id",
        )
    return session_id


def parse_capabilities(raw: str | None) -> list[str] | None:
    """A comma list from a query parameter or header; None (not given) means "all the token allows"."""
    if raw is None:
        return None
    return [c.strip() for c in raw.split(",") if c.strip()]


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


@dataclass(eq=False)
class Client:
    """One connection (a WebSocket, an HTTP caller, a persona process) attached to a session."""

    id: str
    sink: EventSink | None = None


@dataclass(eq=False)
class Session:
    id: str
    kind: str
    name: str
    capabilities: frozenset[str]
    directory: Path
    ephemeral: bool = False
    clients: dict[str, Client] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.monotonic)
    _log: IO[str] | None = field(default=None, repr=False)

    @property
    def artifacts_dir(self) -> Path:
        return self.directory / "artifacts"

    def can(self, capability: str | None) -> bool:
        return capability is None or ALL_CAPABILITIES in self.capabilities or capability in self.capabilities

    def push(self, message: dict[str, Any]) -> None:
        """Deliver an event to every attached client."""
        for client in list(self.clients.values()):
            if client.sink is not None:
                client.sink(message)

    def record_line(self, line: str) -> None:
        """Append one JSON line to ``commands.jsonl``; the file stays open for the session's life."""
        if self._log is None:
            self._log = open(self.directory / "commands.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._log.write(line + "\n")
        self._log.flush()  # a daemon crash must not lose the record of calls it answered

    def describe(self, client_id: str | None = None) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "client_id": client_id,
            "kind": self.kind,
            "name": self.name,
            "capabilities": sorted(self.capabilities),
            "directory": str(self.directory),
            "artifacts_dir": str(self.artifacts_dir),
            "clients": len(self.clients),
        }

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class SessionManager:
    """Creates, resumes and closes sessions; the live ones are addressable by id."""

    def __init__(self, home: Path, persona_dir: Callable[[str], Path] | None = None) -> None:
        self.home = home
        # A persona's session folder may be configured elsewhere in the home (its session_directory).
        self._persona_dir = persona_dir
        self._live: dict[str, Session] = {}
        self._close_hooks: list[CloseHook] = []

    def on_close(self, hook: CloseHook) -> None:
        """Register cleanup that runs when a session closes (browser contexts, for example)."""
        self._close_hooks.append(hook)

    def directory_for(self, kind: str, session_id: str) -> Path:
        if kind == "persona" and self._persona_dir is not None:
            try:
                return self._persona_dir(session_id)
            except PersonadError:  # not a persona the store knows (yet): the default place
                pass
        parent = "personas" if kind == "persona" else "sessions"
        return self.home / parent / session_id

    def open(
        self,
        *,
        kind: str,
        session_id: str | None = None,
        name: str | None = None,
        capabilities: Iterable[str] | None = None,
    ) -> Session:
        """Resume the live session ``session_id`` or create it (a fresh id when none is given)."""
        if kind not in SESSION_KINDS:
            raise BadRequestError(f"unknown session kind {kind!r}; one of {', '.join(SESSION_KINDS)}")
        caps = frozenset(capabilities) if capabilities is not None else frozenset({ALL_CAPABILITIES})
        if session_id is not None:
            validate_session_id(session_id)
            live = self._live.get(session_id)
            if live is not None:
                # Resuming without naming capabilities takes the session as it is.
                if live.kind != kind or (capabilities is not None and live.capabilities != caps):
                    raise ConflictError(
                        f"session {session_id!r} is live as kind {live.kind!r} with other capabilities;"
                        " reconnect with the same kind and capabilities or use another session id",
                        code="session_conflict",
                    )
                return live
        sid = session_id or new_id(kind)
        directory = self.directory_for(kind, sid)
        (directory / "artifacts").mkdir(parents=True, exist_ok=True)
        session = Session(
            id=sid,
            kind=kind,
            name=name or sid,
            capabilities=caps,
            directory=directory,
            ephemeral=session_id is None,
        )
        meta = {"id": sid, "kind": kind, "name": session.name, "capabilities": sorted(caps)}
        (directory / "session.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        self._live[sid] = session
        return session

    def get(self, session_id: str) -> Session:
        try:
            return self._live[session_id]
        except KeyError:
            raise NotFoundError(f"no live session {session_id!r}", code="session_not_found") from None

    def find(self, session_id: str) -> Session | None:
        return self._live.get(session_id)

    def __iter__(self) -> Any:
        return iter(list(self._live.values()))

    def attach(self, session: Session, client: Client) -> None:
        session.clients[client.id] = client
        session.last_active = time.monotonic()

    async def detach(self, session: Session, client_id: str) -> None:
        """Detach a client; an ephemeral session with nobody left closes at once."""
        session.clients.pop(client_id, None)
        session.last_active = time.monotonic()
        if session.ephemeral and not session.clients:
            await self.close(session)

    async def close(self, session: Session) -> None:
        if self._live.pop(session.id, None) is None:
            return
        for hook in self._close_hooks:
            try:
                await hook(session)
            except Exception:  # cleanup of one resource must not stop the others
                log.exception("close hook failed for session %s", session.id)
        session.close_log()

    async def close_idle(self, idle_seconds: float) -> int:
        """Close detached sessions idle for longer than ``idle_seconds``; returns how many."""
        now = time.monotonic()
        stale = [s for s in self._live.values() if not s.clients and now - s.last_active > idle_seconds]
        for session in stale:
            await self.close(session)
        return len(stale)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(s) for s in list(self._live.values())))
