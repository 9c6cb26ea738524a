"""An OpenAI-compatible API: ``/v1/models`` lists personas, ``/v1/chat/completions`` answers as one.

Any OpenAI client works unchanged (``base_url=<daemon>/v1``, ``api_key=<daemon token>``). The persona's
system prompt and adapter stack apply; errors use OpenAI's ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from personad import wire
from personad.errors import BadRequestError, NotFoundError, PersonadError
from personad.models.base import ChatMessage, ModelProvider
from personad.personas.config import PERSONA_ID, PersonaConfig
from personad.personas.conversation import build_request
from personad.personas.memory import PersonaMemory

if TYPE_CHECKING:
    from personad.daemon import Daemon

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(error: PersonadError, *, param: str | None = None) -> JSONResponse:
    body = {
        "error": {
            "message": error.message,
            "type": _ERROR_TYPES.get(error.http_status, "api_error"),
            "param": param,
            "code": error.code,
        }
    }
    return JSONResponse(body, status_code=error.http_status)


class CompletionRequest(BaseModel):
    """The fields of OpenAI's chat completion request we honour; others are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    # OpenAI's `store`; false here: the exchange is not written to the persona's memory (an exam, a probe).
    store: bool | None = None


def _content(value: Any) -> str:
    """Message content as text: a string, or the text parts of a content-part list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _conversation(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    out = []
    for message in messages:
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise BadRequestError(f"unsupported message role {role!r}", code="invalid_request")
        out.append(
            ChatMessage(role, _content(message.get("content")), tool_call_id=message.get("tool_call_id"))
        )
    return out


def create_router(daemon: Daemon) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai"])

    @router.get("/models", summary="Personas, as OpenAI models")
    async def models() -> dict[str, Any]:
        data = [
            {"id": c.id, "object": "model", "created": int(c.created_at), "owned_by": "personad"}
            for c in daemon.persona_store.list_personas()
        ]
        return {"object": "list", "data": data}

    @router.post("/chat/completions", summary="Chat with a persona (OpenAI wire format)", response_model=None)
    async def chat_completions(request: Request) -> Any:
        try:
            body = wire.loads(await request.body())
        except BadRequestError as exc:
            return openai_error(exc)
        try:
            completion = CompletionRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"])
            return openai_error(
                BadRequestError(f"{param}: {first['msg']}", code="invalid_request"), param=param
            )
        if not (PERSONA_ID.match(completion.model) and daemon.persona_store.exists(completion.model)):
            error = NotFoundError(f"The model '{completion.model}' does not exist", code="model_not_found")
            return openai_error(error, param="model")
        try:
            config = daemon.persona_store.load(completion.model)
            provider = daemon.providers.create(
                config.model_provider, await daemon.personas.provider_config(config)
            )
            conversation = _conversation(completion.messages)
            memory = PersonaMemory(
                daemon.persona_store.brain_path(config.id),
                budget_tokens=config.memory_budget_tokens,
                brain=daemon.brain(config.id),
            )
            trigger = _trigger(conversation)
            if trigger is not None:
                note = await memory.recall_note(
                    trigger["text"], skip_contents={m.content for m in conversation}
                )
                if note is not None:
                    conversation.insert(len(conversation) - 1, note)
            chat_request = build_request(
                config,
                conversation,
                overrides={
                    "temperature": completion.temperature,
                    "top_p": completion.top_p,
                    "max_tokens": completion.max_completion_tokens or completion.max_tokens,
                    "stop": [completion.stop] if isinstance(completion.stop, str) else completion.stop,
                    "seed": completion.seed,
                },
            )
        except PersonadError as exc:
            return openai_error(exc)
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"

        async def remember(reply: str) -> None:
            if trigger is not None and completion.store is not False:
                await memory.store_exchange(trigger, reply, room=None)

        if completion.stream:
            include_usage = bool((completion.stream_options or {}).get("include_usage"))
            stream = _stream(provider, chat_request, config, completion_id, include_usage, remember)
            return StreamingResponse(stream, media_type="text/event-stream")
        try:
            result = await provider.complete(chat_request)
        except PersonadError as exc:
            return openai_error(exc)
        finally:
            await provider.aclose()
        await remember(result.text)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": config.id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason or "stop",
                }
            ],
            "usage": _usage(result.usage.prompt_tokens, result.usage.completion_tokens),
        }

    return router


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _trigger(conversation: list[ChatMessage]) -> dict[str, Any] | None:
    """The last user message, shaped like a room message so the persona's memory can store it."""
    for message in reversed(conversation):
        if message.role == "user" and message.content.strip():
            return {"text": message.content, "sender": {"name": "openai-api", "kind": "api"}}
    return None


async def _stream(
    provider: ModelProvider,
    request: Any,
    config: PersonaConfig,
    completion_id: str,
    include_usage: bool,
    remember: Callable[[str], Awaitable[None]],
) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": config.id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    prompt_tokens = completion_tokens = 0
    finish = "stop"
    parts: list[str] = []
    try:
        async for part in provider.stream(request):
            if part.text:
                parts.append(part.text)
                yield chunk({"content": part.text})
            if part.usage is not None:
                prompt_tokens, completion_tokens = part.usage.prompt_tokens, part.usage.completion_tokens
            finish = part.finish_reason or finish
    except PersonadError as exc:
        # The OpenAI SDK raises an APIError when a stream carries an "error" object.
        error = {"message": exc.message, "type": "api_error", "code": exc.code}
        yield f"data: {json.dumps({'error': error})}\n\n"
        yield "data: [DONE]\n\n"
        return
    finally:
        await provider.aclose()
    await remember("".join(parts))
    yield chunk({}, finish)
    if include_usage:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": config.id,
            "choices": [],
            "usage": _usage(prompt_tokens, completion_tokens),
        }
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
