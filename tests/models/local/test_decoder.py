"""The packed decoder computes what transformers' Llama computes: prefill, decode over a growing cache,
adapter stacks (one for all rows, or one per row) and the real model's greedy answers in fp16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from personad.lora.registry import AdapterRegistry
from personad.lora.runtime import LoraRuntime
from personad.models.base import AdapterRef, ChatMessage
from personad.models.local.decoder import PackedDecoder, unsupported_reason
from personad.models.local.engine import PRECISION_ENV, LocalEngine, default_precision
from tests.lora.helpers import register_random, tiny_model

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_model(seed=3, vocab_size=96, hidden=64, context=600)


def reference_logits(model: Any, ids: list[int]) -> torch.Tensor:
    """Every position's logits from transformers, no cache: the ground truth for prefill + decode."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0]


def decoder_logits(decoder: PackedDecoder, ids: list[int], prompt: int, plan: Any = None) -> torch.Tensor:
    """Logits for positions prompt-1 .. len(ids)-1: a prefill of ``prompt`` tokens, then one decode
    step per remaining token."""
    with torch.inference_mode():
        cache = decoder.new_cache(1, 4)  # tiny on purpose: decoding must grow it
        out = [decoder.prefill(ids[:prompt], cache, 0, plan)[0]]
        for position in range(prompt, len(ids)):
            out.append(decoder.decode([ids[position]], [position], cache, plan)[0])
        return torch.stack(out)


def test_fp32_prefill_and_decode_match_transformers(model: Any) -> None:
    decoder = PackedDecoder.from_model(model, precision="fp32")
    ids = torch.randint(0, 96, (300,), generator=torch.Generator().manual_seed(0)).tolist()
    expected = reference_logits(model, ids)[9:]
    got = decoder_logits(decoder, ids, prompt=10)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)


def test_fp16_weights_stay_close(model: Any) -> None:
    decoder = PackedDecoder.from_model(model, precision="fp16")
    ids = torch.randint(0, 96, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    expected = reference_logits(model, ids)[4:]
    got = decoder_logits(decoder, ids, prompt=5)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) < 1e-2 * scale
    assert float((got - expected).abs().max()) > 0  # really half-precision weights, not the fp32 path


def stack_registry(model: Any, tmp_path: Path) -> AdapterRegistry:
    registry = AdapterRegistry(tmp_path / "adapters")
    register_random(registry, model, "a", tmp_path, seed=1, rank=4, targets=ALL_LINEAR)
    register_random(registry, model, "a.b", tmp_path, seed=2, rank=2, targets=("q_proj", "down_proj"))
    register_random(registry, model, "c", tmp_path, seed=3, rank=8, targets=("v_proj", "up_proj"))
    return registry


def test_a_stack_matches_the_hooked_transformers_model(model: Any, tmp_path: Path) -> None:
    registry = stack_registry(model, tmp_path)
    decoder = PackedDecoder.from_model(model, precision="fp32")
    runtime = LoraRuntime(decoder, registry)
    hooked = LoraRuntime(model, registry)
    refs = [AdapterRef("a.b", 0.7), AdapterRef("c", 1.3)]
    ids = torch.randint(0, 96, (30,), generator=torch.Generator().manual_seed(2)).tolist()
    with hooked.apply([refs]):
        expected = reference_logits(model, ids)[7:]
    got = decoder_logits(decoder, ids, prompt=8, plan=decoder.fuse(runtime.plan([refs])))
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)
    assert float((got - reference_logits(model, ids)[7:]).abs().max()) > 1e-2  # the stack did something


def test_mixed_stacks_and_lengths_in_one_batch_match_each_row_alone(model: Any, tmp_path: Path) -> None:
    registry = stack_registry(model, tmp_path)
    decoder = PackedDecoder.from_model(model, precision="fp16")
    runtime = LoraRuntime(decoder, registry)
    stacks: list[list[AdapterRef]] = [[AdapterRef("a.b")], [], [AdapterRef("c", 0.5)], [AdapterRef("a")]]
    generator = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 96, (n,), generator=generator).tolist() for n in (5, 17, 9, 30)]
    steps = 6
    with torch.inference_mode():
        alone = []
        for prompt, stack in zip(prompts, stacks, strict=True):
            plan = decoder.fuse(runtime.plan([stack]))
            cache = decoder.new_cache(1)
            logits = [decoder.prefill(prompt, cache, 0, plan)[0]]
            for step in range(steps):
                token = int(logits[-1].argmax())
                logits.append(decoder.decode([token], [len(prompt) + step], cache, plan)[0])
            alone.append(torch.stack(logits))
        cache = decoder.new_cache(len(prompts))
        first = [
            decoder.prefill(p, cache, slot, decoder.fuse(runtime.plan([s])))[0]
            for slot, (p, s) in enumerate(zip(prompts, stacks, strict=True))
        ]
        batched = [[logits] for logits in first]
        plan = decoder.fuse(runtime.plan(stacks))
        assert plan is not None and plan.mixed  # really one gathered plan for different stacks
        for step in range(steps):
            tokens = [int(rows[-1].argmax()) for rows in batched]
            out = decoder.decode(tokens, [len(p) + step for p in prompts], cache, plan)
            for row, logits in zip(batched, out, strict=True):
                row.append(logits)
    for solo, row in zip(alone, batched, strict=True):
        torch.testing.assert_close(torch.stack(row), solo, atol=1e-4, rtol=1e-4)


def test_cache_rows_move_down_when_a_row_leaves(model: Any) -> None:
    decoder = PackedDecoder.from_model(model, precision="fp32")
    ids = [5, 6, 7, 8, 9]
    with torch.inference_mode():
        cache = decoder.new_cache(2)
        decoder.prefill([1, 2, 3], cache, 0)
        decoder.prefill(ids, cache, 1)
        cache.move(1, 0, len(ids))
        moved = decoder.decode([10], [len(ids)], cache)[0]
        fresh = decoder.new_cache(1)
        decoder.prefill(ids, fresh, 0)
        expected = decoder.decode([10], [len(ids)], fresh)[0]
    torch.testing.assert_close(moved, expected)


def test_other_architectures_are_refused_with_the_reason() -> None:
    assert unsupported_reason({"model_type": "llama"}) is None
    assert "Llama" in str(unsupported_reason({"model_type": "gpt2"}))
    scaled = {"model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}
    assert "yarn" in str(unsupported_reason(scaled))
    with pytest.raises(ValueError, match="biases"):
        PackedDecoder.from_model(tiny_model(attention_bias=True))


def test_precision_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from personad.errors import InvalidParamsError

    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert default_precision() == "fp16"
    monkeypatch.setenv(PRECISION_ENV, "FP32")
    assert default_precision() == "fp32"
    monkeypatch.setenv(PRECISION_ENV, "int3")
    with pytest.raises(InvalidParamsError, match="fp16, fp32"):
        default_precision()


QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Give me three tips for a job interview.",
    "What does a CPU do?",
    "Name a large animal that lives in the ocean.",
]


@pytest.mark.slow
def test_real_model_greedy_answers_in_fp16_match_the_float32_reference(engine: LocalEngine) -> None:
    """The default (fp16) decoder against transformers in float32: the same greedy tokens."""
    from transformers import DynamicCache

    assert engine.decoder.precision == "fp16"
    tokens = 24
    for question in QUESTIONS:
        ids = engine.prompt_ids([ChatMessage("user", question)])
        reference: list[int] = []
        with torch.inference_mode():
            cache = DynamicCache(config=engine.model.config)
            step = torch.tensor([ids])
            for _ in range(tokens):
                out = engine.model(input_ids=step, cache=cache, use_cache=True, logits_to_keep=1)
                reference.append(int(out.logits[0, -1].argmax()))
                step = torch.tensor([[reference[-1]]])
        ours = decoder_logits(engine.decoder, ids + reference[:-1], prompt=len(ids)).argmax(dim=-1)
        assert ours.tolist() == reference, question


@pytest.mark.slow
def test_inference_only_engine_answers_like_the_full_one(engine: LocalEngine, model_cache: Path) -> None:
    from personad.models.base import ChatRequest, GenerationParams

    light = LocalEngine.load(model_cache, inference_only=True)
    assert light.model is None and light.stop_token_ids == engine.stop_token_ids
    params = GenerationParams(temperature=0.0, max_tokens=16)
    request = ChatRequest([ChatMessage("user", QUESTIONS[0])], params)
    answer = "".join(e.text for e in light.generate(request))
    assert answer == "".join(e.text for e in engine.generate(request))
