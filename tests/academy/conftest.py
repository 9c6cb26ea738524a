"""A tiny random Llama with the real tokenizer and a LoRA registry: the Academy's loop, fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personad.lora.manager import LoraAdapterManager
from personad.models.local.engine import LocalEngine, default_cache_dir, ensure_cache, find_gguf


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_cache(find_gguf(), default_cache_dir())[0])


@pytest.fixture
def tiny_engine(tokenizer: Any, tmp_path: Path) -> LocalEngine:
    """A fresh tiny engine per test, its adapters under ``tmp_path/home/adapters``."""
    from tests.lora.helpers import tiny_model

    model = tiny_model(vocab_size=len(tokenizer), context=1024)
    engine = LocalEngine(model, tokenizer)
    LoraAdapterManager.for_engine(engine, tmp_path / "home" / "adapters")
    return engine


def train_on_copy(engine: LocalEngine) -> Any:
    """The Academy's train hook for the tiny model: PEFT on a deep copy (never the serving model)."""
    import copy

    from personad.lora.training import train_adapter

    def train(config: Any, registry: Any, _engine: Any) -> Any:
        return train_adapter(
            config,
            registry,
            model=copy.deepcopy(engine.model),
            tokenizer=engine.tokenizer,
            base_model="tiny",
            base_model_sha256="",
        )

    return train
