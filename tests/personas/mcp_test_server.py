"""A small MCP server for the persona MCP tests: ``python -m tests.personas.mcp_test_server`` (stdio), or
``… --http PORT`` (streamable HTTP on 127.0.0.1:PORT/mcp).

Tools: ``add(a, b)`` → a number, ``echo(text)``, ``hang()`` (never returns), ``fail()`` (raises).
"""

from __future__ import annotations

import asyncio
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("personad-test", log_level="CRITICAL")  # quiet: tracebacks are slow to render


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return text


@server.tool()
async def hang() -> str:
    """Never answer."""
    await asyncio.Event().wait()
    return "unreachable"


@server.tool()
def fail() -> str:
    """Always raise."""
    raise RuntimeError("the fail tool failed, as it should")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        asyncio.run(server.run_streamable_http_async(port=int(sys.argv[2])))
    else:
        server.run()
