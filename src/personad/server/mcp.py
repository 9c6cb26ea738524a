"""The MCP transport: every bus command is an MCP tool, served over streamable HTTP at ``/mcp``.

Built on the official SDK's low-level server (:mod:`mcp.server.lowlevel`) and its
:class:`~mcp.server.streamable_http_manager.StreamableHTTPSessionManager`. Nothing here runs a command itself:
``tools/call`` goes to the one :class:`~personad.bus.processor.CommandProcessor`, so validation, capabilities,
recording and events are exactly those of ``/api`` and ``/ws``.

- ``tools/list``: one tool per registered command the session may run (its capabilities), named as the
  command, described by its description, its ``inputSchema`` the params model's JSON schema.
- ``tools/call``: the result as ``structuredContent`` plus its JSON as text; an image result (a
  ``screenshot``: ``path``/``artifact`` in the session's artifacts and a png/jpeg/webp ``format``) also
  carries the picture as ``ImageContent``. A failure is a tool error (``isError``) whose
  ``structuredContent`` is ``{"error": {code, message, status[, details]}}``, as on every transport.
- A command that starts a job (``{"job": {...}}`` naming itself) is followed to its end: its progress goes
  out as ``notifications/progress`` when the client sent a ``progressToken``, and the call returns the job's
  result (or its error).
- Auth: ``/mcp`` sits behind the app's :class:`~personad.server.app.TokenAuthMiddleware` (the daemon token
  as ``Authorization: Bearer``; a wrong one is a plain HTTP 401, never an MCP handshake). The MCP client is a
  bus session of kind ``mcp``: ``mcp-<Mcp-Session-Id>`` (or the ``X-Personad-Session`` it names), with all
  capabilities unless ``X-Personad-Capabilities`` (or ``?capabilities=``) restricts them, parsed as ``/ws``
  parses its ``?capabilities=``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import Receive, Scope, Send

from personad import __version__, wire
from personad.bus.jobs import FINISHED
from personad.bus.sessions import Session, parse_capabilities
from personad.bus.ws_client import job_outcome
from personad.errors import BadRequestError, InternalError, PersonadError
from personad.files.confine import resolve_inside

if TYPE_CHECKING:
    from personad.bus.commands import Command
    from personad.daemon import Daemon

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
SESSION_KIND = "mcp"
# The same headers as /api (personad.server.app), read here without importing the app.
SESSION_HEADER = "x-personad-session"
CAPABILITIES_HEADER = "x-personad-capabilities"
MCP_SESSION_HEADER = "mcp-session-id"
IMAGE_MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
MAX_IMAGE_BYTES = 32 * 1024 * 1024
PROGRESS_POLL_S = 0.1
INSTRUCTIONS = (
    "PersonaDaemon's command bus. Each tool is one bus command; its result is the command's JSON object. "
    "Errors carry {code, message}. Long commands run as jobs: the call reports progress and returns the "
    "job's result."
)


def tool_error(error: PersonadError) -> types.CallToolResult:
    """A PersonadError as an MCP tool error carrying the bus's ``{code, message, status}``."""
    shape = error.to_dict()
    return types.CallToolResult(
        content=[types.TextContent(text=f"error [{shape['code']}]: {shape['message']}")],
        structured_content={"error": shape},
        is_error=True,
    )


def session_id_for(mcp_session: str | None, named: str | None, capabilities: list[str] | None) -> str:
    """The bus session of an MCP client: the one it names, one per MCP session, or a shared ``mcp``."""
    if named:
        return named
    if mcp_session:
        return f"mcp-{mcp_session[:48]}"
    if capabilities is None:
        return "mcp"
    # Stateless callers share a session per capability set (a shared one cannot change its capabilities).
    digest = hashlib.sha256(",".join(sorted(set(capabilities))).encode()).hexdigest()[:12]
    return f"mcp-{digest}"


class McpTransport:
    """The daemon's MCP server: an ASGI app for ``/mcp`` whose lifespan is :meth:`run`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._schemas: dict[str, dict[str, Any]] = {}
        self.server: Server[Any] = Server(
            "personad",
            version=__version__,
            title="PersonaDaemon",
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )
        self.manager = StreamableHTTPSessionManager(app=self.server, json_response=False)

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """The session manager's task group; runs inside the app's lifespan."""
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # TokenAuthMiddleware (outside) has already refused requests without the daemon token.
        await self.manager.handle_request(scope, receive, send)

    # -- sessions --------------------------------------------------------------------------------------

    def session(self, ctx: ServerRequestContext[Any, Any]) -> Session:
        """The bus session (kind ``mcp``) of the HTTP request behind ``ctx``."""
        request = ctx.request
        headers = getattr(request, "headers", None) or {}
        query = getattr(request, "query_params", None) or {}
        raw_caps = headers.get(CAPABILITIES_HEADER) or query.get("capabilities")
        capabilities = parse_capabilities(raw_caps)
        named = headers.get(SESSION_HEADER) or query.get("session")
        session_id = session_id_for(headers.get(MCP_SESSION_HEADER), named, capabilities)
        return self.daemon.sessions.open(kind=SESSION_KIND, session_id=session_id, capabilities=capabilities)

    # -- tools -----------------------------------------------------------------------------------------

    def tool(self, command: Command[Any]) -> types.Tool:
        schema = self._schemas.get(command.name)
        if schema is None:
            schema = command.params.model_json_schema()
            schema.setdefault("type", "object")
            self._schemas[command.name] = schema
        return types.Tool(name=command.name, description=command.description, input_schema=schema)

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        session = self.session(ctx)
        tools = [self.tool(c) for c in self.daemon.registry if session.can(c.capability)]
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            session = self.session(ctx)
            result = await self.daemon.processor.execute(
                session,
                params.name,
                params.arguments or {},
                client_id=f"mcp-{session.id}",
                request_id=None if ctx.request_id is None else str(ctx.request_id),
            )
            job = result.get("job")
            if isinstance(job, dict) and job.get("command") == params.name and len(result) == 1:
                result = await self.follow_job(ctx, job)
            return self.render(session, result)
        except PersonadError as exc:
            return tool_error(exc)
        except Exception:
            log.exception("MCP call of %r failed outside its handler", params.name)
            return tool_error(InternalError("the daemon failed to run this tool; see its log"))

    async def follow_job(
        self, ctx: ServerRequestContext[Any, Any], started: dict[str, Any]
    ) -> dict[str, Any]:
        """Wait for a job, sending its progress as MCP progress; returns its result or raises its error."""
        job = self.daemon.jobs.get(started["job_id"])
        sent = 0.0
        while True:
            finished = job.state in FINISHED
            info = dict(job.progress)
            step = info.get("step")
            if isinstance(step, int | float) and step > sent:
                sent = float(step)
                total = info.get("total")
                message = info.get("message")
                try:
                    await ctx.session.report_progress(
                        sent,
                        float(total) if isinstance(total, int | float) else None,
                        message if isinstance(message, str) else None,
                    )
                except Exception:  # a client that went away must not fail the job's result
                    log.debug("could not send MCP progress", exc_info=True)
            if finished:
                return job_outcome(job.describe())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.done.wait(), PROGRESS_POLL_S)

    def render(self, session: Session, result: dict[str, Any]) -> types.CallToolResult:
        content: list[types.ContentBlock] = [types.TextContent(text=wire.dumps(result))]
        image = self.image(session, result)
        if image is not None:
            content.append(image)
        return types.CallToolResult(content=content, structured_content=result)

    def image(self, session: Session, result: dict[str, Any]) -> types.ImageContent | None:
        """The picture a result names in the session's artifacts (a screenshot), as ImageContent."""
        mime = IMAGE_MIME.get(str(result.get("format", "")).lower())
        artifact = result.get("artifact")
        if mime is None or not isinstance(artifact, str):
            return None
        try:
            path = resolve_inside(session.artifacts_dir, artifact)
            if path.stat().st_size > MAX_IMAGE_BYTES:
                raise BadRequestError(
                    f"image {artifact!r} exceeds {MAX_IMAGE_BYTES} bytes; fetch it over HTTP",
                    code="image_too_large",
                )
            data = path.read_bytes()
        except (OSError, PersonadError):
            log.warning("result names image %r but it cannot be read", artifact, exc_info=True)
            return None
        return types.ImageContent(data=base64.b64encode(data).decode("ascii"), mime_type=mime)
