"""Stacks: an ordered list of adapters with scales, whose delta is exactly the sum of their deltas.

For a module hit by adapters ``i`` with factors ``A_i`` (r_i x in), ``B_i`` (out x r_i), scaling ``c_i`` and
stack scale ``s_i``::

    sum_i s_i c_i B_i A_i  =  [s_1 c_1 B_1 | s_2 c_2 B_2 | ...] @ [A_1; A_2; ...]

so concatenating the A factors row-wise and the scaled B factors column-wise gives one LoRA of rank
``sum r_i`` with scaling 1 and the same delta, up to float rounding. That is what the runtime applies
(one pair of matmuls per module per request, however deep the stack) and what ``flatten`` exports as a
stock PEFT adapter for vLLM, llama.cpp or PEFT itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .manifest import CONFIG_FILE, WEIGHTS_FILE
from .weights import PEFT_PREFIX, LoraWeights

_LAYER = re.compile(r"^(.*\.layers\.)(\d+)(\..+)$")


@dataclass
class FlatModule:
    """One module's stacked factors, pre-transposed for ``(x @ a_t) @ b_t``."""

    a_t: Any  # (in, R)
    b_t: Any  # (R, out), stack scales and LoRA scalings folded in

    @property
    def rank(self) -> int:
        return int(self.a_t.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.a_t.numel() * self.a_t.element_size() + self.b_t.numel() * self.b_t.element_size())


def combine(layers: Sequence[tuple[LoraWeights, float]]) -> dict[str, FlatModule]:
    """The stack's factors per module: concatenation, exact (see the module docstring)."""
    import torch

    parts: dict[str, tuple[list[Any], list[Any]]] = {}
    for weights, scale in layers:
        for module, factors in weights.modules.items():
            a_parts, b_parts = parts.setdefault(module, ([], []))
            a_parts.append(factors.a)
            b_parts.append(factors.b * (scale * factors.scaling))
    return {
        module: FlatModule(torch.cat(a, dim=0).t().contiguous(), torch.cat(b, dim=1).t().contiguous())
        for module, (a, b) in parts.items()
    }


def _grid(modules: Sequence[str]) -> list[str]:
    """Complete the (layer x module-suffix) grid so every layer has every targeted projection."""
    layers: set[str] = set()
    suffixes: dict[str, set[str]] = {}
    others: list[str] = []
    for name in modules:
        match = _LAYER.match(name)
        if match is None:
            others.append(name)
            continue
        layers.add(match.group(2))
        suffixes.setdefault(match.group(1), set()).add(match.group(3))
    full = set(others)
    for prefix, ends in suffixes.items():
        full.update(f"{prefix}{layer}{end}" for layer in layers for end in ends)
    return sorted(full)


def flatten(
    layers: Sequence[tuple[LoraWeights, float]], out_dir: Path, *, base_model: str | None = None
) -> dict[str, Any]:
    """Write the stack as one PEFT adapter of rank ``sum r`` (scaling 1) into ``out_dir``.

    Modules an adapter does not touch get zero factors, so every module has the same rank and the export
    loads with a plain ``LoraConfig`` (no rank pattern) in PEFT, vLLM and llama.cpp's converter.
    Returns the adapter config written.
    """
    import torch
    from safetensors.torch import save_file

    flat = combine(layers)
    total = sum(max((m.rank for m in w.modules.values()), default=0) for w, _ in layers)
    total = max([total, *(m.rank for m in flat.values())])
    modules = _grid(list(flat))
    reference = next(iter(flat.values()))
    tensors: dict[str, Any] = {}
    for name in modules:
        module = flat.get(name)
        if module is None:  # a grid cell no adapter trained: exact zero delta
            like = next(v for k, v in flat.items() if k.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1])
            a = torch.zeros(total, like.a_t.shape[0])
            b = torch.zeros(like.b_t.shape[1], total)
        else:
            a = torch.zeros(total, module.a_t.shape[0])
            b = torch.zeros(module.b_t.shape[1], total)
            a[: module.rank] = module.a_t.t()
            b[:, : module.rank] = module.b_t.t()
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = b.contiguous()
    del reference
    leaves = sorted({name.rsplit(".", 1)[-1] for name in modules})
    config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": total,
        "lora_alpha": total,  # scaling alpha / r = 1: the scales are folded into B
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": leaves,
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": None,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_FILE))
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config
