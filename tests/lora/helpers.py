"""A tiny random Llama and random PEFT adapters for it: fast stand-ins for SmolLM2 in LoRA tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personad.lora.registry import AdapterRegistry

TINY_SHA = "tiny-llama-test"


def tiny_model(
    seed: int = 0, *, vocab_size: int = 96, hidden: int = 32, context: int = 128, **extra: Any
) -> Any:
    """A random 2-layer Llama: ``vocab_size=len(tokenizer)`` to pair it with the real SmolLM2 tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        **extra,
    )
    return LlamaForCausalLM(config).eval()


def random_peft_adapter(
    model: Any,
    out_dir: Path,
    *,
    seed: int,
    rank: int = 4,
    alpha: float = 8.0,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
) -> Path:
    """Save a PEFT LoRA with random (non-zero) A and B for ``model`` into ``out_dir``; model unchanged."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False),
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    peft_model.save_pretrained(str(out_dir))
    return out_dir


def register_random(
    registry: AdapterRegistry,
    model: Any,
    name: str,
    tmp: Path,
    *,
    seed: int,
    parents: tuple[str, ...] = (),
    **kw: Any,
) -> None:
    folder = random_peft_adapter(model, tmp / f"src-{name}", seed=seed, **kw)
    registry.register(name, folder, parents=parents, base_model="tiny", base_model_sha256=TINY_SHA)
