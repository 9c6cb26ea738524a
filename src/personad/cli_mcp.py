"""``personad mcp``: MCP over stdio for desktop clients, bridged to the daemon of ``--home``.

Design: the stdio process is an MCP server (the SDK's low-level :class:`~mcp.server.lowlevel.Server` on
:func:`~mcp.server.stdio.stdio_server`) whose ``tools/list`` and ``tools/call`` are forwarded, with the SDK's
own client (:class:`~mcp.client.session.ClientSession` over streamable HTTP), to the daemon's ``/mcp``
endpoint with the token from ``daemon.json``; progress notifications of a forwarded call are relayed to the
desktop client. Why a proxy to ``/mcp`` rather than a second mapping onto the HTTP/WS bus: the mapping of
commands to tools (schemas, capabilities, structured results and errors, images, jobs with progress) lives
in one place (:mod:`personad.server.mcp`), so both transports always show the same tools and behave the
same, and this bridge only moves MCP messages. It does not forward raw JSON-RPC frames either: each side
negotiates its own MCP session with the SDK, so protocol versions and session ids stay the SDK's business.

Stdout carries only MCP frames: logging goes to stderr, and while serving the SDK points fd 1 at stderr.
When no daemon runs for the home, one is started (``personad serve --home HOME --port 0`` in the
background, its output in ``HOME/mcp-daemon.log``); it keeps running after the bridge exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from personad.errors import PersonadError, UnavailableError
from personad.state import read_state

log = logging.getLogger("personad.mcp")

START_TIMEOUT_S = 60.0
DAEMON_LOG = "mcp-daemon.log"


def _alive(state: dict[str, Any] | None) -> bool:
    if not state or "url" not in state:
        return False
    try:
        return httpx.get(f"{state['url']}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def ensure_daemon(home: Path, *, start: bool = True, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
    """The ``daemon.json`` of the daemon running for ``home``; starts one first when none answers."""
    state = read_state(home)
    if _alive(state):
        assert state is not None
        return state
    if not start:
        raise UnavailableError(
            f"no daemon running for home {home}; start one with 'personad serve --home {home}'",
            code="daemon_not_running",
        )
    home.mkdir(parents=True, exist_ok=True)
    log.info("no daemon answers for %s; starting one (log: %s)", home, home / DAEMON_LOG)
    with open(home / DAEMON_LOG, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "personad.cli", "serve", "--home", str(home), "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # it outlives this bridge, and a Ctrl-C here does not reach it
            env={**os.environ, "PERSONAD_HOME": str(home)},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(home)
        if state is not None and state.get("pid") == proc.pid and _alive(state):
            return state
        if proc.poll() is not None:
            raise UnavailableError(
                f"the daemon for {home} exited at start (code {proc.returncode}); see {home / DAEMON_LOG}",
                code="daemon_not_running",
            )
        time.sleep(0.2)
    raise UnavailableError(
        f"the daemon for {home} did not answer within {timeout:g} s; see {home / DAEMON_LOG}",
        code="daemon_not_running",
    )


async def bridge(
    url: str, token: str, *, capabilities: str | None = None, session: str | None = None
) -> None:
    """Serve MCP on stdin/stdout, forwarding tools to the daemon's ``/mcp`` until stdin closes."""
    import httpx2
    import mcp_types as types
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server

    from personad import __version__
    from personad.server.mcp import CAPABILITIES_HEADER, MCP_PATH, SESSION_HEADER, tool_error

    headers = {"Authorization": f"Bearer {token}"}
    if capabilities is not None:
        headers[CAPABILITIES_HEADER] = capabilities
    if session is not None:
        headers[SESSION_HEADER] = session
    async with (
        # The SDK's own defaults: 30 s to connect and write, 300 s to read (a call may stream for long).
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0)) as http,
        streamable_http_client(f"{url.rstrip('/')}{MCP_PATH}", http_client=http) as (read, write),
        ClientSession(read, write) as upstream,
    ):
        hello = await upstream.initialize()

        async def list_tools(
            ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            return await upstream.list_tools(params=params)

        async def call_tool(
            ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            async def relay(progress: float, total: float | None, message: str | None) -> None:
                await ctx.session.report_progress(progress, total, message)

            try:
                result = await upstream.call_tool(params.name, params.arguments, progress_callback=relay)
            except Exception as exc:  # the daemon went away, or answered out of protocol
                log.warning("tool %r failed on the daemon's side: %s", params.name, exc)
                return tool_error(
                    UnavailableError(
                        f"the daemon did not answer {params.name!r}: {exc}", code="daemon_unreachable"
                    )
                )
            assert isinstance(result, types.CallToolResult)
            return result

        server: Server[Any] = Server(
            "personad",
            version=__version__,
            title="PersonaDaemon",
            instructions=hello.instructions,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
        )
        async with stdio_server() as (stdin, stdout):
            await server.run(stdin, stdout, server.create_initialization_options())


def register(main: click.Group, home_option: Any, fail: Any) -> None:
    @main.command("mcp")
    @home_option
    @click.option(
        "--capabilities",
        default=None,
        metavar="CAP,CAP",
        help="restrict the MCP session to these capabilities (default: all the admin token allows)",
    )
    @click.option("--session", default=None, help="bus session id to run in (default: one per MCP session)")
    @click.option(
        "--start/--no-start",
        default=True,
        show_default=True,
        help="start a daemon for --home when none runs (it keeps running afterwards)",
    )
    @click.option(
        "--log-level",
        default="warning",
        show_default=True,
        type=click.Choice(["critical", "error", "warning", "info", "debug"]),
        help="logging on stderr",
    )
    def mcp_command(
        home: Path, capabilities: str | None, session: str | None, start: bool, log_level: str
    ) -> None:
        """Serve MCP on stdin/stdout (for desktop clients such as Claude Desktop), bridged to the daemon.

        Connects to the daemon running for --home (found through its daemon.json, with its token); when
        none runs and --start (the default), starts one in the background ('personad serve --home HOME
        --port 0', output in HOME/mcp-daemon.log), which keeps running after this process exits. Every bus
        command is an MCP tool (see docs/mcp.md). Stdout carries only MCP messages; logs go to stderr.
        """
        logging.basicConfig(
            level=log_level.upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        home = home.expanduser().resolve()
        try:
            state = ensure_daemon(home, start=start)
            asyncio.run(bridge(state["url"], state["token"], capabilities=capabilities, session=session))
        except PersonadError as error:
            fail(error)
        except KeyboardInterrupt:
            pass
