"""The WebSocket transport: ``{"type", "id", "data"}`` envelopes into the one CommandProcessor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from personad import wire
from personad.bus.sessions import Client, Session, new_id, parse_capabilities
from personad.errors import (
    BadRequestError,
    ForbiddenError,
    InternalError,
    PayloadTooLargeError,
    PersonadError,
    UnauthorizedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from personad.daemon import Daemon

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 4096  # queued messages per connection before a stalled client is dropped
MAX_IN_FLIGHT = 64  # concurrent commands per connection; beyond that we stop reading (backpressure)
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_SESSION = 4400
CLOSE_TRY_AGAIN = 1013
MESSAGE_TYPES = ("execute_command", "ping")


class WebSocketConnection:
    """One client connection: reads envelopes, runs commands concurrently, writes from one task."""

    def __init__(self, daemon: Daemon, websocket: WebSocket) -> None:
        self.daemon = daemon
        self.ws = websocket
        self.client = Client(new_id("client"), self._enqueue)
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=OUTBOX_LIMIT)
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: Session | None = None
        self.overloaded = False
        self._closer: asyncio.Task[None] | None = None

    def _enqueue(self, message: dict[str, Any] | None) -> None:
        if self.overloaded:
            return  # once a message was dropped, none may follow it: the client gets a close, never a gap
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            # A client that does not read must not grow our memory without bound: close it (1013, try again)
            # now, even if it never sends another frame.
            self.overloaded = True
            self._closer = asyncio.get_running_loop().create_task(self._close_overloaded())

    async def _close_overloaded(self) -> None:
        log.warning("client %s stopped reading (%d messages queued); closing", self.client.id, OUTBOX_LIMIT)
        with contextlib.suppress(Exception):
            await self.ws.close(CLOSE_TRY_AGAIN)

    async def run(self) -> None:
        await self.ws.accept()
        params = self.ws.query_params
        token = params.get("token")
        admin = self.daemon.check_token(token)
        persona_token_for = None if admin else self.daemon.personas.persona_for_token(token)
        if not admin and persona_token_for is None:
            error = UnauthorizedError("missing or bad token: connect to /ws?token=<token from daemon.json>")
            await self.ws.send_text(
                wire.dumps({"type": "error", "id": None, "ok": False, "error": error.to_dict()})
            )
            await self.ws.close(CLOSE_UNAUTHORIZED)
            return
        try:
            self.session = self._open_session(params, persona_token_for)
        except PersonadError as exc:
            await self.ws.send_text(
                wire.dumps({"type": "error", "id": None, "ok": False, "error": exc.to_dict()})
            )
            await self.ws.close(CLOSE_BAD_SESSION)
            return
        except OSError as exc:
            # Out of file descriptors or disk: the session's files cannot be opened. Say so: try again.
            log.error("cannot open a session for %s: %s", self.client.id, exc)
            busy = UnavailableError(f"the daemon cannot open a session now ({exc.strerror}); try again")
            await self.ws.send_text(
                wire.dumps({"type": "error", "id": None, "ok": False, "error": busy.to_dict()})
            )
            await self.ws.close(CLOSE_TRY_AGAIN)
            return
        self.daemon.sessions.attach(self.session, self.client)
        writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.client.id}")
        self._enqueue({"type": "welcome", "id": None, "data": self.session.describe(self.client.id)})
        try:
            await self._read_loop()
        finally:
            await self._shutdown(writer)

    def _open_session(self, params: Any, persona_token_for: str | None) -> Session:
        """A persona token opens only its own persona session, with exactly the configured capabilities."""
        kind = params.get("kind", "persona" if persona_token_for else "api")
        if persona_token_for is None and kind != "persona":
            return self.daemon.sessions.open(
                kind=kind,
                session_id=params.get("session"),
                name=params.get("name"),
                capabilities=parse_capabilities(params.get("capabilities")),
            )
        persona_id = params.get("persona") or persona_token_for
        if kind != "persona" or persona_id is None:
            raise BadRequestError(
                "a persona session needs kind=persona and persona=<id>", code="invalid_kind"
            )
        if persona_token_for is not None and persona_id != persona_token_for:
            raise ForbiddenError(f"this token belongs to persona {persona_token_for!r}", code="wrong_persona")
        config = self.daemon.persona_store.load(persona_id)
        session = self.daemon.sessions.open(
            kind="persona", session_id=config.id, name=config.display_name, capabilities=config.capabilities
        )
        return session

    async def _read_loop(self) -> None:
        limit = self.daemon.settings.max_message_bytes
        while not self.overloaded:
            try:
                message = await self.ws.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None and message.get("bytes") is not None:
                raw = message["bytes"]
            size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw or b"")
            if size > limit:
                self._error(
                    None, PayloadTooLargeError(f"message of {size} bytes exceeds the {limit}-byte limit")
                )
                continue
            await self._dispatch(raw)

    async def _dispatch(self, raw: str | bytes | None) -> None:
        try:
            envelope = wire.loads(raw or "")
        except wire.NotStrictJSONError as exc:
            # Answer under the request's id when it has one, so the caller is not left waiting.
            value = exc.value
            request_id = value.get("id") if isinstance(value, dict) else None
            self._error(request_id if isinstance(request_id, str | int) else None, exc)
            return
        except BadRequestError as exc:
            self._error(None, exc)
            return
        if not isinstance(envelope, dict):
            self._error(None, BadRequestError("message must be a JSON object", code="invalid_message"))
            return
        request_id = envelope.get("id")
        if request_id is not None and not isinstance(request_id, str | int):
            self._error(None, BadRequestError("id must be a string or number", code="invalid_message"))
            return
        kind = envelope.get("type")
        if kind == "ping":
            self._enqueue({"type": "pong", "id": request_id, "data": envelope.get("data")})
            return
        if kind != "execute_command":
            known = ", ".join(MESSAGE_TYPES)
            error = BadRequestError(
                f"unknown message type {kind!r}; known: {known}", code="unknown_message_type"
            )
            self._error(request_id, error)
            return
        data = envelope.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("command"), str):
            error = BadRequestError(
                'execute_command needs data {"command": name, "params": {...}}', code="invalid_message"
            )
            self._result(request_id, error=error)
            return
        await self.in_flight.acquire()
        task = asyncio.create_task(self._execute(request_id, data["command"], data.get("params")))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _execute(self, request_id: Any, command: str, params: Any) -> None:
        assert self.session is not None
        try:
            result = await self.daemon.processor.execute(
                self.session, command, params, client_id=self.client.id, request_id=request_id
            )
        except PersonadError as exc:
            self._result(request_id, error=exc)
        except Exception:
            # The processor turns handler failures into errors; anything reaching here is our bug, and the
            # client still gets its one reply.
            log.exception("command %r failed outside its handler on %s", command, self.client.id)
            self._result(
                request_id, error=InternalError("the daemon failed to run this command; see its log")
            )
        else:
            self._result(request_id, result=result)
        finally:
            self.in_flight.release()

    def _result(
        self, request_id: Any, *, result: dict[str, Any] | None = None, error: PersonadError | None = None
    ) -> None:
        if error is None:
            self._enqueue({"type": "command_result", "id": request_id, "ok": True, "result": result})
        else:
            self._enqueue({"type": "command_result", "id": request_id, "ok": False, "error": error.to_dict()})

    def _error(self, request_id: Any, error: PersonadError) -> None:
        self._enqueue({"type": "error", "id": request_id, "ok": False, "error": error.to_dict()})

    async def _write_loop(self) -> None:
        while True:
            message = await self.outbox.get()
            if message is None:
                return
            try:
                await self.ws.send_text(wire.dumps(message))
            except (WebSocketDisconnect, RuntimeError):
                return
            except Exception:  # e.g. the transport closed underneath us
                log.debug("send failed on %s", self.client.id, exc_info=True)
                return

    async def _shutdown(self, writer: asyncio.Task[None]) -> None:
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=5)
            for task in pending:
                task.cancel()
        if self.session is not None:
            await self.daemon.sessions.detach(self.session, self.client.id)
        if self.overloaded:
            writer.cancel()  # its queue is full of what the client would not read
        else:
            with contextlib.suppress(asyncio.QueueFull):
                self.outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=2)
            if not writer.done():
                writer.cancel()
        if self._closer is not None:
            with contextlib.suppress(Exception):
                await self._closer
        if self.ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close()
