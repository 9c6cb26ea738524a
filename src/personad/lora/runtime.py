"""Applying adapter stacks to a loaded model per request, without touching its weights.

A forward hook on each targeted ``nn.Linear`` adds the active plan's low-rank delta to the module's output;
the base weights are never written. A *plan* says which stack each row of the batch runs:

* one stack for every row: ``out += (x @ A_t) @ B_t`` with the stack's concatenated factors (one pair of
  matmuls per module, however deep the stack);
* different stacks per row (mixed-stack batching): the factors of each distinct stack are padded to a
  common rank and gathered per row once per plan, then ``out += bmm(bmm(x, A_rows), B_rows)``: a gathered
  low-rank matmul in the spirit of Punica's BGMV, one batched call per module instead of one per adapter;
  a row with an empty stack gets zero factors.

Adapters stay resident in an LRU under a byte quota (an evicted one reloads from disk, its hash checked
again); each distinct stack's concatenated factors are cached too, so switching stacks between requests is
a dictionary lookup, not a model reload.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from personad.errors import ConflictError

from .registry import AdapterRegistry, StackEntry
from .stack import FlatModule, combine
from .weights import LoraWeights

DEFAULT_QUOTA_BYTES = 512 * 1024 * 1024
STACK_CACHE_SIZE = 64

StackKey = tuple[tuple[str, float, str], ...]  # (name, scale, lora_hash) per adapter, application order


@dataclass
class RuntimeStats:
    loads: int = 0
    evictions: int = 0
    stack_builds: int = 0
    plans: int = 0


@dataclass
class _Plan:
    """What the hooks add on this forward pass: per-module closures over prepared tensors."""

    single: dict[str, FlatModule] = field(default_factory=dict)
    mixed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # module -> (A_rows, B_rows)


class LoraRuntime:
    """Adapter stacks on one model: resolution, residency, and the forward hooks that apply them."""

    def __init__(
        self,
        model: Any,
        registry: AdapterRegistry,
        *,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        base_model_sha256: str | None = None,
    ) -> None:
        self.model = model
        self.registry = registry
        self.quota_bytes = quota_bytes
        self.base_model_sha256 = base_model_sha256
        self.stats = RuntimeStats()
        # A transformers model (hooks apply plans to its forward), or a packed decoder that takes plans as
        # an argument and only needs to say which modules it has.
        self._modules: dict[str, Any] = dict(model.named_modules()) if hasattr(model, "named_modules") else {}
        self._decoder_modules: set[str] = set() if self._modules else set(model.module_names)
        self._hooks: dict[str, Any] = {}
        self._resident: OrderedDict[str, LoraWeights] = OrderedDict()
        self._stacks: OrderedDict[StackKey, dict[str, FlatModule]] = OrderedDict()
        self._plan: _Plan | None = None
        self._lock = threading.RLock()

    # -- resolution and residency --------------------------------------------------------------------

    def resolve(self, refs: Sequence[Any]) -> list[StackEntry]:
        """The stack's adapters in application order; raises for unknown names, missing parents or a stack
        trained for another base model."""
        entries = self.registry.resolve(refs)
        for entry in entries:
            expected = self.base_model_sha256
            if expected and entry.manifest.base_model_sha256 and entry.manifest.base_model_sha256 != expected:
                raise ConflictError(
                    f"adapter {entry.name!r} was trained on base model {entry.manifest.base_model}"
                    f" ({entry.manifest.base_model_sha256[:12]}), not the loaded one ({expected[:12]})",
                    code="adapter_base_mismatch",
                )
        return entries

    def stack_key(self, refs: Sequence[Any]) -> StackKey:
        return tuple((e.name, e.scale, e.manifest.lora_hash) for e in self.resolve(refs))

    @property
    def resident_bytes(self) -> int:
        """Bytes held for adapters and for cached stacks: what the quota bounds."""
        adapters = sum(w.nbytes for w in self._resident.values())
        return adapters + sum(m.nbytes for flat in self._stacks.values() for m in flat.values())

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._resident)

    def weights(self, name: str, lora_hash: str, keep: Sequence[str] = ()) -> LoraWeights:
        """An adapter's factors, from memory or from disk (hash-checked), evicting LRU past the quota."""
        with self._lock:
            cached = self._resident.get(name)
            if cached is not None and self.registry.manifest(name).lora_hash == lora_hash:
                self._resident.move_to_end(name)
                return cached
            loaded = self.registry.load(name)
            self.stats.loads += 1
            self._resident[name] = loaded
            self._resident.move_to_end(name)
            self._enforce_quota(keep_adapters={name, *keep})
            return loaded

    def _enforce_quota(self, keep_adapters: set[str], keep_stack: StackKey | None = None) -> None:
        """Evict least recently used stacks, then adapters, until under the quota (never what is in use)."""
        while self.resident_bytes > self.quota_bytes:
            stack = next((k for k in self._stacks if k != keep_stack), None)
            if stack is not None:
                del self._stacks[stack]
                continue
            victim = next((n for n in self._resident if n not in keep_adapters), None)
            if victim is None:
                break  # everything left is needed right now: over quota for this request only
            del self._resident[victim]
            self.stats.evictions += 1

    def stack(self, refs: Sequence[Any]) -> dict[str, FlatModule]:
        """The concatenated factors of a stack, cached per (names, scales, hashes)."""
        with self._lock:
            key = self.stack_key(refs)
            return self._stack_for_key(key)

    def _stack_for_key(self, key: StackKey) -> dict[str, FlatModule]:
        cached = self._stacks.get(key)
        if cached is not None:
            self._stacks.move_to_end(key)
            return cached
        names = [name for name, _, _ in key]
        layers = [(self.weights(name, digest, keep=names), scale) for name, scale, digest in key]
        flat = combine(layers)
        for module, factors in flat.items():
            target = self._modules.get(module)
            if target is None and module not in self._decoder_modules:
                raise ConflictError(
                    f"adapter stack {' + '.join(names)} targets {module!r}, which the loaded model lacks",
                    code="adapter_base_mismatch",
                )
            if target is not None:
                # Combined in float32 on the CPU (exact concatenation), then placed like the module's weight
                # (the packed decoder adds deltas in float32 on the CPU: nothing to move).
                weight = target.weight
                factors.a_t = factors.a_t.to(device=weight.device, dtype=weight.dtype)
                factors.b_t = factors.b_t.to(device=weight.device, dtype=weight.dtype)
        self.stats.stack_builds += 1
        self._stacks[key] = flat
        while len(self._stacks) > STACK_CACHE_SIZE:
            self._stacks.popitem(last=False)
        self._enforce_quota(keep_adapters=set(names), keep_stack=key)
        return flat

    def forget(self, name: str | None = None) -> None:
        """Drop cached factors (of one adapter, or all): after a delete or a retrain."""
        with self._lock:
            if name is None:
                self._resident.clear()
                self._stacks.clear()
                return
            self._resident.pop(name, None)
            for key in [k for k in self._stacks if any(n == name for n, _, _ in k)]:
                del self._stacks[key]

    # -- plans ---------------------------------------------------------------------------------------

    def plan(self, rows: Sequence[Sequence[Any]]) -> _Plan | None:
        """A plan for a batch whose row ``i`` runs stack ``rows[i]`` (None when no row has adapters)."""
        import torch

        with self._lock:
            keys = [self.stack_key(refs) if refs else () for refs in rows]
            distinct = list(dict.fromkeys(keys))
            if distinct == [()]:
                return None
            self.stats.plans += 1
            if len(distinct) == 1:
                return _Plan(single=self._stack_for_key(distinct[0]))
            stacks = {key: (self._stack_for_key(key) if key else {}) for key in distinct}
        modules = sorted({m for flat in stacks.values() for m in flat})
        mixed: dict[str, tuple[Any, Any]] = {}
        for module in modules:
            present = [flat[module] for flat in stacks.values() if module in flat]
            rank = max(f.rank for f in present)
            in_features, out_features = present[0].a_t.shape[0], present[0].b_t.shape[1]
            like = {"device": present[0].a_t.device, "dtype": present[0].a_t.dtype}
            a_rows = torch.zeros(len(rows), in_features, rank, **like)
            b_rows = torch.zeros(len(rows), rank, out_features, **like)
            for row, key in enumerate(keys):
                flat = stacks[key].get(module)
                if flat is not None:
                    a_rows[row, :, : flat.rank] = flat.a_t
                    b_rows[row, : flat.rank, :] = flat.b_t
            mixed[module] = (a_rows, b_rows)
        return _Plan(mixed=mixed)

    @contextlib.contextmanager
    def apply(self, rows: Sequence[Sequence[Any]] | _Plan | None) -> Iterator[None]:
        """Run the ``with`` block's forward passes under a plan (or the rows to build one for)."""
        plan = rows if isinstance(rows, _Plan) or rows is None else self.plan(rows)
        if plan is not None and not self._modules:
            raise TypeError("a packed decoder takes plans as an argument; hooks need a transformers model")
        if plan is not None:
            self._ensure_hooks(list(plan.single) + list(plan.mixed))
        previous, self._plan = self._plan, plan
        try:
            yield
        finally:
            self._plan = previous

    def _ensure_hooks(self, modules: Sequence[str]) -> None:
        for name in modules:
            if name not in self._hooks:
                self._hooks[name] = self._modules[name].register_forward_hook(self._hook_for(name))

    def _hook_for(self, name: str) -> Any:
        import torch

        def hook(module: Any, args: tuple[Any, ...], output: Any) -> Any:
            plan = self._plan
            if plan is None:
                return None
            x = args[0]
            flat = plan.single.get(name)
            if flat is not None:
                delta = torch.matmul(torch.matmul(x, flat.a_t), flat.b_t)
            else:
                pair = plan.mixed.get(name)
                if pair is None:
                    return None
                a_rows, b_rows = pair
                shape = x.shape
                x3 = x.reshape(shape[0], -1, shape[-1])
                delta = torch.bmm(torch.bmm(x3, a_rows), b_rows).reshape(*shape[:-1], b_rows.shape[-1])
            if torch.is_grad_enabled():
                return output + delta
            return output.add_(delta)

        return hook

    def remove_hooks(self) -> None:
        for handle in self._hooks.values():
            handle.remove()
        self._hooks.clear()
