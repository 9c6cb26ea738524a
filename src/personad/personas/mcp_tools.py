"""A persona's external MCP servers: their tools become that persona's own commands ``mcp.<server>.<tool>``.

A persona config may list MCP servers (``mcp_servers``: stdio ``command`` or streamable HTTP ``url``). With
the capability ``mcp``, :meth:`McpTools.start` connects to each when the persona starts and lists its tools
as :class:`ToolSpec` s; the persona offers them to its model beside its bus commands. They are not bus
commands: no other session sees or can run them. A call (:meth:`McpTools.call`) goes straight to the server
with the server's ``timeout_s`` and comes back in the shape ``PersonaDaemon._run_command`` gives any command,
``{"command", "ok", "outcome"}``, errors included:

- ``capability_denied``: the persona has no ``mcp`` capability;
- ``unknown_command``: no such server or tool (or one its ``tools`` allow-list leaves out, or a server that
  failed to start);
- ``mcp_timeout``: the call took longer than ``timeout_s`` (the persona carries on);
- ``mcp_tool_error``: the tool reported an error, or the server or its connection failed.

A server that fails to start or to list its tools is logged and left out (``status()`` says why); the
persona starts anyway. Each connection lives in its own task (the SDK's transports are anyio task groups
that must be entered and left in one task), so ``start`` and ``close`` may run in different tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from personad.errors import (
    CapabilityDeniedError,
    CommandFailedError,
    PersonadError,
    UnknownCommandError,
    WaitTimeoutError,
)
from personad.models.base import ToolSpec
from personad.personas.config import McpServerConfig, PersonaConfig

log = logging.getLogger(__name__)

PREFIX = "mcp."
CAPABILITY = "mcp"
CONNECT_SECONDS = 30.0  # to start a server, initialize the session and list its tools
CLOSE_SECONDS = 10.0


class McpTimeoutError(WaitTimeoutError):
    code = "mcp_timeout"


class McpToolError(CommandFailedError):
    code = "mcp_tool_error"


def is_mcp_command(name: str) -> bool:
    """Whether ``name`` names an MCP tool (``mcp.<server>.<tool>``) rather than a bus command."""
    return name.startswith(PREFIX)


def command_name(server: str, tool: str) -> str:
    return f"{PREFIX}{server}.{tool}"


def _describe(exc: BaseException) -> str:
    """A one-line account of what went wrong (the first leaf of an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass
class _Server:
    config: McpServerConfig
    state: str = "stopped"  # starting, connected, failed, closed
    error: str | None = None
    tools: dict[str, Any] = field(default_factory=dict)  # tool name → mcp Tool
    session: Any = None  # mcp.ClientSession while connected
    task: asyncio.Task[None] | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def transport(self) -> str:
        return "stdio" if self.config.command is not None else "http"


class McpTools:
    """The MCP servers of one persona, their tools and the calls to them."""

    def __init__(self, config: PersonaConfig) -> None:
        self.persona = config.id
        caps = set(config.capabilities)
        self.allowed = CAPABILITY in caps or "*" in caps
        self.servers = {s.name: _Server(s) for s in config.mcp_servers}

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to every server (at once); one that fails is logged and left out, never raised."""
        if not self.allowed:
            for server in self.servers.values():
                server.state, server.error = "disabled", "the persona has no 'mcp' capability"
            return
        await asyncio.gather(*(self._start(server) for server in self.servers.values()))

    async def _start(self, server: _Server) -> None:
        server.state, server.error, server.closing = "starting", None, asyncio.Event()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        server.task = asyncio.create_task(
            self._serve(server, ready), name=f"mcp-{self.persona}-{server.config.name}"
        )
        try:
            await asyncio.wait_for(asyncio.shield(ready), CONNECT_SECONDS)
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"no tool list within {CONNECT_SECONDS:g} s")
            server.state, server.error = "failed", _describe(exc)
            server.tools, server.session = {}, None
            name = server.config.name
            log.warning("persona %s: MCP server %s failed to start: %s", self.persona, name, server.error)
            ready.cancel()  # nobody waits for it any more
            await self._end(server, grace=0)
            return
        count = len(server.tools)
        log.info("persona %s: MCP server %s connected (%d tools)", self.persona, server.config.name, count)

    async def _serve(self, server: _Server, ready: asyncio.Future[None]) -> None:
        """Hold one connection open (its transport and session) until ``close``."""
        from mcp import ClientSession

        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport(server.config))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                server.tools = await self._list_tools(server, session)
                server.session, server.state = session, "connected"
                ready.set_result(None)
                await server.closing.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(_describe(exc)))
            elif not isinstance(exc, asyncio.CancelledError):
                server.state, server.error = "failed", _describe(exc)
                log.warning(
                    "persona %s: MCP server %s ended: %s", self.persona, server.config.name, server.error
                )
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            server.session = None

    @staticmethod
    def _transport(config: McpServerConfig) -> contextlib.AbstractAsyncContextManager[Any]:
        if config.command is not None:
            from mcp import StdioServerParameters, stdio_client

            params = StdioServerParameters(command=config.command, args=config.args, env=config.env or None)
            return stdio_client(params)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        assert config.url is not None
        # The SDK's own defaults: 30 s to connect and write, 300 s to read (a server may hold a stream open).
        http = httpx2.AsyncClient(headers=config.headers or None, timeout=httpx2.Timeout(30.0, read=300.0))
        return _closing_http(streamable_http_client(config.url, http_client=http), http)

    async def _list_tools(self, server: _Server, session: Any) -> dict[str, Any]:
        tools: dict[str, Any] = {}
        cursor: str | None = None
        while True:
            from mcp.types import PaginatedRequestParams

            page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
            tools.update({tool.name: tool for tool in page.tools})
            cursor = page.next_cursor
            if not cursor:
                break
        wanted = server.config.tools
        if wanted is not None:
            missing = sorted(set(wanted) - set(tools))
            if missing:
                log.warning(
                    "persona %s: MCP server %s has no tool %s",
                    self.persona,
                    server.config.name,
                    ", ".join(missing),
                )
            tools = {name: tool for name, tool in tools.items() if name in wanted}
        return tools

    async def close(self) -> None:
        """Close every connection (stdio servers are stopped)."""
        await asyncio.gather(*(self._end(server) for server in self.servers.values()))

    async def _end(self, server: _Server, *, grace: float = CLOSE_SECONDS) -> None:
        task, server.task = server.task, None
        if task is None:
            return
        server.closing.set()
        if grace > 0:
            with contextlib.suppress(Exception):  # a server that will not close is cancelled below
                await asyncio.wait_for(asyncio.shield(task), grace)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if server.state == "connected":
            server.state = "closed"
        server.session = None

    # -- tools and calls ------------------------------------------------------------------------------

    def tool_specs(self) -> list[ToolSpec]:
        """The tools of the connected servers, named ``mcp.<server>.<tool>``."""
        specs = []
        for name, server in self.servers.items():
            if server.state != "connected":
                continue
            for tool in server.tools.values():
                about = (tool.description or tool.title or tool.name).strip()
                schema = dict(tool.input_schema or {"type": "object", "properties": {}})
                specs.append(ToolSpec(command_name(name, tool.name), f"{about} (MCP server {name})", schema))
        return specs

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "transport": server.transport,
                "state": server.state,
                "tools": [command_name(name, t) for t in server.tools] if server.state == "connected" else [],
                "error": server.error,
            }
            for name, server in self.servers.items()
        ]

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run MCP tool ``name`` (``mcp.<server>.<tool>``); any failure is the observation, never raised."""
        try:
            outcome = await self._call(name, arguments)
        except PersonadError as exc:
            return {"command": name, "ok": False, "outcome": exc.to_dict()}
        return {"command": name, "ok": True, "outcome": outcome}

    async def _call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if not self.allowed:
            raise CapabilityDeniedError(
                f"{name!r} needs the 'mcp' capability, which persona {self.persona!r} does not have"
            )
        server_name, _, tool = name.removeprefix(PREFIX).partition(".")
        server = self.servers.get(server_name)
        if server is None or server.session is None or tool not in server.tools:
            known = ", ".join(t.name for t in self.tool_specs()) or "none"
            why = ""
            if server is not None and server.error:
                why = f" (server {server_name!r} is {server.state}: {server.error})"
            raise UnknownCommandError(f"unknown MCP tool {name!r}{why}; this persona's MCP tools: {known}")
        timeout = server.config.timeout_s
        try:
            result = await asyncio.wait_for(server.session.call_tool(tool, arguments), timeout)
        except TimeoutError:
            raise McpTimeoutError(
                f"MCP tool {name!r} did not answer within {timeout:g} s (timeout_s of server {server_name!r})"
            ) from None
        except Exception as exc:  # the SDK's MCPError, a closed connection, a result it could not validate
            raise McpToolError(f"MCP tool {name!r} failed: {_describe(exc)}") from None
        if getattr(result, "is_error", False):
            text = _texts(result) or "the tool reported an error"
            raise McpToolError(f"MCP tool {name!r} failed: {text}", details=_content(result) or None)
        structured = getattr(result, "structured_content", None)
        if isinstance(structured, dict):
            return structured
        content = _content(result)
        if all(item.get("type") == "text" for item in content):
            return {"text": _texts(result)}
        return {"content": content}


def _content(result: Any) -> list[dict[str, Any]]:
    """The result's content blocks: text as it is, anything else (images, resources) described."""
    out: list[dict[str, Any]] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "unknown")
        if kind == "text":
            out.append({"type": "text", "text": block.text})
        else:
            out.append(
                {
                    k: v
                    for k, v in {
                        "type": kind,
                        "mime_type": getattr(block, "mime_type", None),
                        "uri": str(getattr(block, "uri", "") or "") or None,
                    }.items()
                    if v is not None
                }
            )
    return out


def _texts(result: Any) -> str:
    return "\n".join(b["text"] for b in _content(result) if b.get("type") == "text")


@contextlib.asynccontextmanager
async def _closing_http(transport: contextlib.AbstractAsyncContextManager[Any], http: Any) -> Any:
    """The streamable HTTP transport, then its HTTP client closed (we made it, to send the headers)."""
    async with http, transport as streams:
        yield streams
