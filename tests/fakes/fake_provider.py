"""Test-only model providers, registered through the same registry as the real ones.

Loaded in the daemon and in every persona process through ``PERSONAD_PLUGINS=tests.fakes.fake_provider``.
Behaviour is driven by the last message, so tests can script a conversation:

- ``run:NAME {json}`` → asks to run command NAME (a ``[CMD:...]`` line, or a native tool call for
  ``fake-tools``); ``badcmd`` → a malformed command line;
- an observation (``[RESULT:…]``/``[ERROR:…]`` or a tool message) → ``observed <observation>``;
- ``system?`` → the system prompt; ``adapters?`` → the adapter stack; ``memory?`` → the recalled memories;
- anything else → ``echo: <text>``, streamed word by word.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

from personad.models.base import ChatChunk, ChatRequest, ModelProvider, ToolCall, Usage
from personad.models.registry import ProviderRegistry

_RUN = re.compile(r"run:(?P<name>[a-z_]+(?:\.[a-z_]+)*)\s*(?P<args>\{.*\})?", re.S)  # dots: mcp.calc.add


class FakeProvider(ModelProvider):
    name = "fake"
    supports_adapters = True  # it receives the stack with each request (and says it on "adapters?")

    def _reply(self, request: ChatRequest) -> tuple[str, list[ToolCall]]:
        last = request.messages[-1]
        text = last.content
        if last.role == "tool" or text.startswith(("[RESULT:", "[ERROR:")):
            return f"observed {text[:400]}", []
        if "system?" in text:
            return request.messages[0].content, []
        if "memory?" in text:
            notes = [m.content for m in request.messages if m.content.startswith("[memory]")]
            return (" | ".join(notes) or "no memories"), []
        if "adapters?" in text:
            return "adapters=" + ",".join(a.name for a in request.adapters), []
        if "badcmd" in text:
            return "let me try\n[CMD:oops] {not json", []
        match = _RUN.search(text)
        if match:
            args = match["args"] or "{}"
            if self.supports_tools:
                return "", [ToolCall("call_1", match["name"], json.loads(args))]
            return f"running it\n[CMD:{match['name']}] {args}", []
        return f"echo: {text}", []

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        text, calls = self._reply(request)
        words = re.findall(r"\S+\s*|\s+", text)
        for word in words:
            await asyncio.sleep(self.config.get("delay", 0.002))
            yield ChatChunk(text=word)
        prompt = sum(len(m.content.split()) for m in request.messages)
        finish = "tool_calls" if calls else "stop"
        yield ChatChunk(tool_calls=calls or None, finish_reason=finish, usage=Usage(prompt, len(words)))


class FakeToolsProvider(FakeProvider):
    name = "fake-tools"
    supports_tools = True


def register_providers(registry: ProviderRegistry) -> None:
    registry.register(FakeProvider)
    registry.register(FakeToolsProvider)
