"""OpenAI and every OpenAI-compatible server (vLLM, llama.cpp server, Ollama, ...) through the ``openai`` SDK.

Chat Completions, streamed. Config keys (``model_config``):

``model``
    Model id; ``ChatRequest.model`` overrides it per request. Default :data:`DEFAULT_MODEL`.
``api_key``
    Else ``OPENAI_API_KEY``.
``base_url``
    Else ``OPENAI_BASE_URL``; e.g. ``http://127.0.0.1:8000/v1`` for vLLM, ``http://127.0.0.1:11434/v1`` for
    Ollama. Local servers usually need no key, so when a base URL is set and no key is found the provider
    sends :data:`PLACEHOLDER_API_KEY` instead of failing. Without a base URL (api.openai.com) a missing key
    raises :class:`~personad.errors.MissingApiKeyError` before anything goes on the network.
``max_retries`` / ``timeout``
    Passed to the SDK client (retries with backoff on 408/409/429/5xx and connection errors; seconds).
``max_tokens_param``
    ``"max_tokens"`` (default, what compatible servers know) or ``"max_completion_tokens"`` (what OpenAI's
    reasoning models require).
``stream``
    ``True`` (default) streams; ``False`` makes one plain request, for servers that cannot stream tool calls.
``stream_usage``
    ``True`` (default) asks for the final usage chunk (``stream_options.include_usage``); set ``False`` for
    servers that reject ``stream_options``.
``lora_serving``
    ``"model"`` for a server that serves LoRA adapters by model name (vLLM ``--lora-modules NAME=PATH``,
    llama.cpp server aliases, LoRAX): a persona's stack is then sent as the ``model`` of each request, named
    by :func:`served_adapter_name` — one adapter at scale 1 goes by its own name (serve
    ``personad lora export NAME``, which flattens its parent chain, under that name), a longer stack by its
    names joined with ``+`` (``name@scale`` where the scale is not 1); a parent chain by name
    (``continuum.legal``, ``continuum.legal.patent``) by its last name. Unset (the default), a persona with
    adapters is refused at creation: the server would answer without them.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from personad.errors import MissingApiKeyError, ProviderError
from personad.models.base import (
    AdapterRef,
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ModelProvider,
    ToolCall,
    ToolSpec,
    Usage,
)

if TYPE_CHECKING:
    # The SDK takes seconds to import: only a persona that actually uses it pays for it.
    from openai import APIError, AsyncOpenAI

    from personad.models.registry import ProviderRegistry

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT_S = 120.0
API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
# Sent to a configured base_url when no key is set: the SDK insists on some key, local servers ignore it.
PLACEHOLDER_API_KEY = "not-needed"

# OpenAI rejects a message ``name`` outside this pattern; other names are left off rather than fail the call.
_MESSAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class OpenAIProvider(ModelProvider):
    """Chat Completions on OpenAI or any compatible server, with native tool calling."""

    name = "openai"
    supports_tools = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self._client: AsyncOpenAI | None = None

    # -- client -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str | None:
        return self.config.get("base_url") or os.environ.get(BASE_URL_ENV) or None

    def _api_key(self) -> str:
        key = self.config.get("api_key") or os.environ.get(API_KEY_ENV)
        if key:
            return str(key)
        if self.base_url:
            return PLACEHOLDER_API_KEY
        raise MissingApiKeyError(
            f"the openai provider needs an API key: set {API_KEY_ENV} or model_config.api_key "
            "(or model_config.base_url for a local OpenAI-compatible server)",
            details={"provider": self.name},
        )

    def _get_client(self) -> AsyncOpenAI:
        if self._client is None:
            api_key = self._api_key()  # first, so a missing key never costs the SDK import
            try:
                from openai import AsyncOpenAI
            except ImportError as exc:  # pragma: no cover - the SDK is a declared dependency
                raise ProviderError(
                    "the openai provider needs the 'openai' package: pip install openai",
                    code="provider_unavailable",
                ) from exc
            self._client = AsyncOpenAI(
                api_key=api_key,
                base_url=self.base_url,
                max_retries=int(self.config.get("max_retries", 2)),
                timeout=float(self.config.get("timeout", DEFAULT_TIMEOUT_S)),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -- request ------------------------------------------------------------------------------------

    @classmethod
    def applies_adapters(cls, config: dict[str, Any]) -> bool:
        return config.get("lora_serving") == "model"

    def build_params(self, request: ChatRequest) -> dict[str, Any]:
        """The Chat Completions arguments for ``request`` (everything but the streaming switches)."""
        gen = request.params
        model = request.model or self.config.get("model") or DEFAULT_MODEL
        if request.adapters and self.applies_adapters(self.config):
            model = served_adapter_name(request.adapters)
        params: dict[str, Any] = {
            "model": model,
            "messages": to_openai_messages(request.messages),
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            str(self.config.get("max_tokens_param", "max_tokens")): gen.max_tokens,
        }
        if gen.stop:
            params["stop"] = list(gen.stop)
        if gen.seed is not None:
            params["seed"] = gen.seed
        if request.tools:
            params["tools"] = to_openai_tools(request.tools)
        return params

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        client = self._get_client()
        params = self.build_params(request)
        import openai

        try:
            if not self.config.get("stream", True):
                completion = await client.chat.completions.create(**params)
                for chunk in _chunks_from_completion(completion):
                    yield chunk
                return
            if self.config.get("stream_usage", True):
                params["stream_options"] = {"include_usage": True}
            state = _StreamState()
            chunks = await client.chat.completions.create(**params, stream=True)
            async with chunks:
                async for event in chunks:
                    for chunk in state.feed(event):
                        yield chunk
            for chunk in state.finish():
                yield chunk
        except openai.APIError as exc:
            raise provider_error(exc, base_url=self.base_url) from exc


# -- mapping ChatRequest -> Chat Completions --------------------------------------------------------


def served_adapter_name(adapters: Iterable[AdapterRef]) -> str:
    """The model name a LoRA-serving server knows a stack by (see ``lora_serving``).

    A stack that is one parent chain by name at scale 1 (``continuum.legal``, ``continuum.legal.patent``,
    …: each a dotted prefix of the next) is what ``personad lora export`` of its last adapter flattens, and
    goes by that last name; any other stack by its names joined with ``+`` (``name@scale`` off scale 1).
    """
    stack = list(adapters)
    chain = all(a.scale == 1.0 for a in stack) and all(
        child.name.startswith(parent.name + ".") for parent, child in itertools.pairwise(stack)
    )
    if chain:
        return stack[-1].name
    return "+".join(a.name if a.scale == 1.0 else f"{a.name}@{a.scale:g}" for a in stack)


def to_openai_messages(messages: Iterable[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            out.append(
                {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content}
            )
            continue
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.name and _MESSAGE_NAME.match(message.name):
            item["name"] = message.name
        if message.role == "assistant" and message.tool_calls:
            # With tool calls and no text, the API wants null content rather than "".
            item["content"] = message.content or None
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments_text(call.arguments)},
                }
                for call in message.tool_calls
            ]
        out.append(item)
    return out


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def to_openai_tools(tools: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters) or {"type": "object", "properties": {}},
            },
        }
        for tool in tools
    ]


# -- mapping the answer -> ChatChunk ------------------------------------------------------------------


def _parse_arguments(text: str) -> dict[str, Any] | str:
    """Arguments as a dict; text that is not a JSON object is handed on raw for the caller to judge."""
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return parsed if isinstance(parsed, dict) else text


def _finish_reason(reason: str | None, has_tool_calls: bool) -> str | None:
    if reason == "function_call":
        return "tool_calls"
    # Some compatible servers (Ollama, older llama.cpp) say "stop" even when the answer is tool calls.
    if has_tool_calls and reason in (None, "stop"):
        return "tool_calls"
    return reason


def _usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    return Usage(prompt_tokens=usage.prompt_tokens or 0, completion_tokens=usage.completion_tokens or 0)


def _chunks_from_completion(completion: Any) -> list[ChatChunk]:
    """A whole (non-streamed) completion as chunks: text, tool calls, then finish and usage."""
    chunks: list[ChatChunk] = []
    choice = completion.choices[0] if completion.choices else None
    calls: list[ToolCall] = []
    if choice is not None:
        message = choice.message
        if message.content:
            chunks.append(ChatChunk(text=message.content))
        for call in message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is None:
                continue  # custom (non-function) tools are never offered by this provider
            calls.append(ToolCall(call.id, function.name, _parse_arguments(function.arguments or "")))
        if calls:
            chunks.append(ChatChunk(tool_calls=calls))
    reason = _finish_reason(choice.finish_reason if choice else None, bool(calls))
    chunks.append(ChatChunk(finish_reason=reason, usage=_usage(completion.usage) or Usage()))
    return chunks


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _StreamState:
    """Folds chat.completion.chunk events into chunks: text as it comes, tool calls once complete."""

    calls: dict[int, _PendingCall] = field(default_factory=dict)
    emitted_calls: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None

    def feed(self, event: Any) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        if event.usage is not None:
            self.usage = _usage(event.usage)
        for choice in event.choices or []:
            if choice.index not in (0, None):
                continue  # we never ask for n > 1
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    out.append(ChatChunk(text=delta.content))
                for position, part in enumerate(delta.tool_calls or []):
                    # Some compatible servers leave out ``index``; position in the delta stands in then.
                    index = part.index if part.index is not None else position
                    pending = self.calls.setdefault(index, _PendingCall())
                    pending.id = pending.id or (part.id or "")
                    if part.function is not None:
                        pending.name = pending.name or (part.function.name or "")
                        if part.function.arguments:
                            pending.arguments.append(part.function.arguments)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
                out.extend(self._flush_calls())
        return out

    def _flush_calls(self) -> list[ChatChunk]:
        if not self.calls:
            return []
        calls = [
            ToolCall(
                pending.id or f"call_{index}", pending.name, _parse_arguments("".join(pending.arguments))
            )
            for index, pending in sorted(self.calls.items())
        ]
        self.calls.clear()
        self.emitted_calls = True
        return [ChatChunk(tool_calls=calls)]

    def finish(self) -> list[ChatChunk]:
        # Calls still pending (no finish_reason came) are handed on rather than dropped.
        out = self._flush_calls()
        reason = _finish_reason(self.finish_reason, self.emitted_calls)
        out.append(ChatChunk(finish_reason=reason, usage=self.usage or Usage()))
        return out


# -- errors -------------------------------------------------------------------------------------------

_CODES_BY_STATUS: dict[int, str] = {
    400: "provider_bad_request",
    401: "provider_auth",
    403: "provider_auth",
    404: "provider_bad_request",
    413: "provider_bad_request",
    422: "provider_bad_request",
    429: "provider_rate_limited",
}


def provider_error(exc: APIError, *, base_url: str | None = None) -> ProviderError:
    """An SDK error as a ProviderError with a specific code and a message that says what to do."""
    import openai

    where = base_url or "the OpenAI API"
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(
            f"openai: {where} did not answer in time; raise model_config.timeout or retry later",
            code="provider_timeout",
            details={"provider": "openai", "base_url": base_url},
        )
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(
            f"openai: could not reach {where} ({exc.message}); is the server running? "
            "check model_config.base_url",
            code="provider_unreachable",
            details={"provider": "openai", "base_url": base_url},
        )
    status = getattr(exc, "status_code", None)
    error = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else None
    api_message = str(error.get("message") or exc.message) if isinstance(error, dict) else exc.message
    code = _CODES_BY_STATUS.get(status or 0, "provider_error")
    hint = ""
    if code == "provider_auth":
        hint = f"; check {API_KEY_ENV} or model_config.api_key"
    elif code == "provider_rate_limited":
        hint = "; slow down or retry later (or check the account's quota)"
    what = f"API error {status}" if status else "error in the stream"
    return ProviderError(
        f"openai: {what} from {where}: {api_message}{hint}",
        code=code,
        details={"provider": "openai", "status": status, "base_url": base_url},
    )


def register_providers(registry: ProviderRegistry) -> None:
    registry.register(OpenAIProvider)
