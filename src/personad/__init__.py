"""PersonaDaemon: AI personas and humans on one universal command bus."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Lazy exports (PEP 562): ``import personad.x`` stays cheap for persona processes and workers, which never
# need the daemon; ``from personad import Daemon`` still works.
_EXPORTS = {
    "Command": "personad.bus.commands",
    "CommandRegistry": "personad.bus.commands",
    "CommandContext": "personad.bus.processor",
    "Settings": "personad.config",
    "Daemon": "personad.daemon",
    "PersonadError": "personad.errors",
    "PersonaConfig": "personad.personas.config",
    "PersonaDaemon": "personad.personas.persona",
    "Brain": "personad.brain.store",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'personad' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
