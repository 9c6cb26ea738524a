"""The local engine's adapter hook, backed by the registry and the runtime."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from personad.models.base import AdapterRef

from .registry import AdapterRegistry
from .runtime import DEFAULT_QUOTA_BYTES, LoraRuntime

QUOTA_ENV = "PERSONAD_ADAPTER_QUOTA_MB"


class LoraAdapterManager:
    """Implements ``personad.models.local.engine.AdapterManager`` for one loaded model."""

    def __init__(self, runtime: LoraRuntime) -> None:
        self.runtime = runtime

    @classmethod
    def for_engine(
        cls, engine: Any, adapters_dir: Path, *, quota_bytes: int | None = None
    ) -> LoraAdapterManager:
        """Attach a manager over the registry at ``adapters_dir`` (``<home>/adapters``) to an engine."""
        import os

        if quota_bytes is None:
            configured = os.environ.get(QUOTA_ENV)
            quota_bytes = int(float(configured) * 1024 * 1024) if configured else DEFAULT_QUOTA_BYTES
        runtime = LoraRuntime(
            engine.model if engine.model is not None else engine.decoder,
            AdapterRegistry(adapters_dir),
            quota_bytes=quota_bytes,
            base_model_sha256=getattr(engine, "base_sha256", None),
        )
        manager = cls(runtime)
        engine.adapter_manager = manager
        return manager

    def check(self, adapters: Sequence[AdapterRef]) -> None:
        self.runtime.resolve(adapters)

    def activate(self, model: Any, adapters: Sequence[AdapterRef]) -> AbstractContextManager[None]:
        return self.runtime.apply([list(adapters)])

    def plan(self, rows: Sequence[Sequence[AdapterRef]]) -> Any:
        return self.runtime.plan([list(adapters) for adapters in rows])

    def describe(self) -> dict[str, Any]:
        stats = self.runtime.stats
        return {
            "resident": self.runtime.resident(),
            "resident_bytes": self.runtime.resident_bytes,
            "quota_bytes": self.runtime.quota_bytes,
            "loads": stats.loads,
            "evictions": stats.evictions,
            "stack_builds": stats.stack_builds,
        }
