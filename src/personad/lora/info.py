"""What ``lora list`` / ``lora show`` report about an adapter, storage ratio included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personad.errors import PersonadError, UnavailableError

from .manifest import AdapterManifest
from .registry import AdapterRegistry


def base_model_bytes() -> int | None:
    """Size of the local base model as loaded (the float32 safetensors cache), if it has been converted.

    None when the model is not installed or its cache cannot be read; anything else is a bug and raises.
    """
    from personad.models.local.engine import cache_folder, default_cache_dir, find_gguf

    try:
        folder = cache_folder(find_gguf(), default_cache_dir())
        files = list(Path(folder).glob("*.safetensors"))
        return sum(f.stat().st_size for f in files) if files else None
    except (UnavailableError, OSError):
        return None


def describe_adapter(
    registry: AdapterRegistry, manifest: AdapterManifest, *, detail: bool = False
) -> dict[str, Any]:
    """The manifest plus storage: the adapter's bytes against the base model's (honest: float32 both)."""
    data = manifest.to_dict()
    base = base_model_bytes()
    storage: dict[str, Any] = {"adapter_bytes": manifest.size_bytes, "base_model_bytes": base}
    if base:
        storage["adapter_over_base"] = manifest.size_bytes / base
        storage["base_over_adapter"] = round(base / max(manifest.size_bytes, 1), 1)
    data["storage"] = storage
    if detail:
        try:
            chain = registry.chain(manifest.name)
            data["chain"] = chain
            chain_bytes = sum(registry.manifest(n).size_bytes for n in chain)
            storage["chain_bytes"] = chain_bytes
            if base:
                storage["chain_over_base"] = chain_bytes / base
        except PersonadError as exc:  # a missing parent or a cycle is worth showing, not hiding the adapter
            data["chain_error"] = exc.message
        data["children"] = registry.children(manifest.name)
        data["path"] = str(registry.folder(manifest.name))
    return data
