"""The inference-only tokenizer renders and encodes exactly as transformers' tokenizer does."""

from __future__ import annotations

from pathlib import Path

import pytest

from personad.models.base import ChatMessage
from personad.models.local.engine import ensure_cache, find_gguf
from personad.models.local.textstream import render_messages
from personad.models.local.tokenizer import ChatTokenizer

CONVERSATIONS = [
    [ChatMessage("user", "What is the capital of France?")],
    [ChatMessage("system", "You are terse."), ChatMessage("user", "Hi!")],
    [
        ChatMessage("system", "You are Ada.\nBe kind."),
        ChatMessage("user", "Count to three."),
        ChatMessage("assistant", "One, two, three."),
        ChatMessage("user", "Now in French: « un, deux, trois » ? 日本語も 🙂"),
    ],
    [ChatMessage("user", "  leading and trailing spaces  \n\n\ttabs")],
    [ChatMessage("user", "<|im_start|> is special text typed by a user")],
]


@pytest.fixture(scope="module")
def tokenizers(model_cache: Path) -> tuple[ChatTokenizer, object]:
    from transformers import AutoTokenizer

    folder, _ = ensure_cache(find_gguf(), model_cache)
    return ChatTokenizer.load(folder), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_same_prompt_ids_as_transformers(tokenizers: tuple[ChatTokenizer, object], index: int) -> None:
    ours, reference = tokenizers
    messages = render_messages(CONVERSATIONS[index])
    for generation_prompt in (True, False):
        text = ours.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
        expected = reference.apply_chat_template(  # type: ignore[attr-defined]
            messages, add_generation_prompt=generation_prompt, tokenize=False
        )
        assert text == expected
        assert ours.encode(text, add_special_tokens=False) == reference.encode(  # type: ignore[attr-defined]
            text, add_special_tokens=False
        )


def test_same_decoding_and_special_ids(tokenizers: tuple[ChatTokenizer, object]) -> None:
    import random

    ours, reference = tokenizers
    ref = reference  # typed loosely: a transformers tokenizer
    assert ours.eos_token_id == ref.eos_token_id  # type: ignore[attr-defined]
    assert ours.unk_token_id == ref.unk_token_id  # type: ignore[attr-defined]
    assert len(ours) == len(ref)  # type: ignore[arg-type]
    for token in ("<|im_end|>", "<|endoftext|>", "no-such-token-anywhere"):
        assert ours.convert_tokens_to_ids(token) == ref.convert_tokens_to_ids(token)  # type: ignore[attr-defined]
    rng = random.Random(0)
    for _ in range(20):
        ids = [rng.randrange(len(ours)) for _ in range(rng.randrange(1, 40))]
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(  # type: ignore[attr-defined]
                ids, skip_special_tokens=skip
            )


def test_a_tokenizer_without_a_template_says_so(tmp_path: Path, model_cache: Path) -> None:
    import shutil

    folder, _ = ensure_cache(find_gguf(), model_cache)
    shutil.copy(folder / "tokenizer.json", tmp_path / "tokenizer.json")
    bare = ChatTokenizer.load(tmp_path)
    assert bare.eos_token_id is None
    with pytest.raises(ValueError, match="no chat template"):
        bare.apply_chat_template([{"role": "user", "content": "hi"}])
