"""The inference worker and its client: fast tests over a real Unix socket with a scripted engine."""

from __future__ import annotations

import asyncio
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from personad.errors import (
    BadRequestError,
    InvalidParamsError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
)
from personad.models.base import AdapterRef, ChatMessage, ChatRequest, GenerationParams, Usage
from personad.models.local.engine import GenerationEvent
from personad.models.local.provider import LocalProvider, register_providers
from personad.models.local.worker import bind_unix_socket, build_app
from personad.models.registry import ProviderRegistry

TOKEN = "test-token"


@dataclass
class ScriptedEngine:
    """Stands in for LocalEngine: emits the words of the last message, one per ``delay`` seconds."""

    delay: float = 0.0
    model_id: str = "scripted"
    load_seconds: float = 0.0
    convert_seconds: float | None = None
    threads: int = 1
    log: list[tuple[str, str]] = field(default_factory=list)  # (event, first word) for ordering checks

    def validate(self, request: ChatRequest) -> None:
        if request.adapters:
            raise NotFoundError(f"adapter {request.adapters[0].name!r} unknown", code="adapter_not_found")

    def generate(
        self, request: ChatRequest, *, cancel: threading.Event | None = None
    ) -> Iterator[GenerationEvent]:
        words = request.messages[-1].content.split()
        self.log.append(("start", words[0]))
        try:
            for i, word in enumerate(words[: request.params.max_tokens]):
                if cancel is not None and cancel.is_set():
                    self.log.append(("cancelled", words[0]))
                    yield GenerationEvent(finish_reason="cancelled", usage=Usage(len(words), i))
                    return
                if word == "FAIL":
                    raise InvalidParamsError("scripted failure", code="scripted_failure")
                time.sleep(self.delay)
                yield GenerationEvent(text=word if i == 0 else f" {word}")
            self.log.append(("end", words[0]))
            yield GenerationEvent(finish_reason="stop", usage=Usage(len(words), len(words)))
        finally:
            self.log.append(("closed", words[0]))


@dataclass
class ServedWorker:
    socket: Path
    engine: ScriptedEngine
    server: uvicorn.Server

    def provider(self, token: str = TOKEN) -> LocalProvider:
        return LocalProvider({"socket": str(self.socket), "token": token})


@pytest.fixture
def worker() -> Iterator[ServedWorker]:
    """The worker app on a real Unix socket, served by uvicorn in a thread."""
    with tempfile.TemporaryDirectory(prefix="pd-") as tmp:  # short: socket paths are limited to 107 bytes
        engine = ScriptedEngine()
        sock_path = Path(tmp) / "run" / "inference.sock"
        sock = bind_unix_socket(sock_path)
        server = uvicorn.Server(uvicorn.Config(build_app(TOKEN, engine), lifespan="off", log_level="error"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "worker app did not start"
            time.sleep(0.01)
        yield ServedWorker(sock_path, engine, server)
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def chat(text: str, **params: object) -> ChatRequest:
    return ChatRequest([ChatMessage("user", text)], GenerationParams(**params))  # type: ignore[arg-type]


def raw_client(worker: ServedWorker, token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(worker.socket)), base_url="http://w", headers=headers
    )


def test_registry_knows_the_local_provider() -> None:
    registry = ProviderRegistry()
    register_providers(registry)
    cls = registry.get("local")
    assert cls is LocalProvider and cls.supports_adapters and not cls.supports_tools


def test_socket_is_private(worker: ServedWorker) -> None:
    mode = worker.socket.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


async def test_health_needs_the_token(worker: ServedWorker) -> None:
    async with raw_client(worker, token=None) as client:
        response = await client.get("/health")
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    async with raw_client(worker, token="wrong") as client:
        assert (await client.get("/health")).status_code == 401
    async with raw_client(worker) as client:
        body = (await client.get("/health")).json()
    assert body["ok"] is True and body["model"] == "scripted" and "load_seconds" in body


async def test_generate_streams_ndjson(worker: ServedWorker) -> None:
    async with raw_client(worker) as client:
        response = await client.post("/v1/generate", json=chat("hello there world").to_dict())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [line for line in response.text.splitlines() if line]
    assert lines[:3] == ['{"text": "hello"}', '{"text": " there"}', '{"text": " world"}']
    assert '"finish_reason": "stop"' in lines[3] and '"completion_tokens": 3' in lines[3]


async def test_provider_streams_chunks_and_usage(worker: ServedWorker) -> None:
    provider = worker.provider()
    try:
        chunks = [c async for c in provider.stream(chat("one two three"))]
        result = await provider.complete(chat("four five"))
    finally:
        await provider.aclose()
    assert [c.text for c in chunks[:-1]] == ["one", " two", " three"]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == Usage(3, 3)
    assert result.text == "four five" and result.finish_reason == "stop"


async def test_bad_token_is_unauthorized(worker: ServedWorker) -> None:
    provider = worker.provider(token="nope")
    with pytest.raises(UnauthorizedError) as info:
        await provider.complete(chat("hi"))
    await provider.aclose()
    assert info.value.code == "unauthorized"


async def test_errors_before_and_during_the_stream_become_personad_errors(worker: ServedWorker) -> None:
    provider = worker.provider()
    try:
        adapters = chat("hi")
        adapters.adapters = [AdapterRef("ghost")]
        with pytest.raises(NotFoundError) as before:
            await provider.complete(adapters)
        assert before.value.code == "adapter_not_found"
        texts: list[str] = []
        with pytest.raises(BadRequestError) as during:
            async for chunk in provider.stream(chat("fine until FAIL")):
                texts.append(chunk.text)
        assert during.value.code == "scripted_failure" and texts == ["fine", " until"]
    finally:
        await provider.aclose()


async def test_malformed_body_is_a_400(worker: ServedWorker) -> None:
    async with raw_client(worker) as client:
        response = await client.post("/v1/generate", content=b"{not json")
        missing = await client.post("/v1/generate", json={"params": {}})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    assert missing.status_code == 400


async def test_missing_socket_is_inference_unavailable(tmp_path: Path) -> None:
    provider = LocalProvider({"socket": str(tmp_path / "nope.sock"), "token": "x"})
    with pytest.raises(UnavailableError) as info:
        await provider.complete(chat("hi"))
    assert (
        info.value.code == "inference_unavailable"
        and "python -m personad.models.local.worker" in info.value.message
    )
    with pytest.raises(UnavailableError):
        await LocalProvider({}).complete(chat("hi"))


async def test_generations_run_one_at_a_time_in_arrival_order(worker: ServedWorker) -> None:
    worker.engine.delay = 0.02
    provider = worker.provider()
    try:

        async def ask(text: str, after: float) -> str:
            await asyncio.sleep(after)
            return (await provider.complete(chat(text))).text

        results = await asyncio.gather(ask("a1 a2 a3 a4", 0), ask("b1 b2 b3", 0.02), ask("c1 c2", 0.04))
    finally:
        await provider.aclose()
    assert results == ["a1 a2 a3 a4", "b1 b2 b3", "c1 c2"]
    starts_and_ends = [e for e in worker.engine.log if e[0] in ("start", "end")]
    assert starts_and_ends == [
        ("start", "a1"), ("end", "a1"), ("start", "b1"), ("end", "b1"), ("start", "c1"), ("end", "c1")
    ]  # fmt: skip


async def test_client_disconnect_cancels_the_generation(worker: ServedWorker) -> None:
    worker.engine.delay = 0.05
    words = " ".join(f"w{i}" for i in range(400))  # 20 s if nobody cancels it
    provider = worker.provider()
    try:
        stream = provider.stream(chat(words, max_tokens=400))
        first = await anext(stream)
        assert first.text == "w0"
        await stream.aclose()  # the HTTP connection closes: the worker sees a disconnect
        started = time.monotonic()
        result = await provider.complete(chat("next please"))
        assert result.text == "next please"
        assert time.monotonic() - started < 5  # it did not wait for the abandoned 20 s answer
    finally:
        await provider.aclose()
    log = worker.engine.log
    assert ("end", "w0") not in log
    assert log.index(("closed", "w0")) < log.index(("start", "next"))  # the model was free before "next"
