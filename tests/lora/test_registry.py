"""The adapter registry: manifests, dotted parent chains, hashes checked on load, safetensors only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personad.errors import BadRequestError, ConflictError, NotFoundError
from personad.lora.info import base_model_bytes, describe_adapter
from personad.lora.manifest import MANIFEST_FILE, WEIGHTS_FILE, implied_parents
from personad.lora.registry import AdapterRegistry
from personad.lora.weights import sha256_file

from .helpers import TINY_SHA, random_peft_adapter, register_random


def test_register_writes_peft_files_and_a_manifest(
    registry: AdapterRegistry, model: Any, tmp_path: Path
) -> None:
    register_random(registry, model, "continuum", tmp_path, seed=1, rank=4, alpha=8)
    folder = registry.folder("continuum")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["adapter_config.json", WEIGHTS_FILE, MANIFEST_FILE]
    )
    manifest = registry.manifest("continuum")
    assert manifest.rank == 4 and manifest.alpha == 8
    assert manifest.target_modules == ["q_proj", "v_proj"]
    assert manifest.lora_hash == sha256_file(folder / WEIGHTS_FILE)
    assert manifest.size_bytes == (folder / WEIGHTS_FILE).stat().st_size
    assert manifest.base_model_sha256 == TINY_SHA and manifest.parents == []
    assert [m.name for m in registry.list_adapters()] == ["continuum"]
    with pytest.raises(ConflictError) as info:
        register_random(registry, model, "continuum", tmp_path, seed=2)
    assert info.value.code == "adapter_exists"


def test_dotted_name_resolves_its_parent_chain(registry: AdapterRegistry, model: Any, tmp_path: Path) -> None:
    for seed, name in enumerate(["continuum", "continuum.legal", "continuum.legal.patent"]):
        register_random(registry, model, name, tmp_path, seed=seed)
    register_random(registry, model, "continuum.legal.patent.uspto", tmp_path, seed=9)
    assert implied_parents("a.b.c") == ["a", "a.b"]
    assert registry.manifest("continuum.legal.patent.uspto").parents == ["continuum.legal.patent"]
    assert registry.chain("continuum.legal.patent.uspto") == [
        "continuum",
        "continuum.legal",
        "continuum.legal.patent",
        "continuum.legal.patent.uspto",
    ]
    stack = registry.resolve(["continuum.legal", "continuum.legal.patent.uspto"])
    assert [e.name for e in stack] == [
        "continuum",
        "continuum.legal",
        "continuum.legal.patent",
        "continuum.legal.patent.uspto",
    ]


def test_explicit_multi_parent_stack(registry: AdapterRegistry, model: Any, tmp_path: Path) -> None:
    register_random(registry, model, "legal", tmp_path, seed=1)
    register_random(registry, model, "medical", tmp_path, seed=2)
    register_random(registry, model, "medtech", tmp_path, seed=3, parents=("legal", "medical"))
    assert registry.chain("medtech") == ["legal", "medical", "medtech"]
    assert registry.children("legal") == ["medtech"]
    with pytest.raises(ConflictError) as info:
        registry.delete("legal")
    assert info.value.code == "adapter_in_use" and "medtech" in info.value.message
    registry.delete("medtech")
    registry.delete("legal")
    assert [m.name for m in registry.list_adapters()] == ["medical"]


def test_a_dotted_prefix_is_a_parent_only_when_it_is_an_adapter(
    registry: AdapterRegistry, model: Any, tmp_path: Path
) -> None:
    """``continuum`` is a namespace until an adapter of that name exists (the README's example)."""
    register_random(registry, model, "continuum.legal", tmp_path, seed=1)
    assert registry.manifest("continuum.legal").parents == []
    register_random(registry, model, "continuum.legal.patent.uspto", tmp_path, seed=2)
    # The nearest prefix that is an adapter, skipping the namespace level continuum.legal.patent.
    assert registry.chain("continuum.legal.patent.uspto") == [
        "continuum.legal",
        "continuum.legal.patent.uspto",
    ]
    # An adapter registered later under a prefix changes no existing adapter's stack.
    register_random(registry, model, "continuum", tmp_path, seed=3)
    assert registry.chain("continuum.legal") == ["continuum.legal"]
    assert registry.children("continuum") == []
    register_random(registry, model, "continuum.medical", tmp_path, seed=4)
    assert registry.chain("continuum.medical") == ["continuum", "continuum.medical"]


def test_missing_parent_is_a_clear_error(registry: AdapterRegistry, model: Any, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as info:
        register_random(registry, model, "legal", tmp_path, seed=1, parents=("continuum",))
    assert info.value.code == "adapter_parent_missing" and "'continuum'" in info.value.message
    assert not registry.exists("legal")
    # A parent deleted behind the registry's back (by hand) is caught at resolution.
    register_random(registry, model, "continuum", tmp_path, seed=1)
    register_random(registry, model, "continuum.legal", tmp_path, seed=2)
    (registry.folder("continuum") / MANIFEST_FILE).unlink()
    with pytest.raises(NotFoundError) as info:
        registry.resolve(["continuum.legal"])
    assert info.value.code == "adapter_parent_missing"


def test_unknown_adapter_and_bad_names(registry: AdapterRegistry) -> None:
    with pytest.raises(NotFoundError) as info:
        registry.resolve(["nope"])
    assert info.value.code == "adapter_not_found"
    for bad in ["../x", "A.b", "a..b", "", "a/b", ".a"]:
        with pytest.raises(BadRequestError) as bad_info:
            registry.folder(bad)
        assert bad_info.value.code == "invalid_adapter_name"


def test_tampered_weights_are_refused(registry: AdapterRegistry, model: Any, tmp_path: Path) -> None:
    register_random(registry, model, "skill", tmp_path, seed=1)
    registry.load("skill")
    path = registry.folder("skill") / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ConflictError) as info:
        registry.load("skill")
    assert info.value.code == "adapter_integrity"


def test_pickle_weights_are_never_loaded(registry: AdapterRegistry, model: Any, tmp_path: Path) -> None:
    source = random_peft_adapter(model, tmp_path / "src", seed=1)
    (source / WEIGHTS_FILE).rename(source / "adapter_model.bin")
    with pytest.raises(BadRequestError) as info:
        registry.register("pickled", source, base_model="tiny", base_model_sha256=TINY_SHA)
    assert info.value.code == "adapter_invalid" and "never pickle" in info.value.message
    assert not registry.exists("pickled")


def test_describe_shows_a_broken_chain(registry: AdapterRegistry, model: Any, tmp_path: Path) -> None:
    register_random(registry, model, "continuum", tmp_path, seed=1)
    register_random(registry, model, "continuum.legal", tmp_path, seed=2)
    (registry.folder("continuum") / MANIFEST_FILE).unlink()  # the parent deleted by hand
    data = describe_adapter(registry, registry.manifest("continuum.legal"), detail=True)
    assert "needs its parent 'continuum'" in data["chain_error"] and "chain" not in data
    assert data["children"] == []


def test_base_model_size_is_none_without_the_model_and_a_bug_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from personad.errors import UnavailableError
    from personad.models.local import engine

    def not_installed() -> Path:
        raise UnavailableError("the local model is not installed", code="inference_unavailable")

    monkeypatch.setattr(engine, "find_gguf", not_installed)
    assert base_model_bytes() is None

    def broken(gguf: Path, cache_root: Path) -> Path:
        raise KeyError("sha256")  # e.g. a bug reading the hash index: no longer hidden as "no model"

    monkeypatch.setattr(engine, "find_gguf", lambda: Path("model.gguf"))
    monkeypatch.setattr(engine, "cache_folder", broken)
    with pytest.raises(KeyError):
        base_model_bytes()
