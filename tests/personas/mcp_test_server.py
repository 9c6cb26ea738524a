"""A small MCP server for the persona MCP tests: ``python -m tests.personas.mcp_test_server`` (stdio).

Tools: ``add(a, b)`` → a number, ``echo(text)``, ``hang()`` (never returns), ``fail()`` (raises).
"""

from __future__ import annotations

import asyncio

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
    server.run()
