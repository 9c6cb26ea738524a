"""Checks a persona config must pass before it is saved: its provider exists and can apply its stack,
and every adapter of the stack (with its parents) is in the registry.

Run at ``persona_create``, at every stack change (``lora_load_stack``) and when the Python API starts a
persona, so a bad stack is refused with ``adapter_not_found`` or ``adapters_unsupported`` up front rather
than failing inside the first answer.
"""

from __future__ import annotations

from pathlib import Path

from personad.errors import BadRequestError
from personad.models.registry import ProviderRegistry
from personad.personas.config import PersonaConfig


class AdaptersUnsupportedError(BadRequestError):
    code = "adapters_unsupported"


def check_persona(config: PersonaConfig, *, home: Path, providers: ProviderRegistry) -> None:
    """Raise a structured error for a config whose model could not run it as configured."""
    provider = providers.get(config.model_provider)  # unknown_provider
    if not config.lora_adapters:
        return
    if not provider.applies_adapters(config.model_config_):
        raise AdaptersUnsupportedError(
            f"the {config.model_provider!r} provider cannot apply LoRA adapters, and this persona's stack is"
            f" {', '.join(config.lora_adapters)}: drop lora_adapters, use the local provider, or (for an"
            " OpenAI-compatible server that serves adapters: vLLM, llama.cpp server, LoRAX) use the openai"
            " provider with model_config.lora_serving = 'model'",
        )
    from personad.lora.registry import AdapterRegistry

    AdapterRegistry.for_home(home).resolve(config.lora_adapters)  # adapter_not_found, parents missing
