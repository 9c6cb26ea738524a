"""The safetensors cache: converted once, atomically, under a lock; identical to the GGUF it came from."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from personad.models.base import ChatMessage
from personad.models.local.engine import (
    CONVERSION_MARKER,
    MODEL_ID,
    LocalEngine,
    ensure_cache,
    find_gguf,
    gguf_sha256,
)


def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "weights" / "tiny.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    return path


def test_find_gguf_locates_the_wheel_file() -> None:
    path = find_gguf()
    assert path.suffix == ".gguf" and path.is_file()
    assert "SmolLM2-135M-Instruct" in path.name


def test_hash_is_computed_once_and_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = fake_gguf(tmp_path)
    cache = tmp_path / "cache"
    first = gguf_sha256(gguf, cache)
    assert json.loads((cache / "gguf-sha256.json").read_text())[str(gguf.resolve())]["sha256"] == first

    def no_hashing(*args: object) -> None:
        raise AssertionError("hashed again")

    monkeypatch.setattr("personad.models.local.engine.hashlib.sha256", no_hashing)
    assert gguf_sha256(gguf, cache) == first


def test_concurrent_conversions_convert_once_and_publish_atomically(tmp_path: Path) -> None:
    gguf = fake_gguf(tmp_path)
    cache = tmp_path / "cache"
    calls: list[Path] = []

    def slow_convert(source: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        (out_dir / "model.safetensors").write_bytes(b"x")
        time.sleep(0.3)  # long enough for the other thread to be waiting on the lock

    results: list[tuple[Path, float | None]] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_cache(gguf, cache, convert=slow_convert)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    folders = {folder for folder, _ in results}
    assert len(folders) == 1
    folder = folders.pop()
    assert folder.name.startswith(f"{MODEL_ID}-") and (folder / CONVERSION_MARKER).is_file()
    assert sorted(seconds is None for _, seconds in results) == [False, True]  # one converted, one waited
    assert not [p for p in cache.iterdir() if p.name.startswith(f".{folder.name}.") and p.is_dir()]


def test_failed_conversion_leaves_no_folder(tmp_path: Path) -> None:
    gguf = fake_gguf(tmp_path)
    cache = tmp_path / "cache"

    def broken(source: Path, out_dir: Path) -> None:
        (out_dir / "partial").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        ensure_cache(gguf, cache, convert=broken)
    assert [p.name for p in cache.iterdir() if p.is_dir()] == []
    folder, seconds = ensure_cache(
        gguf, cache, convert=lambda s, o: (o / "model.safetensors").write_text("ok")
    )
    assert seconds is not None and (folder / "model.safetensors").read_text() == "ok"


@pytest.mark.slow
def test_cache_holds_plain_safetensors_with_logits_identical_to_the_gguf(engine: LocalEngine) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = engine.model_dir
    assert folder is not None
    assert (folder / "model.safetensors").is_file() and (folder / CONVERSION_MARKER).is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config  # else every load would go back through the GGUF path
    assert config["tie_word_embeddings"] is True
    assert engine.model.lm_head.weight.data_ptr() == engine.model.model.embed_tokens.weight.data_ptr()
    assert engine.tokenizer.chat_template

    gguf = find_gguf()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    reference_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    messages = [ChatMessage("system", "You are terse."), ChatMessage("user", "Name three colours.")]
    ids = engine.prompt_ids(messages)
    reference_text = reference_tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages], add_generation_prompt=True, tokenize=False
    )
    assert reference_tokenizer.encode(reference_text, add_special_tokens=False) == ids
    with torch.inference_mode():
        expected = reference.eval()(input_ids=torch.tensor([ids])).logits
        actual = engine.model(input_ids=torch.tensor([ids])).logits
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=0, atol=1e-5)
