"""The one shape every model provider implements: stream chat chunks for a chat request.

Providers are registered by name in a :class:`ProviderRegistry` (built-ins and plugins alike, including the
test-only fake). Everything here is plain dataclasses so requests cross process boundaries as JSON.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass
class ToolCall:
    """A model's request to run a command. ``arguments`` is the parsed JSON object (or the raw text)."""

    id: str
    name: str
    arguments: dict[str, Any] | str


@dataclass
class ChatMessage:
    role: Role
    content: str
    name: str | None = None
    tool_call_id: str | None = None  # for role "tool": which call this answers
    tool_calls: list[ToolCall] | None = None  # for role "assistant" with native tool calling

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatMessage:
        calls = data.get("tool_calls")
        return cls(
            role=data["role"],
            content=data.get("content") or "",
            name=data.get("name"),
            tool_call_id=data.get("tool_call_id"),
            tool_calls=[ToolCall(**c) for c in calls] if calls else None,
        )


@dataclass
class ToolSpec:
    """A command offered to the model as a tool: its name, description and params JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass
class AdapterRef:
    """One LoRA adapter in a persona's stack, with its scale."""

    name: str
    scale: float = 1.0


@dataclass
class GenerationParams:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class ChatRequest:
    messages: list[ChatMessage]
    params: GenerationParams = field(default_factory=GenerationParams)
    tools: list[ToolSpec] = field(default_factory=list)
    adapters: list[AdapterRef] = field(default_factory=list)
    model: str | None = None  # overrides the provider's configured model id

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatRequest:
        return cls(
            messages=[ChatMessage.from_dict(m) for m in data["messages"]],
            params=GenerationParams(**data.get("params", {})),
            tools=[ToolSpec(**t) for t in data.get("tools", [])],
            adapters=[AdapterRef(**a) for a in data.get("adapters", [])],
            model=data.get("model"),
        )


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ChatChunk:
    """A piece of a streamed answer: text, native tool calls, and on the last chunk the finish reason."""

    text: str = ""
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None  # "stop", "length", "tool_calls"
    usage: Usage | None = None


@dataclass
class ChatResult:
    text: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: Usage


class ModelProvider(abc.ABC):
    """A model backend. Subclasses set ``name`` and implement :meth:`stream`."""

    name: ClassVar[str]
    supports_tools: ClassVar[bool] = False  # native tool calling; otherwise the [CMD:...] line protocol
    supports_adapters: ClassVar[bool] = False  # applies LoRA stacks (the local model)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    @classmethod
    def applies_adapters(cls, config: dict[str, Any]) -> bool:
        """Whether a persona with this provider config can answer with its LoRA stack."""
        return cls.supports_adapters

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Yield chunks as the model produces them; the last one carries ``finish_reason`` and ``usage``."""

    async def complete(self, request: ChatRequest) -> ChatResult:
        """Run :meth:`stream` to the end and gather the answer."""
        text: list[str] = []
        calls: list[ToolCall] = []
        finish: str | None = None
        usage = Usage()
        async for chunk in self.stream(request):
            text.append(chunk.text)
            calls.extend(chunk.tool_calls or [])
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
        return ChatResult("".join(text), calls, finish, usage)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections; the default has nothing to release."""
