"""Claude through the official ``anthropic`` SDK (the Messages API), streamed.

Config keys (``model_config``):

``model``
    Model id; ``ChatRequest.model`` overrides it per request. Default :data:`DEFAULT_MODEL`.
``api_key``
    Else ``ANTHROPIC_API_KEY``. Without either, :meth:`AnthropicProvider.stream` raises
    :class:`~personad.errors.MissingApiKeyError` before anything goes on the network.
``base_url``
    Another endpoint speaking the Messages API (a proxy, a gateway, the tests' fake server).
``max_retries`` / ``timeout``
    Passed to the SDK client (retries with backoff on 408/409/429/5xx and connection errors; seconds).
``sampling_params``
    Which of ``"temperature"`` and ``"top_p"`` to send, default ``["temperature"]``. Claude 4.x models
    refuse a request that sets both, and the newest models (which SDK 2.x types no longer offer either
    for) refuse ``temperature`` too: set ``[]`` for those.
``stream``
    ``True`` (default) streams; ``False`` makes one plain request and yields its answer at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from personad.errors import MissingApiKeyError, ProviderError
from personad.models.base import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ModelProvider,
    ToolCall,
    ToolSpec,
    Usage,
)

if TYPE_CHECKING:
    # The SDK takes seconds to import: only a persona that actually talks to Claude pays for it.
    from anthropic import APIError, AsyncAnthropic

    from personad.models.registry import ProviderRegistry

DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_TIMEOUT_S = 120.0
API_KEY_ENV = "ANTHROPIC_API_KEY"

# Anthropic's stop reasons in the vocabulary ChatChunk.finish_reason uses (OpenAI's).
_FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicProvider(ModelProvider):
    """Claude models over the Messages API, with native tool use."""

    name = "anthropic"
    supports_tools = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self._client: AsyncAnthropic | None = None

    # -- client -------------------------------------------------------------------------------------

    def _api_key(self) -> str:
        key = self.config.get("api_key") or os.environ.get(API_KEY_ENV)
        if not key:
            raise MissingApiKeyError(
                f"the anthropic provider needs an API key: set {API_KEY_ENV} or model_config.api_key",
                details={"provider": self.name},
            )
        return str(key)

    def _get_client(self) -> AsyncAnthropic:
        if self._client is None:
            api_key = self._api_key()  # first, so a missing key never costs the SDK import
            try:
                from anthropic import AsyncAnthropic
            except ImportError as exc:  # pragma: no cover - the SDK is a declared dependency
                raise ProviderError(
                    "the anthropic provider needs the 'anthropic' package: pip install anthropic",
                    code="provider_unavailable",
                ) from exc
            self._client = AsyncAnthropic(
                # An explicit key also stops the SDK from falling back to profiles or federation files.
                api_key=api_key,
                base_url=self.config.get("base_url"),
                max_retries=int(self.config.get("max_retries", 2)),
                timeout=float(self.config.get("timeout", DEFAULT_TIMEOUT_S)),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # -- request ------------------------------------------------------------------------------------

    def build_params(self, request: ChatRequest) -> dict[str, Any]:
        """The Messages API arguments for ``request`` (everything but ``stream``)."""
        system, messages = to_anthropic_messages(request.messages)
        params: dict[str, Any] = {
            "model": request.model or self.config.get("model") or DEFAULT_MODEL,
            "max_tokens": request.params.max_tokens,
            "messages": messages,
        }
        if system:
            params["system"] = system
        if request.params.stop:
            params["stop_sequences"] = list(request.params.stop)
        if request.tools:
            params["tools"] = to_anthropic_tools(request.tools)
        sampling: dict[str, Any] = {}
        wanted = self.config.get("sampling_params", ["temperature"])
        if "temperature" in wanted:
            # The Messages API takes 0..1 where OpenAI-style callers may use up to 2.
            sampling["temperature"] = min(max(request.params.temperature, 0.0), 1.0)
        if "top_p" in wanted:
            sampling["top_p"] = request.params.top_p
        if sampling:
            # SDK 2.x no longer types these keywords; they go as plain body fields for models that take them.
            params["extra_body"] = sampling
        return params

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        client = self._get_client()
        params = self.build_params(request)
        import anthropic

        try:
            if not self.config.get("stream", True):
                message = await client.messages.create(**params)
                for chunk in _chunks_from_message(message):
                    yield chunk
                return
            state = _StreamState()
            events = await client.messages.create(**params, stream=True)
            async with events:
                async for event in events:
                    for chunk in state.feed(event):
                        yield chunk
            for chunk in state.finish():
                yield chunk
        except anthropic.APIError as exc:
            raise provider_error(exc, base_url=self.config.get("base_url")) from exc


# -- mapping ChatRequest -> Messages API ------------------------------------------------------------


def to_anthropic_messages(messages: Iterable[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """Split out the system prompt and turn the rest into alternating user/assistant content blocks.

    Role ``tool`` answers become ``tool_result`` blocks in a user turn; consecutive turns of one role are
    merged, since the API wants user and assistant to alternate.
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            # The API has no system role inside the conversation; every system text joins the prompt.
            if message.content:
                system.append(message.content)
            continue
        role, blocks = _blocks(message)
        if not blocks:
            continue  # the API rejects empty turns and empty text blocks
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for turn in out:
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]  # the plain-string form, as most callers write it
    return "\n\n".join(system), out


def _blocks(message: ChatMessage) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "tool":
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
        if message.content:
            block["content"] = message.content
        return "user", [block]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    if message.role == "assistant":
        for call in message.tool_calls or []:
            blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _as_object(call)})
    return message.role, blocks


def _as_object(call: ToolCall) -> dict[str, Any]:
    """``tool_use.input`` must be a JSON object; raw argument text is parsed or kept under ``raw``."""
    if isinstance(call.arguments, dict):
        return call.arguments
    try:
        parsed = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        return {"raw": call.arguments}
    return parsed if isinstance(parsed, dict) else {"raw": call.arguments}


def to_anthropic_tools(tools: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        schema = dict(tool.parameters) or {"type": "object", "properties": {}}
        schema.setdefault("type", "object")  # the API requires an object schema at the top
        out.append({"name": tool.name, "description": tool.description, "input_schema": schema})
    return out


# -- mapping the answer -> ChatChunk ------------------------------------------------------------------


def _parse_arguments(text: str) -> dict[str, Any] | str:
    """Tool input as a dict; text that is not a JSON object is handed on raw for the caller to judge."""
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return parsed if isinstance(parsed, dict) else text


def _finish_reason(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    return _FINISH_REASONS.get(stop_reason, stop_reason)


def _usage(usage: Any) -> Usage:
    # The prompt is everything read: fresh input plus cache writes and cache reads.
    prompt = sum(
        getattr(usage, name, None) or 0
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return Usage(prompt_tokens=prompt, completion_tokens=getattr(usage, "output_tokens", None) or 0)


def _chunks_from_message(message: Any) -> list[ChatChunk]:
    """A whole (non-streamed) Message as chunks: text, tool calls, then finish and usage."""
    text = "".join(block.text for block in message.content if block.type == "text")
    calls = [
        ToolCall(block.id, block.name, dict(block.input) if isinstance(block.input, dict) else block.input)
        for block in message.content
        if block.type == "tool_use"
    ]
    chunks = []
    if text:
        chunks.append(ChatChunk(text=text))
    if calls:
        chunks.append(ChatChunk(tool_calls=calls))
    chunks.append(ChatChunk(finish_reason=_finish_reason(message.stop_reason), usage=_usage(message.usage)))
    return chunks


@dataclass
class _ToolBlock:
    id: str
    name: str
    initial_input: Any
    partial_json: list[str] = field(default_factory=list)

    def call(self) -> ToolCall:
        if self.partial_json:
            return ToolCall(self.id, self.name, _parse_arguments("".join(self.partial_json)))
        initial = self.initial_input
        return ToolCall(self.id, self.name, dict(initial) if isinstance(initial, dict) else {})


@dataclass
class _StreamState:
    """Folds raw stream events into chunks: text as it comes, each tool call when its block closes."""

    tools: dict[int, _ToolBlock] = field(default_factory=dict)
    stop_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finished: bool = False

    def feed(self, event: Any) -> list[ChatChunk]:
        kind = event.type
        if kind == "message_start":
            usage = _usage(event.message.usage)
            self.prompt_tokens, self.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.tools[event.index] = _ToolBlock(block.id, block.name, block.input)
            elif block.type == "text" and block.text:
                return [ChatChunk(text=block.text)]
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return [ChatChunk(text=delta.text)] if delta.text else []
            if delta.type == "input_json_delta" and event.index in self.tools:
                self.tools[event.index].partial_json.append(delta.partial_json)
            # thinking/signature/citation deltas are not part of the answer text
        elif kind == "content_block_stop":
            tool = self.tools.pop(event.index, None)
            if tool is not None:
                return [ChatChunk(tool_calls=[tool.call()])]
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            usage = event.usage
            # message_delta counts are cumulative; input counts appear there only on some API versions.
            if getattr(usage, "input_tokens", None) is not None:
                self.prompt_tokens = _usage(usage).prompt_tokens
            self.completion_tokens = usage.output_tokens or self.completion_tokens
        return []

    def finish(self) -> list[ChatChunk]:
        # A block left open (a stream cut short) still hands on what it gathered rather than drop it.
        chunks = [ChatChunk(tool_calls=[tool.call()]) for tool in self.tools.values()]
        self.tools.clear()
        chunks.append(
            ChatChunk(
                finish_reason=_finish_reason(self.stop_reason),
                usage=Usage(self.prompt_tokens, self.completion_tokens),
            )
        )
        return chunks


# -- errors -------------------------------------------------------------------------------------------

_CODES_BY_STATUS: dict[int, str] = {
    400: "provider_bad_request",
    401: "provider_auth",
    403: "provider_auth",
    404: "provider_bad_request",
    413: "provider_bad_request",
    422: "provider_bad_request",
    429: "provider_rate_limited",
    529: "provider_overloaded",
}
# Errors sent inside a 200 stream carry only the body's type.
_CODES_BY_TYPE: dict[str, str] = {
    "invalid_request_error": "provider_bad_request",
    "authentication_error": "provider_auth",
    "permission_error": "provider_auth",
    "not_found_error": "provider_bad_request",
    "request_too_large": "provider_bad_request",
    "rate_limit_error": "provider_rate_limited",
    "overloaded_error": "provider_overloaded",
}


def provider_error(exc: APIError, *, base_url: str | None = None) -> ProviderError:
    """An SDK error as a ProviderError with a specific code and a message that says what to do."""
    import anthropic

    where = base_url or "the Anthropic API"
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError(
            f"anthropic: {where} did not answer in time; raise model_config.timeout or retry later",
            code="provider_timeout",
            details={"provider": "anthropic"},
        )
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(
            f"anthropic: could not reach {where} ({exc.message}); check the network or model_config.base_url",
            code="provider_unreachable",
            details={"provider": "anthropic"},
        )
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        error = exc.body.get("error") if isinstance(exc.body, dict) else None
        error = error if isinstance(error, dict) else {}
        api_message = str(error.get("message") or exc.message)
        error_type = str(error.get("type") or "")
        code = _CODES_BY_STATUS.get(status) or _CODES_BY_TYPE.get(error_type) or "provider_error"
        hint = ""
        if code == "provider_auth":
            hint = f"; check {API_KEY_ENV} or model_config.api_key"
        elif code == "provider_rate_limited":
            hint = "; slow down or retry later"
        elif code == "provider_bad_request" and ("temperature" in api_message or "top_p" in api_message):
            hint = "; this model may not take sampling parameters: set model_config.sampling_params to []"
        # An error event inside a stream arrives on a 200 response: only its type tells what went wrong.
        what = f"API error {status}" if status >= 400 else f"stream error {error_type or 'unknown'}"
        return ProviderError(
            f"anthropic: {what}: {api_message}{hint}",
            code=code,
            details={
                "provider": "anthropic",
                "status": status,
                "type": error_type or None,
                "request_id": exc.response.headers.get("request-id"),
            },
        )
    return ProviderError(f"anthropic: {exc.message}", details={"provider": "anthropic"})


def register_providers(registry: ProviderRegistry) -> None:
    registry.register(AnthropicProvider)
