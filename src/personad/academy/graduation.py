"""Graduation: what changes when a persona passes the Academy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from personad.lora.registry import AdapterRegistry
from personad.personas.config import PersonaStore

GRADUATED = "graduated"


def graduate(
    home: Path,
    persona_id: str,
    *,
    achievement: str,
    lora_name: str | None,
    academy_score: float,
    new_capabilities: list[str],
    brain: Any = None,
) -> dict[str, Any]:
    """Record a graduation: a skill row carrying the adapter's ``lora_hash`` in the persona's brain, the
    persona's status set to graduated, and any new capabilities added. Returns what the event carries."""
    from personad.brain import Brain

    store = PersonaStore(Path(home))
    config = store.load(persona_id)
    lora_hash = AdapterRegistry.for_home(Path(home)).manifest(lora_name).lora_hash if lora_name else ""
    if brain is not None:  # the persona's own open brain
        skill = brain.save_achievement(achievement, lora_hash, academy_score, [achievement])
    else:
        with Brain.open(Path(home) / "personas" / persona_id / "brain.sqlite") as opened:
            skill = opened.save_achievement(achievement, lora_hash, academy_score, [achievement])
    config.status = GRADUATED
    config.capabilities = sorted({*config.capabilities, *new_capabilities})
    store.save(config)
    return {
        "persona": persona_id,
        "achievement": achievement,
        "academy_score": academy_score,
        "lora_name": lora_name,
        "lora_hash": lora_hash,
        "new_capabilities": new_capabilities,
        "skill": skill,
        "status": GRADUATED,
        "at": time.time(),
    }
