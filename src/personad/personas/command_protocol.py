"""The line protocol a model without native tool calling uses to run bus commands.

A command request is one line of the model's answer, on its own::

    [CMD:browser_js] {"script": "document.title"}

The persona runs it through the bus with its own capabilities and gives the model one observation line
per call in the next message::

    [RESULT:browser_js] {"value": "Example Domain", "url": "..."}
    [ERROR:screenshot] {"code": "capability_denied", "message": "..."}

A line that starts with ``[CMD:`` but is not a well-formed call becomes an ``[ERROR:...]`` observation
with code ``invalid_command_syntax``; nothing the model writes can crash the persona.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from personad.models.base import ToolSpec

PREFIX = "[CMD:"
_LINE = re.compile(r"^\s*\[CMD:(?P<name>[^\]\s]*)\]\s*(?P<args>.*?)\s*$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# A persona's MCP tools (personas/mcp_tools.py): mcp.<server>.<tool>, the tool named as its server names it.
_MCP_NAME = re.compile(r"^mcp\.[a-z0-9_-]+\.[A-Za-z0-9_.-]+$")
OBSERVATION_LIMIT = 2000  # characters of a result shown to the model; small models have small contexts


@dataclass
class CommandCall:
    name: str
    params: dict[str, Any]
    line: str


@dataclass
class MalformedCall:
    name: str
    problem: str
    line: str


def parse(text: str) -> tuple[str, list[CommandCall | MalformedCall]]:
    """Split an answer into the text meant for people and the command lines in it."""
    kept: list[str] = []
    calls: list[CommandCall | MalformedCall] = []
    for line in text.splitlines():
        if not line.lstrip().startswith(PREFIX):
            kept.append(line)
            continue
        match = _LINE.match(line)
        if match is None:
            calls.append(MalformedCall("?", "expected [CMD:name] {json params} on one line", line))
            continue
        name, raw = match["name"], match["args"]
        if not (_NAME.match(name) or _MCP_NAME.match(name)):
            calls.append(MalformedCall(name or "?", f"bad command name {name!r}", line))
            continue
        if not raw:
            calls.append(CommandCall(name, {}, line))
            continue
        try:
            params = json.loads(raw)
        except json.JSONDecodeError as exc:
            calls.append(MalformedCall(name, f"params are not JSON ({exc.msg})", line))
            continue
        if not isinstance(params, dict):
            calls.append(MalformedCall(name, "params must be a JSON object", line))
            continue
        calls.append(CommandCall(name, params, line))
    return "\n".join(kept).strip(), calls


def observation(name: str, *, result: Any = None, error: dict[str, Any] | None = None) -> str:
    if error is not None:
        return f"[ERROR:{name}] {json.dumps(error, default=str)[:OBSERVATION_LIMIT]}"
    return f"[RESULT:{name}] {json.dumps(result, default=str)[:OBSERVATION_LIMIT]}"


def instructions(tools: list[ToolSpec]) -> str:
    """The system-prompt section that teaches the protocol and lists the commands this persona may run."""
    if not tools:
        return ""
    lines = [
        "You can run commands. To run one, write a line on its own exactly like:",
        '[CMD:name] {"param": "value"}',
        "You will then get a [RESULT:name] or [ERROR:name] line. Commands you may run:",
    ]
    for tool in tools:
        params = ", ".join(tool.parameters.get("properties", {}))
        lines.append(f"- {tool.name}({params}): {tool.description}")
    return "\n".join(lines)


class LineFilter:
    """Streams text through, holding back any line that may turn out to be a command line."""

    def __init__(self) -> None:
        self._line = ""

    def feed(self, text: str) -> str:
        out: list[str] = []
        for char in text:
            self._line += char
            if char == "\n":
                if not self._line.lstrip().startswith(PREFIX):
                    out.append(self._line)
                self._line = ""
            elif not _could_be_command(self._line):
                out.append(self._line)
                self._line = ""
        return "".join(out)

    def flush(self) -> str:
        rest, self._line = self._line, ""
        return "" if rest.lstrip().startswith(PREFIX) else rest


def _could_be_command(partial_line: str) -> bool:
    head = partial_line.lstrip()
    return PREFIX.startswith(head) or head.startswith(PREFIX)
