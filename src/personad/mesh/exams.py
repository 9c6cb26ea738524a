"""Exams an acquiring node re-runs before it loads an adapter whose announcement names one.

An announcement's metrics say ``{"exam": NAME, METRIC: x, "ci": [low, high], ...}`` (METRIC is the exam's:
``effectiveness`` for the Academy's, ``probe_kl`` for the built-in). The acquirer looks NAME up here,
measures the adapter itself, and quarantines it when its measurement falls outside the announced interval
(widened by the exam's own tolerance). Exams register like commands and providers: the
built-ins through the same ``register_mesh_exams(registry)`` hook a plugin module exposes.

Built-in: ``probe-kl``, the mean KL divergence (nats per token) between the base model and the model with
the adapter's stack, over fixed probe prompts, on this daemon's local model. It is deterministic, so an
announced figure that is not what the adapter does is caught; it says how strongly the adapter changes the
model, not whether the change is good.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBES = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Explain what a contract is.",
    "List three prime numbers.",
    "How do I boil an egg?",
    "Summarise the plot of a detective story.",
)


@dataclass(frozen=True)
class ExamRequest:
    adapter: str
    registry_root: Path  # the registry holding the adapter and its whole parent chain
    announced: dict[str, Any]


@dataclass(frozen=True)
class ExamResult:
    value: float
    metric: str = "effectiveness"
    tolerance: float = 0.0  # added on both sides of the announced interval

    def within(self, announced: dict[str, Any]) -> bool:
        value = announced.get(self.metric)
        if not isinstance(value, int | float):
            return False  # the announcement names the exam but claims no figure for it: nothing to trust
        ci = announced.get("ci")
        low, high = (ci[0], ci[1]) if isinstance(ci, list) and len(ci) == 2 else (value, value)
        return float(low) - self.tolerance <= self.value <= float(high) + self.tolerance


Exam = Callable[[ExamRequest], Awaitable[ExamResult]]


class ExamRegistry:
    def __init__(self) -> None:
        self._exams: dict[str, Exam] = {}

    def register(self, name: str, exam: Exam) -> None:
        if name in self._exams:
            raise ValueError(f"mesh exam {name!r} is already registered")
        self._exams[name] = exam

    def get(self, name: str) -> Exam | None:
        return self._exams.get(name)

    def names(self) -> list[str]:
        return sorted(self._exams)


def default_exams() -> ExamRegistry:
    """The built-ins, then any ``PERSONAD_PLUGINS`` module's ``register_mesh_exams``."""
    from personad.models.registry import plugin_modules

    registry = ExamRegistry()
    register_mesh_exams(registry)
    for module_name in plugin_modules():
        hook = getattr(importlib.import_module(module_name), "register_mesh_exams", None)
        if hook is not None:
            hook(registry)
    return registry


def probe_kl(model: Any, tokenizer: Any, registry_root: Path, adapter: str, base_sha256: str | None) -> float:
    """Mean per-token KL(base ‖ base + stack) over :data:`PROBES` (deterministic: no sampling)."""
    import torch

    from personad.lora.registry import AdapterRegistry
    from personad.lora.runtime import LoraRuntime
    from personad.models.base import AdapterRef

    runtime = LoraRuntime(model, AdapterRegistry(registry_root), base_model_sha256=base_sha256)
    try:
        total, tokens = 0.0, 0
        with torch.inference_mode():
            for prompt in PROBES:
                ids = tokenizer(prompt, return_tensors="pt").input_ids
                base = torch.log_softmax(model(ids).logits.float(), dim=-1)
                with runtime.apply([[AdapterRef(adapter, 1.0)]]):
                    tuned = torch.log_softmax(model(ids).logits.float(), dim=-1)
                kl = (base.exp() * (base - tuned)).sum(-1)
                total += float(kl.sum())
                tokens += int(kl.numel())
        return total / max(tokens, 1)
    finally:
        runtime.remove_hooks()


_engine_lock = threading.Lock()
_engine: Any = None


def _local_engine() -> Any:
    global _engine
    with _engine_lock:
        if _engine is None:
            from personad.models.local.engine import LocalEngine

            _engine = LocalEngine.load()
        return _engine


async def _probe_kl_exam(request: ExamRequest) -> ExamResult:
    def run() -> float:
        engine = _local_engine()
        return probe_kl(
            engine.model, engine.tokenizer, request.registry_root, request.adapter, engine.base_sha256
        )

    value = await asyncio.to_thread(run)
    return ExamResult(round(value, 6), metric="probe_kl", tolerance=1e-3)


def register_mesh_exams(registry: ExamRegistry) -> None:
    registry.register("probe-kl", _probe_kl_exam)
