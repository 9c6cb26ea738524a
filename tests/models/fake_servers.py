"""Fake Anthropic and OpenAI servers speaking the real wire formats, on a loopback port in a thread.

The providers under test talk to these through the official SDKs, so a test asserts on what the SDK really
put on the wire (``server.requests``: headers and JSON body) and the SDK really parses what comes back.

    with FakeAnthropicServer() as server:
        server.queue(Reply(text="Hi"), Reply.tool_call("get_weather", {"city": "Oslo"}))
        ... point the provider at server.url with api_key=server.api_key ...
        assert server.last_request.body["model"] == ...

Each request takes the next queued :class:`Reply` (``default_reply`` once the queue is empty) and is
answered as one JSON document or, when the body says ``"stream": true``, as the API's SSE stream.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TEST_API_KEY = "sk-test-key"


@dataclass
class FakeToolCall:
    name: str
    arguments: dict[str, Any] | str  # a str goes out verbatim, e.g. to send JSON that does not parse
    id: str = ""  # a wire-style id is made up when empty


@dataclass
class Reply:
    """One scripted answer; the wire stop/finish reason is derived from the content unless given."""

    text: str = ""
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    finish: str | None = None
    prompt_tokens: int = 12
    completion_tokens: int = 5
    status: int = 200
    error_message: str = ""
    error_type: str = ""  # the API's error type; derived from the status when empty
    stream_error: str = ""  # an error type sent *inside* the stream after the first text delta

    @classmethod
    def tool_call(cls, name: str, arguments: dict[str, Any] | str, *, id: str = "", text: str = "") -> Reply:
        return cls(text=text, tool_calls=[FakeToolCall(name, arguments, id)])

    @classmethod
    def error(cls, status: int, message: str = "", error_type: str = "") -> Reply:
        return cls(status=status, error_message=message or f"fake error {status}", error_type=error_type)

    def arguments_text(self, call: FakeToolCall) -> str:
        return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any


def _pieces(text: str, size: int) -> list[str]:
    """Split text the way a model streams it: several deltas, so tests see real accumulation."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeServer:
    """Starlette on uvicorn in a daemon thread, bound to 127.0.0.1 on a free port."""

    path: ClassVar[str]

    def __init__(self, *, api_key: str | None = TEST_API_KEY, model: str = "fake-model") -> None:
        self.api_key = api_key  # None: accept any (or no) credentials, like a local server
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.default_reply = Reply(text="Hello from the fake server.")
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0

    # -- scripting and inspection ---------------------------------------------------------------------

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def last_request(self) -> RecordedRequest:
        assert self.requests, "the fake server has received no request"
        return self.requests[-1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """What the matching SDK takes as ``base_url``."""
        return self.origin

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else self.default_reply

    def _new_id(self, kind: str) -> str:
        return f"{kind}_fake{next(self._ids):04d}"

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self._sock, self.port = sock, sock.getsockname()[1]
        app = Starlette(routes=[Route(self.path, self._handle, methods=["POST"])])
        config = uvicorn.Config(
            app, log_level="error", access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"{type(self).__name__}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), f"{type(self).__name__} thread did not stop"
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP -----------------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.requests.append(
            RecordedRequest(
                request.method, request.url.path, {k.lower(): v for k, v in request.headers.items()}, body
            )
        )
        refusal = self._check(request)
        if refusal is not None:
            return refusal
        reply = self._next_reply()
        if reply.status != 200:
            return self._error(reply.status, reply.error_message, reply.error_type)
        model = body.get("model", self.model) if isinstance(body, dict) else self.model
        if isinstance(body, dict) and body.get("stream"):
            return StreamingResponse(self._sse(reply, model, body), media_type="text/event-stream")
        return JSONResponse(self._document(reply, model))

    def _check(self, request: Request) -> Response | None:
        """Refuse as the real API would when credentials or required headers are wrong."""
        raise NotImplementedError

    def _error(self, status: int, message: str, error_type: str = "") -> Response:
        raise NotImplementedError

    def _document(self, reply: Reply, model: str) -> dict[str, Any]:
        raise NotImplementedError

    def _sse(self, reply: Reply, model: str, body: dict[str, Any]) -> AsyncIterator[str]:
        raise NotImplementedError


# -- Anthropic Messages API ---------------------------------------------------------------------------

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_key(headers: Mapping[str, str]) -> str | None:
    """The API key a request carries: ``x-api-key`` (the classic header, SDK 0.x/1.x) or, as SDK 2.x sends
    it, ``Authorization: Bearer``. The real API takes both."""
    if key := headers.get("x-api-key"):
        return key
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


class FakeAnthropicServer(FakeServer):
    """``POST /v1/messages``; the SDK's ``base_url`` is the origin."""

    path = "/v1/messages"

    def _check(self, request: Request) -> Response | None:
        if not request.headers.get("anthropic-version"):
            return self._error(400, "anthropic-version: header is required")
        if self.api_key is not None and anthropic_key(request.headers) != self.api_key:
            return self._error(401, "invalid x-api-key")
        return None

    def _error(self, status: int, message: str, error_type: str = "") -> Response:
        request_id = self._new_id("req")
        body = {
            "type": "error",
            "error": {
                "type": error_type or _ANTHROPIC_ERROR_TYPES.get(status, "api_error"),
                "message": message,
            },
            "request_id": request_id,
        }
        return JSONResponse(body, status_code=status, headers={"request-id": request_id})

    def _stop_reason(self, reply: Reply) -> str:
        return reply.finish or ("tool_use" if reply.tool_calls else "end_turn")

    def _tool_id(self, call: FakeToolCall) -> str:
        return call.id or self._new_id("toolu")

    def _document(self, reply: Reply, model: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for call in reply.tool_calls:
            arguments = json.loads(call.arguments) if isinstance(call.arguments, str) else call.arguments
            content.append(
                {"type": "tool_use", "id": self._tool_id(call), "name": call.name, "input": arguments}
            )
        return {
            "id": self._new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": self._stop_reason(reply),
            "stop_sequence": None,
            "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
        }

    @staticmethod
    def _event(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n"

    async def _sse(self, reply: Reply, model: str, body: dict[str, Any]) -> AsyncIterator[str]:
        ev = self._event
        start = self._document(Reply(prompt_tokens=reply.prompt_tokens, completion_tokens=1), model)
        start.update(content=[], stop_reason=None)
        yield ev("message_start", {"type": "message_start", "message": start})
        yield ev("ping", {"type": "ping"})
        index = 0
        if reply.text:
            yield ev(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for i, piece in enumerate(_pieces(reply.text, 4)):
                delta = {"type": "text_delta", "text": piece}
                yield ev(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
                if i == 0 and reply.stream_error:
                    error = {"type": reply.stream_error, "message": f"fake {reply.stream_error}"}
                    yield ev("error", {"type": "error", "error": error})
                    return
            yield ev("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        for call in reply.tool_calls:
            block = {"type": "tool_use", "id": self._tool_id(call), "name": call.name, "input": {}}
            yield ev(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
            )
            # The real API opens with an empty partial_json, then sends the object in pieces.
            for piece in ["", *_pieces(reply.arguments_text(call), 5)]:
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield ev(
                    "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                )
            yield ev("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        yield ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason(reply), "stop_sequence": None},
                "usage": {"output_tokens": reply.completion_tokens},
            },
        )
        yield ev("message_stop", {"type": "message_stop"})


# -- OpenAI Chat Completions ----------------------------------------------------------------------------

_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


class FakeOpenAIServer(FakeServer):
    """``POST /v1/chat/completions``; the SDK's ``base_url`` is ``<origin>/v1``."""

    path = "/v1/chat/completions"

    @property
    def url(self) -> str:
        return f"{self.origin}/v1"

    def _check(self, request: Request) -> Response | None:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(401, "Incorrect API key provided.")
        return None

    def _error(self, status: int, message: str, error_type: str = "") -> Response:
        default_type, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
        error = {"message": message, "type": error_type or default_type, "param": None, "code": code}
        return JSONResponse({"error": error}, status_code=status)

    def _finish(self, reply: Reply) -> str:
        return reply.finish or ("tool_calls" if reply.tool_calls else "stop")

    def _usage(self, reply: Reply) -> dict[str, int]:
        total = reply.prompt_tokens + reply.completion_tokens
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": total,
        }

    def _call_id(self, call: FakeToolCall) -> str:
        return call.id or self._new_id("call")

    def _document(self, reply: Reply, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": self._call_id(call),
                    "type": "function",
                    "function": {"name": call.name, "arguments": reply.arguments_text(call)},
                }
                for call in reply.tool_calls
            ]
        return {
            "id": self._new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish(reply)}
            ],
            "usage": self._usage(reply),
        }

    async def _sse(self, reply: Reply, model: str, body: dict[str, Any]) -> AsyncIterator[str]:
        base = {
            "id": self._new_id("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                data["usage"] = None  # every chunk but the last carries a null usage when asked for
            return f"data: {json.dumps(data)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for i, piece in enumerate(_pieces(reply.text, 4) if reply.text else []):
            yield chunk({"content": piece})
            if i == 0 and reply.stream_error:
                error = {"message": f"fake {reply.stream_error}", "type": reply.stream_error, "code": None}
                yield f"data: {json.dumps({'error': error})}\n\n"
                return
        for index, call in enumerate(reply.tool_calls):
            # The first delta names the call; the arguments follow in pieces carrying only the index.
            head = {
                "index": index,
                "id": self._call_id(call),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield chunk({"tool_calls": [head]})
            for piece in _pieces(reply.arguments_text(call), 5):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, self._finish(reply))
        if include_usage:
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': self._usage(reply)})}\n\n"
        yield "data: [DONE]\n\n"


def serve_anthropic(**kwargs: Any) -> Iterator[FakeAnthropicServer]:
    """Generator body for a pytest fixture: ``yield from serve_anthropic()``."""
    with FakeAnthropicServer(**kwargs) as server:
        yield server


def serve_openai(**kwargs: Any) -> Iterator[FakeOpenAIServer]:
    """Generator body for a pytest fixture: ``yield from serve_openai()``."""
    with FakeOpenAIServer(**kwargs) as server:
        yield server
