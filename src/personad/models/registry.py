"""Model providers by name. Built-ins register exactly as plugins (and the tests' fake) do."""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Any

from personad.errors import BadRequestError
from personad.models.base import ModelProvider

PLUGIN_ENTRY_POINT_GROUP = "personad.plugins"
PLUGINS_ENV = "PERSONAD_PLUGINS"  # comma-separated modules, loaded by the daemon and every persona process

BUILTIN_PROVIDER_MODULES: tuple[str, ...] = (
    "personad.models.local.provider",
    "personad.models.anthropic_provider",
    "personad.models.openai_provider",
)


class ProviderRegistry:
    def __init__(self) -> None:
        self._providers: dict[str, type[ModelProvider]] = {}

    def register(self, provider: type[ModelProvider]) -> type[ModelProvider]:
        if provider.name in self._providers:
            raise ValueError(f"model provider {provider.name!r} is already registered")
        self._providers[provider.name] = provider
        return provider

    def names(self) -> list[str]:
        return sorted(self._providers)

    def get(self, name: str) -> type[ModelProvider]:
        try:
            return self._providers[name]
        except KeyError:
            raise BadRequestError(
                f"unknown model provider {name!r}; available: {', '.join(self.names()) or '(none)'}",
                code="unknown_provider",
            ) from None

    def create(self, name: str, config: dict[str, Any] | None = None) -> ModelProvider:
        return self.get(name)(config)


def plugin_modules() -> list[str]:
    """Extra plugin modules named in ``PERSONAD_PLUGINS``."""
    return [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]


def load_provider_registry(*, entry_point_plugins: bool = True) -> ProviderRegistry:
    """Built-ins, then ``PERSONAD_PLUGINS`` modules and entry points that define ``register_providers``."""
    registry = ProviderRegistry()
    for module_name in (*BUILTIN_PROVIDER_MODULES, *plugin_modules()):
        hook = getattr(importlib.import_module(module_name), "register_providers", None)
        if hook is not None:
            hook(registry)
    if entry_point_plugins:
        for ep in entry_points(group=PLUGIN_ENTRY_POINT_GROUP):
            hook = getattr(ep.load(), "register_providers", None)
            if hook is not None:
                hook(registry)
    return registry
