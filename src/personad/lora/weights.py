"""One adapter's LoRA factors, read from stock PEFT files (safetensors only) and checked against its hash.

PEFT stores ``base_model.model.<module>.lora_A.weight`` (r x in) and ``...lora_B.weight`` (out x r) per
target module; the delta a module adds is ``scaling * B @ A @ x`` with ``scaling = alpha / r`` (or
``alpha / sqrt(r)`` under rsLoRA), per-module rank and alpha overridable through ``rank_pattern`` and
``alpha_pattern``. Anything PEFT can save that is not plain additive LoRA (DoRA, fan-in-fan-out layers,
embedding or bias adapters) is refused with a clear error rather than applied wrongly.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personad.errors import BadRequestError, ConflictError

from .manifest import CONFIG_FILE, WEIGHTS_FILE

PEFT_PREFIX = "base_model.model."
_CHUNK = 1 << 20


class AdapterIntegrityError(ConflictError):
    """The weights on disk do not match the manifest's sha256."""

    code = "adapter_integrity"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    # PEFT's rule: a pattern key matches a module name when it matches a whole dotted suffix of it.
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


@dataclass
class LoraModule:
    """The factors for one target module: delta(x) = scaling * (x @ A.T) @ B.T."""

    a: Any  # torch.Tensor, (r, in_features)
    b: Any  # torch.Tensor, (out_features, r)
    scaling: float

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])


@dataclass
class LoraWeights:
    """An adapter's factors keyed by module name in the base model (``model.layers.0.self_attn.q_proj``)."""

    name: str
    modules: dict[str, LoraModule]
    config: dict[str, Any]
    nbytes: int

    @classmethod
    def load(cls, name: str, folder: Path, expected_sha256: str | None) -> LoraWeights:
        """Read ``folder``'s PEFT files; with ``expected_sha256`` the weights file must hash to it."""
        import torch
        from safetensors.torch import load_file

        weights_path = folder / WEIGHTS_FILE
        if not weights_path.is_file():
            raise BadRequestError(
                f"adapter {name!r} has no {WEIGHTS_FILE}"
                " (only safetensors adapters are loaded, never pickle)",
                code="adapter_invalid",
            )
        if expected_sha256 is not None:
            actual = sha256_file(weights_path)
            if actual != expected_sha256:
                raise AdapterIntegrityError(
                    f"adapter {name!r}: {WEIGHTS_FILE} has sha256 {actual[:16]}…, the manifest says"
                    f" {expected_sha256[:16]}…; the file was changed after it was registered — retrain or"
                    " re-import it",
                )
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(weights_path))
        return cls(name, parse_peft_state(name, tensors, config), config, _nbytes(tensors, torch))


def _nbytes(tensors: dict[str, Any], torch: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def parse_peft_state(name: str, tensors: dict[str, Any], config: dict[str, Any]) -> dict[str, LoraModule]:
    """PEFT's flat state dict → one LoraModule per target module, float32."""
    import torch

    unsupported = [flag for flag in ("use_dora", "fan_in_fan_out") if config.get(flag)]
    if config.get("peft_type", "LORA") != "LORA" or unsupported:
        raise BadRequestError(
            f"adapter {name!r} is not a plain LoRA adapter"
            f" ({', '.join(unsupported) or config.get('peft_type')}); only additive LoRA on linear layers"
            " is supported",
            code="adapter_invalid",
        )
    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", key)
        if match is None:
            raise BadRequestError(
                f"adapter {name!r}: unexpected tensor {key!r} (only lora_A / lora_B weights are supported)",
                code="adapter_invalid",
            )
        pairs.setdefault(match.group(1), {})[match.group(2)] = tensor
    alpha = float(config.get("lora_alpha", config.get("r", 8)))
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    modules: dict[str, LoraModule] = {}
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise BadRequestError(
                f"adapter {name!r}: module {module!r} lacks lora_{'B' if 'A' in pair else 'A'}",
                code="adapter_invalid",
            )
        a, b = pair["A"].to(torch.float32), pair["B"].to(torch.float32)
        rank = a.shape[0]
        if b.shape[1] != rank:
            raise BadRequestError(
                f"adapter {name!r}: module {module!r} has A {tuple(a.shape)} and B {tuple(b.shape)}",
                code="adapter_invalid",
            )
        expected_rank = int(_pattern_value(rank_pattern, module, config.get("r", rank)))
        if expected_rank != rank:
            raise BadRequestError(
                f"adapter {name!r}: module {module!r} has rank {rank}, its config says {expected_rank}",
                code="adapter_invalid",
            )
        module_alpha = float(_pattern_value(alpha_pattern, module, alpha))
        scaling = module_alpha / math.sqrt(rank) if config.get("use_rslora") else module_alpha / rank
        modules[module] = LoraModule(a.contiguous(), b.contiguous(), scaling)
    if not modules:
        raise BadRequestError(f"adapter {name!r} has no LoRA weights", code="adapter_invalid")
    return modules
