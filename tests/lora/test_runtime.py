"""Stacks applied by the runtime: exact against merged weights, base untouched, mixed batches, residency."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch

from personad.errors import ConflictError
from personad.lora.registry import AdapterRegistry
from personad.lora.runtime import LoraRuntime
from personad.lora.stack import flatten
from personad.models.base import AdapterRef

from .helpers import register_random

CHAIN = ["continuum", "continuum.legal", "continuum.legal.patent"]


@pytest.fixture
def stacked(registry: AdapterRegistry, model: Any, tmp_path: Path) -> AdapterRegistry:
    register_random(registry, model, "continuum", tmp_path, seed=1, rank=4)
    register_random(
        registry, model, "continuum.legal", tmp_path, seed=2, rank=2, targets=("q_proj", "k_proj", "o_proj")
    )
    register_random(
        registry, model, "continuum.legal.patent", tmp_path, seed=3, rank=8, targets=("v_proj", "down_proj")
    )
    register_random(registry, model, "medical", tmp_path, seed=4, rank=4, targets=("up_proj",))
    return registry


def merged_copy(model: Any, registry: AdapterRegistry, refs: list[Any]) -> Any:
    """The reference: a copy of the model with every adapter's delta added into its weights."""
    merged = copy.deepcopy(model)
    modules = dict(merged.named_modules())
    with torch.no_grad():
        for entry in registry.resolve(refs):
            for name, factors in registry.load(entry.name).modules.items():
                modules[name].weight += entry.scale * factors.scaling * (factors.b @ factors.a)
    return merged


def weights_digest(model: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_stack_matches_merged_weights(stacked: AdapterRegistry, model: Any) -> None:
    runtime = LoraRuntime(model, stacked)
    refs = [AdapterRef("continuum.legal.patent", 0.7), AdapterRef("medical", 1.3)]
    ids = torch.randint(0, 96, (2, 9))
    with torch.inference_mode():
        base = model(ids).logits
        with runtime.apply([refs, refs]):
            ours = model(ids).logits
        reference = merged_copy(model, stacked, refs)(ids).logits
        after = model(ids).logits
    assert (ours - reference).abs().max().item() <= 1e-4
    assert (ours - base).abs().max().item() > 1e-2  # the stack really changes the output
    assert torch.equal(after, base)  # and is gone after the block


def test_base_weights_bit_identical_after_1000_swaps(stacked: AdapterRegistry, model: Any) -> None:
    runtime = LoraRuntime(model, stacked)
    before = weights_digest(model)
    stacks = [["continuum.legal.patent"], ["medical"], ["continuum", "medical"], []]
    ids = torch.randint(0, 96, (1, 4))
    with torch.inference_mode():
        for i in range(1000):
            with runtime.apply([stacks[i % len(stacks)]]):
                if i % 50 == 0:
                    model(ids)
    assert weights_digest(model) == before
    assert runtime.stats.stack_builds == 3  # each distinct stack built once, then a cache hit


def test_mixed_batch_rows_match_their_own_stacks(stacked: AdapterRegistry, model: Any) -> None:
    runtime = LoraRuntime(model, stacked)
    rows = [["continuum.legal.patent"], [], ["medical"], [AdapterRef("continuum", 0.5)]]
    ids = torch.randint(0, 96, (len(rows), 7))
    with torch.inference_mode():
        with runtime.apply(rows):
            mixed = model(ids).logits
        for index, refs in enumerate(rows):
            with runtime.apply([refs]):
                alone = model(ids[index : index + 1]).logits
            assert (mixed[index] - alone[0]).abs().max().item() <= 1e-4


def test_flattened_export_loads_in_stock_peft_with_the_same_logits(
    stacked: AdapterRegistry, model: Any, tmp_path: Path
) -> None:
    from peft import PeftModel

    runtime = LoraRuntime(model, stacked)
    refs = [AdapterRef("continuum.legal.patent", 1.0), AdapterRef("medical", 0.5)]
    entries = stacked.resolve(refs)
    config = flatten([(stacked.load(e.name), e.scale) for e in entries], tmp_path / "flat", base_model="tiny")
    assert config["r"] == 4 + 2 + 8 + 4
    ids = torch.randint(0, 96, (2, 6))
    with torch.inference_mode():
        with runtime.apply([refs]):
            ours = model(ids).logits
        peft_model = PeftModel.from_pretrained(copy.deepcopy(model), str(tmp_path / "flat")).eval()
        theirs = peft_model(ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_lru_quota_evicts_and_reloads(stacked: AdapterRegistry, model: Any) -> None:
    # Room for one adapter and its stack (the stack's factors are a second copy): the next one evicts it.
    one = max(stacked.load("medical").nbytes, stacked.load("continuum").nbytes)
    runtime = LoraRuntime(model, stacked, quota_bytes=2 * one)
    ids = torch.randint(0, 96, (1, 5))
    with torch.inference_mode():
        with runtime.apply([["medical"]]):
            first = model(ids).logits
        with runtime.apply([["continuum"]]):
            model(ids)
        assert runtime.resident() == ["continuum"] and runtime.stats.evictions == 1
        assert runtime.resident_bytes <= 2 * one
        with runtime.apply([["medical"]]):  # reloaded from disk, hash checked again
            again = model(ids).logits
    assert torch.equal(first, again)
    assert runtime.stats.loads == 3


def test_adapter_for_another_base_is_refused(stacked: AdapterRegistry, model: Any) -> None:
    runtime = LoraRuntime(model, stacked, base_model_sha256="somethingelse")
    with pytest.raises(ConflictError) as info:
        runtime.plan([["medical"]])
    assert info.value.code == "adapter_base_mismatch"


def test_a_bfloat16_model_gets_bfloat16_factors(stacked: AdapterRegistry, model: Any) -> None:
    half = copy.deepcopy(model).to(torch.bfloat16)
    runtime = LoraRuntime(half, stacked)
    ids = torch.randint(0, 96, (2, 5))
    with torch.inference_mode():
        with runtime.apply([["continuum.legal.patent"], ["medical"]]):
            mixed = half(ids).logits
        with runtime.apply([["medical"]]):
            single = half(ids[1:]).logits
    assert mixed.dtype == torch.bfloat16
    assert (mixed[1].float() - single[0].float()).abs().max().item() < 0.1
