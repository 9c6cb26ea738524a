"""The local engine's inference path: a Llama decoder written for decode speed on a small CPU.

transformers' ``LlamaForCausalLM`` is the reference (training, exams and the LoRA exactness checks run
on it), but one decode step through it costs ~70 ms on 2 cores, most of it float32 matmuls: torch's float32
``linear`` at batch 1 reads weights at ~9.5 GB/s here. The profile is in docs/engine.md. This decoder
computes the same function with:

* **fused projections**: q, k and v in one matmul, gate and up in one; RoPE on q and k together;
* **fp16 weights through fbgemm** (``torch.ops.quantized.linear_dynamic_fp16``): weights stored in half
  precision and widened in registers, activations and accumulation in float32. It halves the bytes read
  per token, and fbgemm's kernel is ~2-10x faster than float32 ``linear`` at batch 1 here (the tied
  49k x 576 output head: 1.2 ms vs 12 ms). ``precision="fp32"`` keeps float32 weights (plain ``linear``)
  for exact comparisons with the reference;
* **a preallocated KV cache** written in place (:class:`KVCache`), one slot per batch row, grown by
  doubling; decode attention reads a view, never a concatenation;
* **grouped-query attention without expanding k/v**: at decode, the query heads that share a KV head
  are laid out as that head's "query positions", so one ``scaled_dot_product_attention`` call per layer
  reads each KV head once;
* **LoRA inline**: the adapter runtime's plan (``personad.lora.runtime``) is regrouped by fused matmul
  (:meth:`PackedDecoder.fuse`) and each fused matmul adds its adapters' delta in one fused multiply-add,
  ``out += (x @ A) @ B`` (one stack for all rows) or the gathered per-row ``baddbmm`` (mixed stacks), in
  float32 on top of the base weights, which are never changed. Every row of a mixed batch computes what
  it computes alone.

Only what SmolLM2 and the test models use is supported (Llama, default RoPE, SiLU MLP, no biases);
:func:`unsupported_reason` says why another config is not (the engine refuses to load such a model).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import struct
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp16", "fp32")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_BLOCK = {proj: "self_attn" if proj[0] in "qkvo" else "mlp" for proj in PROJECTIONS}
# The decoder's fused matmuls and the projections (LoRA targets) each one computes, in output order.
GROUPS = {
    "qkv": ("q_proj", "k_proj", "v_proj"),
    "o": ("o_proj",),
    "gate_up": ("gate_proj", "up_proj"),
    "down": ("down_proj",),
}
_INITIAL_LENGTH = 256


def _getter(config: Any) -> Any:
    """``get(key, default)`` over a config.json dict or a transformers config object."""
    if isinstance(config, dict):
        return config.get
    return lambda key, default=None: getattr(config, key, default)


@dataclass(frozen=True)
class DecoderConfig:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    rope_theta: float
    eps: float
    max_positions: int

    @classmethod
    def from_hf(cls, config: Any) -> DecoderConfig:
        get = _getter(config)
        heads = int(get("num_attention_heads"))
        hidden = int(get("hidden_size"))
        rope = get("rope_parameters") or get("rope_scaling") or {}
        theta = rope.get("rope_theta") if isinstance(rope, dict) else None
        return cls(
            layers=int(get("num_hidden_layers")),
            hidden=hidden,
            intermediate=int(get("intermediate_size")),
            heads=heads,
            kv_heads=int(get("num_key_value_heads") or heads),
            head_dim=int(get("head_dim") or hidden // heads),
            vocab=int(get("vocab_size")),
            rope_theta=float(theta if theta is not None else get("rope_theta", 10000.0)),
            eps=float(get("rms_norm_eps", 1e-6)),
            max_positions=int(get("max_position_embeddings", 2048)),
        )


def unsupported_reason(config: Any) -> str | None:
    """Why this decoder cannot run a model with this (transformers) config, or None if it can."""
    get = _getter(config)
    if get("model_type") not in ("llama", None):
        return f"model type {get('model_type')!r} is not a Llama"
    rope = get("rope_parameters") or get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type != "default":
        return f"RoPE scaling {rope_type!r} is not implemented"
    if get("hidden_act", "silu") != "silu":
        return f"activation {get('hidden_act')!r} is not SiLU"
    if get("attention_bias") or get("mlp_bias"):
        return "projection biases are not implemented"
    return None


class _SafetensorsFile(Mapping[str, Any]):
    """A safetensors file's tensors, each read with ``pread`` when indexed.

    Not ``safe_open``: it maps the file, and every page read through a mapping counts in this process's
    resident memory until the mapping closes, so packing would peak at the float32 file plus its packed
    copy (1.4 GB for SmolLM2). Reads go through the page cache, which is not ours; each float32 tensor
    lives only until it is packed. The format is an 8-byte header length, a JSON header, then the data.
    """

    _DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64"}

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        (size,) = struct.unpack("<Q", os.pread(self._fd, 8, 0))
        header = json.loads(os.pread(self._fd, size, 8))
        header.pop("__metadata__", None)
        self._start = 8 + size
        self._header: dict[str, Any] = header

    def __getitem__(self, key: str) -> Any:
        import torch

        entry = self._header[key]
        begin, end = entry["data_offsets"]
        data = bytearray(end - begin)
        with memoryview(data) as view:
            got = os.preadv(self._fd, [view], self._start + begin)
        if got != end - begin:
            raise OSError(f"short read of {key!r}")
        dtype = getattr(torch, self._DTYPES[entry["dtype"]])
        if not data:
            return torch.zeros(entry["shape"], dtype=dtype)
        return torch.frombuffer(data, dtype=dtype).view(entry["shape"])

    def __iter__(self) -> Iterator[str]:
        return iter(self._header)

    def __len__(self) -> int:
        return len(self._header)

    def close(self) -> None:
        os.close(self._fd)


class _Tensors(Mapping[str, Any]):
    """Several files' tensors as one mapping."""

    def __init__(self, files: list[_SafetensorsFile]) -> None:
        self._where = {key: handle for handle in files for key in handle}

    def __getitem__(self, key: str) -> Any:
        return self._where[key][key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


@dataclass
class FusedAdapters:
    """A plan's factors per layer and fused matmul (see :meth:`PackedDecoder.fuse`)."""

    layers: list[dict[str, tuple[Any, Any]]]
    mixed: bool  # (B, in, R) / (B, R, out) per row, else (in, R) / (R, out) for every row


class KVCache:
    """Keys and values for up to ``rows`` sequences, (layers, rows, kv_heads, length, head_dim) each.

    Row ``i`` of a batch lives in slot ``i``; the caller keeps the lengths. Capacity grows by doubling
    (a copy), so a long answer costs O(log n) reallocations, not one concatenation per token.
    """

    def __init__(self, config: DecoderConfig, rows: int, length: int = _INITIAL_LENGTH) -> None:
        import torch

        self.config = config
        shape = (config.layers, rows, config.kv_heads, max(1, length), config.head_dim)
        self.keys = torch.zeros(shape)
        self.values = torch.zeros(shape)

    @property
    def rows(self) -> int:
        return int(self.keys.shape[1])

    @property
    def length(self) -> int:
        return int(self.keys.shape[3])

    @property
    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()

    def reserve(self, length: int) -> None:
        """Make room for ``length`` positions in every slot."""
        import torch

        if length <= self.length:
            return
        new = min(max(length, 2 * self.length), self.config.max_positions)
        new = max(new, length)
        for name in ("keys", "values"):
            old = getattr(self, name)
            grown = torch.zeros(*old.shape[:3], new, old.shape[4])
            grown[:, :, :, : old.shape[3]] = old
            setattr(self, name, grown)

    def move(self, source: int, target: int, length: int) -> None:
        """Copy slot ``source``'s first ``length`` positions into slot ``target`` (compaction)."""
        self.keys[:, target, :, :length] = self.keys[:, source, :, :length]
        self.values[:, target, :, :length] = self.values[:, source, :, :length]


class PackedDecoder:
    """A Llama's weights packed for inference, and its forward pass over a :class:`KVCache`."""

    def __init__(self, config: DecoderConfig, tensors: Mapping[str, Any], *, precision: str = "fp16") -> None:
        import torch

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.config = config
        self.precision = precision
        c = config
        self._linear: Any
        embedding = tensors["model.embed_tokens.weight"]  # read once: it is the tied head too
        if precision == "fp16":
            prepack = torch.ops.quantized.linear_prepack_fp16
            self._linear = torch.ops.quantized.linear_dynamic_fp16

            def pack(weight: Any) -> Any:
                return prepack(weight.detach().float().contiguous(), None)

            self.embedding = embedding.detach().to(torch.float16)
        else:
            self._linear = torch.nn.functional.linear

            def pack(weight: Any) -> Any:
                return weight.detach().float().contiguous()

            self.embedding = embedding.detach().float()
        self.norm = tensors["model.norm.weight"].detach().float()

        def pack_layer(i: int) -> dict[str, Any]:
            # One layer's keys at a time: read lazily from the file, only the layers being packed have
            # their float32 weights in memory.
            p = f"model.layers.{i}."
            t = {key[len(p) :]: tensors[key] for key in tensors if key.startswith(p)}
            return {
                "attn_norm": t["input_layernorm.weight"].detach().float(),
                "mlp_norm": t["post_attention_layernorm.weight"].detach().float(),
                "qkv": pack(torch.cat([t[f"self_attn.{n}_proj.weight"] for n in "qkv"])),
                "o": pack(t["self_attn.o_proj.weight"]),
                "gate_up": pack(torch.cat([t["mlp.gate_proj.weight"], t["mlp.up_proj.weight"]])),
                "down": pack(t["mlp.down_proj.weight"]),
            }

        self.head = pack(tensors.get("lm_head.weight", embedding))  # alone: the largest, 113 MB in float32
        del embedding
        # Packing is most of a worker's start (2.1 s for SmolLM2, serially) and releases the GIL, so
        # the layers are packed side by side on the inference threads (1.3 s in all on two).
        with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
            self.layers: list[dict[str, Any]] = list(pool.map(pack_layer, range(c.layers)))
        self.names: list[dict[str, str]] = [
            {proj: f"model.layers.{i}.{_BLOCK[proj]}.{proj}" for proj in PROJECTIONS} for i in range(c.layers)
        ]
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim))
        freqs = torch.outer(torch.arange(c.max_positions, dtype=torch.float32), inv_freq)
        self.cos = torch.cat([freqs.cos(), freqs.cos()], dim=-1)
        # rotate_half(x) = cat(-x2, x1) = roll(x, half) with the first half negated: fold that sign into
        # the sine table, so RoPE is one roll and one fused multiply-add.
        self.sin = torch.cat([-freqs.sin(), freqs.sin()], dim=-1)
        q, kv = c.heads * c.head_dim, c.kv_heads * c.head_dim
        # Where each projection's output sits inside the fused outputs, for the LoRA deltas.
        self._slices = {
            "q_proj": (0, q),
            "k_proj": (q, q + kv),
            "v_proj": (q + kv, q + 2 * kv),
            "o_proj": (0, c.hidden),
            "gate_proj": (0, c.intermediate),
            "up_proj": (c.intermediate, 2 * c.intermediate),
            "down_proj": (0, c.hidden),
        }
        self._widths = {"qkv": q + 2 * kv, "o": c.hidden, "gate_up": 2 * c.intermediate, "down": c.hidden}

    # -- construction --------------------------------------------------------------------------------

    @classmethod
    def from_model(cls, model: Any, *, precision: str = "fp16") -> PackedDecoder:
        """Pack a loaded ``LlamaForCausalLM`` (its weights are read, not changed)."""
        reason = unsupported_reason(model.config)
        if reason:
            raise ValueError(f"the packed decoder cannot run this model: {reason}")
        tensors = dict(model.state_dict())
        return cls(DecoderConfig.from_hf(model.config), tensors, precision=precision)

    @classmethod
    def load(cls, model_dir: Path, *, precision: str = "fp16") -> PackedDecoder:
        """Pack straight from a model folder's ``config.json`` and safetensors: no transformers model."""
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        reason = unsupported_reason(config)
        if reason:
            raise ValueError(f"the packed decoder cannot run this model: {reason}")
        files = [_SafetensorsFile(path) for path in sorted(model_dir.glob("*.safetensors"))]
        try:
            decoder = cls(DecoderConfig.from_hf(config), _Tensors(files), precision=precision)
        finally:
            for handle in files:
                handle.close()
        release_freed_memory()
        return decoder

    @property
    def module_names(self) -> set[str]:
        """The linear modules LoRA may target, named as in the transformers model."""
        # Not lm_head: the registry refuses adapters on it (PEFT saves the tied head's base weight too).
        return {name for names in self.names for name in names.values()}

    def new_cache(self, rows: int = 1, length: int = _INITIAL_LENGTH) -> KVCache:
        return KVCache(self.config, rows, length)

    def fuse(self, plan: Any) -> FusedAdapters | None:
        """Regroup a runtime plan (``personad.lora.runtime``) by this decoder's fused matmuls.

        The projections of one fused matmul share its input, so their factors become one pair: A side by
        side, B block-diagonal over the fused output (zeros elsewhere). Each group then costs one low-rank
        matmul and one fused multiply-add (``addmm_``/``baddbmm_``) instead of two matmuls and an add per
        projection. The delta is the same sum, so this is exact up to float rounding. Done once per
        request (or per batch composition), not per step.
        """
        if plan is None:
            return None
        import torch

        mixed = bool(plan.mixed)
        source: dict[str, Any] = (
            plan.mixed if mixed else {name: (f.a_t, f.b_t) for name, f in plan.single.items()}
        )
        layers: list[dict[str, tuple[Any, Any]]] = []
        for names in self.names:
            groups: dict[str, tuple[Any, Any]] = {}
            for group, projections in GROUPS.items():
                parts = [(proj, source[names[proj]]) for proj in projections if names[proj] in source]
                if not parts:
                    continue
                rank = sum(int(a.shape[-1]) for _, (a, _) in parts)
                a_all = torch.cat([a for _, (a, _) in parts], dim=-1)
                first_b = parts[0][1][1]
                b_all = torch.zeros(*first_b.shape[:-2], rank, self._widths[group], dtype=first_b.dtype)
                offset = 0
                for proj, (a, b) in parts:
                    start, end = self._slices[proj]
                    b_all[..., offset : offset + a.shape[-1], start:end] = b
                    offset += int(a.shape[-1])
                groups[group] = (a_all, b_all)
            layers.append(groups)
        return FusedAdapters(layers, mixed)

    # -- the forward pass ----------------------------------------------------------------------------

    def prefill(
        self, ids: list[int], cache: KVCache, slot: int, adapters: FusedAdapters | None = None
    ) -> torch.Tensor:
        """Run one prompt into ``cache`` slot ``slot`` (from position 0); the last position's logits."""
        import torch

        c = self.config
        count = len(ids)
        cache.reserve(count + 1)
        h = self._embed(torch.tensor([ids], dtype=torch.long))  # (1, T, E)
        cos, sin = self.cos[:count], self.sin[:count]
        nq, nkv, d = c.heads, c.kv_heads, c.head_dim
        sdpa = torch.nn.functional.scaled_dot_product_attention
        for i, weights in enumerate(self.layers):
            lora = adapters.layers[i] if adapters is not None else None
            x = torch.rms_norm(h, (c.hidden,), weights["attn_norm"], c.eps)
            qkv = self._project(x, weights, "qkv", lora)
            qk = qkv[..., : (nq + nkv) * d].view(1, count, nq + nkv, d).transpose(1, 2)
            qk = torch.addcmul(qk * cos, qk.roll(d // 2, -1), sin)
            v = qkv[..., (nq + nkv) * d :].view(1, count, nkv, d).transpose(1, 2)
            q, k = qk[:, :nq], qk[:, nq:]
            cache.keys[i, slot, :, :count] = k[0]
            cache.values[i, slot, :, :count] = v[0]
            att = sdpa(q, k, v, is_causal=True, enable_gqa=nq != nkv)
            h = h + self._project(att.transpose(1, 2).reshape(1, count, nq * d), weights, "o", lora)
            h = h + self._mlp(h, weights, lora)
        return self._logits(h[:, -1])

    def decode(
        self, tokens: list[int], lengths: list[int], cache: KVCache, adapters: FusedAdapters | None = None
    ) -> torch.Tensor:
        """One step for rows ``0..B-1``: token ``tokens[i]`` at position ``lengths[i]``; logits (B, vocab).

        Slot ``i`` must hold row ``i``'s first ``lengths[i]`` positions; each row's new key and value are
        written at its own position and its attention sees only its own positions.
        """
        import torch

        c = self.config
        rows = len(tokens)
        longest = max(lengths) + 1
        cache.reserve(longest)
        nq, nkv, d = c.heads, c.kv_heads, c.head_dim
        group, split = nq // nkv, (nq + nkv) * d
        h = self._embed(torch.tensor(tokens, dtype=torch.long).view(rows, 1))  # (B, 1, E)
        mask = None
        if rows == 1:  # the common case, without index tensors: plain slices
            position = lengths[0]
            cos, sin = self.cos[position], self.sin[position]
            where: Any = (0, slice(None), position)
        else:
            positions = torch.tensor(lengths, dtype=torch.long)
            cos = self.cos[positions].view(rows, 1, -1)
            sin = self.sin[positions].view(rows, 1, -1)
            where = (torch.arange(rows), slice(None), positions)
            if min(lengths) != max(lengths):
                span = torch.arange(longest).view(1, -1) <= positions.view(-1, 1)
                mask = span.view(rows, 1, 1, longest)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        for i, weights in enumerate(self.layers):
            lora = adapters.layers[i] if adapters is not None else None
            x = torch.rms_norm(h, (c.hidden,), weights["attn_norm"], c.eps)
            qkv = self._project(x, weights, "qkv", lora)
            qk = qkv[:, 0, :split].view(rows, nq + nkv, d)
            qk = torch.addcmul(qk * cos, qk.roll(d // 2, -1), sin)
            keys, values = cache.keys[i], cache.values[i]
            keys[where] = qk[:, nq:]
            values[where] = qkv[:, 0, split:].view(rows, nkv, d)
            # The `group` query heads of each KV head act as its query positions (all at one position,
            # so no causal mask): one attention call reads each KV head once, nothing is expanded.
            q = qk[:, :nq].view(rows, nkv, group, d)
            att = sdpa(q, keys[:rows, :, :longest], values[:rows, :, :longest], attn_mask=mask)
            h = h + self._project(att.view(rows, 1, nq * d), weights, "o", lora)
            h = h + self._mlp(h, weights, lora)
        return self._logits(h[:, -1])

    # -- pieces --------------------------------------------------------------------------------------

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.nn.functional.embedding(ids, self.embedding).float()

    def _project(self, x: Any, weights: dict[str, Any], group: str, lora: dict[str, Any] | None) -> Any:
        """A fused matmul, plus its adapters' delta added in place in float32."""
        out = self._linear(x, weights[group])
        if lora is not None and group in lora:
            a, b = lora[group]
            if a.dim() == 3:  # one stack per row: (B, in, R) and (B, R, out)
                out.baddbmm_(x.bmm(a), b)
            else:
                flat = out.view(-1, out.shape[-1])
                flat.addmm_(x.reshape(-1, x.shape[-1]) @ a, b)
        return out

    def _mlp(self, h: Any, weights: dict[str, Any], lora: dict[str, Any] | None) -> Any:
        import torch

        c = self.config
        x = torch.rms_norm(h, (c.hidden,), weights["mlp_norm"], c.eps)
        gate_up = self._project(x, weights, "gate_up", lora)
        inner = torch.nn.functional.silu(gate_up[..., : c.intermediate]) * gate_up[..., c.intermediate :]
        return self._project(inner, weights, "down", lora)

    def _logits(self, h: Any) -> Any:
        import torch

        x = torch.rms_norm(h, (self.config.hidden,), self.norm, self.config.eps)
        return self._linear(x, self.head)


def release_freed_memory() -> None:
    """Hand the float32 tensors' freed heap back to the system (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
