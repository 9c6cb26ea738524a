"""Continuous batching: concurrent requests with different adapter stacks decode in one batch and each
row produces exactly what it produces alone. A tiny random Llama with the real tokenizer keeps it fast."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from personad.lora.manager import LoraAdapterManager
from personad.lora.registry import AdapterRegistry
from personad.models.base import AdapterRef, ChatMessage, ChatRequest, GenerationParams
from personad.models.local.batching import BatchScheduler
from personad.models.local.engine import LocalEngine, ensure_cache, find_gguf
from tests.lora.helpers import random_peft_adapter, tiny_model


@pytest.fixture(scope="module")
def tiny_engine(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> LocalEngine:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ensure_cache(find_gguf(), model_cache)[0])
    model = tiny_model(vocab_size=len(tokenizer), hidden=64, context=512)
    engine = LocalEngine(model, tokenizer)
    engine.stop_token_ids = []  # random weights: let every row run to its max_tokens
    root = tmp_path_factory.mktemp("adapters")
    registry = AdapterRegistry(root / "adapters")
    for seed, name in enumerate(["x", "x.y", "z"], start=1):
        registry.register(
            name, random_peft_adapter(model, root / name, seed=seed), base_model="tiny", base_model_sha256=""
        )
    LoraAdapterManager.for_engine(engine, registry.root)
    return engine


def request(text: str, adapters: list[str], max_tokens: int = 12) -> ChatRequest:
    return ChatRequest(
        [ChatMessage("user", text)],
        GenerationParams(temperature=0.0, max_tokens=max_tokens),
        adapters=[AdapterRef(name) for name in adapters],
    )


async def collect(scheduler: BatchScheduler, req: ChatRequest, delay: float = 0.0) -> tuple[str, Any]:
    await asyncio.sleep(delay)
    events = [event async for event in scheduler.stream(req)]
    return "".join(e.text for e in events[:-1]), events[-1]


async def test_mixed_stacks_batch_together_and_match_solo_runs(tiny_engine: LocalEngine) -> None:
    requests = [
        request("hello there", ["x.y"]),
        request("a much longer question about many different things " * 3, []),
        request("hi", ["z"], max_tokens=20),
        request("what", ["x"], max_tokens=5),
        request("hello there", ["z"]),
    ]
    alone = ["".join(e.text for e in tiny_engine.generate(r)) for r in requests]
    scheduler = tiny_engine.make_runner()
    results = await asyncio.gather(*(collect(scheduler, r, i * 0.005) for i, r in enumerate(requests)))
    assert [text for text, _ in results] == alone
    assert alone[0] != alone[4]  # the stack matters: same prompt, different adapters, different text
    assert scheduler.max_rows_seen >= 3  # they really shared a batch
    # One forward per step for the whole batch: far fewer steps than the tokens generated.
    assert scheduler.steps < sum(r.params.max_tokens for r in requests) - len(requests)
    for (_, final), req in zip(results, requests, strict=True):
        assert final.finish_reason == "length" and final.usage.completion_tokens == req.params.max_tokens


async def test_a_cancelled_row_leaves_the_batch_and_the_others_finish(tiny_engine: LocalEngine) -> None:
    scheduler = tiny_engine.make_runner()
    keep = request("keep going", ["x"], max_tokens=30)
    alone = "".join(e.text for e in tiny_engine.generate(keep))

    async def quit_early() -> int:
        seen = 0
        async for _event in scheduler.stream(request("stop soon", ["z"], max_tokens=30)):
            seen += 1
            if seen == 3:
                break  # the consumer goes away: the row is cancelled
        return seen

    (kept, final), seen = await asyncio.gather(collect(scheduler, keep), quit_early())
    assert seen == 3 and kept == alone and final.finish_reason == "length"
    for _ in range(100):
        if scheduler.active == 0:
            break
        await asyncio.sleep(0.01)
    assert scheduler.active == 0 and scheduler.waiting == 0


async def test_an_unknown_adapter_fails_only_its_request(tiny_engine: LocalEngine) -> None:
    from personad.errors import NotFoundError

    scheduler = tiny_engine.make_runner()
    with pytest.raises(NotFoundError) as info:
        await collect(scheduler, request("hi", ["ghost"]))
    assert info.value.code == "adapter_not_found"
    _text, final = await collect(scheduler, request("hi", ["x"], max_tokens=4))
    assert final.finish_reason == "length" and final.usage.completion_tokens == 4


async def test_close_ends_every_stream_running_or_waiting(tiny_engine: LocalEngine) -> None:
    from personad.errors import UnavailableError

    scheduler = tiny_engine.make_runner(max_batch=1)  # the second request waits behind the first
    started = asyncio.Event()

    async def running() -> None:
        async for _event in scheduler.stream(request("first", [], max_tokens=400)):
            started.set()

    first = asyncio.create_task(running())
    second = asyncio.create_task(collect(scheduler, request("second", [], max_tokens=4)))
    await asyncio.wait_for(started.wait(), 10)
    assert scheduler.waiting == 1
    scheduler.close()
    for task in (first, second):
        with pytest.raises(UnavailableError) as info:
            await asyncio.wait_for(task, 10)  # not a hang
        assert info.value.code == "inference_unavailable"
    with pytest.raises(UnavailableError):
        await asyncio.wait_for(collect(scheduler, request("late", [])), 10)


async def test_a_failure_while_admitting_fails_every_admitted_row(
    tiny_engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sampling can raise (NaN logits make torch.multinomial fail): rows admitted with the failing one, not
    yet in the batch, get the error too instead of waiting forever."""
    from personad.models.local import batching

    class BrokenSampler(batching._Sampler):
        def pick(self, logits: Any) -> int:
            raise RuntimeError("probability tensor contains either inf, nan or element < 0")

    monkeypatch.setattr(batching, "_Sampler", BrokenSampler)
    scheduler = tiny_engine.make_runner()
    with scheduler._cond:  # reentrant: both requests queue before the decode thread admits them together
        tasks = [asyncio.create_task(collect(scheduler, request(t, [], max_tokens=4))) for t in ("a", "b")]
        while scheduler.waiting < 2:
            await asyncio.sleep(0.01)
    for task in tasks:
        with pytest.raises(RuntimeError, match="probability tensor"):
            await asyncio.wait_for(task, 10)
    scheduler.close()
