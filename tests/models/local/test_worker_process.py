"""The real inference worker process, started the way the daemon starts it, through LocalProvider."""

from __future__ import annotations

import asyncio
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from personad.errors import UnauthorizedError, UnavailableError
from personad.models.base import ChatMessage, ChatRequest, GenerationParams
from personad.models.local.engine import MODEL_ID, LocalEngine
from personad.models.local.process import InferenceWorkerProcess
from personad.models.local.provider import InProcessLocalProvider, LocalProvider

QUESTION = ChatRequest(
    [ChatMessage("user", "What is the capital of France?")], GenerationParams(temperature=0.0, max_tokens=24)
)


@pytest.fixture(scope="module")
def worker(model_cache: Path) -> Iterator[InferenceWorkerProcess]:
    with tempfile.TemporaryDirectory(prefix="pd-") as home:  # short: socket paths are limited to 107 bytes
        proc = InferenceWorkerProcess(Path(home))
        asyncio.run(proc.start(timeout=180))
        yield proc
        code = asyncio.run(proc.stop())
        assert code == 0, proc.log_tail()  # SIGTERM is a clean shutdown
        assert not proc.socket.exists()


@pytest.mark.slow
def test_worker_is_up_with_a_private_socket(worker: InferenceWorkerProcess) -> None:
    assert worker.alive and worker.pid
    assert worker.health["ok"] is True and worker.health["model"] == MODEL_ID
    assert stat.S_IMODE(worker.socket.stat().st_mode) == 0o600
    assert worker.socket == worker.home / "run" / "inference.sock"
    assert "serving" in (worker.home / "logs" / "inference.log").read_text()


@pytest.mark.slow
async def test_reply_through_the_worker_matches_the_engine_in_process(
    worker: InferenceWorkerProcess, engine: LocalEngine
) -> None:
    remote = LocalProvider({"socket": str(worker.socket), "token": worker.token})
    local = InProcessLocalProvider(engine=engine)
    try:
        chunks = [c async for c in remote.stream(QUESTION)]
        expected = await local.complete(QUESTION)
    finally:
        await remote.aclose()
    text = "".join(c.text for c in chunks)
    assert "Paris" in text
    assert text == expected.text  # same weights, same greedy decode: the socket adds nothing
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == expected.usage


@pytest.mark.slow
async def test_bad_token_is_refused(worker: InferenceWorkerProcess) -> None:
    provider = LocalProvider({"socket": str(worker.socket), "token": "not-the-token"})
    with pytest.raises(UnauthorizedError):
        await provider.complete(QUESTION)
    await provider.aclose()
    transport = httpx.AsyncHTTPTransport(uds=str(worker.socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
        assert (await client.get("/health")).status_code == 401


@pytest.mark.slow
async def test_two_concurrent_requests_both_complete(worker: InferenceWorkerProcess) -> None:
    provider = LocalProvider({"socket": str(worker.socket), "token": worker.token})
    other = ChatRequest([ChatMessage("user", "Say hello.")], GenerationParams(temperature=0.0, max_tokens=12))
    try:
        first, second = await asyncio.gather(provider.complete(QUESTION), provider.complete(other))
    finally:
        await provider.aclose()
    assert "Paris" in first.text and first.finish_reason == "stop"
    assert second.text and second.finish_reason in ("stop", "length")


async def test_a_worker_that_dies_while_starting_reports_its_log(tmp_path: Path) -> None:
    proc = InferenceWorkerProcess(tmp_path, env={"PERSONAD_INFERENCE_THREADS": "not-a-number"})
    with pytest.raises(UnavailableError) as info:
        await proc.start(timeout=60)
    assert info.value.code == "inference_unavailable"
    assert "exited with code" in info.value.message and "not-a-number" in info.value.message
    assert not proc.alive
